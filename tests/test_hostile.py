"""Hostile containers: forged skeletons, links, names, sizes and records end as a clean
ContainerError (exit 2) before any output exists, and never touch a file outside it."""

import io
import os
import warnings

import h5py
import numpy as np
import pytest

import aezip
from aezip.cli import main
from aezip.container.writer import crc32
from aezip.io import LeftOutWarning
from common import edit_record, set_record
from fuzzing import files




def _whole_file_container(tmp_path) -> str:
    src = str(tmp_path / "src.h5")
    with h5py.File(src, "w") as f:
        f["fields/temp"] = np.linspace(0, 1, 600).reshape(20, 30)
        f["count"] = np.arange(5)
    p = str(tmp_path / "x.aez")
    aezip.compress(src, p, abs=1e-3)
    return p


def _replace_skeleton(p: str, build) -> None:
    """Replace the container's skeleton with one ``build(f)`` writes, its checksum made to match."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.create_group("fields")
        f["fields"].create_dataset("temp", shape=(20, 30), dtype="f8")
        build(f)
    data = np.frombuffer(image.getvalue(), np.uint8)
    with h5py.File(p, "r+") as f:
        del f["skeleton"]
        f["skeleton"] = data
        f["skeleton"].attrs["crc32"] = np.uint32(crc32(data))


def _external_storage(victim):
    def build(f):
        f.create_dataset("ext", shape=(64,), dtype="u1", external=[(victim, 0, 64)])
    return build


def _external_link(victim):
    def build(f):
        f["fields/link"] = h5py.ExternalLink(victim, "/data")
    return build


def _virtual(victim):
    def build(f):
        layout = h5py.VirtualLayout(shape=(8,), dtype="f8")
        layout[:] = h5py.VirtualSource(victim, "data", shape=(8,))
        f.create_virtual_dataset("vds", layout, fillvalue=0)
    return build


def _external_temp(victim):
    def build(f):  # the field itself stored outside: filling it would write into victim
        del f["fields/temp"]
        f["fields"].create_dataset("temp", shape=(20, 30), dtype="f8", external=[(victim, 0, 4800)])
    return build


@pytest.mark.parametrize("forge", [_external_storage, _external_link, _virtual, _external_temp])
def test_a_skeleton_reaching_outside_is_refused_before_any_write(tmp_path, forge, capsys):
    p = _whole_file_container(tmp_path)
    victim = str(tmp_path / "victim.bin")
    with open(victim, "wb") as fp:
        fp.write(b"keep me" * 1000)
    _replace_skeleton(p, forge(victim))
    before = files(tmp_path)
    assert main(["decompress", p, "-o", str(tmp_path / "out.h5"), "--quiet"]) == 2
    assert "outside the output" in capsys.readouterr().err
    assert main(["verify", p, "--quiet"]) == 2
    assert files(tmp_path) == before  # no output, no temp file, the victim untouched


def test_a_skeleton_with_soft_and_hard_links_and_scales_still_decodes(tmp_path):
    src = str(tmp_path / "src.h5")
    with h5py.File(src, "w") as f:
        f["x"] = np.arange(20.0)
        f["x"].make_scale("x")
        f["fields/temp"] = np.linspace(0, 1, 600).reshape(30, 20)
        f["fields/temp"].dims[1].attach_scale(f["x"])
        f["soft"] = h5py.SoftLink("/fields/temp")
        f["hard"] = f["fields/temp"]
        f["kind"] = np.dtype("i2")  # a committed datatype
    p = str(tmp_path / "x.aez")
    aezip.compress(src, p, abs=1e-3)
    out = str(tmp_path / "out.h5")
    aezip.decompress(p, out)
    with h5py.File(out) as f:
        assert f.get("soft", getlink=True).path == "/fields/temp"
        assert f["hard"].id == f["fields/temp"].id and f["fields/temp"].dims[1][0].name == "/x"
        assert np.abs(f["fields/temp"][()] - np.linspace(0, 1, 600).reshape(30, 20)).max() <= 1e-3


def test_compress_leaves_out_what_reaches_outside_and_says_so(tmp_path, capsys):
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(8.0)
    raw = str(tmp_path / "raw.bin")
    np.arange(16, dtype="<f8").tofile(raw)
    src = str(tmp_path / "src.h5")
    with h5py.File(src, "w") as f:
        f["fields/temp"] = np.linspace(0, 1, 600).reshape(20, 30)
        f["link"] = h5py.ExternalLink(other, "/data")
        f.create_dataset("ext", shape=(16,), dtype="<f8", external=[(raw, 0, 128)])
        layout = h5py.VirtualLayout(shape=(8,), dtype="f8")
        layout[:] = h5py.VirtualSource(other, "data", shape=(8,))
        f.create_virtual_dataset("vds", layout)
    p = str(tmp_path / "x.aez")
    with pytest.warns(LeftOutWarning, match=r"/ext \(a dataset stored in external files\), /link \(an external "
                                            r"link\), /vds \(a virtual dataset\)"):
        aezip.compress(src, p, abs=1e-3)
    assert [a.name for a in aezip.info(p).arrays] == ["/fields/temp"]
    out = str(tmp_path / "out.h5")
    aezip.decompress(p, out)
    with h5py.File(out) as f:
        assert set(f) == {"fields"}
    with warnings.catch_warnings():  # as outside pytest: shown, not raised
        warnings.simplefilter("default", LeftOutWarning)
        assert main(["compress", src, "-o", str(tmp_path / "y.aez"), "--abs", "1e-3", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aezip: warning:") and "left out" in err


def _plain_container(tmp_path, x=None, **kwargs) -> str:
    p = str(tmp_path / "c.aez")
    aezip.compress(np.linspace(0, 1, 3000).reshape(50, 60) if x is None else x, p, force=True, **kwargs)
    return p


@pytest.mark.parametrize("name", ["../evil", "/a/../../evil", "a//b", "./x", "a\\b", "x\x00y"])
def test_a_name_leaving_the_output_is_refused(tmp_path, name, capsys):
    p = _plain_container(tmp_path, abs=1e-3)
    edit_record(p, 0, lambda r: r.update(name=name))
    before = files(tmp_path)
    assert main(["decompress", p, "-o", str(tmp_path / "out.npz"), "--quiet"]) == 2
    assert "not a plain path" in capsys.readouterr().err
    assert files(tmp_path) == before


def test_duplicate_entry_names_are_refused(tmp_path, capsys):
    p = str(tmp_path / "c.aez")
    aezip.compress(str(_npz(tmp_path)), p)
    edit_record(p, 1, lambda r: r.update(name="/a"))
    assert main(["decompress", p, "-o", str(tmp_path / "out.npz"), "--quiet"]) == 2
    assert "two entries are both array" in capsys.readouterr().err


def _npz(tmp_path):
    src = tmp_path / "two.npz"
    np.savez(src, a=np.linspace(0, 1, 100), b=np.linspace(1, 2, 100))
    return src


@pytest.mark.parametrize("link", ["external", "soft"])
def test_the_reader_never_follows_a_link_as_an_entry(tmp_path, link, capsys):
    p = _plain_container(tmp_path, abs=1e-3)
    elsewhere = str(tmp_path / "elsewhere.aez")
    os.replace(p, elsewhere)
    aezip.compress(np.arange(10.0), p, abs=1e-3)
    with h5py.File(p, "r+") as f:
        f["moved"] = f["array_0"]
        del f["array_0"]
        f["array_0"] = h5py.ExternalLink(elsewhere, "/array_0") if link == "external" else h5py.SoftLink("/moved")
    assert main(["info", p, "--quiet"]) == 2
    assert f"is {'an external' if link == 'external' else 'a soft'} link" in capsys.readouterr().err


# --- hostile model files ------------------------------------------------------------------

BUILTIN_2D = os.path.join(os.path.dirname(aezip.__file__), "model", "builtin", "conv2d-8996c555b480.h5")


def _forged_model(tmp_path, change) -> str:
    import shutil

    p = str(tmp_path / "evil.h5")
    shutil.copy(BUILTIN_2D, p)
    with h5py.File(p, "r+") as f:
        change(f)
    return p


def _set_config(**values):
    import json

    def change(f):
        f.attrs["config"] = np.bytes_(json.dumps(dict(json.loads(f.attrs["config"]), **values)).encode())
    return change


def _wrong_tensor(f):
    del f["weights/g_a.0.weight"]
    f["weights/g_a.0.weight"] = np.zeros((32, 1, 5, 5), np.float32)


def _tensor_bomb(f):  # 4 GB of zeros declared, a few KB stored
    del f["weights/g_a.0.weight"]
    f["weights"].create_dataset("g_a.0.weight", shape=(1 << 30,), dtype="f4", chunks=(1 << 20,), compression="gzip")


@pytest.mark.parametrize("change, match", [
    (_set_config(channels=10 ** 9), "channels=1000000000 is outside"),
    (_set_config(latent_channels=0), "latent_channels=0"),
    (_set_config(tile=1 << 40), "tile"),
    (_set_config(levels="2"), "levels"),
    (_wrong_tensor, "tensors do not match"),
    (_tensor_bomb, "chunked, filtered"),
])
def test_a_hostile_model_file_is_refused_before_allocating(tmp_path, change, match, capsys):
    import resource
    import time

    model = _forged_model(tmp_path, change)
    x = str(tmp_path / "x.npy")
    np.save(x, np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    t0, rss0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["compress", x, "-o", str(tmp_path / "x.aez"), "--model", model, "--quiet"]) == 2
    assert match in capsys.readouterr().err
    assert time.perf_counter() - t0 < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 300 << 10  # KB: nothing large allocated
    assert not os.path.exists(tmp_path / "x.aez")


def test_a_hostile_embedded_model_is_refused(tmp_path, capsys):
    import shutil

    golden = os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "v2", "fit-embedded.aez")
    p = str(tmp_path / "c.aez")
    shutil.copy(golden, p)
    evil = _forged_model(tmp_path, _set_config(channels=10 ** 9))
    with open(evil, "rb") as fp:
        data = np.frombuffer(fp.read(), np.uint8)
    with h5py.File(p, "r+") as f:
        del f["model"]
        f["model"] = data
        f["model"].attrs["crc32"] = np.uint32(crc32(data))
    assert main(["decompress", p, "-o", str(tmp_path / "out.npy"), "--quiet"]) == 2
    assert "outside" in capsys.readouterr().err and not os.path.exists(tmp_path / "out.npy")


def test_a_hostile_checkpoint_is_refused_before_reading_its_tensors(tmp_path):
    from aezip.errors import UsageError
    from aezip.model.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, read_checkpoint

    p = str(tmp_path / "ck.h5")
    with h5py.File(p, "w") as f:
        f.attrs.update(format=CHECKPOINT_FORMAT, format_version=np.int32(CHECKPOINT_FORMAT_VERSION), step=1,
                       aezip_version=np.bytes_(b"x"), options=np.bytes_(b"{}"), state=np.bytes_(b"{}"),
                       scheduler=np.bytes_(b"{}"), param_groups=np.bytes_(b"[]"))
        f.create_dataset("weights/net.g_a.0.weight", shape=(1 << 30,), dtype="f4", chunks=(1 << 20,),
                         compression="gzip")
    with pytest.raises(UsageError, match="more data than the file holds"):
        read_checkpoint(p)


# --- memory bombs, forged sizes and records --------------------------------------------------

def _peak_rss_of(argv) -> tuple[int, float, str]:
    """(exit status, peak RSS in MB, stderr) of ``python -m aezip ARGV`` in a fresh process."""
    import subprocess
    import sys

    code = ("import resource, sys\nfrom aezip.cli import main\nrc = main(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    *lines, rss = p.stderr.strip().splitlines()
    return p.returncode, int(rss) / 1024, "\n".join(lines)


def _verify_rss_of_a_small_container(tmp_path) -> float:
    """Peak RSS (MB) of ``aezip verify`` on an honest small container: the interpreter's own."""
    folder = tmp_path / "small"
    folder.mkdir()
    return _peak_rss_of(["verify", _plain_container(folder, abs=1e-3), "--quiet"])[1]


