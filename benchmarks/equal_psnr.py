#!/usr/bin/env python3
"""aezip against SZ3 at the same PSNR: the plain learned mode and --psnr, at fixed targets.

    python benchmarks/equal_psnr.py [DATA_DIR] [--targets 40,45,50] [--tables learned,psnr]

For every .npy array and target T: aezip's plain learned mode with ``--quality T`` (the
multiscale transform coder) and aezip ``--psnr T`` (the bounded path), each file's ratio
counting the whole container; SZ3 (pysz, ABS mode) is bisected on its absolute bound
until two runs bracket the PSNR aezip reached, and its ratio at that PSNR is interpolated
linearly in log(ratio) between them, in the same run. Prints aezip/SZ3 per array (with
the ratio of the streams alone, and the storage used) and the geometric means over the
arrays of at least 256 KB (smaller ones separately). Needs pysz.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.metrics import Quality  # noqa: E402


def sz3(x: np.ndarray, e: float) -> tuple[float, float]:
    """(ratio, PSNR) of SZ3 in ABS mode at bound e."""
    import pysz

    cfg = pysz.szConfig()
    cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
    cfg.absErrorBound = e
    data, _ = pysz.sz.compress(x, cfg)
    x_hat, _ = pysz.sz.decompress(data, x.dtype, x.shape)
    return x.nbytes / data.nbytes, Quality.measure(x, x_hat).psnr or math.inf


def sz3_at_psnr(x: np.ndarray, target: float) -> float:
    """SZ3's ratio at PSNR ``target``: bisect log(bound), interpolate log(ratio) in PSNR."""
    vrange = float(x.max() - x.min())
    lo, hi = math.log(vrange * 1e-8), math.log(vrange)  # log bounds: lo too fine, hi too coarse
    r_lo, p_lo = sz3(x, math.exp(lo))
    r_hi, p_hi = sz3(x, math.exp(hi))
    for _ in range(30):
        mid = (lo + hi) / 2
        r, p = sz3(x, math.exp(mid))
        if p >= target:
            lo, r_lo, p_lo = mid, r, p
        else:
            hi, r_hi, p_hi = mid, r, p
        if abs(p_lo - p_hi) < 0.05:
            break
    if not (math.isfinite(p_lo) and p_lo != p_hi):
        return r_lo
    w = (target - p_hi) / (p_lo - p_hi)
    return math.exp(math.log(r_hi) + w * (math.log(r_lo) - math.log(r_hi)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--targets", default="40,45,50", help="PSNR targets of the fixed-target tables (dB)")
    ap.add_argument("--tables", default="learned,psnr",
                    help="which fixed-target tables: learned (--quality T), psnr (--psnr T), or both")
    a = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(a.data, "*.npy")))
    targets = [float(t) for t in a.targets.split(",")]
    for table in a.tables.split(","):
        fixed_targets(paths, targets, table)


def fixed_targets(paths: list[str], targets: list[float], table: str) -> None:
    """aezip at each target T (the plain learned mode with --quality T, or --psnr T) against
    SZ3 at the PSNR aezip reached; with the ratio of the streams alone beside the file's
    and the storage each array took."""
    logs: dict[tuple[float, bool], list[float]] = {}
    what = "learned --quality" if table == "learned" else "--psnr"
    print(f"\n| array | KB | " + " | ".join(f"{what} {t:g}: PSNR dB | ratio | streams-only ratio | SZ3 at that PSNR | "
                                          "aezip / SZ3" for t in targets) + " | storage |")
    print("|---|---|" + "---|---|---|---|---|" * len(targets) + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            x = np.load(path)
            cells, storage = [], set()
            for t in targets:
                kwargs = {"quality": t} if table == "learned" else {"psnr": t}
                out = os.path.join(tmp, "x.aez")
                r = aezip.compress(x, out, force=True, **kwargs)
                storage |= {e.codec.storage for e in aezip.info(out).arrays}
                sz = sz3_at_psnr(x, r.psnr)
                streams = sum(e.figures.coded_bytes for e in aezip.info(out).arrays)
                logs.setdefault((t, x.nbytes >= 256 * 1024), []).append(math.log(r.compression_ratio / sz))
                cells.append(f"{r.psnr:.2f} | {r.compression_ratio:.1f} | {x.nbytes / max(1, streams):.1f} | "
                             f"{sz:.1f} | {r.compression_ratio / sz:.3f}")
            print(f"| {os.path.basename(path)[:-4]} | {x.nbytes // 1024} | " + " | ".join(cells)
                  + f" | {', '.join(sorted(storage))} |", flush=True)
    for (t, big), v in sorted(logs.items(), key=lambda kv: (not kv[0][1], kv[0][0])):
        print(f"geometric mean aezip/SZ3 at equal PSNR, {what} {t:g}, {len(v)} arrays {'>=' if big else '<'} 256 KB: "
              f"{math.exp(sum(v) / len(v)):.3f}")


if __name__ == "__main__":
    main()
