"""The CDF 9/7 wavelet by lifting, over every axis of an array of any shape.

One level along one axis splits n values into ceil(n/2) low-pass values s (the even
samples, updated) and floor(n/2) high-pass values d (the odd samples, predicted), stored
as [s, d] along that axis. The four lifting steps use the coefficients of Daubechies and
Sweldens (J. Fourier Anal. Appl. 4, 1998) with whole-sample symmetric extension at both
ends, which works for every length, odd ones included (JPEG 2000's convention, ISO/IEC
15444-1 Annex F); the scaling makes the transform close to orthonormal, so that a
quantization error of the same size costs about the same squared error in every subband.

The decomposition is Mallat's: each level transforms the low-pass block of the level
before along every axis still long enough (``MIN_LENGTH``). Every operation is an IEEE 754
float64 addition or multiplication on whole arrays in a fixed order, so the inverse
gives the same bits on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

ALPHA, BETA, GAMMA, DELTA = -1.586134342059924, -0.052980118572961, 0.882911075530934, 0.443506852043971
K = 1.149604398  # low-pass values are multiplied by K, high-pass ones divided: near orthonormal
MIN_LENGTH = 4  # an axis shorter than this at some level is not split further
MAX_LEVELS = 6


def _lift(t: np.ndarray, f: np.ndarray, c: float, sign: float, odd_target: bool) -> None:
    """t[i] += sign * c * (f[left] + f[right]) in place, the neighbours mirrored at the ends.

    ``odd_target``: t are the odd samples (their neighbours f[i], f[i+1]); else the even
    samples (neighbours f[i-1], f[i])."""
    nt, nf = t.shape[0], f.shape[0]
    if nf == 0:
        return
    w = sign * c
    if odd_target:  # t[i] between f[i] and f[i+1]; f[nf] mirrors to f[nf-1]
        m = min(nt, nf - 1)
        if m > 0:
            t[:m] += w * (f[:m] + f[1 : m + 1])
        if nt > m:
            t[m] += w * (f[m] + f[m])
    else:  # t[i] between f[i-1] and f[i]; f[-1] mirrors to f[0], f[nf] to f[nf-1]
        t[0] += w * (f[0] + f[0])
        m = min(nt, nf)
        if m > 1:
            t[1:m] += w * (f[: m - 1] + f[1:m])
        if nt > nf:
            t[nf] += w * (f[nf - 1] + f[nf - 1])


def forward_axis(x: np.ndarray) -> np.ndarray:
    """One level along axis 0: [s, d] (float64, a new array)."""
    n = x.shape[0]
    s = np.array(x[0::2], dtype=np.float64)
    d = np.array(x[1::2], dtype=np.float64)
    _lift(d, s, ALPHA, 1.0, True)
    _lift(s, d, BETA, 1.0, False)
    _lift(d, s, GAMMA, 1.0, True)
    _lift(s, d, DELTA, 1.0, False)
    s *= K
    d *= 1.0 / K
    out = np.empty((n,) + x.shape[1:], np.float64)
    out[: s.shape[0]] = s
    out[s.shape[0] :] = d
    return out


def inverse_axis(y: np.ndarray) -> np.ndarray:
    """Invert :func:`forward_axis` along axis 0."""
    n = y.shape[0]
    ns = (n + 1) // 2
    s = y[:ns] * (1.0 / K)
    d = y[ns:] * K
    _lift(s, d, DELTA, -1.0, False)
    _lift(d, s, GAMMA, -1.0, True)
    _lift(s, d, BETA, -1.0, False)
    _lift(d, s, ALPHA, -1.0, True)
    out = np.empty(y.shape, np.float64)
    out[0::2] = s
    out[1::2] = d
    return out


def plan(shape: tuple[int, ...], levels: int = MAX_LEVELS) -> list[tuple[int, ...]]:
    """The low-pass block's shape before each level, and after the last: ``levels`` + 1
    shapes at most, fewer once no axis can be split."""
    shapes = [tuple(shape)]
    for _ in range(levels):
        cur = shapes[-1]
        nxt = tuple((n + 1) // 2 if n >= MIN_LENGTH else n for n in cur)
        if nxt == cur:
            break
        shapes.append(nxt)
    return shapes


def _along(a: np.ndarray, axis: int, func) -> np.ndarray:
    return np.moveaxis(func(np.moveaxis(a, axis, 0)), 0, axis)


def forward(x: np.ndarray, levels: int = MAX_LEVELS) -> np.ndarray:
    """The multilevel transform of x (float64, same shape): Mallat's layout."""
    y = np.array(x, dtype=np.float64)
    shapes = plan(x.shape, levels)
    for cur, nxt in zip(shapes, shapes[1:]):
        box = tuple(slice(0, n) for n in cur)
        block = y[box]
        for axis, (n, m) in enumerate(zip(cur, nxt)):
            if m != n:
                block = _along(block, axis, forward_axis)
        y[box] = block
    return y


def inverse(y: np.ndarray, levels: int = MAX_LEVELS) -> np.ndarray:
    """Invert :func:`forward` (``levels`` as given to it)."""
    x = np.array(y, dtype=np.float64)
    shapes = plan(y.shape, levels)
    for cur, nxt in reversed(list(zip(shapes, shapes[1:]))):
        box = tuple(slice(0, n) for n in cur)
        block = x[box]
        for axis in reversed(range(len(cur))):
            if nxt[axis] != cur[axis]:
                block = _along(block, axis, inverse_axis)
        x[box] = block
    return x


def subbands(shape: tuple[int, ...], levels: int = MAX_LEVELS) -> Iterator[tuple[int, tuple[int, ...], tuple[slice, ...]]]:
    """(level, orientation, box) of every subband, coarsest first: the low-pass band
    (level = the number of levels, orientation all 0), then per level from the coarsest the
    detail bands; orientation has 1 on the axes where the band is high-pass."""
    shapes = plan(shape, levels)
    n_levels = len(shapes) - 1
    yield n_levels, (0,) * len(shape), tuple(slice(0, n) for n in shapes[-1])
    for level in range(n_levels, 0, -1):
        cur, nxt = shapes[level - 1], shapes[level]
        split = [a for a in range(len(shape)) if nxt[a] != cur[a]]
        for code in range(1, 2 ** len(split)):
            orient = [0] * len(shape)
            box = [slice(0, n) for n in nxt]
            for j, a in enumerate(split):
                if code >> (len(split) - 1 - j) & 1:
                    orient[a] = 1
                    box[a] = slice(nxt[a], cur[a])
            yield level, tuple(orient), tuple(box)
