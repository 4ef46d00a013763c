#!/usr/bin/env python3
"""Train the built-in default models (1-D, 2-D, 3-D) and add them to aezip/model/builtin/.

    python scripts/train_defaults.py 2            # one dimensionality
    python scripts/train_defaults.py 1 2 3 --set-default

Training data: synthetic Gaussian random fields made here (seeds distinct from the
development arrays), the synthetic fronts field, and the permissively licensed real
arrays of ../shared/data (see its MANIFEST.md). seis_balst_lhe_1d (LGPL test data) is
never used. A model file is named after its content id, and existing files are never
overwritten or removed: old containers keep finding their models.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aezip._version import __version__  # noqa: E402
from aezip.codec.sample import sample_field  # noqa: E402
from aezip.model import train as tr  # noqa: E402
from aezip.model.registry import BUILTIN_DIR  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data")
REAL = {1: ["goes15_xrs_long_1d"], 2: ["mpl_topobathy_2d", "mpl_jacksboro_dem_2d", "skimage_camera_2d",
                                       "pydicom_ct_small_2d"], 3: ["nibabel_fmri_vol0_3d"]}
STEPS = {1: 8000, 2: 12000, 3: 4000}  # the steps of the current defaults
BATCH = {1: 16, 2: 16, 3: 8}


def fronts(seed: int) -> np.ndarray:
    spec = importlib.util.spec_from_file_location("make_fields", os.path.join(ROOT, "..", "shared", "tools", "make_fields.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.fronts(512, seed).astype(np.float32)


def training_fields(ndim: int) -> list[np.ndarray]:
    fields = [np.load(os.path.join(DATA, n + ".npy")).astype(np.float32) for n in REAL[ndim]]
    if ndim == 1:
        fields += [sample_field((65536,), slope=s, seed=100 + i) for i, s in enumerate([-1.5, -2, -2.5, -3, -4])]
        rows = [np.load(os.path.join(DATA, n + ".npy")).astype(np.float32) for n in REAL[2]]
        fields += [r for r in rows if r.shape[-1] >= 256]  # rows of real 2-D data as 1-D signals
    elif ndim == 2:
        fields += [sample_field((256, 256), slope=s, seed=200 + i) for i, s in enumerate([-2, -3, -3, -4, -5])]
        fields += [fronts(7), fronts(8)]
    else:
        fields += [sample_field((64, 64, 64), slope=s, seed=300 + i) for i, s in enumerate([-3, -3, -4, -5])]
    return fields


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ndims", nargs="+", type=int, choices=[1, 2, 3])
    ap.add_argument("--set-default", action="store_true", help="make the new models the defaults")
    ap.add_argument("--steps", type=int, help="override the number of steps (for quick trials)")
    a = ap.parse_args()
    os.makedirs(BUILTIN_DIR, exist_ok=True)
    for ndim in a.ndims:
        fields = training_fields(ndim)
        opts = tr.TrainOptions(ndim=ndim, steps=a.steps or STEPS[ndim], batch_size=BATCH[ndim], lmbda=1e-4, seed=ndim)
        t0 = time.time()

        def report(step, f):
            if step % 250 == 0:
                print(f"  {ndim}-D step {step}: " + " ".join(f"{k} {v:.4g}" for k, v in f.items()), flush=True)

        cfg, tensors, tables, summary = tr.train(fields, opts, report)
        tmp = os.path.join(BUILTIN_DIR, ".new.h5")
        name, mid = tr.save(tmp, cfg, tensors, tables, summary, __version__)
        target = os.path.join(BUILTIN_DIR, name + ".h5")
        if os.path.exists(target):
            os.unlink(tmp)
            print(f"{name} exists already (same content)")
        else:
            os.replace(tmp, target)
        print(f"{ndim}-D: {name} in {time.time() - t0:.0f} s, {os.path.getsize(target)} bytes, {summary}", flush=True)
        if a.set_default:
            path = os.path.join(BUILTIN_DIR, "defaults.json")
            defaults = json.load(open(path)) if os.path.exists(path) else {}
            defaults[str(ndim)] = name
            with open(path, "w") as f:
                json.dump(defaults, f, indent=2, sort_keys=True)
                f.write("\n")


if __name__ == "__main__":
    main()
