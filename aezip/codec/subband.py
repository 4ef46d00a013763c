"""Quantization and context coding of wavelet subbands.

Every subband of :mod:`.wavelet`'s decomposition is quantized with one step (the encoder
chooses where to round, a dead zone that sends more small coefficients to 0; the
decoder needs only the step and one reconstruction offset per subband) and range-coded
with adaptive integer counts (:mod:`.adaptive`) in contexts that the decoder knows
before it decodes a symbol:

- the subbands go coarsest first, so each detail coefficient has a parent, the
  coefficient of the same orientation one level coarser at the same place;
- within a subband the coefficients go in two phases, a checkerboard: those whose
  indices sum to an even number first, then the others, whose neighbours along every
  axis are all of the first phase and so already decoded. Each phase goes sub-lattice
  by sub-lattice (indices of the same parities), which keeps like statistics together.

The context of a coefficient is the class of (its parent's magnitude, and in the second
phase the sum of its neighbours' magnitudes): symbols, contexts and tables are integers,
so every machine decodes the same codes. Reconstruction is c = sign(q) (|q| - theta) step
with theta in units of 1/64 per subband, stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ContainerError
from . import adaptive, wavelet

N_CLASSES = 8  # activity classes per phase
LOW_CONTEXT = 2 * N_CLASSES  # the low-pass band's own context
N_CONTEXTS = 2 * N_CLASSES + 1
THETA_UNIT = 64
_CLASS_OF = np.minimum(N_CLASSES - 1, np.array([int(a).bit_length() for a in range(1024)], np.uint8))


@dataclass(frozen=True)
class Band:
    level: int
    orientation: tuple[int, ...]
    box: tuple[slice, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.box)

    @property
    def is_low(self) -> bool:
        return not any(self.orientation)


def bands(shape: tuple[int, ...], levels: int) -> list[Band]:
    return [Band(lv, o, box) for lv, o, box in wavelet.subbands(shape, levels)]


def _keys(all_bands: list[Band]) -> dict:
    """The bands by (level, orientation), and by ("before", level, orientation) the detail
    band coded just before each other detail band of its level."""
    keys: dict = {(b.level, b.orientation): b for b in all_bands}
    for before, b in zip(all_bands, all_bands[1:]):
        if before.level == b.level and not before.is_low:
            keys[("before", b.level, b.orientation)] = before
    return keys


def _in(q: np.ndarray, band: Band) -> np.ndarray:
    """The band's coefficients in every plane (a view: planes along axis 0)."""
    return q[(slice(None),) + band.box]


