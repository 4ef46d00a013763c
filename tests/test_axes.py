"""The automatic choice of spatial axes (aezip.codec.axes), what the container records of
it, what the reports show, and --ndim over it."""

import json

import numpy as np
import pytest

import aezip
from aezip import cli
from aezip.codec import axes
from aezip.codec.sample import sample_field

from common import check_roundtrip


def signals(n: int = 12, length: int = 4096) -> np.ndarray:
    """``n`` independent smooth 1-D signals stacked: rows that do not continue each other."""
    return np.stack([sample_field((length,), slope=-2.5, seed=100 + i) for i in range(n)])


def blocks() -> np.ndarray:
    """Three unrelated smooth 2-D fields stacked, like the channels of a colour image."""
    return np.stack([sample_field((48, 64), seed=s) for s in (1, 2, 3)])


CHOICES = [  # (array, spatial axes chosen)
    ("signals", signals(), 1),
    ("blocks", blocks(), 2),
    ("volume", sample_field((32, 32, 32), seed=4), 3),
    ("image", sample_field((64, 80), seed=5), 2),
    ("noise", np.random.default_rng(6).standard_normal((16, 20, 24)), 3),
    ("4-D volumes", np.stack([sample_field((12, 16, 20), seed=s) for s in (7, 8)]), 3),
    ("1-D", sample_field((500,), seed=9), 1),
]


@pytest.mark.parametrize("name,x,d", CHOICES, ids=[c[0] for c in CHOICES])
def test_choice(name, x, d):
    assert axes.choose_ndim(x) == d


def test_poorly_predicting_planes_measure_far_above_the_threshold_and_a_volume_below():
    assert axes.plane_ratio(signals(), 0) > 100 * axes.BATCH_RATIO
    assert axes.plane_ratio(sample_field((32, 32, 32), seed=4), 0) < axes.BATCH_RATIO / 2


def test_a_batch_axis_makes_every_axis_before_it_a_batch_too():
    """Smooth along axis 0, unrelated planes along axis 1: axes 0 and 1 are a batch."""
    x = np.repeat(blocks()[None], 6, axis=0) + np.arange(6)[:, None, None, None] * 1e-3
    assert axes.choose_ndim(x) == 2


def test_values_that_are_not_data_are_left_out_and_the_input_untouched():
    x = signals().astype(np.float64)
    x[:, ::7] = np.nan
    x[3, 100:200] = -9999.0
    before = x.copy()
    assert axes.choose_ndim(x, fill_values=(-9999.0,)) == 1
    np.testing.assert_array_equal(x, before)


def test_constant_or_single_planes_stay_spatial():
    assert axes.choose_ndim(np.zeros((5, 8, 8))) == 3
    assert axes.choose_ndim(np.ones((1, 30, 40)) * np.arange(40)) == 3


@pytest.mark.parametrize("how", [{"psnr": 45.0}, {"abs": 1e-3}, {"quality": 45.0}], ids=["psnr", "abs", "learned"])
def test_recorded_chosen_and_given(tmp_path, how):
    """The container records the axes used and how they were chosen; --ndim overrides the choice."""
    x = signals()
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, **how)
    c = aezip.info(p).arrays[0].codec
    assert (c.ndim, c.ndim_given, r.ndim, r.ndim_given) == (1, False, 1, False)
    assert c.planes == (c.storage == "bounded")
    x_hat, _ = aezip.decompress(p, write=False)
    check_roundtrip(x, x_hat, r)
    forced = aezip.compress(x, p, ndim=2, force=True, **how)
    c = aezip.info(p).arrays[0].codec
    assert (c.ndim, c.ndim_given, c.planes, forced.ndim, forced.ndim_given) == (2, True, False, 2, True)
    assert r.compression_ratio > 2 * forced.compression_ratio  # rows interpolated across cost


def test_batch_decodes_within_the_bound(tmp_path):
    x = blocks()
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, abs=1e-3)
    assert aezip.info(p).arrays[0].codec.ndim == 2
    x_hat, _ = aezip.decompress(p, write=False)
    assert np.max(np.abs(x_hat.astype(np.float64) - x)) <= 1e-3


def test_slabs_share_the_array_choice_whatever_the_threads(tmp_path):
    """A slab of one row could not tell its rows apart: the choice is made for the array."""
    x = signals(16, 4096)
    out = []
    for threads in (1, 2):
        p = str(tmp_path / f"x{threads}.aez")
        r = aezip.compress(x, p, abs=1e-3, memory=1 << 20, threads=threads)
        entries = aezip.info(p).arrays
        assert r.slabs > 1 and {e.codec.ndim for e in entries} == {1} and r.ndim == 1
        x_hat, _ = aezip.decompress(p, write=False)
        assert np.max(np.abs(x_hat.astype(np.float64) - x)) <= 1e-3
        out.append(([e.figures.coded_bytes for e in entries], x_hat))
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_cli_shows_the_choice(tmp_path, capsys):
    src, p = tmp_path / "x.npy", tmp_path / "x.aez"
    np.save(src, signals())
    assert cli.main(["compress", str(src), "-o", str(p), "--psnr", "45"]) == 0
    assert "spatial axes 1 of 2 (chosen from the data)" in capsys.readouterr().out
    assert cli.main(["compress", str(src), "-o", str(p), "--psnr", "45", "--ndim", "2", "--force", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["ndim"], d["ndim_chosen"]) == (2, "given")
    assert cli.main(["info", str(p)]) == 0
    assert "spatial axes 2 of 2 (--ndim)" in capsys.readouterr().out
    assert cli.main(["info", str(p), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)["arrays"][0]
    assert (a["ndim"], a["ndim_chosen"]) == (2, "given")


@pytest.mark.parametrize("how,edit", [({"quality": 45.0}, {"planes": True}),
                                      ({"abs": 1e-3}, {"planes": True, "ndim": 4})], ids=["transform", "ndim 4"])
def test_planes_where_they_cannot_be_is_corruption(tmp_path, how, edit):
    from common import edit_record

    p = str(tmp_path / "x.aez")
    aezip.compress(signals(), p, **how)
    edit_record(p, 0, lambda r: r["codec"].update(edit))
    with pytest.raises(aezip.ContainerError, match="planes"):
        aezip.decompress(p, write=False)


def test_bounded_planes_with_a_base_decode_as_encoded():
    """bounded.encode over a batch of planes, from a base (the model's prediction), with
    per-value bits in the array's shape: the decoder returns the same values."""
    from aezip.codec import bounded

    x = blocks().astype(np.float64)
    base = x + np.random.default_rng(0).normal(0, 0.01, x.shape)
    res, f_hat = bounded.encode(x, 1e-3, dtype=np.float32, integer=False, base=base, bits=True, ndim=2)
    assert res.bits.shape == x.shape and bounded.planes_shape(x.shape, 2) == (3 * 48, 64)
    again = bounded.decode(res, x.shape, 1e-3, integer=False, base=base, ndim=2)
    np.testing.assert_array_equal(f_hat, again)
    assert np.max(np.abs(again - x)) <= 1e-3
