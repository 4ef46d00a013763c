"""Adaptive range coding of integer codes, with no table stored.

Each sequence (one per coding step of the residual coder) is coded in chunks of
growing size (32, 64, ... up to 65536 symbols). A chunk is coded with a table made
from integer counts of the symbols coded before it (weight 16 per occurrence, plus one
so that every symbol stays codable); the decoder rebuilds the same integer table from
the same counts before decoding the chunk (see :func:`entropy.quantize`). Counts are
kept per value and carried, halved, from one sequence to the next, so a sequence starts
from its predecessor's statistics (neighbouring levels look alike). Symbols cover
``[-radius, radius]`` with ``radius`` chosen per sequence by the encoder (at most
``MAX_RADIUS``) and stored; other values are escaped and appended verbatim as int32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import constriction
import numpy as np

from ..errors import ContainerError
from .entropy import quantize, quantize_row

MAX_RADIUS = 32767
FULL_RADIUS = 1024  # up to this every code gets a table entry; beyond, rare codes are escaped
FIRST_CHUNK, LAST_CHUNK = 32, 65536
SMALL_RADIUS = 16  # tables up to 2 * 16 + 2 entries are built in plain Python
PRIOR_MASS = 256  # how many symbols a model's table is worth when it seeds the counts


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    start, size = 0, FIRST_CHUNK
    while start < n:
        yield start, min(n, start + size)
        start, size = start + size, min(2 * size, LAST_CHUNK)


class _Counts:
    """Occurrences per value in [-MAX_RADIUS, MAX_RADIUS] plus escapes, carried across sequences."""

    def __init__(self) -> None:
        self.values = np.zeros(2 * MAX_RADIUS + 1, np.int64)
        self.escapes = 0
        self.reach = 0  # values beyond [-reach, reach] are 0

    def model(self, r: int):
        """The table of Tables.from_counts(16 counts + 1, escape 16 escapes + 1), built directly
        (in plain Python for small tables, where numpy's per-call cost would dominate)."""
        inside = self.values[MAX_RADIUS - r : MAX_RADIUS + r + 1]
        if r <= SMALL_RADIUS:
            w = quantize_row([16.0 * v + 1.0 for v in inside.tolist()] + [16.0 * self.escapes + 1.0])
            return constriction.stream.model.Categorical(np.array(w, np.float64), perfect=False)
        p = np.empty((1, 2 * r + 2))
        p[0, :-1] = inside
        p[0, -1] = self.escapes
        p *= 16
        p += 1
        return constriction.stream.model.Categorical(quantize(p)[0].astype(np.float64), perfect=False)

    def add(self, symbols: np.ndarray, r: int) -> None:
        k = 2 * r + 2
        n = np.bincount(symbols, minlength=k)
        self.values[MAX_RADIUS - r : MAX_RADIUS + r + 1] += n[: k - 1]
        self.escapes += int(n[k - 1])
        self.reach = max(self.reach, r)

    def copy(self) -> _Counts:
        c = _Counts()
        c.values, c.escapes, c.reach = self.values.copy(), self.escapes, self.reach
        return c

    @classmethod
    def prior(cls, weights: np.ndarray, lo: int, mass: int = PRIOR_MASS) -> _Counts:
        """Counts worth ``mass`` symbols distributed like a table row (entries from ``lo``,
        the last one the escape), in integers: the same on every machine."""
        w = np.asarray(weights, dtype=np.int64)
        scaled = w * mass // max(1, int(w.sum()))
        c = cls()
        inside = scaled[:-1]
        first = lo + MAX_RADIUS
        keep = slice(max(0, -first), max(0, min(len(inside), 2 * MAX_RADIUS + 1 - first)))
        c.values[first + keep.start : first + keep.stop] = inside[keep]
        c.escapes = int(scaled[-1])
        c.reach = MAX_RADIUS
        return c

    def next_sequence(self) -> None:
        self.values[MAX_RADIUS - self.reach : MAX_RADIUS + self.reach + 1] //= 2
        self.escapes //= 2


def _by_context(contexts: np.ndarray, n_contexts: int) -> tuple[np.ndarray, np.ndarray]:
    """The order that groups symbols by context (stable: C order within a context) and
    where each context's group starts and ends."""
    order = np.argsort(contexts, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(contexts, minlength=n_contexts))])
    return order, bounds


def radius_of(codes: np.ndarray) -> int:
    """The table's reach: every code if they are small, else 99.9 % of them."""
    if codes.size and -FULL_RADIUS <= int(codes.min()) and int(codes.max()) <= FULL_RADIUS:
        return max(-int(codes.min()), int(codes.max()))  # the common case, without the int64 copy
    magnitude = np.abs(codes.astype(np.int64))
    magnitude = magnitude[magnitude <= MAX_RADIUS]
    if magnitude.size == 0:
        return 0
    r = int(magnitude.max())
    return r if r <= FULL_RADIUS else max(FULL_RADIUS, int(np.quantile(magnitude, 0.999)))