def test_a_gzip_bomb_payload_is_refused_before_it_is_inflated(tmp_path):
    import json

    p = _plain_container(tmp_path, abs=1e-3)
    with h5py.File(p, "r+") as f:
        record = f["array_0"].attrs["record"]
        d = json.loads(record)
        del f["array_0"]
        f.create_dataset("array_0", shape=(1 << 31,), dtype="u1", chunks=(1 << 22,), compression="gzip")
        d["streams"] = [["residuals", "uint8", 1 << 31, 0]]
        f["array_0"].attrs["record_crc32"] = np.uint32(0)
        set_record(f["array_0"].attrs, "record", json.dumps(d).encode())  # a forger's checksum
    assert os.path.getsize(p) < 10 << 20
    baseline = _verify_rss_of_a_small_container(tmp_path)
    code, rss, err = _peak_rss_of(["verify", p, "--quiet"])
    assert code == 2 and "chunked, filtered" in err and rss < baseline + 200  # MB; 2 GB once inflated


@pytest.mark.parametrize("shape", [[10 ** 12], [2 ** 63], [50, 2 ** 40]])
def test_an_absurd_shape_is_a_clean_error(tmp_path, shape, capsys):
    p = _plain_container(tmp_path, abs=1e-3)
    edit_record(p, 0, lambda r: r.update(shape=shape))
    for cmd in ("info", "verify"):
        assert main([cmd, p, "--quiet"]) == 2
        assert "container declares" in capsys.readouterr().err


