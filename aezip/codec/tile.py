"""Cut a batch of d-dimensional fields into cubic tiles and put them back.

``x`` has shape (B, n_1, ..., n_d); every spatial axis is padded to a multiple of
the tile edge ``t`` by mirroring (numpy "symmetric"), so any size works; tiles come
out as (N, 1, t, ..., t) in C order of (B, tile index along axis 1, ..., axis d).
"""

from __future__ import annotations

import math

import numpy as np


def grid(spatial: tuple[int, ...], t: int) -> tuple[int, ...]:
    """Number of tiles along each spatial axis."""
    return tuple(math.ceil(n / t) for n in spatial)


def tile(x: np.ndarray, t: int) -> np.ndarray:
    b, spatial = x.shape[0], x.shape[1:]
    d = len(spatial)
    g = grid(spatial, t)
    pad = [(0, 0)] + [(0, gi * t - n) for gi, n in zip(g, spatial)]
    x_p = np.pad(x, pad, mode="symmetric") if any(p for _, p in pad) else x
    # (B, g1, t, g2, t, ...) -> (B, g1, g2, ..., t, t, ...)
    split = x_p.reshape((b, *[s for gi in g for s in (gi, t)]))
    order = [0] + [1 + 2 * i for i in range(d)] + [2 + 2 * i for i in range(d)]
    tiles = split.transpose(order).reshape((-1, 1) + (t,) * d)
    return np.ascontiguousarray(tiles)


def untile(tiles: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`tile` for a batch of fields of ``shape`` (B, n_1, ..., n_d)."""
    b, spatial = shape[0], shape[1:]
    d = len(spatial)
    t = tiles.shape[-1]
    g = grid(spatial, t)
    x_p = tiles.reshape((b, *g) + (t,) * d)
    order = [0] + [v for i in range(d) for v in (1 + i, 1 + d + i)]
    x_p = x_p.transpose(order).reshape((b, *[gi * t for gi in g]))
    return np.ascontiguousarray(x_p[(slice(None),) + tuple(slice(0, n) for n in spatial)])
