"""Which trailing axes of an array are spatial, when ``--ndim`` does not say.

By default every axis up to the last three is spatial. A leading one of those (every one
but the last) becomes a batch axis, with all axes before it, when its neighbouring planes
predict each other poorly: when the mean squared difference between neighbouring planes
along it is more than BATCH_RATIO times that between neighbouring values along the
smoothest of the axes after it (its planes' own axes that stay spatial). Measured on a
sample: up to PAIRS pairs of neighbouring planes spread along the axis, each cropped to
a central box of at most PLANE_VALUES values, values that are not data left out.

Real volumes and images measure 0.7 to 1.4; planes that do not continue each other
(stacked independent signals, three colour-like blocks of one image) 60 and more. Where
coding the planes one by one and coding them as one volume break even (aezip --psnr 45 and
the transform coder at 45 dB, on subsampled volumes, images and DEMs: README, "--ndim")
the ratio was 3 to 14; at 4 the worse choice of the two cost at most 8 % on those.
"""

from __future__ import annotations

import math

import numpy as np

BATCH_RATIO = 4.0
PAIRS = 8
PLANE_VALUES = 1 << 15
MAX_SPATIAL = 3


def default_ndim(shape: tuple[int, ...]) -> int:
    """Every axis, up to the last MAX_SPATIAL."""
    return min(len(shape), MAX_SPATIAL)


def choose_ndim(x, fill_values: tuple[float, ...] = ()) -> int:
    """The spatial axes of ``x`` (an ndarray or anything sliced like one: an h5py or Zarr
    array, a memory map): :func:`default_ndim`, less the leading axes up to the last one
    whose planes predict each other poorly (:func:`plane_ratio` > BATCH_RATIO)."""
    shape = tuple(x.shape)
    d = default_ndim(shape)
    first = len(shape) - d
    for axis in range(len(shape) - 2, first - 1, -1):
        if plane_ratio(x, axis, fill_values) > BATCH_RATIO:
            return len(shape) - 1 - axis
    return d


def plane_ratio(x, axis: int, fill_values: tuple[float, ...] = ()) -> float:
    """Mean squared difference of neighbouring planes along ``axis`` over that of neighbouring
    values along the smoothest later axis, on a sample (see the module text); 0 where the
    axis has a single plane or nothing differs, inf where only the planes do."""
    shape = tuple(x.shape)
    n = shape[axis]
    if n < 2:
        return 0.0
    across = within = None
    for i in sorted({k * (n - 2) // max(1, PAIRS - 1) for k in range(min(PAIRS, n - 1))}):
        box = _crop(shape, axis, i)
        v = np.array(x[box], dtype=np.float64)  # a copy: the fills become NaN here only
        for fill in fill_values:
            v[v == fill] = np.nan
        sums = [_mean_square_diff(v, a) for a in range(axis, len(shape))]
        across = _add(across, sums[0])
        within = [_add(w, s) for w, s in zip(within or [None] * (len(sums) - 1), sums[1:])]
    a = _mean(across)
    w = min((_mean(s) for s in within if s[1]), default=None)
    if a == 0 or w is None:  # nothing differs, or no later axis has neighbours to compare
        return 0.0
    return math.inf if w == 0 else a / w


def _crop(shape: tuple[int, ...], axis: int, i: int) -> tuple[slice, ...]:
    """Planes i and i + 1 along ``axis``, each a central box of at most PLANE_VALUES values
    (the longest other axis halved until it fits)."""
    size = [2 if a == axis else n for a, n in enumerate(shape)]
    while math.prod(size) > 2 * PLANE_VALUES:
        a = max((b for b in range(len(shape)) if b != axis), key=lambda b: size[b])
        size[a] = (size[a] + 1) // 2
    return tuple(slice(i, i + 2) if a == axis else slice((n - m) // 2, (n - m) // 2 + m)
                 for a, (n, m) in enumerate(zip(shape, size)))


def _mean_square_diff(v: np.ndarray, axis: int) -> tuple[float, int]:
    """(sum, count) of the finite squared differences of neighbours along ``axis``."""
    if v.shape[axis] < 2:
        return 0.0, 0
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and overflows are left out
        sq = np.square(np.diff(v, axis=axis))
        ok = np.isfinite(sq)
        return float(sq[ok].sum()), int(np.count_nonzero(ok))


def _add(a: tuple[float, int] | None, b: tuple[float, int]) -> tuple[float, int]:
    return b if a is None else (a[0] + b[0], a[1] + b[1])


def _mean(s: tuple[float, int]) -> float:
    return s[0] / s[1] if s[1] else 0.0
