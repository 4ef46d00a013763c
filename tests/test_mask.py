"""The values that are not data, coded as runs (codec.mask, format v5 §2)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import aezip
from aezip.codec import mask
from aezip.codec.sample import sample_field
from aezip.errors import ContainerError

DTYPES = [np.float32, np.float64, np.int16, np.uint8, np.int64]
SHAPES = [(1,), (7,), (300,), (9, 13), (5, 6, 7)]
FRACTIONS = [0.0, 0.001, 0.05, 0.5, 1.0]  # 0.0: one value only


def _case(shape, dtype, fraction, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 50).astype(dtype)
    invalid = rng.random(shape) < fraction
    invalid.flat[rng.integers(x.size)] = True
    if np.dtype(dtype).kind == "f":
        specials = np.array([np.nan, np.inf, -np.inf], dtype)
        x[invalid] = specials[rng.integers(3, size=int(invalid.sum()))]
        payload = np.array([0x7FF4000000000001 if x.dtype.itemsize == 8 else 0x7FA00001],
                           dtype=f"u{x.dtype.itemsize}").view(dtype)[0]  # a NaN with a payload: kept bit for bit
        x.flat[np.flatnonzero(invalid)[-1]] = payload
    else:
        x[invalid] = np.array([7, 9], dtype)[rng.integers(2, size=int(invalid.sum()))]
    return x, ~invalid


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("fraction", FRACTIONS)
def test_runs_roundtrip_bit_for_bit(shape, dtype, fraction):
    x, valid = _case(shape, dtype, fraction)
    where, values = mask.decode(mask.encode(x, valid), shape, x.dtype)
    assert np.array_equal(where, ~valid)
    assert values.dtype == x.dtype and values.tobytes() == x[~valid].tobytes()


def test_a_mask_of_k_runs_costs_about_k_log_n_bits():
    """k runs cost O(k log n): one NaN a few bytes, a band of edge chunk fill a few more,
    and never much above the packed bits of a random mask."""
    n = 1 << 20
    x = np.zeros(n, np.float32)
    x[123456] = np.nan
    assert len(mask.encode(x, np.isfinite(x))) <= 14  # 3 B of header, two 41-bit run lengths
    x[-4000:] = np.nan  # an edge chunk's padding
    assert len(mask.encode(x, np.isfinite(x))) <= 18
    for k in (10, 100, 1000):
        y = np.zeros(n, np.float32)
        y[np.random.default_rng(k).choice(n, k, replace=False)] = np.nan
        assert len(mask.encode(y, np.isfinite(y))) * 8 <= k * (2 * 20 + 2) + 64
    r = np.where(np.random.default_rng(1).random(n) < 0.5, np.nan, 0).astype(np.float32)
    assert len(mask.encode(r, np.isfinite(r))) <= 1.05 * n / 8


def _seconds_chars(path: str) -> int:
    """Characters of the record's ``seconds`` figure (its digits vary from run to run)."""
    import json

    import h5py

    with h5py.File(path, "r") as f:
        return len(repr(json.loads(f["array_0"].attrs["record"])["figures"]["seconds"]))


def test_one_nan_costs_less_than_64_bytes_in_a_container(tmp_path):
    """The issue's target: a 256x256 float32 field with one NaN at --rel 1e-3 costs < 64 B
    more than without it (the packed mask cost 8.2 KB), wherever the NaN is."""
    x = sample_field((256, 256), seed=3)
    base = str(tmp_path / "a.aez")
    aezip.compress(x, base, rel=1e-3)
    for pos in [(100, 77), (0, 0), (255, 255), (128, 0), (3, 250)]:
        y = x.copy()
        y[pos] = np.nan
        p = str(tmp_path / "b.aez")
        aezip.compress(y, p, rel=1e-3, force=True)
        # the timing figure's digits vary from run to run: count them out
        assert os.path.getsize(p) - os.path.getsize(base) - (_seconds_chars(p) - _seconds_chars(base)) < 64, pos
        y_hat, _ = aezip.decompress(p, write=False)
        assert np.isnan(y_hat[pos]) and np.abs(y_hat - x)[np.isfinite(y)].max() <= 1e-3 * (x.max() - x.min())


