#!/usr/bin/env python3
"""Write the golden containers of the current format version with their original arrays.

    python scripts/make_golden.py            # writes formats/golden/v<N>/ (refuses to overwrite)

Golden files are written once per format version and then kept forever: every later
aezip must decode them (tests/test_golden.py). One per built-in default model, plus the
storage modes that use no model, plus a multi-array npz.
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.codec.sample import sample_field  # noqa: E402
from aezip.container import FORMAT_VERSION  # noqa: E402
from aezip.model import load_model  # noqa: E402


def main() -> None:
    folder = os.path.join(ROOT, "formats", "golden", f"v{FORMAT_VERSION}")
    os.makedirs(folder, exist_ok=True)
    shapes = {1: (3000,), 2: (70, 90), 3: (20, 40, 36)}
    cases = {}
    for ndim, shape in shapes.items():
        cases[load_model(ndim=ndim).name] = sample_field(shape, seed=40 + ndim) * 5 + 1
    cases["constant"] = np.full((8, 9), -2.5, dtype=np.float64)
    cases["raw"] = np.array([0.5, 1e-30, -3.0e30, 7.0], dtype=np.float32)
    for name, x in cases.items():
        src = os.path.join(folder, name + ".npy")
        np.save(src, x)
        aezip.compress(src, os.path.join(folder, name + ".aez"))
        print(name, x.shape, x.dtype)
    src = os.path.join(folder, "several.npz")
    np.savez(src, series=sample_field((2000,), seed=7).astype(np.float64), image=sample_field((40, 50), seed=8))
    aezip.compress(src, os.path.join(folder, "several.aez"))
    print("several.npz")


if __name__ == "__main__":
    main()