def test_a_forged_constant_decodes_in_little_memory(tmp_path):
    p = _plain_container(tmp_path, np.full((50, 60), 1.5))
    edit_record(p, 0, lambda r: r.update(shape=[20000, 20000]))
    baseline = _verify_rss_of_a_small_container(tmp_path)
    code, rss, err = _peak_rss_of(["verify", p, "--quiet"])
    assert code == 0 and rss < baseline + 200, err  # MB; 3.2 GB declared


@pytest.mark.parametrize("change, match", [
    (lambda r: r["codec"].update(model=5), "names model #5"),
    (lambda r: r["figures"].update(mse=-1.0), None),
    (lambda r: r["figures"].update(value_range=1e308), None),
    (lambda r: r["figures"].pop("bound", None), None),
    (lambda r: r.update(streams=[[n if n != "residuals" else "residualz", *t] for n, *t in r["streams"]]),
     "'residuals' stream is missing"),
    (lambda r: [t.__setitem__(1, "int8") for t in r["streams"] if t[0] != "residuals"], None),
])
def test_forged_records_end_in_exit_0_or_2(tmp_path, change, match, capsys):
    x = np.linspace(0, 1, 3000).reshape(50, 60)
    x[3, 3] = np.nan
    p = _plain_container(tmp_path, x, abs=1e-3)
    edit_record(p, 0, change)
    for cmd in (["info", p], ["info", p, "--json"], ["verify", p, "--quiet"]):
        assert main(cmd) in (0, 2)
    err = capsys.readouterr().err
    assert match is None or match in err


