#!/usr/bin/env python3
"""aezip against SZ3 at the same PSNR: the plain learned mode, and --psnr at that PSNR.

    python benchmarks/equal_psnr.py [DATA_DIR]

For every .npy array: aezip without a bound (the built-in default model; ratio from the
whole container file) gives a PSNR; SZ3 (pysz, ABS mode) is bisected on its absolute
bound until two runs bracket that PSNR, and its ratio at the same PSNR is interpolated
linearly in log(ratio) between them. Then the same for aezip --psnr with that PSNR as
its target (the bounded path; the model's prediction is used on the tiles where it
pays), compared with SZ3 at the PSNR --psnr reached. A second table does the same for
--psnr at fixed targets (--targets, default 40, 45 and 50 dB). Prints aezip/SZ3 per array
and the geometric means over the arrays of at least 256 KB (smaller ones separately).
Needs pysz.
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
    ap.add_argument("--targets", default="40,45,50", help="PSNR targets of the second table (dB)")
    a = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(a.data, "*.npy")))
    learned_mode(paths)
    psnr_targets(paths, [float(t) for t in a.targets.split(",")])


def learned_mode(paths: list[str]) -> None:
    logs: dict[tuple[str, bool], list[float]] = {}
    print("| array | KB | learned: PSNR dB | ratio | SZ3 ratio at that PSNR | aezip / SZ3 | "
          "--psnr: PSNR dB | ratio | SZ3 ratio at that PSNR | aezip / SZ3 | model's prediction used |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        aez = os.path.join(tmp, "x.aez")
        for path in paths:
            x = np.load(path)
            cells = []
            for mode, kwargs in (("learned", {}), ("psnr", None)):
                # --psnr asks for the PSNR the learned mode reached
                r = aezip.compress(x, aez, force=True, **(kwargs if kwargs is not None else {"psnr": cells[0][0]}))
                sz = sz3_at_psnr(x, r.psnr)
                logs.setdefault((mode, x.nbytes >= 256 * 1024), []).append(math.log(r.compression_ratio / sz))
                cells.append((r.psnr, r.compression_ratio, sz))
            e = aezip.info(aez).arrays[0]
            used = f"on {e.codec.latent_shape[0]} of {e.tiles} tiles" if e.codec.uses_model else "no"
            print(f"| {os.path.basename(path)[:-4]} | {x.nbytes // 1024} | "
                  + " | ".join(f"{p:.2f} | {r:.1f} | {sz:.1f} | {r / sz:.3f}" for p, r, sz in cells) + f" | {used} |")
    for (mode, big), v in logs.items():
        print(f"geometric mean aezip/SZ3 at equal PSNR, {'plain learned mode' if mode == 'learned' else '--psnr'}, "
              f"{len(v)} arrays {'>=' if big else '<'} 256 KB: {math.exp(sum(v) / len(v)):.3f}")


def psnr_targets(paths: list[str], targets: list[float]) -> None:
    """aezip --psnr T for each target T against SZ3 at the PSNR aezip reached."""
    logs: dict[tuple[float, bool], list[float]] = {}
    print("\n| array | KB | " + " | ".join(f"--psnr {t:g}: PSNR dB | ratio | SZ3 at that PSNR | aezip / SZ3"
                                           for t in targets) + " |")
    print("|---|---|" + "---|---|---|---|" * len(targets))
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            x = np.load(path)
            cells = []
            for t in targets:
                r = aezip.compress(x, os.path.join(tmp, "x.aez"), psnr=t, force=True)
                sz = sz3_at_psnr(x, r.psnr)
                logs.setdefault((t, x.nbytes >= 256 * 1024), []).append(math.log(r.compression_ratio / sz))
                cells.append(f"{r.psnr:.2f} | {r.compression_ratio:.1f} | {sz:.1f} | {r.compression_ratio / sz:.3f}")
            print(f"| {os.path.basename(path)[:-4]} | {x.nbytes // 1024} | " + " | ".join(cells) + " |")
    for (t, big), v in logs.items():
        print(f"geometric mean aezip/SZ3 at equal PSNR, --psnr {t:g}, {len(v)} arrays {'>=' if big else '<'} 256 KB: "
              f"{math.exp(sum(v) / len(v)):.3f}")


if __name__ == "__main__":
    main()
