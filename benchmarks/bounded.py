#!/usr/bin/env python3
"""aezip's error-bounded mode against SZ3 at the same absolute bound, in the same run.

    python benchmarks/bounded.py [DATA_DIR] [--rel 1e-2,1e-3,1e-4]

For every .npy array and range-relative bound R (E = R x value range, SZ's convention):
aezip --abs E (ratio from the whole container file) and SZ3 (pysz, ABS mode, E),
max error / bound for both, compression MB/s (aezip: best of two runs, file written), and
the geometric mean of aezip/SZ3 over the arrays of at
least 256 KB (smaller ones are listed separately: there the container's fixed bytes
weigh). Needs pysz (pip install pysz).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402

BIG = 256 * 1024


def sz3(x: np.ndarray, e: float) -> tuple[int, float, float]:
    """(compressed bytes, max error / bound, compression seconds) of SZ3 in ABS mode."""
    import pysz

    cfg = pysz.szConfig()
    cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
    cfg.absErrorBound = e
    t0 = time.perf_counter()
    data, _ = pysz.sz.compress(x, cfg)
    t1 = time.perf_counter()
    x_hat, _ = pysz.sz.decompress(data, x.dtype, x.shape)
    return data.nbytes, float(np.max(np.abs(x.astype(np.float64) - x_hat))) / e, t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    a = ap.parse_args()
    rels = [float(r) for r in a.rel.split(",")]
    print("| array | KB | rel | aezip ratio | SZ3 ratio | aezip / SZ3 | aezip streams-only ratio | aezip max err / bound | "
          "SZ3 max err / bound | aezip comp MB/s | SZ3 comp MB/s | model's prediction used |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    logs: dict[tuple[float, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(glob.glob(os.path.join(a.data, "*.npy"))):
            x = np.load(path)
            name = os.path.basename(path)[:-4]
            for rel in rels:
                e = rel * (float(x.max()) - float(x.min()))
                aez = os.path.join(tmp, "x.aez")
                seconds = []
                for _ in range(2):  # best of two: the first run of a kind also loads torch and a model
                    t0 = time.perf_counter()
                    r = aezip.compress(x, aez, abs=e, force=True)
                    seconds.append(time.perf_counter() - t0)
                x_hat, _ = aezip.decompress(aez, write=False)
                err = float(np.max(np.abs(x.astype(np.float64) - x_hat))) / e
                sz_bytes, sz_err, sz_s = sz3(x, e)
                ratio, sz_ratio = r.compression_ratio, x.nbytes / sz_bytes
                streams = x.nbytes / sum(r.stream_bytes.values()) if r.stream_bytes else math.inf
                big = x.nbytes >= BIG
                logs.setdefault((rel, big), []).append(math.log(ratio / sz_ratio))
                entry = aezip.info(aez).arrays[0]
                used = f"on {entry.codec.latent_shape[0]} of {entry.tiles} tiles" if entry.codec.uses_model else "no"
                print(f"| {name} | {x.nbytes // 1024} | {rel:g} | {ratio:.1f} | {sz_ratio:.1f} | {ratio / sz_ratio:.2f} | "
                      f"{streams:.1f} | {err:.4f} | {sz_err:.4f} | {x.nbytes / 1e6 / min(seconds):.1f} | "
                      f"{x.nbytes / 1e6 / sz_s:.1f} | {used} |")
    print()
    for rel in rels:
        for big in (True, False):
            v = logs.get((rel, big), [])
            if v:
                label = ">= 256 KB" if big else "< 256 KB"
                print(f"geometric mean aezip/SZ3 at rel {rel:g}, {len(v)} arrays {label}: {math.exp(sum(v) / len(v)):.3f}")


if __name__ == "__main__":
    main()
