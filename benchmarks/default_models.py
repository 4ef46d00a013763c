#!/usr/bin/env python3
"""Compression ratio and quality of the built-in default models on ../shared/data.

    python benchmarks/default_models.py [DATA_DIR]

Compresses every .npy array of the folder with the default model for its
dimensionality (through the public API, whole container file counted), decompresses
it, and prints ratio, bits/value, PSNR, max error and speeds. Arrays the default
models were trained on are marked: their figures are in-sample.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.model import load_model  # noqa: E402


def trained_on(ndim: int) -> set[str]:
    """Names of the shared arrays in the default model's training summary (by shape)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from train_defaults import REAL

    return set(REAL[ndim]) | ({"mpl_topobathy_2d", "mpl_jacksboro_dem_2d", "skimage_camera_2d",
                               "pydicom_ct_small_2d"} if ndim == 1 else set())


def latent_overhead(aez: str) -> tuple[str, float, float, float]:
    """How the latents were coded ("tables": the model's frozen integer tables; "adaptive":
    counts learned while coding), percent by which the coded latents exceed the symbols'
    own per-channel empirical entropy, percent by which their ideal cost under the frozen
    tables would exceed it, and percent by which the range coder's output with the frozen
    tables (escaped values included) exceeds that ideal cost."""
    from aezip.codec import adaptive, entropy
    from aezip.container import model_of, read_container
    from aezip.model import load_model

    c = read_container(aez)
    e = c.arrays[0]
    if e.codec.storage != "latent":
        return "-", float("nan"), float("nan"), float("nan")
    model = load_model(model_id=model_of(e, c.models).id)
    stream = e.streams["latents"].tobytes()
    shape = tuple(e.codec.latent_shape)
    if e.codec.latent_coding == "adaptive":
        y_hat = adaptive.decode_channels(stream, e.codec.escapes, e.codec.latent_radii, shape, model.tables)
    else:
        y_hat = entropy.decode(stream, e.codec.escapes, model.tables, shape)
    own = sum(entropy.empirical_bits(np.unique(y_hat[:, ch], return_counts=True)[1]) for ch in range(y_hat.shape[1]))
    ideal = entropy.ideal_bits(y_hat, model.tables)
    return (e.codec.latent_coding, 100 * (8 * len(stream) / own - 1), 100 * (ideal / own - 1),
            100 * (8 * len(entropy.encode(y_hat, model.tables)[0]) / ideal - 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(glob.glob(os.path.join(a.data, "*.npy"))):
            name = os.path.basename(path)[:-4]
            x = np.load(path)
            aez = os.path.join(tmp, name + ".aez")
            t0 = time.perf_counter()
            r = aezip.compress(path, aez, model="conv-ae-v1")  # the tiled conv autoencoders
            t1 = time.perf_counter()
            x_hat, _ = aezip.decompress(aez, os.path.join(tmp, name + ".npy"))
            t2 = time.perf_counter()
            ndim = min(x.ndim, 3)
            overhead = latent_overhead(aez)
            rows.append({
                "array": name, "shape": "x".join(map(str, x.shape)), "model": load_model(ndim=ndim).name,
                "in_sample": name in trained_on(ndim), "ratio": r.compression_ratio, "bpv": r.bits_per_value,
                "psnr": r.psnr, "max_err_rel": r.max_abs_error / (float(x.max()) - float(x.min())),
                "comp": x.nbytes / 1e6 / (t1 - t0), "decomp": x.nbytes / 1e6 / (t2 - t1), "storage": r.storage,
                "overhead": overhead,
            })
    head = ("| array | shape | model | trained on it | ratio | bits/value | PSNR dB | max err / range | comp MB/s | "
            "decomp MB/s | latents coded with | coded latents above their own entropy | frozen tables would be | "
            "range coder with the frozen tables above their ideal cost |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(f"| {r['array']} | {r['shape']} | {r['model']} | {'yes' if r['in_sample'] else 'no'} | {r['ratio']:.1f} | "
              f"{r['bpv']:.3f} | {r['psnr']:.1f} | {r['max_err_rel']:.3g} | {r['comp']:.1f} | {r['decomp']:.1f} | "
              f"{r['overhead'][0]} | {r['overhead'][1]:+.1f} % | {r['overhead'][2]:+.1f} % | "
              f"{r['overhead'][3]:+.2f} % |")
    print(f"\naezip {aezip.__version__}; ratio = original bytes / whole container file; "
          f"max error measured, not guaranteed (plain learned mode).")


if __name__ == "__main__":
    main()
