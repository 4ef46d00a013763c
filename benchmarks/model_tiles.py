#!/usr/bin/env python3
"""Would a per-block choice ever pick the model? Its cost against the interpolation's, per tile.

    python benchmarks/model_tiles.py [DATA_DIR] [--rel 1e-2]

For every .npy array of at least 256 KB, at the bound E = R x value range: for each of the
default model's tiles, the estimates aezip's per-tile choice compares (aezip.coding): the
model's path (its latents under the model's tables, plus the codes of x - x_hat
interpolated as aezip codes it) against the interpolation path alone (each code at the
zeroth-order entropy of its pass, an exactly stored value 64 bits more), over the values
of that tile. Prints the smallest and the median ratio and how many tiles the model
would win. The gates that spare aezip running the model at all are left out.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from aezip import coding  # noqa: E402
from aezip.codec import bounded  # noqa: E402
from aezip.codec.tile import tile_sums  # noqa: E402

BIG = 256 * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--rel", type=float, default=1e-2)
    a = ap.parse_args()
    models = coding.Models(None, "cpu")
    for path in sorted(glob.glob(os.path.join(a.data, "*.npy"))):
        x = np.load(path)
        if x.nbytes < BIG:
            continue
        xd = x.astype(np.float64)
        e = a.rel * float(xd.max() - xd.min())
        d = coding.spatial_ndim(x.shape, None)
        model = models.for_ndim(d)
        batch_shape = (-1,) + x.shape[x.ndim - d:]
        classical = tile_sums(bounded.encode(xd, e, dtype=x.dtype, integer=False, bits=True)[0].bits
                              .reshape(batch_shape), model.tile)
        run = coding.run_model(xd, d, models, "")
        bits, _, _ = coding.model_tile_bits(xd, e - coding.DRIFT * run[1].scale, x.dtype, run)
        ratio = bits / np.maximum(classical, 1.0)
        print(f"{os.path.basename(path)[:-4]}: {len(ratio)} tiles of {model.name}; model / interpolation per tile: "
              f"min {ratio.min():.2f}, median {np.median(ratio):.2f}; tiles the model wins: {int(np.sum(ratio < 1))}")


if __name__ == "__main__":
    main()
