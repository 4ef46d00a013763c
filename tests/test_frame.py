"""Frames: one entry as bytes (container/frame.py, formats/aezip-frame-v1.md), and the
chunk API on top of them (aezip.encode_chunk / decode_chunk)."""

from __future__ import annotations

import dataclasses
import glob
import os
import struct
import zlib

import numpy as np
import pytest

import aezip
from aezip.codec.sample import sample_field
from aezip.container.frame import FRAME_VERSION, MAGIC, pack_entry, unpack_entry
from aezip.errors import AezipError, ChecksumError, ContainerError, FormatVersionError, ModelError, UsageError

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "frame-v1")
MODES = [{"abs": 1e-3}, {"rel": 1e-3}, {"rel": 1e-2, "value_range": 10.0}, {"psnr": 40}, {"pw_rel": 1e-2}]
SHAPES = [(2,), (37,), (17, 23), (64, 64), (9, 10, 11)]


def _overhead(frame: bytes) -> int:
    entry, _ = unpack_entry(frame)
    return len(frame) - sum(v.nbytes for v in entry.streams.values())


def _check_bound(x, x_hat, how):
    valid = np.isfinite(x)
    d = np.abs(x[valid].astype(np.float64) - x_hat[valid])
    if "abs" in how:
        assert d.max() <= how["abs"]
    elif "rel" in how:
        assert d.max() <= how["rel"] * how.get("value_range", float(x[valid].max() - x[valid].min()))
    elif "pw_rel" in how:
        assert np.all(d <= how["pw_rel"] * np.abs(x[valid].astype(np.float64)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("how", MODES, ids=lambda h: ",".join(h))
def test_chunks_roundtrip_within_their_bound(shape, how):
    x = sample_field(shape, seed=len(shape)) * 3
    if "pw_rel" in how:
        x = x + 20
    b = aezip.encode_chunk(x, **how)
    assert b[:4] == MAGIC and b[4] == FRAME_VERSION
    x_hat = aezip.decode_chunk(b)
    assert x_hat.shape == x.shape and x_hat.dtype == x.dtype
    _check_bound(x, x_hat, how)


def test_the_entry_comes_back_as_it_went_in():
    from aezip.coding import encode_array

    x = sample_field((40, 50), seed=2)
    x[0, :7] = np.nan
    entry, _ = encode_array(x, "t", None, None, bound=aezip.api._bound(abs=1e-3))
    back, model_id = unpack_entry(pack_entry(entry))
    assert model_id is None and back.codec == entry.codec and back.shape == entry.shape
    assert list(back.streams) == list(entry.streams)
    assert all(np.array_equal(back.streams[k], entry.streams[k]) for k in entry.streams)
    f, g = dataclasses.asdict(entry.figures), dataclasses.asdict(back.figures)
    assert g.pop("seconds") == 0.0 and f.pop("seconds") > 0  # not carried: equal chunks, equal frames
    for k, v in f.items():  # measured figures as float32, the rest exactly
        assert g[k] == (v if isinstance(v, str) else pytest.approx(v, rel=1e-6)), k
    assert g["bound"] == f["bound"] and g["original_bytes"] == f["original_bytes"]


def test_non_data_values_and_dtypes_are_kept():
    x = sample_field((30, 40), seed=3).astype(np.float64)
    x[2, 2], x[-1, :], x[5, 5] = np.inf, np.nan, -9999.0
    x_hat = aezip.decode_chunk(aezip.encode_chunk(x, abs=1e-2, fill_values=[-9999.0]))
    assert np.isinf(x_hat[2, 2]) and np.isnan(x_hat[-1]).all() and x_hat[5, 5] == -9999.0
    ints = np.rint(sample_field((20, 30), seed=4) * 100).astype(np.int16)
    assert np.array_equal(aezip.decode_chunk(aezip.encode_chunk(ints)), ints)  # integers: lossless by default
    big = sample_field((20, 30), seed=5).astype(">f4")
    y = aezip.decode_chunk(aezip.encode_chunk(big, abs=1e-3))
    assert y.dtype == np.float32 and np.abs(y - big).max() <= 1e-3


def test_decode_into_out():
    x = sample_field((16, 16), seed=6)
    b = aezip.encode_chunk(x, abs=1e-3)
    out = np.empty(256, np.float32)
    assert aezip.decode_chunk(b, out) is out and np.abs(out - x.reshape(-1)).max() <= 1e-3
    view = np.empty((16, 32), np.float32)[:, ::2]  # not contiguous
    aezip.decode_chunk(b, view)
    assert np.abs(view - x).max() <= 1e-3
    with pytest.raises(UsageError, match="out is float64"):
        aezip.decode_chunk(b, np.empty(256))


def test_bad_requests_are_usage_errors():
    x = sample_field((8, 8), seed=7)
    with pytest.raises(UsageError, match="conflict"):
        aezip.encode_chunk(x, abs=1e-3, rel=1e-3)
    with pytest.raises(UsageError, match="value_range"):
        aezip.encode_chunk(x, rel=1e-3, value_range=-1.0)


# The budget: at most 150 B beyond the coded streams for a single-storage bounded
# chunk. Measured (frame bytes - stream bytes): 1-D 37 values 77 B; 2-D 128x128 rel 1e-2
# of a given range 102 B, 256x256 rel 1e-2 108 B; with fitted interpolation weights (2 B
# each) 256x256 abs 1e-3 141 B (12 weights), rel 1e-3 142 B (20), 64^3 rel 1e-3 331 B (116):
# the per-step radii, predictors and weights grow with the levels; the rest stays under 100 B.
OVERHEAD = [((37,), {"abs": 1e-2}, 150), ((128, 128), {"rel": 1e-2, "value_range": 8.0}, 150),
            ((256, 256), {"rel": 1e-2}, 150), ((64, 64), {"abs": 1e-3}, 150), ((256, 256), {"abs": 1e-3}, 150),
            ((256, 256), {"rel": 1e-3}, 150)]


@pytest.mark.parametrize("shape,how,limit", OVERHEAD)
def test_per_chunk_overhead(shape, how, limit):
    x = sample_field(shape, seed=1)
    b = aezip.encode_chunk(x, **how)
    entry, _ = unpack_entry(b)
    assert entry.codec.storage == "bounded" and list(entry.streams) == ["residuals"]
    assert _overhead(b) <= limit


def test_overhead_beyond_the_per_step_lists_stays_small():
    """What a frame adds beyond its streams and its codec's per-step lists (radii,
    predictors, fitted weights: about 2 B an item) is under 100 B even for a 3-D chunk."""
    x = sample_field((64, 64, 64), seed=1)
    b = aezip.encode_chunk(x, rel=1e-3)
    c = unpack_entry(b)[0].codec
    lists = sum(1 + 2 * len(v) for v in (c.radii, c.predictors, c.weights))
    assert _overhead(b) - lists < 100


def test_a_constant_chunk_is_a_few_dozen_bytes():
    assert len(aezip.encode_chunk(np.full((64, 64), 2.5, np.float32), abs=1e-3)) <= 64


# --- damaged and hostile frames -------------------------------------------------------------

def _frames():
    x = sample_field((24, 20), seed=8)
    x[0, :5] = np.nan
    return x, aezip.encode_chunk(x, abs=1e-3)


def test_every_mutation_gives_a_clean_error_or_the_original_values():
    """A few hundred mutations of a frame (bit flips, byte changes, truncations, insertions):
    each raises an AezipError or decodes to exactly the values of the intact frame."""
    x, b = _frames()
    expected = aezip.decode_chunk(b)
    rng = np.random.default_rng(0)
    variants = [b[:i] for i in range(0, len(b), 7)] + [b + b"\x00", b"", b[:4]]
    for _ in range(300):
        m = bytearray(b)
        kind = rng.integers(3)
        i = int(rng.integers(len(m)))
        if kind == 0:
            m[i] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            m[i] = int(rng.integers(256))
        else:
            m[i:i] = bytes([int(rng.integers(256))])
        variants.append(bytes(m))
    errors = 0
    for v in variants:
        try:
            y = aezip.decode_chunk(v)
        except AezipError:
            errors += 1
            continue
        assert np.array_equal(y, expected, equal_nan=True)
    assert errors >= len(variants) - 5


def test_the_parser_refuses_forged_frames_cleanly():
    """With the checksum recomputed (a forged frame), the parser still gives a clean error or
    a well-formed entry: never another exception."""
    _, b = _frames()
    rng = np.random.default_rng(1)
    body = b[:-4]
    for _ in range(400):
        m = bytearray(body)
        m[int(rng.integers(5, len(m)))] = int(rng.integers(256))
        forged = bytes(m) + struct.pack("<I", zlib.crc32(bytes(m)) & 0xFFFFFFFF)
        try:
            entry, _ = unpack_entry(forged)
        except ContainerError:
            continue
        assert entry.size >= 0 and all(v.ndim == 1 for v in entry.streams.values())  # a plain, sized entry


def test_specific_refusals():
    _, b = _frames()
    with pytest.raises(ContainerError, match="not an aezip frame"):
        unpack_entry(b"\x89HDF" + b[4:])
    with pytest.raises(FormatVersionError, match="upgrade aezip"):
        unpack_entry(b[:4] + bytes([2]) + b[5:])
    with pytest.raises(ChecksumError):
        unpack_entry(b[:-1] + bytes([b[-1] ^ 1]))
    with pytest.raises(ContainerError):
        aezip.decode_chunk(b[:10])


def test_a_frame_names_its_model_by_content_id_and_a_missing_model_says_so(tmp_path):
    from aezip.model import load_model
    from tests.common import model_field

    model = load_model(ndim=2)
    x = model_field((64, 128), 128)
    b = aezip.encode_chunk(x, rel=1e-3, model=model.name, options=aezip.EncoderOptions(try_model=True))
    entry, model_id = unpack_entry(b)
    assert entry.codec.uses_model and model_id == model.id
    assert np.abs(aezip.decode_chunk(b) - x).max() <= 1e-3 * (x.max() - x.min())
    forged = bytearray(b)
    at = bytes(forged).index(bytes.fromhex(model.id))
    forged[at] ^= 0xFF
    forged = bytes(forged[:-4]) + struct.pack("<I", zlib.crc32(bytes(forged[:-4])) & 0xFFFFFFFF)
    with pytest.raises(ModelError, match=bytes(forged[at:at + 6]).hex()):
        aezip.decode_chunk(forged)


# --- golden frames ----------------------------------------------------------------------------

FRAMES = sorted(glob.glob(os.path.join(GOLDEN, "*.aezf")))


def test_there_are_golden_frames():
    assert len(FRAMES) >= 9


@pytest.mark.parametrize("path", FRAMES, ids=os.path.basename)
def test_golden_frames_decode_to_their_original(path):
    x = np.load(path[:-5] + ".npy")
    with open(path, "rb") as f:
        b = f.read()
    entry, _ = unpack_entry(b)
    x_hat = aezip.decode_chunk(b)
    assert x_hat.shape == x.shape and x_hat.dtype == x.dtype
    invalid = ~np.isfinite(x) if x.dtype.kind == "f" else np.zeros(x.shape, bool)
    assert x_hat[invalid].tobytes() == x[invalid].tobytes()
    f = entry.figures
    d = np.abs(x[~invalid].astype(np.float64) - x_hat[~invalid].astype(np.float64))
    if f.bound_kind == "pw_rel":
        assert np.all(d <= f.bound * np.abs(x[~invalid].astype(np.float64)))
    else:
        assert d.max() <= f.bound
