#!/usr/bin/env python3
"""Peak memory and speed of compressing and decompressing an HDF5 dataset larger than --memory.

    python benchmarks/memory.py [--gb 2] [--memory 1G] [--dir /tmp]

Writes a smooth float32 field of the given size into an HDF5 file (slab by slab), then
runs `aezip compress FILE:/x --rel 1e-3` and `aezip decompress ... -o out.h5` under
`/usr/bin/time -v` and prints the peak memory, the seconds and MB/s of each, and the
compression ratio. Peak memory: the largest total over aezip's process and its worker
processes, sampled every 20 ms (proportional set size, so pages a forked worker shares
with its parent count once; resident set size where the kernel has no PSS), and the
largest single process's peak resident set (Maximum resident set size of time -v).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import h5py
import numpy as np


def make_field(path: str, gb: float) -> tuple[int, ...]:
    n = 1024
    depth = max(1, int(gb * 2**30 / (4 * n * n)))
    y, x = np.meshgrid(np.linspace(0, 6.28, n), np.linspace(0, 6.28, n), indexing="ij")
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(depth, n, n), dtype="f4")
        for z in range(depth):
            ds[z] = (np.sin(3 * x + 0.05 * z) * np.cos(2 * y - 0.03 * z) + 0.01 * rng.standard_normal((n, n)))
    return (depth, n, n)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
        out.append(p)
    return out


def _kb(pid: int) -> int:
    """Proportional set size of a process in KiB (resident set size where there is none)."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            pass
    return 0


def timed(argv: list[str]) -> tuple[float, float, dict]:
    """(peak total GiB over the process tree, peak GiB of the largest process, the JSON report)."""
    proc = subprocess.Popen(["/usr/bin/time", "-v", sys.executable, "-m", "aezip", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_kb(p) for p in _descendants(proc.pid)[1:]))  # not time itself
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.join()
    if proc.returncode:
        raise SystemExit(stderr)
    largest = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    return peak[0] / 2**20, largest / 2**20, json.loads(stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        src = os.path.join(tmp, "big.h5")
        shape = make_field(src, a.gb)
        size = os.path.getsize(src)
        print(f"input: {src}:/x, shape {shape}, float32, {size / 2**30:.2f} GiB on disk")
        aez = os.path.join(tmp, "big.aez")
        peak, largest, r = timed(["compress", f"{src}:/x", "-o", aez, "--rel", "1e-3", "--memory", a.memory,
                                  "--json", "--quiet"])
        print(f"compress:   peak {peak:.2f} GiB in all (largest process {largest:.2f} GiB), {r['seconds']:.1f} s, "
              f"{r['mb_per_s']:.1f} MB/s, "
              f"ratio {r['compression_ratio']:.2f}, {r.get('slabs', 0)} slabs, max error / bound "
              f"{r['max_error_over_bound']:.4f}")
        peak, largest, r = timed(["decompress", aez, "-o", os.path.join(tmp, "out.h5"), "--json", "--quiet"])
        print(f"decompress: peak {peak:.2f} GiB in all (largest process {largest:.2f} GiB), {r['seconds']:.1f} s, "
              f"{r['mb_per_s']:.1f} MB/s")


if __name__ == "__main__":
    main()
