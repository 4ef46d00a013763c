#!/usr/bin/env python3
"""Chunked against whole-array coding, and against SZ3 on the same chunks.

    python benchmarks/chunked.py [DATA_DIR] [--rel 1e-2,1e-3,1e-4]

For grf2d in 256^2 chunks, grf3d in 64^3 chunks and camera in 128^2 chunks, at each R:
E = R x the whole array's value range; every chunk is coded by aezip.encode_chunk in mode
``rel`` with ``value_range`` given (what the Zarr codec does), and by SZ3 (pysz, ABS E);
the whole array by aezip.compress --abs E (ratio from the .aez file). Reported: the
chunked ratio (original bytes / sum of frame bytes), the whole-array ratio, their
quotient, SZ3's chunked ratio, aezip / SZ3 on the chunks, and the max error / bound over
every chunk of both. Needs pysz.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402

CASES = [("synth_grf_k3_2d.npy", (256, 256)), ("synth_grf_k3_3d.npy", (64, 64, 64)),
         ("skimage_camera_2d.npy", (128, 128))]


def chunks(shape, size):
    for start in itertools.product(*(range(0, n, c) for n, c in zip(shape, size))):
        yield tuple(slice(s, min(s + c, n)) for s, c, n in zip(start, size, shape))


def sz3(x: np.ndarray, e: float) -> tuple[int, float]:
    import pysz

    cfg = pysz.szConfig()
    cfg.errorBoundMode = pysz.szErrorBoundMode.ABS
    cfg.absErrorBound = e
    data, _ = pysz.sz.compress(np.ascontiguousarray(x), cfg)
    x_hat, _ = pysz.sz.decompress(data, x.dtype, x.shape)
    return data.nbytes, float(np.max(np.abs(x.astype(np.float64) - x_hat)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    a = ap.parse_args()
    print("| array | chunks | rel | chunked ratio | whole ratio | chunked / whole | SZ3 chunked ratio | "
          "aezip / SZ3 | aezip max err / bound | SZ3 max err / bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in CASES:
            x = np.load(os.path.join(a.data, name)).astype(np.float32)
            vrange = float(x.max()) - float(x.min())
            for rel in (float(r) for r in a.rel.split(",")):
                e = rel * vrange
                ours = theirs = 0
                err = sz_err = 0.0
                for box in chunks(x.shape, size):
                    c = x[box]
                    b = aezip.encode_chunk(c, rel=rel, value_range=vrange)
                    ours += len(b)
                    err = max(err, float(np.max(np.abs(c.astype(np.float64) - aezip.decode_chunk(b)))))
                    n, m = sz3(c, e)
                    theirs, sz_err = theirs + n, max(sz_err, m)
                aez = os.path.join(tmp, "x.aez")
                aezip.compress(x, aez, abs=e, force=True)
                whole = x.nbytes / os.path.getsize(aez)
                chunked, sz = x.nbytes / ours, x.nbytes / theirs
                print(f"| {name[:-4]} | {'x'.join(map(str, size))} | {rel:g} | {chunked:.2f} | {whole:.2f} | "
                      f"{chunked / whole:.3f} | {sz:.2f} | {chunked / sz:.3f} | {err / e:.4f} | {sz_err / e:.4f} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
