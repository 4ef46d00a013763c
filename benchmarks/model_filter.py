#!/usr/bin/env python3
"""Can the model add information to --psnr's filter? (issue 3)

    python benchmarks/model_filter.py [--psnr 45] [ARRAY ...]

For each 2-D development array: code it with --psnr P without the filter, then fit by
least squares (on the whole array, unclipped: an upper bound of what a stored filter
gets) a correction x - f of the decoded values f from
  - the filter's taps (the differences f[n + o] - f[n] of aezip.codec.postfilter),
  - the taps and the default model's reconstruction x_m of the original (x_m - f), which
    needs the model's latents: their bytes are printed next to the file's,
  - the taps and the model run on the decoded values instead (no latents to store).
Prints the PSNR of f and after each fit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.codec import postfilter  # noqa: E402

ARRAYS = ("synth_grf_k3_2d", "synth_fronts_2d", "mpl_jacksboro_dem_2d", "skimage_camera_2d")


def learned(x: np.ndarray, tmp: str) -> tuple[np.ndarray, int]:
    """The plain learned mode's reconstruction of x and its container's size."""
    p = os.path.join(tmp, "learned.aez")
    r = aezip.compress(x.astype(np.float32), p, force=True, model="conv-ae-v1")
    x_m, _ = aezip.decompress(p, write=False)
    return x_m.astype(np.float64), r.compressed_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arrays", nargs="*", default=ARRAYS)
    ap.add_argument("--psnr", type=float, default=45.0)
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    a = ap.parse_args()
    unfiltered = aezip.EncoderOptions(psnr_filter=False)  # f: the decoded values before any filter
    print("| array | --psnr file B | PSNR f | + taps | + taps and model (latents B) | + taps and model on f |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.arrays:
            x0 = np.load(os.path.join(a.data, name + ".npy"))
            x = x0.astype(np.float64)
            vrange = float(x.max() - x.min())
            p = os.path.join(tmp, "psnr.aez")
            r = aezip.compress(x0, p, psnr=a.psnr, force=True, options=unfiltered)
            f, _ = aezip.decompress(p, write=False)
            f = f.astype(np.float64)
            t = (x - f).reshape(-1)

            def psnr_after(columns: np.ndarray) -> float:
                w, *_ = np.linalg.lstsq(columns, t, rcond=None)
                err = t - columns @ w
                return 10 * np.log10(vrange**2 / np.mean(err**2))

            d = postfilter.differences(f)
            x_m, latent_bytes = learned(x, tmp)
            x_mf, _ = learned(f, tmp)
            row = [psnr_after(d), psnr_after(np.column_stack([d, (x_m - f).reshape(-1)])),
                   psnr_after(np.column_stack([d, (x_mf - f).reshape(-1)]))]
            print(f"| {name} | {r.compressed_bytes:,} | {r.psnr:.2f} | {row[0]:.2f} | {row[1]:.2f} ({latent_bytes:,}) "
                  f"| {row[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
