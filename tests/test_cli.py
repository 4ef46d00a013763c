"""The aezip command: JSON schema, exit statuses, one-line errors, nothing on stdout on failure."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from aezip import cli
from aezip.container import FORMAT_VERSION

from common import edit_record
from aezip.codec.sample import sample_field

REPORT_KEYS = {"input", "output", "shape", "dtype", "original_bytes", "compressed_bytes", "compression_ratio",
               "bits_per_value", "mse", "psnr", "max_abs_error", "seconds", "mb_per_s"}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def npy(tmp_path):
    p = tmp_path / "field.npy"
    np.save(p, sample_field((96, 80), seed=4))
    return p


def test_subprocess_roundtrip_json(npy, tmp_path):
    """The installed entry point as a user runs it."""
    aez, out = tmp_path / "f.aez", tmp_path / "r.npy"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))))
    c = subprocess.run([sys.executable, "-m", "aezip", "compress", str(npy), "-o", str(aez), "--json"],
                       capture_output=True, text=True, env=env)
    assert c.returncode == 0, c.stderr
    rc = json.loads(c.stdout)
    d = subprocess.run([sys.executable, "-m", "aezip", "decompress", str(aez), "-o", str(out), "--original", str(npy),
                        "--json"], capture_output=True, text=True, env=env)
    assert d.returncode == 0, d.stderr
    rd = json.loads(d.stdout)
    assert REPORT_KEYS <= rc.keys() and REPORT_KEYS <= rd.keys()
    size = os.path.getsize(aez)
    assert rc["compressed_bytes"] == rd["compressed_bytes"] == size
    assert rc["compression_ratio"] == pytest.approx(npy.stat().st_size and 96 * 80 * 4 / size)
    assert rd["measured"]["mse"] == pytest.approx(rc["mse"], rel=1e-9)
    assert rd["measured"]["max_abs_error"] == pytest.approx(rc["max_abs_error"], rel=1e-9)
    x, x_hat = np.load(npy), np.load(out)
    assert np.max(np.abs(x.astype(np.float64) - x_hat)) == pytest.approx(rc["max_abs_error"], rel=1e-9)


def test_default_output_names(npy, capsys):
    code, out, _ = run(capsys, "compress", npy, "--quiet")
    assert code == 0 and out == ""
    aez = str(npy) + ".aez"
    assert os.path.exists(aez)
    os.rename(npy, str(npy) + ".orig")
    code, _, _ = run(capsys, "decompress", aez, "--quiet")
    assert code == 0 and os.path.exists(npy)


def test_json_is_one_object(npy, tmp_path, capsys):
    code, out, _ = run(capsys, "compress", npy, "-o", tmp_path / "a.aez", "--json")
    assert code == 0
    assert isinstance(json.loads(out), dict) and out.count("\n") == 1


def test_human_report_names_the_figures(npy, tmp_path, capsys):
    code, out, _ = run(capsys, "compress", npy, "-o", tmp_path / "a.aez")
    assert code == 0
    for word in ("ratio", "bits/value", "MSE", "PSNR", "max abs error", "MB/s", "not guaranteed"):
        assert word in out


def test_npz_several_arrays(tmp_path, capsys):
    p = tmp_path / "two.npz"
    np.savez(p, a=sample_field((40, 40), seed=1), b=sample_field((300,), seed=2).astype(np.float64))
    code, out, err = run(capsys, "compress", p, "-o", tmp_path / "two.aez", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert len(r["arrays"]) == 2 and r["original_bytes"] == 40 * 40 * 4 + 300 * 8
    assert r["compressed_bytes"] == os.path.getsize(tmp_path / "two.aez")
    code, out, err = run(capsys, "decompress", tmp_path / "two.aez", "-o", tmp_path / "back.npz", "--original", p,
                         "--json")
    assert code == 0, err
    with np.load(tmp_path / "back.npz") as z:
        assert sorted(z.files) == ["a", "b"] and z["b"].dtype == np.float64


def test_info_and_verify(npy, tmp_path, capsys):
    aez = tmp_path / "a.aez"
    run(capsys, "compress", npy, "-o", aez, "--quiet")
    code, out, _ = run(capsys, "info", aez, "--json")
    d = json.loads(out)
    assert code == 0 and d["format_version"] == FORMAT_VERSION and d["arrays"][0]["shape"] == [96, 80]
    assert d["arrays"][0]["interpolation"] is None  # the plain learned mode interpolates nothing
    code, out, _ = run(capsys, "verify", aez)
    assert code == 0 and "OK" in out
    run(capsys, "compress", npy, "-o", aez, "--rel", "1e-3", "--force", "--quiet")
    code, out, _ = run(capsys, "info", aez)
    assert code == 0 and ("bounded rel (groups order)" in out or "bounded rel (diamond order)" in out)
    golden = os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "v4", "psnr-filter-2d.aez")
    code, out, _ = run(capsys, "info", golden)
    assert code == 0 and "coarse steps (stride 4 and up) within 0.1005" in out
    assert "coded within 0.201 then filtered (8 weights, corrections within 0.1005)" in out and "(bound 0.3015)" in out
    code, out, _ = run(capsys, "info", golden, "--json")
    assert json.loads(out)["arrays"][0]["filter"]["clip"] == pytest.approx(0.1004858424511004)


def _corrupt_stream(aez):
    """Flip one byte inside a contiguous entry (compact ones sit in checksummed object headers)."""
    with h5py.File(aez, "r") as f:
        offset = f["array_0"].id.get_offset()
    assert offset is not None
    data = bytearray(aez.read_bytes())
    data[offset + 10] ^= 0xFF
    aez.write_bytes(bytes(data))


def test_corrupted_container(tmp_path, capsys):
    big = tmp_path / "big.npy"
    np.save(big, sample_field((512, 512), seed=4))
    aez = tmp_path / "a.aez"
    run(capsys, "compress", big, "-o", aez, "--quiet", "--model", "conv-ae-v1")
    _corrupt_stream(aez)
    code, out, _ = run(capsys, "info", aez)
    assert code == 0  # info never reads the payload
    for cmd in (["verify", aez], ["decompress", aez, "-o", tmp_path / "r.npy"]):
        code, out, err = run(capsys, *cmd)
        assert code == 2 and out == "" and "checksum" in err and err.count("\n") == 1
    assert not (tmp_path / "r.npy").exists()


def test_truncated_container(npy, tmp_path, capsys):
    aez = tmp_path / "a.aez"
    run(capsys, "compress", npy, "-o", aez, "--quiet")
    aez.write_bytes(aez.read_bytes()[:500])
    code, out, err = run(capsys, "decompress", aez, "-o", tmp_path / "r.npy")
    assert code == 2 and out == "" and err.count("\n") == 1


@pytest.mark.parametrize("argv,match", [
    (["compress", "{tmp}/missing.npy"], "does not exist"),
    (["compress", "{tmp}/f.aez.txt"], "format"),
    (["compress"], "input"),
    (["compress", "{npy}", "--ndim", "5"], "ndim"),
    (["frobnicate"], "invalid choice"),
    (["decompress", "{npy}"], "not an HDF5|aezip container"),
    (["compress", "{npy}", "--model", "no-such-model", "-o", "{tmp}/m.aez"], "no model named"),
    (["compress", "{npy}", "--threads", "0", "-o", "{tmp}/t.aez"], "threads"),
])
def test_usage_and_input_errors(argv, match, npy, tmp_path, capsys):
    (tmp_path / "f.aez.txt").write_text("hello")
    argv = [a.format(tmp=tmp_path, npy=npy) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    import re

    assert re.search(match, err), err


def test_existing_output_message_names_the_ways_out(npy, tmp_path, capsys):
    aez = tmp_path / "a.aez"
    run(capsys, "compress", npy, "-o", aez, "--quiet")
    out_npy = tmp_path / "r.npy"
    out_npy.write_bytes(b"keep")
    code, out, err = run(capsys, "decompress", aez, "-o", out_npy)
    assert code == 2 and "-o" in err and "--force" in err
    assert out_npy.read_bytes() == b"keep"
    code, _, _ = run(capsys, "decompress", aez, "-o", out_npy, "--force", "--quiet")
    assert code == 0 and np.load(out_npy).shape == (96, 80)


def test_bound_exceeded_exits_3(npy, tmp_path, capsys):
    aez = tmp_path / "a.aez"
    run(capsys, "compress", npy, "-o", aez, "--quiet")
    # pretend a bound was promised that the model cannot keep
    edit_record(aez, 0, lambda r: r["figures"].update(bound=1e-9))
    code, out, err = run(capsys, "decompress", aez, "-o", tmp_path / "r.npy", "--original", npy)
    assert code == 3 and "exceeds" in err


def test_internal_error_is_one_line_exit_1(npy, tmp_path, capsys, monkeypatch):
    from aezip import api

    def boom(*a, **k):
        raise RuntimeError("synthetic bug")

    monkeypatch.setattr(api, "compress", boom)
    monkeypatch.delenv("AEZIP_DEBUG", raising=False)
    code, out, err = run(capsys, "compress", npy)
    assert code == 1 and out == "" and err.count("\n") == 1 and "synthetic bug" in err
    monkeypatch.setenv("AEZIP_DEBUG", "1")
    code, out, err = run(capsys, "compress", npy)
    assert code == 1 and "Traceback" in err


def test_interrupt_exits_130(npy, capsys, monkeypatch):
    from aezip import api

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "compress", interrupted)
    code, out, err = run(capsys, "compress", npy)
    assert code == 130 and out == ""


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and "aezip" in capsys.readouterr().out


def test_train_then_compress(tmp_path, capsys):
    """A 64x64 input, a few steps: the trained model file is usable right away."""
    src = tmp_path / "train.npy"
    np.save(src, sample_field((64, 64), seed=5))
    model = tmp_path / "mine.h5"
    code, out, err = run(capsys, "train", src, "-o", model, "--max-steps", "20", "--batch-size", "4", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["steps"] == 20 and d["name"].startswith("conv2d-")
    code, out, err = run(capsys, "compress", src, "-o", tmp_path / "x.aez", "--model", model, "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == d["name"]
    code, out, err = run(capsys, "decompress", tmp_path / "x.aez", "-o", tmp_path / "x.npy", "--model", model)
    assert code == 0, err
    code, out, err = run(capsys, "decompress", tmp_path / "x.aez", "-o", tmp_path / "y.npy")
    assert code == 2 and "--model" in err  # the user's model is not built in: say how to find it


def test_models_lists_builtins(capsys):
    code, out, _ = run(capsys, "models", "--json")
    models = json.loads(out)["models"]
    assert code == 0 and {m["summary"].get("val_psnr_normalized") is not None for m in models} == {True}
    assert sum(m["default"] for m in models) == 3


def test_demo(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "-o", tmp_path, "--json")
    assert code == 0, err
    d = json.loads(out)
    for mode in ("learned", "bounded"):
        assert d[mode]["decompress"]["measured"]["mse"] == pytest.approx(d[mode]["compress"]["mse"], rel=1e-9)
    assert d["bounded"]["compress"]["max_error_over_bound"] <= 1
    assert (tmp_path / "sample_field.aez").exists()  # -o keeps the files


def test_demo_leaves_no_temporary_folder(tmp_path, capsys, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    assert "bounded mode --rel 1e-3" in out
    assert list(tmp_path.iterdir()) == []  # it left 3.2 MB in aezip-demo-* after each run


@pytest.mark.parametrize("x, storage, modes", [
    (np.full((20, 30), 2.5, np.float32), "constant", ([], ["--rel", "1e-3"])),
    (np.random.default_rng(0).standard_normal(50), "raw", (["--abs", "1e-12"], ["--rel", "1e-14"]))],
    ids=["constant", "raw"])
def test_report_of_an_exact_result(x, storage, modes, tmp_path, capsys):
    """No error at all: 'PSNR exact' (no dB) and '(exact)', never 'measured, not guaranteed'."""
    src = tmp_path / "x.npy"
    np.save(src, x)
    for argv in modes:
        code, out, err = run(capsys, "compress", src, "-o", tmp_path / "x.aez", "--force", *argv)
        assert code == 0, err
        assert f"storage {storage}" in out and "PSNR exact " in out and "(exact)" in out
        assert "exact dB" not in out and "not guaranteed" not in out and "mode None" not in out
    assert f"mode {argv[0][2:]}: bound 0 guaranteed" in out
    code, out, _ = run(capsys, "info", tmp_path / "x.aez")
    assert code == 0 and "max abs error 0 (bound 0)" in out
    code, out, _ = run(capsys, "compress", src, "-o", tmp_path / "x.aez", "--force", *modes[0])
    code, out, _ = run(capsys, "info", tmp_path / "x.aez")
    assert "(exact)" in out or "(bound 0)" in out


def test_report_of_a_psnr_beyond_reach_names_the_mode(npy, tmp_path, capsys):
    """--psnr 500 stores the values exactly: its mode and the bound 0 (it printed 'mode None:
    bound 5.25e-25')."""
    code, out, err = run(capsys, "compress", npy, "-o", tmp_path / "x.aez", "--psnr", "500")
    assert code == 0, err
    assert "storage raw" in out and "mode psnr: bound 0 guaranteed" in out and "mode None" not in out


def test_report_of_several_arrays_names_each_bound(tmp_path, capsys):
    """A file's report over arrays with bounds of their own: each one's bound on its line
    (it printed 'bound exact guaranteed', the JSON having bound null)."""
    src = tmp_path / "sim.h5"
    with h5py.File(src, "w") as f:
        f["fields/temp"] = sample_field((40, 30), seed=1)
        f["fields/p"] = sample_field((40, 30), seed=2) * 100
    code, out, err = run(capsys, "compress", src, "-o", tmp_path / "sim.aez", "--rel", "1e-3")
    assert code == 0, err
    assert "bound exact" not in out and "mode rel: each array's own bound (below) guaranteed" in out
    assert sum(" bound " in line for line in out.splitlines() if line.startswith("    /fields/")) == 2


def test_report_names_the_dataset(tmp_path, capsys):
    src = tmp_path / "sim.h5"
    with h5py.File(src, "w") as f:
        f["fields/temp"] = sample_field((40, 30), seed=1)
        f["fields/p"] = sample_field((40, 30), seed=2)
    aez = tmp_path / "temp.aez"
    for argv in ([f"{src}:/fields/temp"], [src, "--key", "/fields/temp"]):
        code, out, err = run(capsys, "compress", *argv, "-o", aez, "--force")
        assert code == 0, err
        assert out.splitlines()[0] == f"compressed: {src}:/fields/temp -> {aez}"


def test_report_of_a_region_shows_its_shape(npy, tmp_path, capsys):
    aez = tmp_path / "x.aez"
    run(capsys, "compress", npy, "-o", aez, "--rel", "1e-3", "--quiet")
    code, out, err = run(capsys, "decompress", aez, "-o", tmp_path / "r.npy", "--region", "0:10,5:25")
    assert code == 0, err
    assert "shape 96x80  region 10x20" in out
    code, out, err = run(capsys, "decompress", aez, "-o", tmp_path / "r.npy", "--region", "0:10,5:25", "--force",
                         "--json")
    assert json.loads(out)["region_shape"] == [10, 20] and json.loads(out)["shape"] == [96, 80]


@pytest.mark.parametrize("option", ["--abs", "--rel", "--psnr", "--pw-rel"])
@pytest.mark.parametrize("value", ["-1e-3", "-2", "-0.5", "-inf"])
def test_negative_bound_gets_the_bounds_own_message(option, value, npy, tmp_path, capsys):
    """'--abs -1e-3' reads -1e-3 as the value (argparse took it for an option: 'expected one
    argument'), which the bound's check then refuses in one line, as for '--abs=-1e-3'."""
    out_path = tmp_path / "x.aez"
    for argv in ([option, value], [f"{option}={value}"]):
        code, out, err = run(capsys, "compress", npy, "-o", out_path, *argv)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "expected one argument" not in err
        assert ("finite" if value == "-inf" else "positive") in err, err
        assert not out_path.exists()
