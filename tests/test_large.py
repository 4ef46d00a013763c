"""Heavy cases, run with `python -m pytest -m slow`: arrays larger than the lazy-read
threshold going through compress and decompress slab by slab."""

import numpy as np
import pytest

import aezip
from aezip.io import LAZY_BYTES

pytestmark = pytest.mark.slow


def test_array_above_the_lazy_threshold_round_trips_in_slabs(tmp_path):
    rows, cols = 2 * LAZY_BYTES // (4 * 4096) + 64, 4096  # about 2x the threshold
    src = tmp_path / "big.npy"
    x = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=(rows, cols))
    t = np.linspace(0, 20, cols, dtype=np.float32)
    for a in range(0, rows, 1024):
        b = min(a + 1024, rows)
        x[a:b] = np.sin(t[None, :] + np.arange(a, b, dtype=np.float32)[:, None] * 0.01)
    x.flush()
    del x
    aez, out = tmp_path / "big.aez", tmp_path / "out.npy"
    r = aezip.compress(str(src), str(aez), rel=1e-3, memory=256 << 20)
    assert r.slabs >= 4 and r.max_error_ratio <= 1
    x_hat, r2 = aezip.decompress(str(aez), str(out), original=str(src))
    assert isinstance(x_hat, np.memmap)  # streamed into the file, handed back as a map
    assert r2.measured_ratio <= 1 and r2.measured.mse == pytest.approx(r.mse, rel=1e-9)
    ref = np.load(src, mmap_mode="r")
    for a in (0, rows // 2, rows - 7):
        assert np.max(np.abs(ref[a : a + 7].astype(np.float64) - x_hat[a : a + 7])) <= r.bound
