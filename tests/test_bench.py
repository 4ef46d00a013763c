"""``aezip bench``: aezip against SZ3, ZFP and zstd, through the command line."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys

import numpy as np
import pytest

from aezip import api, bench, cli

RELS = (1e-2, 1e-3)
QUALITIES = (40.0, 50.0)  # the plain learned mode's targets in the full bench
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """A 64x64 float32 field (.npy) and a 2000-value float64 series (in an .npz)."""
    d = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(7)
    field = np.cumsum(np.cumsum(rng.standard_normal((64, 64)), 0), 1).astype(np.float32)
    series = np.cumsum(rng.standard_normal(2000))
    np.save(d / "field.npy", field)
    np.savez(d / "series.npz", series=series)
    return {"dir": d, "specs": [str(d / "field.npy"), str(d / "series.npz")],
            "arrays": {"field.npy": field, "series.npz:series": series}}


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def full(inputs, tmp_path_factory) -> dict:
    """One bench of both inputs against everything, with --json, --csv and --plot."""
    d = inputs["dir"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEZIP_MODELS", str(tmp_path_factory.mktemp("user-models")))
        rc, out, err = _main(["bench", *inputs["specs"], "--rel", ",".join(map(str, RELS)), "--json",
                              "--quality", ",".join(map(str, QUALITIES)),
                              "--csv", str(d / "rd.csv"), "--plot", str(d / "rd.png")])
    assert rc == 0, err
    return {"rows": json.loads(out)["rows"], "out": out, "err": err, "csv": d / "rd.csv", "png": d / "rd.png"}


def test_json_is_one_object_with_a_row_per_compressor_and_bound(full, inputs):
    assert len(full["out"].strip().splitlines()) == 1
    expected = set()
    for name in inputs["arrays"]:
        for comp, module in (("aezip", "aezip"), ("sz3", "pysz"), ("zfp", "zfpy")):
            if _installed(module):
                expected |= {(name, comp, rel) for rel in RELS}
        if _installed("zstandard"):
            expected.add((name, "zstd", None))
        if inputs["arrays"][name].dtype.kind == "f":
            expected |= {(name, "aezip learned", q) for q in QUALITIES}
    got = [(r["array"], r["compressor"], r["rel"] if r["quality"] is None else r["quality"]) for r in full["rows"]]
    assert len(got) == len(set(got))
    assert set(got) == expected


def test_ratio_and_bits_are_original_over_compressed_bytes(full, inputs):
    for r in full["rows"]:
        x = inputs["arrays"][r["array"]]
        assert r["original_bytes"] == x.nbytes and r["n_values"] == x.size and r["shape"] == list(x.shape)
        assert r["ratio"] == pytest.approx(r["original_bytes"] / r["compressed_bytes"], rel=1e-12)
        assert r["bits_per_value"] == pytest.approx(8 * r["compressed_bytes"] / x.size, rel=1e-12)
        assert r["comp_mb_s"] > 0 and r["decomp_mb_s"] > 0


def test_aezip_rows_count_the_whole_container_and_keep_the_bound(full, inputs, tmp_path):
    rows = [r for r in full["rows"] if r["compressor"] == "aezip"]
    assert rows
    for r in rows:
        x = inputs["arrays"][r["array"]]
        vrange = float(x.max()) - float(x.min())
        assert r["bound"] == pytest.approx(r["rel"] * vrange, rel=1e-12)
        assert 0 <= r["max_err_over_bound"] <= 1
        assert r["psnr"] is None or r["psnr"] > 20
        rep = api.compress(x, str(tmp_path / "c.aez"), abs=r["bound"], force=True)  # the container on disk
        assert abs(r["compressed_bytes"] - os.path.getsize(tmp_path / "c.aez")) <= 64
        assert rep.compressed_bytes == os.path.getsize(tmp_path / "c.aez")


def test_psnr_is_over_the_value_range(full, inputs):
    for r in full["rows"]:
        if r["compressor"] == "zstd":
            assert r["psnr"] is None and r["max_err_over_bound"] is None and r["rel"] is None
        elif r["compressor"] == "aezip learned":  # the plain learned mode reaches its PSNR target
            assert r["rel"] is None and r["max_err_over_bound"] is None and (r["psnr"] is None or r["psnr"] >= r["quality"])
        elif r["psnr"] is not None:
            x = inputs["arrays"][r["array"]]
            # uniform errors within E give MSE about E^2 / 3: PSNR near 20 log10(1 / rel) + 4.8 dB
            assert 20 * math.log10(1 / r["rel"]) - 3 < r["psnr"] < 20 * math.log10(1 / r["rel"]) + 80, (r, x.shape)


def test_sz3_rows_stay_within_the_bound(full):
    pytest.importorskip("pysz")
    rows = [r for r in full["rows"] if r["compressor"] == "sz3"]
    assert rows and all(r["max_err_over_bound"] <= 1 + 1e-6 for r in rows)


def test_zfp_rows_stay_within_the_tolerance(full):
    pytest.importorskip("zfpy")
    rows = [r for r in full["rows"] if r["compressor"] == "zfp"]
    assert rows and all(r["max_err_over_bound"] <= 1 + 1e-6 for r in rows)


def test_csv_holds_the_same_rows(full):
    with open(full["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(full["rows"])
    assert list(rows[0]) == list(bench.CSV_FIELDS)
    for c, j in zip(rows, full["rows"]):
        assert (c["array"], c["compressor"]) == (j["array"], j["compressor"])
        assert float(c["ratio"]) == pytest.approx(j["ratio"], rel=1e-12)
        assert float(c["psnr"]) == (math.inf if j["psnr"] is None else pytest.approx(j["psnr"], rel=1e-12))


def test_plot_writes_a_png(full):
    pytest.importorskip("matplotlib")
    with open(full["png"], "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.path.getsize(full["png"]) > 10_000


def test_table_and_geometric_mean(inputs, capsys):
    pytest.importorskip("pysz")
    assert cli.main(["bench", inputs["specs"][0], "--rel", "1e-2,1e-3", "--against", "sz3", "--quality", ""]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for column in ("array", "compressor", "rel", "ratio", "bits/value", "PSNR", "max err/bound", "comp MB/s",
                   "decomp MB/s"):
        assert column in lines[0]
    assert sum(line.startswith("field.npy") for line in lines) == 4
    means = [line for line in lines if line.startswith("geometric mean of aezip/SZ3 ratio")]
    assert [m.split(" at rel ")[1].split(":")[0] for m in means] == ["0.01", "0.001"]
    assert all(float(m.split(": ")[1].split()[0]) > 0 for m in means)


def test_missing_optional_packages_are_skipped_with_a_note(inputs, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "zfpy", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "rd.png"
    assert cli.main(["bench", inputs["specs"][0], "--rel", "1e-2", "--against", "zfp", "--json",
                     "--plot", str(png), "--quality", ""]) == 0
    cap = capsys.readouterr()
    assert "zfpy is not installed: skipping zfp (pip install 'aezip[bench]')" in cap.err
    assert "matplotlib is not installed" in cap.err
    assert not png.exists()
    assert {r["compressor"] for r in json.loads(cap.out)["rows"]} == {"aezip"}


@pytest.mark.parametrize("argv", [["--rel", "0"], ["--rel", "-1e-3"], ["--rel", "abc"], ["--rel", "1e-2,,1e-3"],
                                  ["--rel", "nan"], ["--against", "foo"], ["--against", "sz3,gzip"]])
def test_bad_options_exit_2_with_one_line(inputs, capsys, argv):
    assert cli.main(["bench", inputs["specs"][0], *argv]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert len(cap.err.strip().splitlines()) == 1 and cap.err.startswith("aezip: error:")


def test_existing_outputs_are_refused_before_any_work(inputs, capsys, tmp_path):
    out = tmp_path / "rd.csv"
    out.write_text("keep")
    assert cli.main(["bench", inputs["specs"][0], "--csv", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "keep"


def test_geometric_means_pair_aezip_with_sz3():
    def row(array, comp, rel, nbytes):
        return bench.Row(array=array, compressor=comp, rel=rel, bound=rel, shape=(10,), n_values=10,
                         original_bytes=400, compressed_bytes=nbytes, psnr=50.0, max_abs_error=rel,
                         comp_seconds=1.0, decomp_seconds=1.0)

    rows = [row("a", "aezip", 0.1, 10), row("a", "sz3", 0.1, 20), row("b", "aezip", 0.1, 40),
            row("b", "sz3", 0.1, 10), row("a", "aezip", 0.01, 10), row("a", "zfp", 0.01, 5)]
    (rel, g, n), = bench.geometric_means(rows)
    assert (rel, n) == (0.1, 2) and g == pytest.approx(math.sqrt(2.0 * 0.25))
