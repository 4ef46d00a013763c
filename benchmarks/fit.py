#!/usr/bin/env python3
"""When does `aezip compress --fit` pay? The plain learned mode with and without fitting
the model to the input, on turbulence-like fields of growing size.

    python benchmarks/fit.py [--sizes 256,1024,2048] [--steps 300]

Prints ratio (whole container, embedded weights included), PSNR and seconds for each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.codec.sample import sample_field  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,1024,2048")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    print("| field | MB | plain ratio | plain PSNR | --fit ratio | --fit PSNR | embedded model | --fit seconds |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in a.sizes.split(",")):
            x = sample_field((n, n), seed=77)  # a seed no built-in model saw
            p = os.path.join(tmp, "x.aez")
            plain = aezip.compress(x, p, force=True, model="conv-ae-v1")  # --fit fine-tunes the conv autoencoder
            t0 = time.perf_counter()
            fitted = aezip.compress(x, p, force=True, fit=True, fit_steps=a.steps)
            seconds = time.perf_counter() - t0
            print(f"| {n}x{n} | {x.nbytes / 1e6:.1f} | {plain.compression_ratio:.2f} | {plain.psnr:.2f} | "
                  f"{fitted.compression_ratio:.2f} | {fitted.psnr:.2f} | {fitted.embedded_model_bytes:,} B | {seconds:.0f} |")


if __name__ == "__main__":
    main()