def encode(steps: Sequence[tuple[np.ndarray, np.ndarray]], n_contexts: int,
           priors: Sequence[_Counts] | None = None) -> tuple[bytes, int, list[int]]:
    """Code (codes, contexts) of each step: within a step the codes of each context in
    turn, each context with its own counts. Returns the stream (32-bit words, then the
    escaped codes as int32, little-endian), the number of escaped codes, and each step's radius."""
    coder = constriction.stream.queue.RangeEncoder()
    escaped, radii = [], []
    counts = [_Counts() for _ in range(n_contexts)]
    for i, (codes, contexts) in enumerate(steps):
        if priors is not None:  # each step starts from its own prior (one context)
            counts = [priors[i].copy()]
        r = radius_of(codes)
        radii.append(r)
        k = 2 * r + 2
        wide = codes.dtype != np.int32 or (codes.size and int(codes.max()) > np.iinfo(np.int32).max - r)
        v = codes.astype(np.int64) + r if wide else codes + np.int32(r)
        outside = v.view(np.uint64 if wide else np.uint32) > k - 2  # negative values wrap past k - 2
        symbols = np.where(outside, k - 1, v).astype(np.int32, copy=False)
        order, bounds = _by_context(contexts, n_contexts)  # one sort instead of a scan per context
        symbols, codes, outside = symbols[order], codes[order], outside[order]
        for ctx, cnt in enumerate(counts):
            lo_c, hi_c = bounds[ctx], bounds[ctx + 1]
            escaped.append(codes[lo_c:hi_c][outside[lo_c:hi_c]])
            part = symbols[lo_c:hi_c]
            for lo, hi in _chunks(part.size):
                coder.encode(part[lo:hi], cnt.model(r))
                cnt.add(part[lo:hi], r)
            cnt.next_sequence()
    out = np.concatenate(escaped).astype("<i4") if escaped else np.zeros(0, "<i4")
    return coder.get_compressed().astype("<u4").tobytes() + out.tobytes(), int(out.size), radii


def _decode(decoder, model, n: int) -> np.ndarray:
    """n symbols, or ContainerError where the words cannot come from this model (constriction
    asserts): a stream decoded with records that are not its own."""
    try:
        return decoder.decode(model, n)
    except AssertionError:
        raise ContainerError("a coded stream does not decode with its records; the container is corrupted") from None


class Decoder:
    """Decodes one step at a time, as the residual decoder learns each step's contexts."""

    def __init__(self, stream: bytes, n_escapes: int, radii: Sequence[int], n_contexts: int,
                 priors: Sequence[_Counts] | None = None):
        if len(stream) % 4 or not 0 <= 4 * n_escapes <= len(stream):
            raise ContainerError("residual stream does not fit its escape count; the container is corrupted")
        if any(not 0 <= r <= MAX_RADIUS for r in radii):
            raise ContainerError("a residual table radius is out of range; the container is corrupted")
        split = len(stream) - 4 * n_escapes
        self.decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(stream[:split], "<u4").astype(np.uint32))
        self.escaped = np.frombuffer(stream[split:], "<i4").astype(np.int32)
        self.used, self.radii = 0, list(radii)
        self.counts = [_Counts() for _ in range(n_contexts)]
        self.priors = priors

    def read(self, step: int, contexts: np.ndarray) -> np.ndarray:
        if step >= len(self.radii):
            raise ContainerError("the residual stream has fewer steps than the array needs; the container is corrupted")
        r = self.radii[step]
        if self.priors is not None:
            self.counts = [self.priors[step].copy()]
        k = 2 * r + 2
        order, bounds = _by_context(contexts, len(self.counts))
        sorted_codes = np.empty(contexts.size, np.int32)
        for ctx, cnt in enumerate(self.counts):
            part = sorted_codes[bounds[ctx] : bounds[ctx + 1]]
            for lo, hi in _chunks(part.size):
                part[lo:hi] = _decode(self.decoder, cnt.model(r), hi - lo)
                cnt.add(part[lo:hi], r)
            cnt.next_sequence()
            outside = part == k - 1
            m = int(np.count_nonzero(outside))
            part -= r
            if m:
                if self.used + m > self.escaped.size:
                    raise ContainerError("the residual stream needs more escaped codes than stored; "
                                         "the container is corrupted")
                part[outside] = self.escaped[self.used : self.used + m]
                self.used += m
        codes = np.empty(contexts.size, np.int32)
        codes[order] = sorted_codes
        return codes

    def finish(self) -> None:
        if self.used != self.escaped.size:
            raise ContainerError("escaped residual codes left over; the container is corrupted")


def _priors(tables) -> list[_Counts]:
    return [_Counts.prior(row, int(lo)) for row, lo in zip(tables.weights, tables.lo)]


def encode_channels(y_hat: np.ndarray, tables) -> tuple[bytes, int, list[int]]:
    """Code latents (N, C, ...) channel by channel with counts that start from the model's
    frozen table (worth PRIOR_MASS symbols) and learn the array's own statistics as they
    go: for arrays whose latents are distributed unlike the training data's."""
    c = y_hat.shape[1]
    per_channel = [np.ascontiguousarray(y_hat[:, ch]).reshape(-1).astype(np.int32) for ch in range(c)]
    return encode([(v, np.zeros(v.size, np.uint8)) for v in per_channel], 1, _priors(tables))


def decode_channels(stream: bytes, n_escapes: int, radii: Sequence[int], shape: tuple[int, ...],
                    tables) -> np.ndarray:
    """Invert :func:`encode_channels` for latents of ``shape`` (N, C, ...)."""
    n, c = shape[0], shape[1]
    if len(radii) != c:
        raise ContainerError("the latent table radii do not match the latent channels; the container is corrupted")
    per_channel = int(np.prod(shape, dtype=np.int64)) // max(1, c)
    decoder = Decoder(stream, n_escapes, radii, 1, _priors(tables))
    y_hat = np.empty((c, n) + tuple(shape[2:]), np.int32)
    for ch in range(c):
        y_hat[ch] = decoder.read(ch, np.zeros(per_channel, np.uint8)).reshape((n,) + tuple(shape[2:]))
    decoder.finish()
    return np.ascontiguousarray(y_hat.swapaxes(0, 1))
