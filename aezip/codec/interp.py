"""Error-bounded coding of a field by multilevel interpolation (closed loop, float64).

The field is visited coarse to fine, as in SZ3's interpolation predictor: first the
anchor grid (every ``S``-th point along each axis, ``S = 2**levels``), then for each
stride ``s = S/2, S/4, ..., 1`` one pass per axis that fills the points at odd
multiples of ``s`` along that axis from their already reconstructed neighbours at
``±s`` (cubic when four neighbours exist, linear when two, the nearest otherwise), or,
chosen per pass, linear only, or the mean of all known neighbours in the planes of the
earlier axes (less sensitive to the neighbours' quantization noise at loose bounds).

Every prediction ``p`` uses reconstructed values only, so the decoder repeats it
exactly; the residual is quantized with step ``2E`` in float64,
``q = round((x - p) / 2E)``, ``x_hat = p + 2E q``; a value whose code is out of range
or whose reconstruction would miss the bound (float rounding) is stored exactly.
Codes come out in visiting order, one array per pass, so that passes can be coded
with their own statistics.

All arithmetic is numpy float64 element-wise addition and multiplication, which IEEE
754 rounds the same way everywhere: the decoder's values are bit-identical to the
encoder's on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .entropy import empirical_bits

QMAX = 1 << 20  # largest code magnitude; larger residuals are stored exactly


def levels_for(shape: tuple[int, ...]) -> int:
    """Anchor stride 2**levels: the smallest that leaves a handful of anchors per axis."""
    n = max(shape)
    return max(0, min(16, math.ceil(math.log2(max(n, 2))) - 2))


def passes(shape: tuple[int, ...], levels: int) -> Iterator[tuple[int, int]]:
    """(stride, axis) of every pass after the anchors, coarse to fine."""
    for k in range(levels - 1, -1, -1):
        for axis in range(len(shape)):
            yield 1 << k, axis


def _targets(shape, s: int, axis: int) -> tuple[slice, ...]:
    """Index of the points a pass fills: odd multiples of s on ``axis``, multiples of s
    on the axes before it (done at this stride), of 2s on the axes after it."""
    return tuple(
        slice(s, None, 2 * s) if a == axis else slice(0, None, s) if a < axis else slice(0, None, 2 * s)
        for a in range(len(shape))
    )


def _cut(a: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    """``a[lo:hi]`` along ``axis``."""
    return a[tuple(slice(lo, hi) if b == axis else slice(None) for b in range(a.ndim))]


def predict(x_hat: np.ndarray, s: int, axis: int, cubic: bool = True) -> np.ndarray:
    """Interpolate the targets of pass (s, axis) from reconstructed ``x_hat``: cubic where
    four neighbours exist (unless ``cubic`` is False), linear where two, else the left one."""
    return predictions(x_hat, s, axis, cubic)[1 if cubic else 0]


def predictions(x_hat: np.ndarray, s: int, axis: int, cubic: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The linear and (unless ``cubic`` is False: then the linear again) the cubic
    prediction of the targets of pass (s, axis)."""
    n = x_hat.shape[axis]
    idx = list(_targets(x_hat.shape, s, axis))

    def take(offset: int) -> np.ndarray:
        """Neighbours at target + offset*s along axis, for targets where that exists."""
        start = s + offset * s
        sl = idx.copy()
        sl[axis] = slice(start, None, 2 * s) if start >= 0 else slice(start + 2 * s, None, 2 * s)
        return x_hat[tuple(sl)]

    m = len(range(s, n, 2 * s))  # number of targets along axis
    left = take(-1)
    right = take(1)
    n_right = right.shape[axis]  # targets that have a right neighbour
    p = np.array(_cut(left, axis, 0, m), dtype=np.float64)
    # linear where both ±s exist
    _cut(p, axis, 0, n_right)[...] = 0.5 * (_cut(left, axis, 0, n_right) + _cut(right, axis, 0, n_right))
    # cubic where ±s and ±3s exist: targets j with 1 <= j and j + 1 < number having +3s
    p_cubic = p
    if cubic and m >= 3:
        far_left, far_right = take(-3), take(3)  # far_left exists for targets j >= 1
        n_far_right = far_right.shape[axis]  # targets j < n_far_right have +3s
        lo, hi = 1, min(n_far_right, n_right)
        if hi > lo:
            c = (-1 / 16) * _cut(far_left, axis, lo - 1, hi - 1) + (9 / 16) * _cut(left, axis, lo, hi) \
                + (9 / 16) * _cut(right, axis, lo, hi) + (-1 / 16) * _cut(far_right, axis, lo, hi)
            p_cubic = p.copy()
            _cut(p_cubic, axis, lo, hi)[...] = c
    return p, p_cubic