def test_verify_says_when_records_are_not_checksummed(capsys):
    old = os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "v4", "psnr-filter-2d.aez")
    assert main(["verify", old]) == 0
    assert "records not checksummed (format 4)" in capsys.readouterr().out


def test_a_negative_figure_is_corruption_even_in_slabs(tmp_path, monkeypatch, capsys):
    """benchmarks/fuzz.py found figures.mse = -1 on a slab ending in a logarithm's ValueError."""
    from aezip import slabs

    monkeypatch.setattr(slabs, "slab_rows", lambda shape, memory, workers=1: 16)
    p = _plain_container(tmp_path, abs=1e-3)
    assert len(aezip.info(p).arrays) > 1
    edit_record(p, 1, lambda r: r["figures"].update(mse=-1.0))
    assert main(["verify", p, "--quiet"]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_a_skeleton_whose_addresses_overflow_is_refused(tmp_path):
    """benchmarks/fuzz.py (seed 3) damaged a stored skeleton so that h5py's in-memory driver
    raised OverflowError (exit 1); it is a corrupted container, and nothing is written."""
    src = os.path.join(os.path.dirname(__file__), "data", "skeleton-overflow.aez")
    out = tmp_path / "out.h5"
    with pytest.raises(aezip.ContainerError, match="not a readable HDF5 image"):
        aezip.decompress(src, str(out))
    assert not out.exists() and os.listdir(tmp_path) == []


def test_reports_of_arrays_with_tiny_ranges_do_not_divide_by_zero(tmp_path):
    """Two arrays, one spanning 1e-170 (its range squared underflows to 0): the file's
    combined PSNR is computed without dividing by that square."""
    p = str(tmp_path / "two.npz")
    rng = np.random.default_rng(5)
    np.savez(p, a=np.cumsum(rng.standard_normal(500)) * 1e-170, b=np.cumsum(rng.standard_normal(400)))
    r = aezip.compress(p, str(tmp_path / "two.aez"), rel=1e-3)
    x_hat, d = aezip.decompress(str(tmp_path / "two.aez"), write=False)
    assert r.psnr is not None and r.psnr > 50 and d.psnr == pytest.approx(r.psnr)


def test_a_skeleton_that_crashes_the_hdf5_library_is_refused(tmp_path, monkeypatch):
    """benchmarks/fuzz.py (seed 4) met damaged skeleton bytes on which the HDF5 library
    itself died of a segmentation fault. The skeleton is first read in a forked child: a
    child that dies is a corrupted container, and aezip goes on to say so."""
    import signal

    from aezip.io import skeleton

    src = tmp_path / "whole.h5"
    with h5py.File(src, "w") as f:
        f["t"] = np.cumsum(np.random.default_rng(6).standard_normal((20, 30)), axis=1)
        f["t"].attrs["units"] = "K"
    aez = str(tmp_path / "whole.aez")
    aezip.compress(str(src), aez, rel=1e-3)
    real = skeleton._check

    def crash_in_the_child(data, touch):
        if touch:
            os.kill(os.getpid(), signal.SIGSEGV)
        return real(data, touch)

    monkeypatch.setattr(skeleton, "_check", crash_in_the_child)
    out = tmp_path / "out.h5"
    with pytest.raises(aezip.ContainerError, match="crashes the HDF5 library"):
        aezip.decompress(aez, str(out))
    assert not out.exists()
    monkeypatch.setattr(skeleton, "_check", real)
    aezip.decompress(aez, str(out))  # the honest skeleton passes the child's reading
    with h5py.File(out, "r") as f:
        assert f["t"].attrs["units"] == "K"


def test_a_skeleton_whose_reading_never_ends_is_refused(tmp_path, monkeypatch):
    """benchmarks/fuzz.py (seed 5) met damaged skeleton bytes that sent the HDF5 library
    round a loop: the forked child that reads the skeleton first is stopped after
    SKELETON_CHECK_SECONDS, and the container is refused."""
    import time

    from aezip.io import skeleton

    src = tmp_path / "whole.h5"
    with h5py.File(src, "w") as f:
        f["t"] = np.cumsum(np.random.default_rng(7).standard_normal((20, 30)), axis=1)
    aez = str(tmp_path / "whole.aez")
    aezip.compress(str(src), aez, rel=1e-3)
    real = skeleton._check

    def loop_in_the_child(data, touch):
        if touch:
            time.sleep(60)
        return real(data, touch)

    monkeypatch.setattr(skeleton, "_check", loop_in_the_child)
    monkeypatch.setattr(skeleton, "SKELETON_CHECK_SECONDS", 0.5)
    t0 = time.monotonic()
    with pytest.raises(aezip.ContainerError, match="does not finish"):
        aezip.decompress(aez, str(tmp_path / "out.h5"))
    assert time.monotonic() - t0 < 10 and not (tmp_path / "out.h5").exists()