def test_holes_are_filled_smoothly_so_they_cost_the_predictors_little(tmp_path, monkeypatch):
    """A large hole (a land mask) is filled from its surroundings: it codes smaller than
    with the data's mean in it (2516 against 3260 residual bytes when written)."""
    x = sample_field((256, 256), seed=4)
    assert np.array_equal(mask.fill(x, np.ones(x.shape, bool)), x)
    valid = np.ones(x.shape, bool)
    valid[60:120, 30:200] = False
    ints = np.rint(x * 100)
    assert np.array_equal(np.rint(mask.fill(ints, valid)), mask.fill(ints, valid))  # integers stay integers
    y = np.where(valid, x, np.nan).astype(np.float32)
    sizes = {}
    for name in ("smooth", "mean"):
        if name == "mean":
            monkeypatch.setattr(mask, "fill", lambda x, valid: np.where(valid, x, np.mean(x[valid])))
        sizes[name] = aezip.compress(y, str(tmp_path / f"{name}.aez"), rel=1e-2).stream_bytes["residuals"]
    assert sizes["smooth"] < 0.85 * sizes["mean"]


def test_integer_valued_floats_with_a_nan_keep_integer_coding(tmp_path):
    x = np.rint(sample_field((128, 128), seed=5) * 40 + 100).astype(np.float32)
    x[5, 5] = np.nan
    p = str(tmp_path / "i.aez")
    aezip.compress(x, p, abs=0.5)
    assert aezip.info(p).arrays[0].codec.integer


def test_new_files_write_runs_and_old_packed_masks_still_decode(tmp_path):
    x = sample_field((40, 50), seed=6)
    x[3, 3] = np.nan
    p = str(tmp_path / "n.aez")
    aezip.compress(x, p, abs=1e-3)
    from aezip.container import read_container

    streams = read_container(p).arrays[0].streams
    assert "nodata" in streams and "mask" not in streams and "masked_values" not in streams
    golden = os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "v2", "bounded-abs-nan.aez")
    old = read_container(golden).arrays[0].streams
    assert "mask" in old  # the packed bits of versions 1-4
    x_hat, _ = aezip.decompress(golden, write=False)
    x0 = np.load(golden[:-4] + ".npy")
    assert np.array_equal(np.isnan(x_hat), np.isnan(x0)) and np.array_equal(x_hat[np.isinf(x0)], x0[np.isinf(x0)])


def test_damaged_streams_give_a_clean_error_or_the_same_mask():
    """Every truncation and every single-byte change of a stream either decodes to a mask of
    the right shape or raises ContainerError: never another exception, never a hang."""
    rng = np.random.default_rng(9)
    for fraction in (0.0, 0.02):
        x, valid = _case((40, 30), np.float32, fraction, seed=3)
        data = mask.encode(x, valid)
        variants = [data[:i] for i in range(len(data))]
        for _ in range(200):
            b = bytearray(data)
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
            variants.append(bytes(b))
        variants.append(data + b"\x00")
        for v in variants:
            try:
                where, values = mask.decode(v, x.shape, x.dtype)
            except ContainerError:
                continue
            assert where.shape == x.shape and values.size == int(where.sum())


def test_golden_masks_decode_bit_for_bit():
    """formats/golden/v5/mask-*: both codings of the runs, NaN payloads and Inf kept exactly."""
    import glob

    files = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "v5", "mask-*.aez")))
    assert len(files) == 3
    codings = set()
    for aez in files:
        x = np.load(aez[:-4] + ".npy")
        x_hat, _ = aezip.decompress(aez, write=False)
        invalid = ~np.isfinite(x)
        assert x_hat[invalid].tobytes() == x[invalid].tobytes()
        from aezip.container import read_container

        codings.add(int(read_container(aez).arrays[0].streams["nodata"][0]) % 2)
    assert codings == {0, 1}
