#!/usr/bin/env python3
"""Distributed compression through the Zarr codec: 2 Dask workers against 1.

    python benchmarks/dask_scale.py [--gb 1] [--chunk-mb 16] [--rel 1e-3] [--no-whole]

A float32 2-D field of ``--gb`` GB (default 1), generated chunk by chunk on the workers
(never whole in memory) in chunks of ``--chunk-mb`` MB, is written to a Zarr v3 store
through aezip's serializer in mode ``abs`` at ``--rel`` times the field's range, once
with 2 worker processes x 1 thread and once with 1 x 1 (distributed.LocalCluster).
Reported per run: seconds, throughput (MB/s of float32 values), the peak RSS of each
worker (sampled every 50 ms), the store's bytes and ratio, and the max error over every
chunk against the bound (read back through Dask). Then the ratio of one whole-array .aez
of the same field and bound (written from a memory-mapped .npy, slab by slab), unless
``--no-whole``. Needs aezip[zarr] and psutil (a dask[distributed] dependency).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SAMPLE_S = 0.05  # RSS sampling period


def block(block_id=None, block_info=None):
    """One chunk of the field: smooth waves over the whole domain plus a little texture
    seeded by the chunk's place (the same on any worker)."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    i = np.arange(r0, r1, dtype=np.float64)[:, None]
    j = np.arange(c0, c1, dtype=np.float64)[None, :]
    f = np.sin(i / 397.0) * np.cos(j / 541.0) + 0.5 * np.sin((i + 2 * j) / 173.0) + 0.2 * np.cos(i / 61.0 - j / 89.0)
    rng = np.random.default_rng(abs(hash(block_id)) % (1 << 32))
    return (f + 0.002 * rng.standard_normal(f.shape)).astype(np.float32)


def field(gb: float, chunk_mb: float):
    import dask.array as da

    side = int(round((chunk_mb * 2**20 / 4) ** 0.5))  # square chunks of chunk_mb MB
    n = gb * 2**30 / 4
    rows = max(side, int(round((n / 2) ** 0.5 / side)) * side)  # a 1:2 field in whole chunks
    shape = (rows, 2 * rows)
    chunks = tuple(tuple([side] * (s // side) + ([s % side] if s % side else [])) for s in shape)
    return da.map_blocks(block, dtype=np.float32, chunks=chunks), side


class RSS:
    """Peak resident memory of each of ``pids``, sampled every SAMPLE_S seconds."""

    def __init__(self, pids):
        import psutil

        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid, p in self.procs.items():
                try:
                    self.peak[pid] = max(self.peak[pid], p.memory_info().rss)
                except Exception:  # a worker that ended
                    pass
            self._stop.wait(SAMPLE_S)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def store_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def run(workers: int, x, bound: float, path: str) -> dict:
    import dask.array as da
    import zarr
    from distributed import Client, LocalCluster

    from aezip.zarr import AEZip

    shutil.rmtree(path, ignore_errors=True)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=None) as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        z = zarr.create_array(zarr.storage.LocalStore(path), shape=x.shape, chunks=x.chunksize, dtype="float32",
                              serializer=AEZip(mode="abs", bound=bound), compressors=None)
        with RSS(pids) as rss:
            t0 = time.perf_counter()
            da.to_zarr(x, z, compute=True)
            seconds = time.perf_counter() - t0
        err = float(abs(da.from_zarr(path) - x).max().compute())
    size = store_bytes(path)
    return {"workers": workers, "seconds": seconds, "mb_s": x.nbytes / 2**20 / seconds, "store": size,
            "ratio": x.nbytes / size, "max_error": err, "peak_rss": sorted(rss.peak.values())}


def whole(x, bound: float, folder: str) -> dict:
    """One .aez of the whole field, from a .npy written chunk by chunk."""
    import aezip

    npy = os.path.join(folder, "field.npy")
    out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=x.shape)
    x.store(out, lock=True, scheduler="threads")
    out.flush()
    del out
    aez = os.path.join(folder, "field.aez")
    t0 = time.perf_counter()
    aezip.compress(npy, aez, abs=bound, force=True)
    seconds = time.perf_counter() - t0
    os.remove(npy)
    return {"bytes": os.path.getsize(aez), "ratio": x.nbytes / os.path.getsize(aez), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0, help="field size in GB of float32 (default 1)")
    ap.add_argument("--chunk-mb", type=float, default=16.0, help="chunk size in MB (default 16)")
    ap.add_argument("--rel", type=float, default=1e-3, help="bound as a fraction of the field's range (default 1e-3)")
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-array .aez")
    ap.add_argument("--dir", help="where the stores go (default: a temporary folder)")
    a = ap.parse_args()
    import dask

    x, side = field(a.gb, a.chunk_mb)
    with dask.config.set(scheduler="threads"):
        lo, hi = dask.compute(x.min(), x.max())
    bound = a.rel * float(hi - lo)
    folder = a.dir or tempfile.mkdtemp(prefix="dask_scale-")
    print(f"field {x.shape[0]}x{x.shape[1]} float32, {x.nbytes / 2**30:.3f} GB, chunks {side}x{side} "
          f"({side * side * 4 / 2**20:.1f} MB), {x.npartitions} chunks; abs bound {bound:.6g} "
          f"({a.rel:g} x range {hi - lo:.6g}); {os.cpu_count()} CPUs")
    results = [run(w, x, bound, os.path.join(folder, f"w{w}.zarr")) for w in (2, 1)]
    for r in results:
        rss = ", ".join(f"{v / 2**20:.0f}" for v in r["peak_rss"])
        print(f"{r['workers']} worker(s) x 1 thread: {r['seconds']:.1f} s, {r['mb_s']:.2f} MB/s, peak RSS per "
              f"worker {rss} MB, store {r['store']:,} B, ratio {r['ratio']:.2f}, max error / bound "
              f"{r['max_error'] / bound:.4f}")
    print(f"2 workers / 1 worker throughput: {results[0]['mb_s'] / results[1]['mb_s']:.2f}x")
    if not a.no_whole:
        w = whole(x, bound, folder)
        print(f"whole-array .aez: {w['bytes']:,} B, ratio {w['ratio']:.2f} ({w['seconds']:.1f} s); "
              f"chunked / whole ratio {results[0]['ratio'] / w['ratio']:.3f}")
    if not a.dir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
