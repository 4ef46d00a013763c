"""numpy stages: normalize, tile, entropy coding."""

import numpy as np
import pytest

from aezip.codec import entropy
from aezip.codec.normalize import Normalization
from aezip.codec.tile import tile, untile
from aezip.errors import ContainerError

TILE_CASES = [((1, 100), 16), ((2, 37, 70), 16), ((3, 5, 9, 33), 8), ((1, 64, 64), 64), ((1, 1, 1), 4)]


@pytest.mark.parametrize("shape,t", TILE_CASES)
def test_tile_roundtrip(shape, t, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    tiles = tile(x, t)
    assert tiles.shape[1:] == (1,) + (t,) * (len(shape) - 1)
    np.testing.assert_array_equal(untile(tiles, shape), x)


def test_tile_order_is_c_order_over_tiles():
    x = np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32)
    tiles = tile(x, 16)
    np.testing.assert_array_equal(tiles[1, 0], x[0, :16, 16:])
    np.testing.assert_array_equal(tiles[2, 0], x[0, 16:, :16])


def test_normalization_maps_to_unit_interval(rng):
    x = rng.uniform(-3, 7, 1000)
    n = Normalization.fit(x)
    x_n = n.forward(x)
    assert x_n.min() == -1 and x_n.max() == 1
    np.testing.assert_allclose(n.inverse(x_n, np.float64), x, atol=1e-5)


def _tables(c=3, width=21):
    counts = np.stack([np.exp(-np.abs(np.arange(width) - width // 2) / (1 + ch)) * 1000 for ch in range(c)])
    return entropy.Tables.from_counts(counts, np.full(c, -(width // 2)))


def test_entropy_roundtrip_with_escapes(rng):
    t = _tables()
    y = np.round(rng.laplace(0, 2, (50, 3, 4, 4))).astype(np.int32)
    y[0, 0, 0, 0], y[1, 2, 3, 3] = 10**6, -(10**6)
    data, n_esc = entropy.encode(y, t)
    assert n_esc >= 2
    assert {10**6, -(10**6)} <= set(np.frombuffer(data[len(data) - 4 * n_esc:], "<i4"))
    np.testing.assert_array_equal(entropy.decode(data, n_esc, t, y.shape), y)


def test_entropy_size_matches_integer_tables(rng):
    """The coder uses exactly the integer table: coded size within 0.1 % of its ideal cost."""
    t = _tables()
    y = np.round(rng.laplace(0, 1.5, (400, 3, 8, 8))).astype(np.int32)
    data, n_esc = entropy.encode(y, t)
    coded_bits = 8 * (len(data) - 4 * n_esc)
    ideal = entropy.ideal_bits(y, t)
    assert ideal <= coded_bits <= ideal * 1.001 + 64


def test_tables_sum_exactly():
    t = _tables(c=4, width=300)
    assert (t.weights.sum(axis=1) == entropy.TOTAL - t.weights.shape[1]).all()


def test_plain_python_tables_equal_numpy_tables(rng):
    """The adaptive coder builds small tables in plain Python: they must be the numpy ones."""
    for k in (2, 3, 7, 34, 200):
        for scale in (1, 1000, 10**9):
            p = (16 * rng.integers(0, scale, (1, k)) + 1).astype(np.float64)
            p[0, rng.integers(0, k)] += 16 * scale  # a clear maximum, and sometimes ties
            assert entropy.quantize_row(p[0].tolist()) == entropy.quantize(p)[0].tolist()
    assert entropy.quantize_row([1.0, 1.0, 1.0]) == entropy.quantize(np.ones((1, 3)))[0].tolist()


def test_damaged_tables_are_refused():
    t = _tables()
    w = t.weights.copy()
    w[0, 0] += 1
    with pytest.raises(ContainerError, match="2\\*\\*24"):
        entropy.Tables(lo=t.lo, weights=w)


def test_truncated_stream_fails_cleanly(rng):
    t = _tables()
    y = np.round(rng.laplace(0, 2, (50, 3, 4, 4))).astype(np.int32)
    data, n_esc = entropy.encode(y, t)
    with pytest.raises(ContainerError):
        entropy.decode(data[:-3], n_esc, t, y.shape)
