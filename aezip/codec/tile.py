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


def tile_sums(a: np.ndarray, t: int) -> np.ndarray:
    """Sum of ``a`` (B, n_1, ..., n_d) over each tile, in :func:`tile`'s order (the
    padding counts zero)."""
    g = grid(a.shape[1:], t)
    a_p = np.pad(a, [(0, 0)] + [(0, gi * t - n) for gi, n in zip(g, a.shape[1:])])
    return tile(a_p, t).reshape(a_p.shape[0] * math.prod(g), -1).sum(axis=1)


def spread(flags: np.ndarray, shape: tuple[int, ...], t: int) -> np.ndarray:
    """Boolean map of shape (B, n_1, ..., n_d): True on the values of the tiles whose flag is set."""
    d = len(shape) - 1
    return untile(np.broadcast_to(flags.reshape((-1, 1) + (1,) * d), (flags.size, 1) + (t,) * d), shape)