ESCAPE = np.iinfo(np.int32).min  # code of an exactly stored value


CONTEXT_STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)  # powers of two: exact multiples of the step
ACTIVITY = 3  # classes of the neighbours' code magnitudes: 0, 1-2, 3 or more (escapes count as 3)
CONTEXTS = (len(CONTEXT_STEPS) + 1) * ACTIVITY


def context(r_hat: np.ndarray, q_mag: np.ndarray, s: int, axis: int, step: float) -> np.ndarray:
    """Coding context of each target of pass (s, axis): how much its two neighbours along
    the axis differ, in steps (6 classes), times how large their own codes were (3
    classes). Only comparisons of exactly computed values and integers, so encoder and
    decoder agree on every machine."""
    g = np.abs(_pair(r_hat, s, axis, np.subtract))
    q = _pair(q_mag, s, axis, np.add)  # 0..6
    bins = np.zeros(g.shape, np.uint8)
    for c in CONTEXT_STEPS:  # the number of thresholds at or below g (exact: powers of two times the step)
        bins += g >= c * step
    return bins * ACTIVITY + _ACTIVITY_CLASS[q]


_ACTIVITY_CLASS = np.array([0, 1, 1, 2, 2, 2, 2], np.uint8)  # |q| + |q'| (each at most 3) -> 0, 1-2, 3+


def _pair(f: np.ndarray, s: int, axis: int, op) -> np.ndarray:
    """op(left, right) of the two neighbours at -s and +s along axis of the targets of pass
    (s, axis); the right one is replaced by the left one where it does not exist."""
    shape = f.shape
    n = shape[axis]
    t = list(_targets(shape, s, axis))
    m = len(range(s, n, 2 * s))

    def along(start: int, count: int) -> np.ndarray:
        sl = list(t)
        sl[axis] = slice(start, start + 2 * s * count, 2 * s)
        return f[tuple(sl)]

    left = along(0, m)
    n_right = len(range(2 * s, n, 2 * s))
    if n_right == m:
        return op(left, along(2 * s, n_right))
    out = np.empty(left.shape, f.dtype)  # the last target has no right neighbour: its left one twice
    op(_cut(left, axis, 0, n_right), along(2 * s, n_right), out=_cut(out, axis, 0, n_right))
    op(_cut(left, axis, n_right, m), _cut(left, axis, n_right, m), out=_cut(out, axis, n_right, m))
    return out


CUBIC, LINEAR, MEAN = 0, 1, 2  # the predictors a step may use


