"""A linear filter fitted to one array and applied after decoding (format v4, ``--psnr``).

The bounded coder leaves an error within ±E at every value; over many values that error
still correlates with the decoded neighbourhood (the interpolation's misses on smooth
stretches, the quantization bins of integer data). A least-squares filter of the decoded
values, fitted by the encoder to the original and stored as a few integer weights, takes
part of it back: the adaptive loop filter of video coding (VVC's ALF: Karczewicz et al.,
IEEE TCSVT 31(10), 2021) does the same after its decoder. It raises the PSNR at a given
bound, so ``--psnr`` reaches its target at a looser bound.

With f the decoded values and N(n) the taps around value n (:func:`taps`; indices clamped
to the array), the filtered value is::

    g[n] = f[n] + clip(sum_j (w_j / 4096) (f[n + o_j] - f[n]), -c, c)   then limited to [min f, max f]

with the sum accumulated in tap order, every operation float64, so that the decoder's g
is bit-identical to the encoder's on any machine. The correction is within ±c (c =
bound/2, :func:`clip`) and the last step only moves g towards f, so every value stays
within bound + c of the original.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from .interp import FIT_LIMIT, FIT_SCALE

BLOCK_VALUES = 1 << 16  # values per block of rows: the features of a block stay small in memory
FIT_VALUES = 1 << 18  # the weights are fitted on about this many values, in evenly spaced blocks of rows
FIT_BLOCKS = 64  # ... in at least this many blocks when subsampled
REACH_1D = 3  # a 1-D array's taps: the three neighbours on each side


def taps(ndim: int) -> list[tuple[int, ...]]:
    """The offsets o_j, in order: -3..3 without 0 in 1-D; every offset in {-1, 0, 1}^d
    but the centre, in lexicographic order, in 2-D and 3-D."""
    if ndim == 1:
        return [(o,) for o in range(-REACH_1D, REACH_1D + 1) if o]
    if ndim in (2, 3):
        return [o for o in itertools.product((-1, 0, 1), repeat=ndim) if any(o)]
    raise ValueError(f"no filter for {ndim}-D arrays")


def supports(shape: tuple[int, ...]) -> bool:
    return 1 <= len(shape) <= 3


def clip(bound: float, integer: bool) -> float:
    """c: the largest correction, half the coding bound (integer coding: rounded down)."""
    return float(math.floor(bound / 2)) if integer else bound / 2


def _reach(ndim: int) -> int:
    return max(max(abs(v) for v in o) for o in taps(ndim))


def _blocks(f: np.ndarray, values: int = BLOCK_VALUES, every: int = 1) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, padded) for blocks of about ``values`` values in whole rows along
    axis 0, every ``every``-th block: ``padded`` holds those rows with the taps' reach on
    every side, indices clamped to the array."""
    r = _reach(f.ndim)
    rows = max(1, values // max(1, math.prod(f.shape[1:])))
    for a in range(0, f.shape[0], rows * every):
        b = min(f.shape[0], a + rows)
        idx = np.clip(np.arange(a - r, b + r), 0, f.shape[0] - 1)
        yield a, b, np.pad(f[idx], [(0, 0)] + [(r, r)] * (f.ndim - 1), mode="edge")


def _differences(padded: np.ndarray, ndim: int) -> Iterator[np.ndarray]:
    """f[n + o_j] - f[n] over a block, tap by tap."""
    reach = _reach(ndim)
    inner = tuple(slice(reach, n - reach) for n in padded.shape)
    centre = padded[inner]
    for o in taps(ndim):
        yield padded[tuple(slice(reach + v, n - reach + v) for v, n in zip(o, padded.shape))] - centre


def differences(f: np.ndarray) -> np.ndarray:
    """(values, taps): f[n + o_j] - f[n] for every value n (C order) and tap j, as the
    filter sees them (for analysis; :func:`fit` and :func:`apply` go block by block)."""
    return np.concatenate([np.stack([v.reshape(-1) for v in _differences(padded, f.ndim)], axis=1)
                           for _, _, padded in _blocks(f)])


def fit(x: np.ndarray, f: np.ndarray) -> list[int] | None:
    """The weights w that minimise sum (x - f - sum_j w_j (f[n + o_j] - f[n]))^2 (the
    unclipped filter's squared error), as integers in units of 1/FIT_SCALE (as the
    interpolation's fitted weights), or None when the system is degenerate or they round to 0.
    Fitted on FIT_VALUES values or so, in FIT_BLOCKS blocks of rows spread over the array."""
    m = len(taps(f.ndim))
    gram, rhs = np.zeros((m, m)), np.zeros(m)
    sampled = f.size > FIT_VALUES
    size = FIT_VALUES // FIT_BLOCKS if sampled else BLOCK_VALUES
    every = max(1, f.size // FIT_VALUES) if sampled else 1
    for a, b, padded in _blocks(f, size, every):
        d = np.stack([v.reshape(-1) for v in _differences(padded, f.ndim)], axis=1)
        t = (x[a:b] - f[a:b]).reshape(-1)
        gram += d.T @ d
        rhs += d.T @ t
    ridge = 1e-12 * max(float(np.trace(gram)), 1e-300) / m
    try:
        w = np.linalg.solve(gram + ridge * np.eye(m), rhs)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(w)):
        return None
    w_int = [int(v) for v in np.clip(np.rint(w * FIT_SCALE), 1 - FIT_LIMIT, FIT_LIMIT - 1)]
    return w_int if any(w_int) else None


def apply(f: np.ndarray, w: list[int], c: float) -> np.ndarray:
    """g (float64): f filtered with weights ``w`` (:func:`fit`'s integers), corrections
    clipped to ±c, limited to the range of f. ValueError if ``w`` does not fit the array."""
    n_taps = len(taps(f.ndim)) if supports(f.shape) else 0
    if len(w) != n_taps or any(not isinstance(v, int) or abs(v) >= FIT_LIMIT for v in w):
        raise ValueError(f"the filter's weights ({len(w)}) are not {n_taps} integers of magnitude below {FIT_LIMIT}")
    g = np.empty(f.shape, dtype=np.float64)
    if f.size == 0:
        return g
    lo, hi = float(np.min(f)), float(np.max(f))
    for a, b, padded in _blocks(f):
        acc = np.zeros((b - a,) + f.shape[1:])
        for w_j, diff in zip(w, _differences(padded, f.ndim)):
            diff *= w_j / FIT_SCALE  # exact: a power of two
            acc += diff
        np.clip(acc, -c, c, out=acc)
        acc += f[a:b]
        np.clip(acc, lo, hi, out=g[a:b])
    return g
