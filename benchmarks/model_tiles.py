#!/usr/bin/env python3
"""Would a per-block choice ever pick the model? Its cost against the interpolation's, per tile.

    python benchmarks/model_tiles.py [DATA_DIR] [--rel 1e-2]

For every .npy array of at least 256 KB, at the bound E = R x value range: for each of the
default model's tiles, the model's path (its latents under the model's tables, plus the
residual codes x - x_hat at step 2E, each at the array-wide zeroth-order entropy) against
the interpolation path (each of its codes at the zeroth-order entropy of its pass), over
the values of that tile. Prints the smallest and the median ratio and how many tiles the
model would win. Edge tiles are padded by mirroring; the padding counts on both sides.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aezip.codec import entropy, interp  # noqa: E402
from aezip.codec.normalize import Normalization  # noqa: E402
from aezip.codec.tile import tile  # noqa: E402
from aezip.coding import spatial_ndim  # noqa: E402
from aezip.model import load_model  # noqa: E402

BIG = 256 * 1024


def code_bits(codes: np.ndarray) -> np.ndarray:
    """Each code's cost at the zeroth-order entropy of ``codes``."""
    _, idx, counts = np.unique(codes, return_inverse=True, return_counts=True)
    return -np.log2(counts / counts.sum())[idx.reshape(codes.shape)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--rel", type=float, default=1e-2)
    a = ap.parse_args()
    for path in sorted(glob.glob(os.path.join(a.data, "*.npy"))):
        x = np.load(path)
        if x.nbytes < BIG:
            continue
        xd = x.astype(np.float64)
        e = a.rel * float(xd.max() - xd.min())
        coded, _ = interp.encode(xd, e, dtype=x.dtype)
        cost = np.zeros(x.shape)
        for (t, _), c in zip(interp._steps(x.shape, coded.levels, interp.GROUPS), coded.codes):
            cost[t] = code_bits(c).reshape(cost[t].shape)
        d = spatial_ndim(x.shape, None)
        model = load_model(None, ndim=d, device="cpu")
        norm = Normalization.fit(x)
        x_b = xd.reshape((-1,) + x.shape[x.ndim - d:])
        tiles = tile(norm.forward(x_b).astype(np.float32), model.tile)
        y_hat = model.encode(tiles)
        r = (tiles.astype(np.float64) - model.decode(y_hat).astype(np.float64)) * norm.scale
        residual = code_bits(np.rint(r / (2 * e))).reshape(len(tiles), -1).sum(axis=1)
        latents = np.array([entropy.ideal_bits(y_hat[i : i + 1], model.tables) for i in range(len(tiles))])
        classical = tile(cost.reshape(x_b.shape), model.tile).reshape(len(tiles), -1).sum(axis=1)
        ratio = (latents + residual) / np.maximum(classical, 1.0)
        print(f"{os.path.basename(path)[:-4]}: {len(tiles)} tiles of {model.name}; model / interpolation per tile: "
              f"min {ratio.min():.2f}, median {np.median(ratio):.2f}; tiles the model wins: {int(np.sum(ratio < 1))}")


if __name__ == "__main__":
    main()
