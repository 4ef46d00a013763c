#!/usr/bin/env python3
"""The plain learned mode with a model trained on another part of the same data, against
SZ3 at the same PSNR.

    python benchmarks/transfer.py [DATA_DIR] [--steps 1500] [--only NAME,...]

For every .npy array a train part and a test part that do not overlap: for the real
arrays the first and the second half along axis 0; for the synthetic ones (grf, fronts)
the test part is the development array and the train part the same generator with
another seed (../shared/tools/make_fields.py). On the test part it compresses with

- the built-in default model, and
- that model fine-tuned for ``--steps`` steps on the train part only (the machinery of
  ``compress --fit``, written to a model file and passed as ``model=``),

and gives each one's ratio (whole container file) and PSNR, SZ3's ratio at the same PSNR
(equal_psnr.py's bisection) and the geometric means of aezip/SZ3 over the test parts of
at least 256 KB (smaller ones separately). Needs pysz.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import math
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aezip  # noqa: E402
from aezip._version import __version__  # noqa: E402
from aezip.model.fit import fit  # noqa: E402
from aezip.model.registry import load_model  # noqa: E402
from equal_psnr import sz3_at_psnr  # noqa: E402

FIELDS = os.path.join(ROOT, "..", "shared", "tools", "make_fields.py")
OTHER_SEED = 777  # the train part of a synthetic field: the generator with this seed


def _make_fields():
    spec = importlib.util.spec_from_file_location("make_fields", FIELDS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parts(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(train part, test part, how they were made)."""
    if name.startswith("synth_grf"):
        train = _make_fields().grf(x.shape, slope=-3.0, seed=OTHER_SEED).astype(x.dtype)
        return train, x, f"grf seed {OTHER_SEED} / development array"
    if name.startswith("synth_fronts"):
        train = _make_fields().fronts(x.shape[0], seed=OTHER_SEED).astype(x.dtype)
        return train, x, f"fronts seed {OTHER_SEED} / development array"
    half = x.shape[0] // 2
    return x[:half], x[half:], "first half / second half (axis 0)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--steps", type=int, default=1500, help="fine-tuning steps on the train part")
    ap.add_argument("--only", help="comma-separated array names")
    a = ap.parse_args()
    logs = {(model, big): [] for model in ("default", "trained") for big in (True, False)}
    print("| array | train / test | test KB | default: ratio @ PSNR | SZ3 at that PSNR | aezip/SZ3 | "
          "trained on the other part: ratio @ PSNR | SZ3 at that PSNR | aezip/SZ3 | training s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(glob.glob(os.path.join(a.data, "*.npy"))):
            name = os.path.basename(path)[:-4]
            if a.only and name not in a.only.split(","):
                continue
            x = np.load(path)
            train, test, how = parts(name, x)
            test = np.ascontiguousarray(test)
            aez = os.path.join(tmp, "x.aez")
            cells, big = [], test.nbytes >= 256 * 1024
            r = aezip.compress(test, aez, force=True, model="conv-ae-v1")
            sz = sz3_at_psnr(test, r.psnr)
            logs["default", big].append(math.log(r.compression_ratio / sz))
            cells += [f"{r.compression_ratio:.1f} @ {r.psnr:.2f}", f"{sz:.1f}", f"{r.compression_ratio / sz:.3f}"]
            t0 = time.perf_counter()
            ndim = min(3, x.ndim)
            model_bytes = fit(load_model(ndim=ndim, device="cpu"), [train], steps=a.steps, version=__version__)
            seconds = time.perf_counter() - t0
            model_path = os.path.join(tmp, "trained.h5")
            with open(model_path, "wb") as f:
                f.write(model_bytes)
            r = aezip.compress(test, aez, force=True, model=model_path)
            sz = sz3_at_psnr(test, r.psnr)
            logs["trained", big].append(math.log(r.compression_ratio / sz))
            cells += [f"{r.compression_ratio:.1f} @ {r.psnr:.2f}", f"{sz:.1f}", f"{r.compression_ratio / sz:.3f}",
                      f"{seconds:.0f}"]
            print(f"| {name} | {how} | {test.nbytes // 1024} | " + " | ".join(cells) + " |", flush=True)
    for (model, big), v in logs.items():
        if v:
            print(f"geometric mean aezip/SZ3 at equal PSNR, {model} model, {len(v)} test parts "
                  f"{'>=' if big else '<'} 256 KB: {math.exp(sum(v) / len(v)):.3f}")


if __name__ == "__main__":
    main()
