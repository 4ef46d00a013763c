"""Error-bounded coding of a field by multilevel interpolation (closed loop, float64).

The field is visited coarse to fine: first the anchor grid (every ``S``-th point along
each axis, ``S = 2**levels``), then for each stride ``s = S/2, S/4, ..., 1`` the points
at multiples of ``s`` not yet filled, in passes (:func:`passes`). Format v1 visits them
as SZ3's interpolation predictor does, one pass per axis, each interpolating along its
axis. Format v2 groups the points by the axes on which they lie at odd multiples of
``s`` and interpolates a point along every such axis, averaging (as HPEZ's
multi-dimensional interpolation does: Liu et al., arXiv:2311.12133): a point odd on two or
three axes then has two or three independent predictions, which halves or thirds the
share of the neighbours' quantization noise. The ``DIAMOND`` order (format v2, from aezip
0.3.0) visits the same groups most odd axes first, as the diamond-square algorithm does
(Fournier, Fussell and Carpenter, CACM 1982): first the centres of the coarser grid's
cells, interpolated along the cells' diagonals from their corners, then the points with
fewer odd axes, interpolated along every axis on which they are not odd (their neighbours
there were filled before) and along the diagonals of their odd axes. Every point then has
two or more independent predictions; on smooth fields at loose bounds this codes smaller
(the encoder picks the order per array). Along an axis the interpolation is cubic
when four neighbours exist, linear when two, the nearest otherwise. Chosen per pass, by
the entropy of the codes on a sample: cubic, linear only, the mean of the known
neighbours around the point (less sensitive to the neighbours' quantization noise at
loose bounds), interpolation along the smoother axes only (v2, for data much rougher
along one axis), or weights fitted to the array by least squares (v2, stored as integers).

Every prediction ``p`` uses reconstructed values only, so the decoder repeats it
exactly; the residual is quantized with step ``2E`` in float64,
``q = round((x - p) / 2E)``, ``x_hat = p + 2E q``; a value whose code is out of range
or whose reconstruction would miss the bound (float rounding) is stored exactly. With
``coarse`` (format v3) the anchors and the coarse strides use a tighter bound
(:func:`step_bound`): their errors spread into every finer prediction, so for a PSNR
target that costs fewer bits than it saves. Codes come out in visiting order, one array per pass, so that passes can be coded
with their own statistics.

All arithmetic is numpy float64 element-wise addition and multiplication, which IEEE
754 rounds the same way everywhere: the decoder's values are bit-identical to the
encoder's on any machine.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .entropy import empirical_bits, symbol_bits

QMAX = 1 << 20  # largest code magnitude; larger residuals are stored exactly

AXES, GROUPS = "axes", "groups"  # visiting orders: format v1's (SZ3's), format v2's
DIAMOND = "diamond"  # GROUPS with the most odd axes first (the order of diamond-square)


def levels_for(shape: tuple[int, ...]) -> int:
    """Anchor stride 2**levels: the smallest that leaves a handful of anchors per axis."""
    n = max(shape)
    return max(0, min(16, math.ceil(math.log2(max(n, 2))) - 2))


@dataclass(frozen=True)
class Pass:
    """The points a pass fills at stride ``s``: odd multiples of s on the axes ``odd``
    (interpolated along each of them), every multiple of s on the axes ``fine``, and
    multiples of 2s on the others."""

    s: int
    odd: tuple[int, ...]
    fine: tuple[int, ...] = ()
    order: str = AXES


def passes(shape: tuple[int, ...], levels: int, order: str = AXES) -> Iterator[Pass]:
    """Every pass after the anchors, coarse to fine. ``AXES`` (SZ3's order): one pass per
    axis, filling along that axis the points that lie on the grid already filled at this
    stride. ``GROUPS``: one pass per set of odd axes, fewest axes first (then in
    lexicographic order), so that a point odd on several axes is interpolated along all
    of them, from neighbours the earlier passes filled."""
    d = len(shape)
    for k in range(levels - 1, -1, -1):
        s = 1 << k
        if order == AXES:
            yield from (Pass(s, (axis,), tuple(range(axis))) for axis in range(d))
        else:
            yield from (Pass(s, odd, order=order) for odd in _groups(d, order))


def _groups(d: int, order: str = GROUPS) -> list[tuple[int, ...]]:
    """The sets of odd axes of the passes at one stride, in visiting order: fewest first
    (``GROUPS``) or most first (``DIAMOND``), lexicographic among sets of one size."""
    sizes = range(d, 0, -1) if order == DIAMOND else range(1, d + 1)
    return [odd for n in sizes for odd in itertools.combinations(range(d), n)]


def _directions(pas: Pass, ndim: int) -> list[dict[int, int]]:
    """The unit steps (per axis, +1 or -1) along which a ``DIAMOND`` pass interpolates:
    every axis on which its points are not odd (the neighbours there have one more odd
    axis: filled by an earlier pass), then the diagonals of its odd axes (the corners
    there lie on the coarser grid): +1 on the first odd axis, -1 or +1 on each other."""
    out = [{a: 1} for a in range(ndim) if a not in pas.odd]
    for signs in itertools.product((-1, 1), repeat=len(pas.odd) - 1):
        out.append({pas.odd[0]: 1, **dict(zip(pas.odd[1:], signs))})
    return out


def _scaled(d: dict[int, int], k: int) -> dict[int, int]:
    return {a: v * k for a, v in d.items()}


@functools.lru_cache(maxsize=4096)
def _targets(shape, pas: Pass) -> tuple[slice, ...]:
    """Index of the points a pass fills."""
    s = pas.s
    return tuple(
        slice(s, None, 2 * s) if a in pas.odd else slice(0, None, s) if a in pas.fine else slice(0, None, 2 * s)
        for a in range(len(shape))
    )


def _cut(a: np.ndarray, axis: int, lo: int, hi: int) -> np.ndarray:
    """``a[lo:hi]`` along ``axis``."""
    return a[tuple(slice(lo, hi) if b == axis else slice(None) for b in range(a.ndim))]


def predict(x_hat: np.ndarray, pas: Pass, cubic: bool = True, axes: Sequence[int] | None = None,
            interpolations: Callable[[int, bool], np.ndarray] | None = None) -> np.ndarray:
    """Interpolate the targets of ``pas`` from reconstructed ``x_hat`` along each of its odd
    axes (or only ``axes``: cubic where four neighbours exist, unless ``cubic`` is False;
    linear where two; else the left one) and average the interpolations (summed in axis
    order). ``interpolations(axis, cubic)``, if given, supplies them (the predictor choice
    computes each once for all candidates; the result may then be one of them).
    ``DIAMOND`` passes: :func:`diamond`."""
    if pas.order == DIAMOND:
        return diamond(x_hat, pas, cubic)
    axes = pas.odd if axes is None else axes
    p = None
    for axis in axes:
        p_axis = _interpolate(x_hat, pas, axis, cubic) if interpolations is None else interpolations(axis, cubic)
        p = p_axis if p is None else p + p_axis
    return p if len(axes) == 1 else p / len(axes)


def _interpolate(x_hat: np.ndarray, pas: Pass, axis: int, cubic: bool) -> np.ndarray:
    """The targets of ``pas`` interpolated along ``axis``: cubic (unless ``cubic`` is False)
    where ±s and ±3s exist, linear where ±s, else the neighbour at -s."""
    s, n = pas.s, x_hat.shape[axis]
    idx = list(_targets(x_hat.shape, pas))

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
    if cubic and m >= 3:
        far_left, far_right = take(-3), take(3)  # far_left exists for targets j >= 1
        n_far_right = far_right.shape[axis]  # targets j < n_far_right have +3s
        lo, hi = 1, min(n_far_right, n_right)
        if hi > lo:
            _cut(p, axis, lo, hi)[...] = (-1 / 16) * _cut(far_left, axis, lo - 1, hi - 1) \
                + (9 / 16) * _cut(left, axis, lo, hi) + (9 / 16) * _cut(right, axis, lo, hi) \
                + (-1 / 16) * _cut(far_right, axis, lo, hi)
    return p


ESCAPE = np.iinfo(np.int32).min  # code of an exactly stored value


CONTEXT_STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)  # powers of two: exact multiples of the step
ACTIVITY = 3  # classes of the neighbours' code magnitudes: 0, 1-2, 3 or more (escapes count as 3)
CONTEXTS = (len(CONTEXT_STEPS) + 1) * ACTIVITY


def context(r_hat: np.ndarray, q_mag: np.ndarray, pas: Pass, step: float,
            region: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Coding context of each target of ``pas`` (in ``region``, a box of target indices, if
    given): how much its two neighbours along an odd axis (``DIAMOND``: a direction)
    differ, in steps (6 classes; the largest difference over the odd axes), times how
    large the codes of those neighbours were (3 classes; their sum over the odd axes
    divided by the number of odd axes). Only comparisons of exactly computed values and
    integers, so encoder and decoder agree on every machine."""
    g = q = None
    sides = _directions(pas, r_hat.ndim) if pas.order == DIAMOND else pas.odd
    for side in sides:
        if pas.order == DIAMOND:
            g_axis = np.abs(_pair_along(r_hat, pas, side, np.subtract, region))
            q_axis = _pair_along(q_mag, pas, side, np.add, region)  # 0..6
        else:
            g_axis = np.abs(_in(_pair(r_hat, pas, side, np.subtract), region))
            q_axis = _in(_pair(q_mag, pas, side, np.add), region)
        g = g_axis if g is None else np.maximum(g, g_axis)
        q = q_axis if q is None else q + q_axis
    if len(sides) > 1:
        q //= len(sides)
    bins = np.zeros(g.shape, np.uint8)
    for c in CONTEXT_STEPS:  # the number of thresholds at or below g (exact: powers of two times the step)
        bins += g >= c * step
    bins *= ACTIVITY
    bins += q >= 1  # the class of |q| + |q'| (each at most 3): 0, 1-2, 3 or more
    bins += q >= 3
    return bins


def _pair(f: np.ndarray, pas: Pass, axis: int, op) -> np.ndarray:
    """op(left, right) of the two neighbours at -s and +s along ``axis`` of the targets of
    ``pas``; the right one is replaced by the left one where it does not exist."""
    shape, s = f.shape, pas.s
    n = shape[axis]
    t = list(_targets(shape, pas))
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


CUBIC, LINEAR, MEAN, FITTED = 0, 1, 2, 3  # the predictors a step may use, along all its odd axes
ALONG = 4  # ... and ALONG * mask + CUBIC or LINEAR: along the odd axes in the bit mask only
TAPS = (-3, -1, 1, 3)  # FITTED: weights on the neighbours at these multiples of s along each odd axis, and more
FIT_SCALE = 4096  # ... integers in units of 1/FIT_SCALE
FIT_LIMIT = 1 << 15  # ... of magnitude below this


def predictor_along(axes: Sequence[int], cubic: bool) -> int:
    """The predictor that interpolates (cubic or linear) along ``axes`` only."""
    return ALONG * sum(1 << a for a in axes) + (CUBIC if cubic else LINEAR)


def _axes_of(predictor: int, pas: Pass) -> tuple[int, ...]:
    """The axes a CUBIC or LINEAR predictor interpolates along; ValueError if it does not fit the pass."""
    if predictor < ALONG:
        return pas.odd
    axes = tuple(a for a in pas.odd if predictor // ALONG >> a & 1)
    if predictor % ALONG not in (CUBIC, LINEAR) or not 0 < len(axes) < len(pas.odd) \
            or sum(1 << a for a in axes) != predictor // ALONG:
        raise ValueError(f"predictor {predictor} does not fit a pass along axes {pas.odd}")
    return axes


def _fit_offsets(ndim: int, pas: Pass) -> list[dict[int, int]]:
    """The neighbours the FITTED predictor weighs, as offsets per axis, in order: TAPS along
    each odd axis (ascending), then the other known neighbours of :func:`neighbour_mean`."""
    if pas.order == DIAMOND:
        taps = [_scaled(d, o * pas.s) for d in _directions(pas, ndim) for o in TAPS]
    else:
        taps = [{a: o * pas.s} for a in pas.odd for o in TAPS]
    return taps + [off for off in _mean_offsets(ndim, pas) if off not in taps]


def _box(shape: tuple[int, ...], pas: Pass, offsets: list[dict[int, int]]) -> list[tuple[int, int]]:
    """Per axis, the range of target indices whose neighbours at every offset lie inside the array."""
    reach = tuple((min(off.get(a, 0) for off in offsets), max(off.get(a, 0) for off in offsets))
                  for a in range(len(shape)))
    return list(_box_reach(shape, pas, reach))


@functools.lru_cache(maxsize=4096)
def _box_reach(shape: tuple[int, ...], pas: Pass, reach: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """:func:`_box` for offsets that span ``reach`` (lowest, highest) on each axis."""
    out = []
    for (sl, n), (d0, d1) in zip(zip(_targets(shape, pas), shape), reach):
        start, _, step = sl.indices(n)
        m = len(range(*sl.indices(n)))
        lo = max(0, -((start + d0) // step))
        hi = min(m, len(range(start + d1, n, step)))
        out.append((lo, hi))
    return tuple(out)


def _tap(x_hat: np.ndarray, pas: Pass, box: list[tuple[int, int]], off: dict[int, int]) -> np.ndarray:
    """x_hat at offset ``off`` from the targets of ``pas`` in ``box``."""
    sl = []
    for a, ((lo, hi), t) in enumerate(zip(box, _targets(x_hat.shape, pas))):
        start = t.start + t.step * lo + off.get(a, 0)
        sl.append(slice(start, start + t.step * (hi - lo), t.step))
    return x_hat[tuple(sl)]


def _within(shape: tuple[int, ...], pas: Pass, offsets: list[dict[int, int]],
            region: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """The targets of ``region`` (a box of target indices) whose neighbours at every offset
    lie inside the array, as a box, or None if there are none."""
    b = [(max(lo, r0), min(hi, r1)) for (lo, hi), (r0, r1) in zip(_box(shape, pas, offsets), region)]
    return b if all(hi > lo for lo, hi in b) else None


def _rel(box: list[tuple[int, int]], region: list[tuple[int, int]]) -> tuple[slice, ...]:
    """``box`` as an index into an array of the targets of ``region``."""
    return tuple(slice(lo - r0, hi - r0) for (lo, hi), (r0, _) in zip(box, region))


def _faces(box: list[tuple[int, int]] | None, region: list[tuple[int, int]]) -> Iterator[list[tuple[int, int]]]:
    """Boxes that, with ``box`` (inside ``region``), partition ``region``: along each axis in
    turn the parts before and after ``box``, within ``box`` on the axes before it. The
    whole region when ``box`` is None."""
    if box is None:
        yield region
        return
    for a, (lo, hi) in enumerate(box):
        for f0, f1 in ((region[a][0], lo), (hi, region[a][1])):
            if f1 > f0:
                yield [box[b] if b < a else (f0, f1) if b == a else region[b] for b in range(len(region))]


def _every(shape: tuple[int, ...], pas: Pass, region: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
    """``region``, or the box of every target of ``pas``."""
    if region is not None:
        return region
    return [(0, len(range(*sl.indices(n)))) for sl, n in zip(_targets(shape, pas), shape)]


def _size(region: list[tuple[int, int]]) -> tuple[int, ...]:
    return tuple(hi - lo for lo, hi in region)


def _in(a: np.ndarray, region: list[tuple[int, int]] | None) -> np.ndarray:
    """The part ``region`` of an array over all targets."""
    return a if region is None else a[tuple(slice(lo, hi) for lo, hi in region)]


def _neighbour(f: np.ndarray, pas: Pass, off: dict[int, int],
               region: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """f at offset ``off`` from the targets of ``region`` (0 where outside the array), and where inside."""
    v = np.zeros(_size(region), f.dtype)
    ok = np.zeros(v.shape, bool)
    b = _within(f.shape, pas, [off], region)
    if b is not None:
        v[_rel(b, region)] = _tap(f, pas, b, off)
        ok[_rel(b, region)] = True
    return v, ok


def _cubic(m3: np.ndarray, m1: np.ndarray, p1: np.ndarray, p3: np.ndarray) -> np.ndarray:
    return (-1 / 16) * m3 + (9 / 16) * m1 + (9 / 16) * p1 + (-1 / 16) * p3


def diamond(x_hat: np.ndarray, pas: Pass, cubic: bool = True,
            region: list[tuple[int, int]] | None = None) -> np.ndarray:
    """The targets of a ``DIAMOND`` pass interpolated along each of its directions
    (:func:`_directions`, :func:`_along`) and averaged over the directions that have a
    neighbour (summed in order); where every direction has all its neighbours, on a box
    at once, elsewhere a face at a time. The targets in ``region`` only, if given."""
    s, dirs = pas.s, _directions(pas, x_hat.ndim)
    ks = (-3, -1, 1, 3) if cubic else (-1, 1)
    every = _every(x_hat.shape, pas, region)
    p = np.empty(_size(every))
    box = _within(x_hat.shape, pas, [_scaled(d, k * s) for d in dirs for k in ks], every)
    if box is not None:
        total = None
        for d in dirs:
            v = [_tap(x_hat, pas, box, _scaled(d, k * s)) for k in ks]
            v = _cubic(*v) if cubic else 0.5 * (v[0] + v[1])
            total = v if total is None else total + v
        p[_rel(box, every)] = total / len(dirs)
    _diamond_faces(x_hat, pas, cubic, box, p, every)
    return p


def _diamond_faces(x_hat: np.ndarray, pas: Pass, cubic: bool, box: list[tuple[int, int]] | None,
                   p: np.ndarray, every: list[tuple[int, int]]) -> None:
    """Fill the targets outside ``box`` of a ``DIAMOND`` prediction ``p`` of the targets in
    ``every``, a face at a time."""
    for face in _faces(box, every):
        total = count = 0.0
        for d in _directions(pas, x_hat.ndim):
            v, ok = _along(x_hat, pas, d, cubic, face)
            total, count = total + v, count + ok
        p[_rel(face, every)] = total / count  # at least 1: the diagonal +1 on every odd axis has its point at -s


def _along(x_hat: np.ndarray, pas: Pass, d: dict[int, int], cubic: bool,
           region: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The targets of ``region`` interpolated along direction ``d``: cubic (unless ``cubic`` is
    False) where the neighbours at -3, -1, +1 and +3 steps of s exist, linear where those
    at -1 and +1 do, else the one of them that does (0 where none does); and where one does."""
    v = np.zeros(_size(region))
    ok = np.zeros(v.shape, bool)
    # each rule overwrites the previous ones where its neighbours exist (a box each)
    rules = [(1,), (-1,), (-1, 1)] + ([(-3, -1, 1, 3)] if cubic else [])
    for ks in rules:
        b = _within(x_hat.shape, pas, [_scaled(d, k * pas.s) for k in ks], region)
        if b is not None:
            taps = [_tap(x_hat, pas, b, _scaled(d, k * pas.s)) for k in ks]
            linear = len(ks) == 2
            v[_rel(b, region)] = _cubic(*taps) if len(ks) == 4 else 0.5 * (taps[0] + taps[1]) if linear else taps[0]
            ok[_rel(b, region)] = True
    return v, ok


def _pair_along(f: np.ndarray, pas: Pass, d: dict[int, int], op,
                region: list[tuple[int, int]] | None = None) -> np.ndarray:
    """op(left, right) of the neighbours at -s and +s along direction ``d`` of the targets
    of a ``DIAMOND`` pass (in ``region``); where one of them is missing the other one
    twice, where both are, op(0, 0)."""
    every = _every(f.shape, pas, region)
    out = np.empty(_size(every), f.dtype)
    minus, plus = _scaled(d, -pas.s), _scaled(d, pas.s)
    box = _within(f.shape, pas, [minus, plus], every)
    if box is not None:
        op(_tap(f, pas, box, minus), _tap(f, pas, box, plus), out=out[_rel(box, every)])
    for face in _faces(box, every):
        (v_m, ok_m), (v_p, ok_p) = (_neighbour(f, pas, off, face) for off in (minus, plus))
        out[_rel(face, every)] = op(np.where(ok_m, v_m, v_p), np.where(ok_p, v_p, v_m))
    return out


def fitted(x_hat: np.ndarray, pas: Pass, w: Sequence[int], interpolations=None,
           region: list[tuple[int, int]] | None = None) -> np.ndarray:
    """The FITTED prediction: the sum over :func:`_fit_offsets` (in order) of
    (w / FIT_SCALE) times the neighbour, added left to right, where every neighbour exists;
    cubic (:func:`predict`) elsewhere, computed on cuts around the faces of that box only.
    The targets in ``region`` only, if given."""
    if pas.order == DIAMOND:
        return _fitted_diamond(x_hat, pas, w, _every(x_hat.shape, pas, region))
    return _in(_fitted(x_hat, pas, w, interpolations), region)


def _fitted_diamond(x_hat: np.ndarray, pas: Pass, w: Sequence[int], every: list[tuple[int, int]]) -> np.ndarray:
    offsets = _fit_offsets(x_hat.ndim, pas)
    p = np.empty(_size(every))
    box = _within(x_hat.shape, pas, offsets, every)
    if box is not None:
        total = p[_rel(box, every)]
        for k, (off, w_i) in enumerate(zip(offsets, w)):  # as in _fitted
            term = np.multiply(_tap(x_hat, pas, box, off), w_i / FIT_SCALE, out=total if k == 0 else None)
            if k:
                total += term
    _diamond_faces(x_hat, pas, True, box, p, every)
    return p


def _fitted(x_hat: np.ndarray, pas: Pass, w: Sequence[int], interpolations=None) -> np.ndarray:
    offsets = _fit_offsets(x_hat.ndim, pas)
    box = _box(x_hat.shape, pas, offsets)
    if not all(hi > lo for lo, hi in box):
        return predict(x_hat, pas, cubic=True, interpolations=interpolations)
    t = _targets(x_hat.shape, pas)
    p = np.empty(x_hat[t].shape)
    total = p[tuple(slice(lo, hi) for lo, hi in box)]
    term = np.empty(total.shape)
    for k, (off, w_i) in enumerate(zip(offsets, w)):
        np.multiply(_tap(x_hat, pas, box, off), w_i / FIT_SCALE, out=total if k == 0 else term)
        if k:
            total += term
    for a, (lo, hi) in enumerate(box):  # the targets outside the box, a face at a time
        for f0, f1 in ((0, lo), (hi, p.shape[a])):
            if f1 > f0:
                first = t[a].start + t[a].step * f0  # array row of the face's first target
                band = _band(x_hat.shape, pas, first // (2 * pas.s) * (2 * pas.s), first + t[a].step * (f1 - f0), a)
                cut = _cut(x_hat, a, band.cut.start, band.cut.stop)
                _cut(p, a, f0, f1)[...] = _cut(predict(cut, pas, cubic=True), a, band.inner.start, band.inner.stop)
    return p


def _fit_columns(x_hat: np.ndarray, pas: Pass) -> Iterator[np.ndarray]:
    """The FITTED predictor's regressors for every target (NaN where a neighbour is
    missing), one array per neighbour of :func:`_fit_offsets` (the caller samples each,
    so that only one is held whole)."""
    shape = x_hat[_targets(x_hat.shape, pas)].shape
    offsets = _fit_offsets(x_hat.ndim, pas)
    box = _box(x_hat.shape, pas, offsets)
    inner = tuple(slice(lo, hi) for lo, hi in box)
    for off in offsets:
        col = np.full(shape, np.nan)
        if all(hi > lo for lo, hi in box):
            col[inner] = _tap(x_hat, pas, box, off)
        yield col


def _mean_offsets(ndim: int, pas: Pass) -> list[dict[int, int]]:
    """The neighbours :func:`neighbour_mean` averages, as offsets per axis, in summing order.

    ``AXES`` passes (one odd axis, ``axis``): ±s along the axis, then in the plane of the
    axis with each other axis b (ascending), ±s along b if b is filled at this stride, else
    ±2s, each with ±s along the axis (minus before plus, b's offset before the axis's).
    ``GROUPS`` passes: every point at an offset in {-s, 0, s} on each axis (in lexicographic
    order of the offsets, minus first) that an earlier pass filled, i.e. whose odd axes,
    the pass's odd axes with those of the offset toggled, are none or an earlier pass's."""
    s = pas.s
    if pas.order == AXES:
        axis = pas.odd[0]
        return [{axis: -s}, {axis: s}] + [
            {b: db, axis: da} for b in range(ndim) if b != axis
            for db in ((-s, s) if b in pas.fine else (-2 * s, 2 * s)) for da in (-s, s)]
    groups = _groups(ndim, pas.order)
    earlier = set(groups[: groups.index(pas.odd)])
    offsets = []
    for o in itertools.product((-1, 0, 1), repeat=ndim):
        odd = tuple(a for a in range(ndim) if (a in pas.odd) != (o[a] != 0))
        if any(o) and (not odd or odd in earlier):
            offsets.append({a: o[a] * s for a in range(ndim) if o[a]})
    return offsets


def neighbour_mean(x_hat: np.ndarray, pas: Pass, region: list[tuple[int, int]] | None = None) -> np.ndarray:
    """Mean of the known neighbours of the targets of ``pas`` (in ``region``, if given;
    :func:`_mean_offsets`), summed in that order, those outside the array left out."""
    every = _every(x_hat.shape, pas, region)
    total = np.zeros(_size(every))  # 0.0 + the first value: -0.0 becomes 0.0
    count = np.zeros(total.shape, np.uint8)  # at least 1: -s along an odd axis is known
    for off in _mean_offsets(x_hat.ndim, pas):  # the targets whose neighbour is inside the array form a box
        box = _within(x_hat.shape, pas, [off], every)
        if box is not None:
            total[_rel(box, every)] += _tap(x_hat, pas, box, off)
            count[_rel(box, every)] += 1
    return total / count


@dataclass(frozen=True, kw_only=True)
class Coded:
    """Output of :func:`encode`, per step (the anchors, then each pass): int32 codes
    (``ESCAPE`` where the value is stored exactly), their coding contexts, the exactly
    stored values, the predictor each step used, and the weights of the FITTED steps, in
    step order (one per neighbour of :func:`_fit_offsets`)."""

    codes: list[np.ndarray]
    contexts: list[np.ndarray]
    exact: list[np.ndarray]
    levels: int
    predictors: list[int]
    weights: list[int]


def _steps(shape: tuple[int, ...], levels: int, order: str) -> Iterator[tuple[tuple[slice, ...], Pass | None]]:
    """(index, pass) of each step: the anchors (no pass: predicted by 0), then every pass."""
    yield tuple(slice(0, None, 1 << levels) for _ in shape), None
    for pas in passes(shape, levels, order):
        yield _targets(shape, pas), pas


def quantum(e: float, integer: bool) -> float:
    """The quantization step for bound e: 2e, or 2e + 1 on integer data (so e = 0 is lossless)."""
    return 2.0 * e + 1.0 if integer else 2.0 * e


def step_bound(e: float, pas: Pass | None, coarse: Sequence[float] = ()) -> float:
    """The bound a step is quantized within: ``e``, or with ``coarse`` = (q, S) ``e / q`` on
    the anchors and on the steps whose stride is S or more."""
    if not coarse:
        return e
    q, s_min = coarse
    return e / q if pas is None or pas.s >= s_min else e


def _prediction(x_hat: np.ndarray, t: tuple[slice, ...], pas: Pass | None, predictor: int = CUBIC,
                w: Sequence[int] = (), interpolations=None, region: list[tuple[int, int]] | None = None) -> np.ndarray:
    """The prediction of the targets ``t`` of ``pas`` (in ``region``, if given) by ``predictor``."""
    if pas is None:
        return _in(np.zeros(x_hat[t].shape), region)
    if predictor == MEAN:
        return neighbour_mean(x_hat, pas, region)
    if predictor == FITTED:
        return fitted(x_hat, pas, w, interpolations, region)
    if pas.order == DIAMOND:
        return diamond(x_hat, pas, predictor == CUBIC, region)
    return _in(predict(x_hat, pas, cubic=predictor % ALONG == CUBIC, axes=_axes_of(predictor, pas),
                       interpolations=interpolations), region)


def _histogram(q: np.ndarray) -> np.ndarray:
    """Counts of codes, clipped to a window: enough to compare predictors."""
    return np.bincount(np.clip(q.reshape(-1), -64, 64).astype(np.int64) + 64, minlength=129)


SAMPLE = 8192  # about how many targets a pass's predictor is chosen on
BANDS = 4  # ... taken from this many bands across the leading axis


def _choose(r: np.ndarray, r_hat: np.ndarray, pas: Pass, step: float, integer: bool,
            candidates: Sequence[int]) -> tuple[int, float, list[int]]:
    """The predictor among ``candidates`` whose codes for the targets of pass ``pas`` have
    the lowest entropy, that entropy in bits per target, and the predictor's weights
    (FITTED: least-squares weights on the same targets, whose cost in the container is
    counted; others: none). At loose bounds the neighbours' quantization noise favours the
    linear or the mean. Judged on bands across the longest axis, each predicted as if it
    were the whole array (a band's worth of work); on a small array, or one too short
    along every axis for bands, on every k-th target of the whole array."""
    s = pas.s
    ax = max(range(r.ndim), key=lambda a: r.shape[a])
    n = r.shape[ax]
    size = math.prod(len(range(*sl.indices(m))) for sl, m in zip(_targets(r.shape, pas), r.shape))
    h = 2 * s * math.ceil(n * SAMPLE / (BANDS * max(1, size)) / (2 * s))  # rows per band, a multiple of 2s
    if size <= 2 * SAMPLE or BANDS * (h + 8 * s) >= n:
        bands, k = [(0, n)], max(1, size // SAMPLE)
    else:
        bands, k = [(a, a + h) for a in sorted({i * n // BANDS // (2 * s) * (2 * s) for i in range(BANDS)})], 1
    samples = []  # (band of r_hat, its targets, the box of them sampled (the band's own), their values)
    for band in filter(None, (_band(r.shape, pas, a, b, ax) for a, b in bands)):
        sub_hat = _cut(r_hat, ax, band.cut.start, band.cut.stop)
        t = _targets(sub_hat.shape, pas)
        region = _band_region(sub_hat.shape, pas, band.inner, ax)
        if pas.order == DIAMOND:  # where every neighbour is inside (the faces are slow and few)
            region = _within(sub_hat.shape, pas, _fit_offsets(r.ndim, pas), region) or region
        samples.append((sub_hat, t, region, _cut(r, ax, band.cut.start, band.cut.stop)[t]))

    def sampled(a: np.ndarray, region) -> np.ndarray:
        return _in(a, region).reshape((-1,) + a.shape[r.ndim:])[::k]

    w = []
    if FITTED in candidates:
        w = _fit(pas, [(np.stack([sampled(col, region) for col in _fit_columns(sub_hat, pas)], axis=-1),
                        sampled(y, region)) for sub_hat, _, region, y in samples])
    candidates = [c for c in candidates if c != FITTED or w]
    counts = [np.zeros(129, np.int64) for _ in candidates]
    for sub_hat, t, region, y in samples:
        target = sampled(y, region)
        interpolations = functools.cache(lambda axis, cubic, x_hat=sub_hat: _interpolate(x_hat, pas, axis, cubic))
        for i, predictor in enumerate(candidates):
            p = _prediction(sub_hat, t, pas, predictor, w, interpolations, region).reshape(-1)[::k]
            counts[i] += _histogram(np.rint((target - (np.rint(p) if integer else p)) / step))
    bits = [empirical_bits(c) / max(1, int(c.sum())) for c in counts]
    bits = [b + (FIT_COST * len(w) / size if c == FITTED else 0.0) for b, c in zip(bits, candidates)]
    best = int(np.argmin(bits))
    return candidates[best], bits[best], (w if candidates[best] == FITTED else [])


FIT_COST = 48  # bits a weight costs in the container's JSON record


def _fit(pas: Pass, samples: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """Least-squares weights of the FITTED predictor on sampled (regressors, values), as
    integers in units of 1/FIT_SCALE; none if too few targets have every neighbour."""
    x_fit = np.concatenate([c for c, _ in samples]) if samples else np.zeros((0, 1))
    y_fit = np.concatenate([y for _, y in samples]) if samples else np.zeros(0)
    full = ~np.isnan(x_fit).any(axis=1)
    if np.count_nonzero(full) < 16 * x_fit.shape[1]:
        return []
    a, y = x_fit[full], y_fit[full]
    try:  # the normal equations: a few regressors, many targets
        w = np.linalg.solve(a.T @ a, a.T @ y)
    except np.linalg.LinAlgError:  # neighbours that repeat each other (a constant band, say)
        return []
    if not np.all(np.isfinite(w)):
        return []
    return [int(v) for v in np.clip(np.rint(w * FIT_SCALE), 1 - FIT_LIMIT, FIT_LIMIT - 1)]


def _candidates(pas: Pass, ndim: int, axis_bits: dict[int, float]) -> list[int]:
    """The predictors tried on a pass: cubic, linear, (2 or more dimensions) the mean, the
    fitted one (``GROUPS`` order);
    for a point odd on several axes, also cubic and linear along the smoother of them only
    (the best one, the best two of three, ranked by ``axis_bits``, the cost per target of
    the one-axis passes of the same stride), when one of them is rough (ROUGH)."""
    out = [CUBIC, LINEAR] + ([MEAN] if ndim > 1 else []) + ([FITTED] if pas.order != AXES else [])
    ranked = sorted(pas.odd, key=lambda a: axis_bits.get(a, 0.0))
    bits = [axis_bits.get(a, 0.0) for a in ranked]
    if pas.order == GROUPS and len(ranked) > 1 and bits[-1] > ROUGH * bits[0]:
        for n in range(1, len(pas.odd)):
            axes = sorted(ranked[:n])
            out += [predictor_along(axes, True), predictor_along(axes, False)]
    return out


ROUGH = 1.25  # an axis whose one-axis pass costs this many times the best one's is rough


BAND = 1 << 17  # targets handled at once: a band's arrays stay in the processor's cache


@dataclass(frozen=True)
class _Band:
    """Part of the targets of a pass: rows ``rows`` of the targets (along axis 0), which are
    rows ``inner`` of the targets of the array's rows ``cut``; ``cut`` holds every neighbour
    they have (4s rows either side: cubic's reach), so predicting in the cut is exact."""

    cut: slice
    inner: slice
    rows: slice


def _band(shape: tuple[int, ...], pas: Pass, a: int, b: int, axis: int = 0) -> _Band | None:
    """The targets of ``pas`` on the array's rows [a, b) (``a`` a multiple of 2s) along
    ``axis``, or None if there are none."""
    s = pas.s
    t0 = _targets(shape, pas)[axis]
    start, step = t0.start, t0.step  # targets lie on rows start + k step; cuts start at multiples of 2s
    n0 = shape[axis]
    m0 = len(range(start, n0, step))
    lo, hi = max(0, a - 4 * s), min(n0, b + 4 * s)
    g0, g1 = min(m0, -(-(a - start) // step)), min(m0, -(-(b - start) // step))
    return _Band(cut=slice(lo, hi), inner=slice(g0 - lo // step, g1 - lo // step), rows=slice(g0, g1)) \
        if g1 > g0 else None


def _band_axis(shape: tuple[int, ...]) -> int:
    """The axis bands are cut along: the first, unless it is much shorter than the longest
    (a thin slab of a 3-D volume would be one band, too large for the cache)."""
    longest = max(range(len(shape)), key=lambda a: shape[a])
    return 0 if 8 * shape[0] >= shape[longest] else longest


def _bands(shape: tuple[int, ...], pas: Pass, axis: int = 0, band: int = BAND) -> Iterator[_Band]:
    s = pas.s
    t = _targets(shape, pas)
    per_row = math.prod(len(range(*sl.indices(n))) for a, (sl, n) in enumerate(zip(t, shape)) if a != axis)
    # rows per band, a multiple of 2s; at least 16s, so that the 4s rows of neighbours either
    # side cost at most half a band more work (a thin array is one band)
    height = max(16 * s, max(1, band // max(1, per_row)) * t[axis].step // (2 * s) * (2 * s))
    for a in range(0, shape[axis], height):
        band = _band(shape, pas, a, min(shape[axis], a + height), axis)
        if band is not None:
            yield band


def _band_region(shape: tuple[int, ...], pas: Pass, inner: slice, axis: int = 0) -> list[tuple[int, int]]:
    """The box of the targets of ``pas`` in a cut of ``shape`` whose index along ``axis`` is in ``inner``."""
    every = _every(shape, pas, None)
    every[axis] = (inner.start, inner.stop)
    return every


def _pieces(shape: tuple[int, ...], pas: Pass, band: int = BAND) -> Iterator[tuple[tuple[slice, ...],
                                                                                  list[tuple[int, int]],
                                                                                  tuple[slice, ...]]]:
    """The parts in which a pass's targets are worked on: (the cut of the array, the box of
    the cut's targets, where they lie among the pass's targets). Band by band
    (:func:`_bands` of ``band`` targets, along :func:`_band_axis`); for a ``DIAMOND`` pass only the box whose
    every neighbour lies inside the array, and then the faces around it on the whole
    array, so that the slow work at the array's edges is done once per pass, not once
    per band."""
    every = _every(shape, pas, None)
    core = _within(shape, pas, _fit_offsets(len(shape), pas), every) if pas.order == DIAMOND else every
    axis = _band_axis(shape)
    if core is not None:
        for b in _bands(shape, pas, axis, band):
            shift = b.rows.start - b.inner.start  # cut's target index + shift = the pass's
            lo, hi = max(b.rows.start, core[axis][0]), min(b.rows.stop, core[axis][1])
            if hi > lo:
                box, region = list(core), list(core)
                box[axis], region[axis] = (lo, hi), (lo - shift, hi - shift)
                cut = tuple(b.cut if a == axis else slice(None) for a in range(len(shape)))
                yield cut, region, tuple(slice(a, b) for a, b in box)
    if core is not every:
        for face in _faces(core, every):
            yield (), face, tuple(slice(a, b) for a, b in face)


def _banded_context(r_hat: np.ndarray, q_mag: np.ndarray, t, pas, step: float, band: int = BAND) -> np.ndarray:
    """The contexts of a step (anchors: 0), computed band by band."""
    out = np.zeros(r_hat[t].shape, np.uint8)
    if pas is not None:
        for rows, region, idx in _pieces(r_hat.shape, pas, band):
            out[idx] = context(r_hat[rows], q_mag[rows], pas, step, region)
    return out.reshape(-1)


def _banded_prediction(r_hat: np.ndarray, t, pas, predictor: int, integer: bool,
                       w: Sequence[int] = (), band: int = BAND) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """(where among the step's targets, their prediction) of a step, band by band."""
    if pas is None:
        yield (slice(None),), np.zeros(r_hat[t].shape)
        return
    for rows, region, idx in _pieces(r_hat.shape, pas, band):
        cut = r_hat[rows]
        p = _prediction(cut, _targets(cut.shape, pas), pas, predictor, w, region=region)
        yield idx, np.rint(p) if integer else p


def encode(x: np.ndarray, e: float, *, levels: int | None = None, base: np.ndarray | None = None,
           dtype=np.float64, integer: bool = False,
           order: str = GROUPS, exact_where: np.ndarray | None = None,
           coarse: Sequence[float] = (), band: int = BAND) -> tuple[Coded, np.ndarray]:
    """Code field ``x`` (float64 values) within ``e`` of every value; returns the codes and
    the residual field r_hat the decoder will rebuild.

    ``base`` is a prediction every value starts from (the autoencoder's): the
    interpolation then codes r = x - base, and the decoder's value is
    ``cast(base + r_hat)``, ``cast`` rounding to ``dtype``; the check is made on that
    final value (where a decoder's ``base`` may drift by up to m, a caller keeps its bound
    by passing that bound less m). ``integer``: integer data, predictions rounded
    to integers and step 2e + 1, so ``e = 0`` is lossless (with an integer ``dtype``, a value
    that would leave its range is stored exactly). Values where ``exact_where`` is set are
    stored exactly whatever their code. ``order``: the visiting order
    (:func:`passes`). ``coarse``: tighter bounds on the coarse steps (:func:`step_bound`;
    float data only), which buys PSNR where an error bound alone is not the goal.
    ``band``: targets worked on at once (the codes do not depend on it).
    """
    x = np.asarray(x, dtype=np.float64)
    r = x if base is None else x - base
    levels = levels_for(x.shape) if levels is None else levels
    r_hat = np.empty_like(r)
    q_mag = np.zeros(r.shape, np.uint8)
    if coarse and integer:
        raise ValueError("tighter coarse bounds apply to float coding only")
    cast = np.dtype(dtype)
    # an integer dtype's range: a value within e of x may lie beyond it, and the cast would wrap
    limits = np.iinfo(cast) if cast.kind in "iu" else None
    codes, contexts, exact, predictors, weights = [], [], [], [], []
    axis_bits: dict[int, float] = {}  # cost per target of the one-axis passes of the current stride
    for t, pas in _steps(x.shape, levels, order):
        e_t = step_bound(e, pas, coarse)
        step = quantum(e_t, integer)
        contexts.append(_banded_context(r_hat, q_mag, t, pas, step, band))
        choice, w = CUBIC, []
        if pas is not None:
            choice, bits, w = _choose(r, r_hat, pas, step, integer, _candidates(pas, x.ndim, axis_bits))
            if len(pas.odd) == 1:
                axis_bits[pas.odd[0]] = bits
        predictors.append(choice)
        weights += w
        r_t, x_t, r_hat_t, q_mag_t = r[t], x[t], r_hat[t], q_mag[t]
        base_t = None if base is None else base[t]
        c_t = np.empty(r_t.shape, np.int32)
        missed_t = None  # where values are stored exactly (allocated at the first)
        for idx, p in _banded_prediction(r_hat, t, pas, choice, integer, w, band):
            target = r_t[idx]
            q = target - p
            q /= step
            np.rint(q, out=q)
            big = np.abs(q) > QMAX
            if big.any():
                q[big] = 0.0
            rec = q * step
            rec += p  # p + step q
            value = rec if base_t is None else base_t[idx] + rec
            if cast != np.float64 and not integer:
                with np.errstate(over="ignore"):  # a value beyond the dtype becomes inf, and missed
                    value = value.astype(cast).astype(np.float64)
            missed = np.abs(value - x_t[idx]) > e_t  # rounding can push a value past the bound
            missed |= big
            if limits is not None:
                missed |= (value < limits.min) | (value > limits.max)
            if exact_where is not None:
                missed |= exact_where[t][idx]
            c = q.astype(np.int32)
            mag = np.minimum(np.abs(q), 3).astype(np.uint8)
            if missed.any():
                rec[missed] = target[missed]
                c[missed] = ESCAPE
                mag[missed] = 3
                if missed_t is None:
                    missed_t = np.zeros(r_t.shape, bool)
                missed_t[idx] = missed
            r_hat_t[idx] = rec
            q_mag_t[idx] = mag
            c_t[idx] = c
        codes.append(c_t.reshape(-1))
        exact.append(np.zeros(0) if missed_t is None else r_t[missed_t])  # in C order, as the codes
    return Coded(codes=codes, contexts=contexts, exact=exact, levels=levels, predictors=predictors,
                 weights=weights), r_hat


def estimate(x: np.ndarray, e: float, order: str, integer: bool = False, coarse: Sequence[float] = ()) -> float:
    """Bits to code ``x`` within ``e`` in visiting order ``order``, roughly: the cubic
    predictor on every step, the codes' zeroth-order entropy per step (orders compare
    alike; the coder itself does better)."""
    x_hat = np.empty_like(x)
    bits = 0.0
    levels = levels_for(x.shape)
    for t, pas in _steps(x.shape, levels, order):
        e_t = step_bound(e, pas, coarse)
        step = quantum(e_t, integer)
        p = _prediction(x_hat, t, pas)
        if integer:
            p = np.rint(p)
        q = np.rint((x[t] - p) / step)
        x_hat[t] = p + step * q
        bits += empirical_bits(np.unique(q, return_counts=True)[1])
    return bits


EXACT_BITS = 64  # what an exactly stored value costs beyond its code


def code_bits(coded: Coded, shape: tuple[int, ...], order: str) -> np.ndarray:
    """Each value's cost in bits, roughly: its code at the zeroth-order entropy of its
    step's codes, plus EXACT_BITS where it is stored exactly (to compare predictions
    region by region)."""
    bits = np.empty(shape)
    for (t, _), c in zip(_steps(shape, coded.levels, order), coded.codes):
        b = symbol_bits(c)
        b[c == ESCAPE] += EXACT_BITS
        bits[t] = b.reshape(bits[t].shape)
    return bits


def _magnitude(codes: np.ndarray) -> np.ndarray:
    """|code| capped at 3, as uint8; an exactly stored value (ESCAPE, the most negative
    int32, which abs leaves negative) counts as 3 through its unsigned view, 2**31."""
    return np.minimum(np.abs(codes).view(np.uint32), 3).astype(np.uint8)


def step_weights(shape: tuple[int, ...], levels: int, order: str, predictors: Sequence[int],
                 weights: Sequence[int]) -> list[list[int]]:
    """Each step's weights (FITTED steps: len(TAPS) per odd axis, taken in order from
    ``weights``); ValueError unless there is one predictor per step that fits the step and
    the weights are as many as the FITTED steps take."""
    steps = list(_steps(shape, levels, order))
    if len(predictors) != len(steps):
        raise ValueError(f"{len(predictors)} predictors for {len(steps)} steps")
    out, used = [], 0
    for (_, pas), p in zip(steps, predictors):
        if not isinstance(p, int) or p < 0 or (pas is None and p != CUBIC) \
                or (p == FITTED and (pas is None or pas.order == AXES)) \
                or (pas is not None and pas.order == DIAMOND and p >= ALONG):
            raise ValueError(f"unknown predictor {p}")
        if pas is not None and p not in (MEAN, FITTED):
            _axes_of(p, pas)
        n = len(_fit_offsets(len(shape), pas)) if p == FITTED else 0
        out.append(list(weights[used : used + n]))
        used += n
    if used != len(weights) or any(not isinstance(w, int) or abs(w) >= FIT_LIMIT for w in weights):
        raise ValueError(f"{len(weights)} weights where the fitted steps take {used}")
    return out


def decode(read: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]], shape: tuple[int, ...], e: float,
           levels: int, predictors: Sequence[int], *, integer: bool = False, order: str = GROUPS,
           weights: Sequence[int] = (), coarse: Sequence[float] = (), band: int = BAND) -> np.ndarray:
    """Rebuild r_hat step by step; ``read(step, contexts)`` returns that step's codes and
    exact values (the contexts come from what is already rebuilt). Bit-identical to what
    :func:`encode` returned, whatever ``band`` (targets worked on at once). ValueError if
    the predictors or weights do not fit the steps."""
    w_steps = step_weights(shape, levels, order, predictors, weights)
    r_hat = np.empty(shape, dtype=np.float64)
    q_mag = np.zeros(shape, np.uint8)
    for i, (t, pas) in enumerate(_steps(shape, levels, order)):
        e_t = step_bound(e, pas, coarse)
        step = quantum(e_t, integer)
        r_hat_t = r_hat[t]
        c, ex = read(i, _banded_context(r_hat, q_mag, t, pas, step, band))
        c = c.reshape(r_hat_t.shape)
        q_mag[t] = _magnitude(c)
        ex_t = None  # the exact values where the codes escape (given in C order)
        if len(ex):
            ex_t = np.zeros(r_hat_t.shape)
            ex_t[c == ESCAPE] = ex
        for idx, p in _banded_prediction(r_hat, t, pas, predictors[i], integer, w_steps[i], band):
            c_b = c[idx]
            esc = None if ex_t is None else c_b == ESCAPE
            rec = c_b.astype(np.float64) if esc is None else np.where(esc, 0, c_b).astype(np.float64)
            rec *= step
            rec += p  # p + step q, as the encoder computed it
            if esc is not None:
                rec[esc] = ex_t[idx][esc]
            r_hat_t[idx] = rec
    return r_hat