def _parents(q: np.ndarray, band: Band, by_key: dict) -> np.ndarray | None:
    """|parent| for every coefficient of ``band`` (int32), or None where it has none."""
    parent = by_key.get((band.level + 1, band.orientation))
    if parent is None:
        return None
    m = np.abs(_in(q, parent))
    for a, (n_child, n_parent) in enumerate(zip(band.shape, parent.shape)):
        if n_child != n_parent:
            m = np.take(m, np.minimum(np.arange(n_child) // 2, n_parent - 1), axis=a + 1)
    return m


def _neighbours(m: np.ndarray) -> np.ndarray:
    """Sum of |values| of the two neighbours along every spatial axis (axis 0 holds the
    planes; 0 outside the band)."""
    s = np.zeros(m.shape, np.int64)
    for a in range(1, m.ndim):
        if m.shape[a] < 2:
            continue
        lo = [slice(None)] * m.ndim
        hi = [slice(None)] * m.ndim
        lo[a], hi[a] = slice(1, None), slice(None, -1)
        s[tuple(hi)] += m[tuple(lo)]
        s[tuple(lo)] += m[tuple(hi)]
    return s


def _classes(activity: np.ndarray) -> np.ndarray:
    return _CLASS_OF[np.minimum(activity, 1023)]


# The two phases of a detail band, a checkerboard: the sub-lattices of indices (by their
# parities) whose sum is even, then those whose sum is odd, each sub-lattice in C order in
# turn. Every axis neighbour of the second phase lies in the first.
PHASES = {
    1: [[(0,)], [(1,)]],
    2: [[(0, 0), (1, 1)], [(0, 1), (1, 0)]],
    3: [[(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)], [(0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 1, 1)]],
}
MAX_PHASES = 2


class Phase:
    """The indices of a band coded in one step: whole (``parities`` None, the low-pass
    band) or the union of sub-lattices of given parities, each in C order, in turn."""

    def __init__(self, shape: tuple[int, ...], k: int, parities):
        self.shape, self.k, self.parities = shape, k, parities

    def _lattice(self, p: tuple[int, ...]) -> tuple[slice, ...]:
        return (slice(None),) + tuple(slice(a, None, 2) for a in p)

    def take(self, a: np.ndarray) -> np.ndarray:
        """The values of ``a`` (planes, then the band's shape) at this phase's indices, in order."""
        if self.parities is None:
            return a.reshape(-1)
        return np.concatenate([a[self._lattice(p)].reshape(-1) for p in self.parities])

    def put(self, a: np.ndarray, values: np.ndarray) -> None:
        if self.parities is None:
            a[...] = values.reshape(a.shape)
            return
        at = 0
        for p in self.parities:
            view = a[self._lattice(p)]
            view[...] = values[at : at + view.size].reshape(view.shape)
            at += view.size

    @property
    def size_per_plane(self) -> int:
        if self.parities is None:
            return int(np.prod(self.shape))
        return sum(int(np.prod([(n - a + 1) // 2 for n, a in zip(self.shape, p)])) for p in self.parities)

    def neighbour_sum(self, m: np.ndarray) -> np.ndarray:
        """For each index of this phase, the sum of ``m`` (planes, then the band's shape)
        over its two neighbours along every spatial axis (0 outside the band)."""
        d = len(self.shape)
        padded = np.pad(m, [(0, 0)] + [(1, 1)] * d)
        out = []
        for p in self.parities:
            counts = [(n - a + 1) // 2 for n, a in zip(self.shape, p)]
            total = np.zeros((m.shape[0],) + tuple(counts), np.int64)
            if all(counts):
                for axis in range(d):
                    for step in (-1, 1):
                        total += padded[(slice(None),) + tuple(
                            slice(a + 1 + (step if i == axis else 0), a + 2 * c + (step if i == axis else 0), 2)
                            for i, (a, c) in enumerate(zip(p, counts)))]
            out.append(total.reshape(-1))
        return np.concatenate(out)


def _contexts(q: np.ndarray, band: Band, by_key: dict, phase: Phase) -> np.ndarray:
    """The context of each coefficient of ``band`` in ``phase``."""
    if band.is_low:
        return np.full(q.shape[0] * phase.size_per_plane, LOW_CONTEXT, np.uint8)
    parent = _parents(q, band, by_key)
    if phase.k:  # the parent and the neighbours, all decoded in the first phase
        activity = 2 * phase.neighbour_sum(np.abs(_in(q, band)))
        if parent is not None:
            activity += phase.take(parent)
    elif parent is not None:  # the parent and the parents of the neighbours
        activity = phase.take(2 * parent + _neighbours(parent))
    else:
        activity = np.zeros(q.shape[0] * phase.size_per_plane, np.int64)
    sibling = by_key.get(("before", band.level, band.orientation))
    if sibling is not None:  # the band before it at its level, at the same index (the last one where shorter)
        m = np.abs(_in(q, sibling))
        for axis, (n_band, n_sibling) in enumerate(zip(band.shape, sibling.shape)):
            if n_band != n_sibling:
                m = np.take(m, np.minimum(np.arange(n_band), n_sibling - 1), axis=axis + 1)
        activity = activity + phase.take(m)
    return _classes(activity) + np.uint8(phase.k * N_CLASSES)


def _phases(band: Band) -> list[Phase]:
    """The phases of a band: one for the low-pass band, PHASES[d] for a detail band."""
    if band.is_low:
        return [Phase(band.shape, 0, None)]
    return [Phase(band.shape, k, group) for k, group in enumerate(PHASES[len(band.shape)])]


def quantize(y: np.ndarray, step: float, rounding: float) -> np.ndarray:
    """q = sign(y) floor(|y| / step + rounding) as int32 (rounding 0.5: to nearest)."""
    return (np.sign(y) * np.floor(np.abs(y) * (1.0 / step) + rounding)).astype(np.int32)


RATE_CAP = 15  # the rate table of the RD quantizer covers |q| up to this; larger codes cost about the same more


def rate_table(q: np.ndarray, levels: int) -> np.ndarray:
    """Bits of a code of magnitude m (0..RATE_CAP) in each context, from the counts of q
    (one first quantization) in their contexts, with one count added everywhere."""
    counts = np.ones((N_CONTEXTS, RATE_CAP + 1))
    for _, _, codes, contexts in _steps(q, levels):
        np.add.at(counts, (contexts, np.minimum(np.abs(codes), RATE_CAP)), 1.0)
    p = counts / counts.sum(axis=1, keepdims=True)
    bits = -np.log2(p)
    bits[:, 1:] += 1.0  # the sign
    return bits


def _steps(q: np.ndarray, levels: int):
    """(band, phase, codes, contexts) of every coding step of q, in coding order."""
    all_bands = bands(q.shape[1:], levels)
    by_key = _keys(all_bands)
    for b in all_bands:
        qb = _in(q, b)
        for phase in _phases(b):
            yield b, phase, phase.take(qb), _contexts(q, b, by_key, phase)


def quantize_rd(y: np.ndarray, step: float, levels: int, lam: float, rate: np.ndarray,
                thetas: Sequence[int]) -> tuple[np.ndarray, list]:
    """Rate-distortion optimized quantization of y (planes along axis 0): each code is the
    magnitude n = round(|y| / step) or n - 1, whichever costs less in squared error (in
    units of step^2, with each subband's reconstruction offset ``thetas``) plus ``lam``
    times its bits in its context (``rate``: :func:`rate_table`). The contexts are those
    the decoder forms, band by band and phase by phase, from the codes decided before, so
    the choice sees what the coder will. Returns q and its coding steps (for :func:`encode`)."""
    all_bands = bands(y.shape[1:], levels)
    by_key = _keys(all_bands)
    q = np.zeros(y.shape, np.int32)
    steps = []
    for b, theta in zip(all_bands, thetas):
        yb, qb = _in(y, b), _in(q, b)
        for phase in _phases(b):
            v = phase.take(yb)
            u = np.abs(v) * (1.0 / step)
            n = np.floor(u + 0.5)
            ctx = _contexts(q, b, by_key, phase)
            if not b.is_low:
                at = np.flatnonzero(n)  # only non-zero codes have a smaller one
                t, m, uu, cc = theta / THETA_UNIT, n[at], u[at], ctx[at]
                lo = m - 1
                r_lo = np.where(lo > 0, lo - t, 0.0)
                gain = (uu - r_lo) ** 2 - (uu - (m - t)) ** 2  # squared error added by the smaller code
                top = np.minimum(m, RATE_CAP).astype(np.intp)
                saved = rate[cc, top] - rate[cc, np.minimum(lo, RATE_CAP).astype(np.intp)]
                n[at] = np.where(gain < lam * saved, lo, m)
            codes = (np.sign(v) * n).astype(np.int32)
            phase.put(qb, codes)
            steps.append((codes, ctx))
    return q, steps


def thetas_for(y: np.ndarray, q: np.ndarray, step: float, all_bands: Sequence[Band]) -> list[int]:
    """Per band, the reconstruction offset (units of 1/64 of the step) that minimizes the
    squared error of the non-zero coefficients: their mean of |q| - |y| / step."""
    out = []
    for b in all_bands:
        qb = q[b.box]
        nz = qb != 0
        if b.is_low or not nz.any():
            out.append(0)
            continue
        t = float(np.mean(np.abs(qb[nz]) - np.abs(y[b.box][nz]) * (1.0 / step)))
        out.append(int(np.clip(round(t * THETA_UNIT), 0, THETA_UNIT // 2 - 1)))
    return out


def dequantize(q: np.ndarray, step: float, thetas: Sequence[int], all_bands: Sequence[Band]) -> np.ndarray:
    y_hat = np.empty(q.shape, np.float64)
    for b, t in zip(all_bands, thetas):
        qb = q[b.box].astype(np.float64)
        y_hat[b.box] = (qb - np.sign(qb) * (t / THETA_UNIT)) * step
    return y_hat


def encode(q: np.ndarray, levels: int) -> tuple[bytes, int, list[int]]:
    """The stream of the codes ``q``: planes along axis 0, each in Mallat's layout of
    ``levels`` levels over the other axes."""
    return encode_steps([(codes, contexts) for _, _, codes, contexts in _steps(q, levels)])


def encode_steps(steps: list) -> tuple[bytes, int, list[int]]:
    """The stream of coding steps (codes, contexts) in coding order, as :func:`encode` makes them."""
    return adaptive.encode(steps, N_CONTEXTS)


def decode(stream: bytes, n_escapes: int, radii: Sequence[int], shape: tuple[int, ...], levels: int) -> np.ndarray:
    """Invert :func:`encode`: the codes q (int32, ``shape``: planes, then the spatial axes)."""
    all_bands = bands(shape[1:], levels)
    n_steps = sum(len(_phases(b)) for b in all_bands)
    if len(radii) != n_steps:
        raise ContainerError(f"the transform codes have {len(radii)} table radii for {n_steps} steps; "
                             "the container is corrupted")
    by_key = _keys(all_bands)
    q = np.zeros(shape, np.int32)
    decoder = adaptive.Decoder(stream, n_escapes, radii, N_CONTEXTS)
    step = 0
    for b in all_bands:
        for phase in _phases(b):
            phase.put(_in(q, b), decoder.read(step, _contexts(q, b, by_key, phase)))
            step += 1
    decoder.finish()
    return q
