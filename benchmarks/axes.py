#!/usr/bin/env python3
"""The automatic choice of spatial axes against each forced --ndim, and against SZ3.

    python benchmarks/axes.py [DATA_DIR]

Three arrays whose leading axes mean different things: 12 independent 1-D signals of
10,000 values (make_fields.py's 1-D GRF, slope -2.5, seeds 100-111), the fMRI volume
(24 planes, a real volume) and an RGB-like stack of three row blocks of the camera image
(3 x 170 x 512, rows 0, 170 and 340 on). For each: aezip --psnr 45 and the plain learned
mode at --quality 45, with the automatic choice and with each --ndim, each file's ratio
counting the whole container; SZ3 (pysz, ABS mode, given the array as it is) at the PSNR
aezip reached (equal_psnr.sz3_at_psnr). Needs pysz.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "tools"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aezip  # noqa: E402
from equal_psnr import sz3_at_psnr  # noqa: E402

TARGET = 45.0


def arrays(data: str) -> dict[str, np.ndarray]:
    from make_fields import grf

    camera = np.load(os.path.join(data, "skimage_camera_2d.npy"))
    return {
        "12 signals 12x10000": np.stack([grf((10000,), -2.5, s) for s in range(100, 112)]).astype(np.float32),
        "fmri 24x96x128": np.load(os.path.join(data, "nibabel_fmri_vol0_3d.npy")),
        "camera blocks 3x170x512": np.stack([camera[a:a + 170] for a in (0, 170, 340)]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    a = ap.parse_args()
    print("| array | mode | --ndim | spatial axes | PSNR dB | ratio | SZ3 at that PSNR | aezip/SZ3 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.aez")
        for name, x in arrays(a.data).items():
            for mode, how in (("--psnr 45", {"psnr": TARGET}), ("learned --quality 45", {"quality": TARGET})):
                for ndim in (None, *range(1, min(x.ndim, 3) + 1)):
                    r = aezip.compress(x, out, ndim=ndim, force=True, **how)
                    sz = sz3_at_psnr(x, r.psnr)
                    print(f"| {name} | {mode} | {'auto' if ndim is None else ndim} | {r.ndim} | {r.psnr:.2f} | "
                          f"{r.compression_ratio:.2f} | {sz:.2f} | {r.compression_ratio / sz:.2f} |", flush=True)


if __name__ == "__main__":
    main()