def neighbour_mean(x_hat: np.ndarray, s: int, axis: int) -> np.ndarray:
    """Mean of the known neighbours of the targets of pass (s, axis): at ±s along the axis,
    and in the plane of the axis with each other axis b, at ±s along b (an earlier axis,
    already filled at stride s) or ±2s (a later one) and ±s along the axis; summed in that
    order (b ascending; minus before plus, b's offset before the axis's), those outside the
    array left out."""
    t = _targets(x_hat.shape, s, axis)
    offsets = [{axis: -s}, {axis: s}] + [
        {b: db, axis: da} for b in range(x_hat.ndim) if b != axis
        for db in ((-s, s) if b < axis else (-2 * s, 2 * s)) for da in (-s, s)]
    total = None
    count = np.zeros(x_hat[t].shape, np.uint8)
    for off in offsets:  # plain slices: the neighbours inside the array form a box of targets
        src, dst = [], []
        for a, (sl, n) in enumerate(zip(t, x_hat.shape)):
            start, stop, step = sl.indices(n)
            d = off.get(a, 0)
            k_lo = max(0, -((start + d) // step))  # first target whose neighbour is >= 0
            k_hi = min(len(range(start, stop, step)), -((start + d - n) // step))  # ... and < n
            src.append(slice(start + d + k_lo * step, start + d + (k_hi - 1) * step + 1, step))
            dst.append(slice(k_lo, k_hi))
        if all(d.stop > d.start for d in dst):
            if total is None:  # the first neighbour (-s along the axis) exists for every target
                total = x_hat[tuple(src)] + 0.0  # as 0.0 + value: -0.0 becomes 0.0
            else:
                total[tuple(dst)] += x_hat[tuple(src)]
            count[tuple(dst)] += 1
    return total / count


@dataclass(frozen=True, kw_only=True)
class Coded:
    """Output of :func:`encode`, per step (the anchors, then each pass): int32 codes
    (``ESCAPE`` where the value is stored exactly), their coding contexts, the exactly
    stored values, and the predictor each step used (CUBIC, LINEAR or MEAN)."""

    codes: list[np.ndarray]
    contexts: list[np.ndarray]
    exact: list[np.ndarray]
    levels: int
    predictors: list[int]


def _steps(shape: tuple[int, ...], levels: int) -> Iterator[tuple[tuple[slice, ...], tuple[int, int] | None]]:
    """(index, pass) of each step: the anchors (no pass: predicted by 0), then every pass."""
    yield tuple(slice(0, None, 1 << levels) for _ in shape), None
    for s, axis in passes(shape, levels):
        yield _targets(shape, s, axis), (s, axis)


def _prediction(x_hat: np.ndarray, t: tuple[slice, ...], step: tuple[int, int] | None,
                predictor: int = CUBIC) -> np.ndarray:
    if step is None:
        return np.zeros(x_hat[t].shape)
    if predictor == MEAN:
        return neighbour_mean(x_hat, *step)
    return predict(x_hat, *step, cubic=predictor == CUBIC)


def _histogram(q: np.ndarray) -> np.ndarray:
    """Counts of codes, clipped to a window: enough to compare predictors."""
    return np.bincount(np.clip(q.reshape(-1), -64, 64).astype(np.int64) + 64, minlength=129)


SAMPLE = 65536  # about how many targets a pass's predictor is chosen on
BANDS = 4  # ... taken from this many bands across the leading axis


def _choose(r: np.ndarray, r_hat: np.ndarray, pas: tuple[int, int], step: float, integer: bool) -> int:
    """The predictor (CUBIC, LINEAR or MEAN) whose codes for the targets of pass ``pas``
    have the lowest entropy; at loose bounds the neighbours' quantization noise favours
    the linear or the mean. Judged on bands of the leading axis, each predicted as if it
    were the whole array (a band's worth of work); on a small or thin array, on every
    k-th target of the whole array (one candidate at a time, to hold little memory)."""
    s, axis = pas
    n0 = r.shape[0]
    size = math.prod(len(range(*sl.indices(n))) for sl, n in zip(_targets(r.shape, s, axis), r.shape))
    h = 2 * s * math.ceil(n0 * SAMPLE / (BANDS * max(1, size)) / (2 * s))  # rows per band, a multiple of 2s
    if size <= 2 * SAMPLE or BANDS * (h + 8 * s) >= n0:
        bands, k = [(0, n0)], max(1, size // SAMPLE)
    else:
        bands, k = [(a, a + h) for a in sorted({i * n0 // BANDS // (2 * s) * (2 * s) for i in range(BANDS)})], 1
    candidates = [lambda x: predict(x, s, axis, cubic=True), lambda x: predict(x, s, axis, cubic=False)]
    if r.ndim > 1:
        candidates.append(lambda x: neighbour_mean(x, s, axis))
    counts = [np.zeros(129, np.int64) for _ in candidates]
    for band in filter(None, (_band(r.shape, s, axis, a, b) for a, b in bands)):
        sub_hat = r_hat[band.cut]
        target = r[band.cut][_targets(sub_hat.shape, s, axis)][band.inner].reshape(-1)[::k]
        for i, f in enumerate(candidates):
            p = f(sub_hat)[band.inner].reshape(-1)[::k]
            counts[i] += _histogram(np.rint((target - (np.rint(p) if integer else p)) / step))
    return int(np.argmin([empirical_bits(c) for c in counts]))


BAND = 1 << 17  # targets handled at once: a band's arrays stay in the processor's cache


@dataclass(frozen=True)
class _Band:
    """Part of the targets of a pass: rows ``rows`` of the targets (along axis 0), which are
    rows ``inner`` of the targets of the array's rows ``cut``; ``cut`` holds every neighbour
    they have (4s rows either side: cubic's reach), so predicting in the cut is exact."""

    cut: slice
    inner: slice
    rows: slice


def _band(shape: tuple[int, ...], s: int, axis: int, a: int, b: int) -> _Band | None:
    """The targets of pass (s, axis) on the array's rows [a, b) (``a`` a multiple of 2s), or
    None if there are none."""
    t0 = _targets(shape, s, axis)[0]
    start, step = t0.start, t0.step  # targets lie on rows start + k step; cuts start at multiples of 2s
    n0 = shape[0]
    m0 = len(range(start, n0, step))
    lo, hi = max(0, a - 4 * s), min(n0, b + 4 * s)
    g0, g1 = min(m0, -(-(a - start) // step)), min(m0, -(-(b - start) // step))
    return _Band(cut=slice(lo, hi), inner=slice(g0 - lo // step, g1 - lo // step), rows=slice(g0, g1)) \
        if g1 > g0 else None


def _bands(shape: tuple[int, ...], s: int, axis: int) -> Iterator[_Band]:
    t = _targets(shape, s, axis)
    per_row = math.prod(len(range(*sl.indices(n))) for sl, n in zip(t[1:], shape[1:]))
    # rows per band, a multiple of 2s; at least 16s, so that the 4s rows of neighbours either
    # side cost at most half a band more work (a thin array is one band)
    height = max(16 * s, max(1, BAND // max(1, per_row)) * t[0].step // (2 * s) * (2 * s))
    for a in range(0, shape[0], height):
        band = _band(shape, s, axis, a, min(shape[0], a + height))
        if band is not None:
            yield band


def _banded_context(r_hat: np.ndarray, q_mag: np.ndarray, t, pas, step: float) -> np.ndarray:
    """The contexts of a step (anchors: 0), computed band by band."""
    out = np.zeros(r_hat[t].shape, np.uint8)
    if pas is not None:
        for band in _bands(r_hat.shape, *pas):
            out[band.rows] = context(r_hat[band.cut], q_mag[band.cut], *pas, step)[band.inner]
    return out.reshape(-1)


def _banded_prediction(r_hat: np.ndarray, t, pas, predictor: int, integer: bool) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows of the targets, their prediction) of a step, band by band."""
    if pas is None:
        yield slice(None), np.zeros(r_hat[t].shape)
        return
    for band in _bands(r_hat.shape, *pas):
        cut = r_hat[band.cut]
        p = _prediction(cut, _targets(cut.shape, *pas), pas, predictor)[band.inner]
        yield band.rows, np.rint(p) if integer else p


def encode(x: np.ndarray, e: float, *, levels: int | None = None, base: np.ndarray | None = None,
           dtype=np.float64, margin: float = 0.0, integer: bool = False) -> tuple[Coded, np.ndarray]:
    """Code field ``x`` (float64 values) within ``e`` of every value; returns the codes and
    the residual field r_hat the decoder will rebuild.

    ``base`` is a prediction every value starts from (the autoencoder's): the
    interpolation then codes r = x - base, and the decoder's value is
    ``cast(base + r_hat)``, ``cast`` rounding to ``dtype``. The check is made on that
    final value with ``margin`` taken off ``e``, so a decoder whose ``base`` drifts by up
    to ``margin`` still keeps the bound. ``integer``: integer data, predictions rounded
    to integers and step 2e + 1, so ``e = 0`` is lossless.
    """
    x = np.asarray(x, dtype=np.float64)
    r = x if base is None else x - base
    levels = levels_for(x.shape) if levels is None else levels
    r_hat = np.empty_like(r)
    q_mag = np.zeros(r.shape, np.uint8)
    step = 2.0 * e + 1.0 if integer else 2.0 * e
    cast = np.dtype(dtype)
    codes, contexts, exact, predictors = [], [], [], []
    for t, pas in _steps(x.shape, levels):
        contexts.append(_banded_context(r_hat, q_mag, t, pas, step))
        choice = CUBIC if pas is None else _choose(r, r_hat, pas, step, integer)
        predictors.append(choice)
        r_t, x_t, r_hat_t, q_mag_t = r[t], x[t], r_hat[t], q_mag[t]
        base_t = None if base is None else base[t]
        step_codes, step_exact = [], []
        for rows, p in _banded_prediction(r_hat, t, pas, choice, integer):
            target = r_t[rows]
            q = np.rint((target - p) / step)
            ok = np.abs(q) <= QMAX
            q[~ok] = 0.0
            rec = p + step * q
            value = rec if base_t is None else base_t[rows] + rec
            if cast != np.float64 and not integer:
                value = value.astype(cast).astype(np.float64)
            ok &= np.abs(value - x_t[rows]) <= e - margin  # rounding can push a value past the bound
            missed = ~ok
            rec[missed] = target[missed]
            r_hat_t[rows] = rec
            c = q.astype(np.int32)
            c[missed] = ESCAPE
            q_mag_t[rows] = _magnitude(c)
            step_codes.append(c.reshape(-1))
            step_exact.append(target[missed])
        codes.append(np.concatenate(step_codes) if step_codes else np.zeros(0, np.int32))
        exact.append(np.concatenate(step_exact) if step_exact else np.zeros(0))
    return Coded(codes=codes, contexts=contexts, exact=exact, levels=levels, predictors=predictors), r_hat


def _magnitude(codes: np.ndarray) -> np.ndarray:
    """|code| capped at 3, as uint8; an exactly stored value (ESCAPE, the most negative
    int32, which abs leaves negative) counts as 3 through its unsigned view, 2**31."""
    return np.minimum(np.abs(codes).view(np.uint32), 3).astype(np.uint8)


def decode(read: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]], shape: tuple[int, ...], e: float,
           levels: int, predictors: Sequence[int], *, integer: bool = False) -> np.ndarray:
    """Rebuild r_hat step by step; ``read(step, contexts)`` returns that step's codes and
    exact values (the contexts come from what is already rebuilt). Bit-identical to what
    :func:`encode` returned."""
    r_hat = np.empty(shape, dtype=np.float64)
    q_mag = np.zeros(shape, np.uint8)
    step = 2.0 * e + 1.0 if integer else 2.0 * e
    for i, (t, pas) in enumerate(_steps(shape, levels)):
        r_hat_t = r_hat[t]
        c, ex = read(i, _banded_context(r_hat, q_mag, t, pas, step))
        c = c.reshape(r_hat_t.shape)
        q_mag[t] = _magnitude(c)
        used = 0
        for rows, p in _banded_prediction(r_hat, t, pas, predictors[i], integer):
            c_b = c[rows]
            esc = c_b == ESCAPE
            n = int(np.count_nonzero(esc))
            rec = np.where(esc, 0, c_b).astype(np.float64) if n else c_b.astype(np.float64)
            rec *= step
            rec += p  # p + step q, as the encoder computed it
            if n:
                rec[esc] = ex[used : used + n]
                used += n
            r_hat_t[rows] = rec
    return r_hat
