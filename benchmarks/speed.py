#!/usr/bin/env python3
"""End-to-end speed on a 64 MB float32 2-D field at rel 1e-3, against SZ3 in the same run.

    python benchmarks/speed.py [--size 4096] [--rel 1e-3] [--threads N] [--quality 45]

aezip: file to file (`aezip.compress` of an .npy into an .aez, `aezip.decompress` of it
into an .npy), best of 3. SZ3: pysz, ABS mode at the same bound, single-threaded, array
in memory, best of 3. Then the stages of aezip's bounded path timed one by one on the
same array, single-threaded: read, predict + quantize (interpolation), entropy-code,
write the container; and decode (entropy-decode + reconstruct), write.

Then the plain learned mode (the transform coder at ``--quality`` dB) on the same field,
as a user runs it: ``aezip compress x.npy --quality Q --json`` and ``aezip decompress``
in a new process each, best of 3, giving aezip's own timing (``seconds`` in the JSON)
and the wall-clock time from process start to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.codec import adaptive, bounded, interp  # noqa: E402
from aezip.codec.sample import sample_field  # noqa: E402


def best(f, n=3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rel", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quality", type=float, default=45.0, help="the learned mode's PSNR target (dB)")
    a = ap.parse_args()
    x = sample_field((a.size, a.size), seed=3)
    mb = x.nbytes / 1e6
    e = a.rel * float(x.max() - x.min())
    with tempfile.TemporaryDirectory() as tmp:
        src, aez, out = (os.path.join(tmp, n) for n in ("x.npy", "x.aez", "y.npy"))
        np.save(src, x)
        aezip.compress(x[:256, :256], os.path.join(tmp, "warm.aez"), abs=e)  # imports, first calls
        t_c = best(lambda: aezip.compress(src, aez, abs=e, force=True, threads=a.threads))
        t_d = best(lambda: aezip.decompress(aez, out, force=True, threads=a.threads))
        ratio = x.nbytes / os.path.getsize(aez)
        try:
            import pysz

            cfg = pysz.szConfig()
            cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
            cfg.absErrorBound = e
            data, _ = pysz.sz.compress(x, cfg)
            s_c = best(lambda: pysz.sz.compress(x, cfg))
            s_d = best(lambda: pysz.sz.decompress(data, x.dtype, x.shape))
            sz = f"SZ3: {mb / s_c:.0f} MB/s compression, {mb / s_d:.0f} MB/s decompression, ratio {x.nbytes / data.nbytes:.2f}"
        except ImportError:
            s_c = s_d = None
            sz = "SZ3: pysz is not installed"
        print(f"{a.size}x{a.size} float32 ({mb:.0f} MB), rel {a.rel:g}, threads {a.threads or os.cpu_count()}")
        print(f"aezip: {mb / t_c:.1f} MB/s compression, {mb / t_d:.1f} MB/s decompression, ratio {ratio:.2f}")
        print(sz)
        if s_c:
            print(f"aezip / SZ3 throughput: compression {s_c / t_c:.3f}, decompression {s_d / t_d:.3f}")
        # stages, single-threaded, on the same array
        xd = x.astype(np.float64)
        stages = {"read": best(lambda: aezip.io.read_input(src))}
        coded, _ = interp.encode(xd, e, dtype=np.float32)
        stages["predict + quantize"] = best(lambda: interp.encode(xd, e, dtype=np.float32), 1)
        steps = list(zip(coded.codes, coded.contexts))
        stages["entropy-code"] = best(lambda: adaptive.encode(steps, interp.CONTEXTS), 1)
        res, _ = bounded.encode(xd, e, dtype=np.float32, integer=False)
        stages["decode (entropy + reconstruct)"] = best(lambda: bounded.decode(res, x.shape, e, integer=False), 1)
        stages["write .npy"] = best(lambda: np.save(out, x), 1)
        print("stages (one thread): " + ", ".join(f"{k} {v:.2f} s ({mb / v:.0f} MB/s)" for k, v in stages.items()))
        learned(src, aez, out, mb, a.quality, a.threads)


def _timed(args: list[str]) -> tuple[float, dict]:
    """(wall-clock seconds from process start to exit, the JSON report) of one aezip command."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "aezip", *args, "--json", "--force"], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    return time.perf_counter() - t0, json.loads(done.stdout)


def learned(src: str, aez: str, out: str, mb: float, quality: float, threads: int | None) -> None:
    more = [] if threads is None else ["--threads", str(threads)]
    c = min((_timed(["compress", src, "-o", aez, "--quality", str(quality), *more]) for _ in range(3)),
            key=lambda t: t[0])
    d = min((_timed(["decompress", aez, "-o", out, *more]) for _ in range(3)), key=lambda t: t[0])
    print(f"learned mode --quality {quality:g}: PSNR {c[1]['psnr']:.2f} dB, ratio {c[1]['compression_ratio']:.2f}")
    for what, (wall, rep) in (("compression", c), ("decompression", d)):
        print(f"  {what}: {mb / rep['seconds']:.1f} MB/s by aezip's timing ({rep['seconds']:.2f} s), "
              f"{mb / wall:.1f} MB/s from process start to exit ({wall:.2f} s)")


if __name__ == "__main__":
    import aezip.io  # noqa: F401

    main()
