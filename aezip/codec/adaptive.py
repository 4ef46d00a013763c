"""Adaptive range coding of integer codes, with no table stored.

Each sequence (one per coding step of the residual coder) is coded in chunks of
growing size (32, 64, ... up to 65536 symbols). A chunk is coded with a table made
from integer counts of the symbols coded before it (weight 16 per occurrence, plus one
so that every symbol stays codable); the decoder rebuilds the same integer table from
the same counts before decoding the chunk (see :meth:`Tables.from_counts`). Counts are
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
from .entropy import Tables

MAX_RADIUS = 4095
FIRST_CHUNK, LAST_CHUNK = 32, 65536


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

    def model(self, r: int):
        inside = self.values[MAX_RADIUS - r : MAX_RADIUS + r + 1]
        t = Tables.from_counts(16 * inside[None] + 1, np.array([-r]), np.array([16 * self.escapes + 1]))
        return constriction.stream.model.Categorical(t.weights[0].astype(np.float64), perfect=False)

    def add(self, symbols: np.ndarray, r: int) -> None:
        k = 2 * r + 2
        n = np.bincount(symbols, minlength=k)
        self.values[MAX_RADIUS - r : MAX_RADIUS + r + 1] += n[: k - 1]
        self.escapes += int(n[k - 1])

    def next_sequence(self) -> None:
        self.values //= 2
        self.escapes //= 2


def radius_of(codes: np.ndarray) -> int:
    inside = codes[np.abs(codes.astype(np.int64)) <= MAX_RADIUS]
    return int(np.abs(inside).max()) if inside.size else 0


def encode(sequences: Sequence[np.ndarray]) -> tuple[bytes, int, list[int]]:
    """Code int32 sequences; returns the stream (32-bit words, then escaped values as
    int32, little-endian), the number of escaped values, and the radius of each sequence."""
    coder = constriction.stream.queue.RangeEncoder()
    escaped, radii, counts = [], [], _Counts()
    for codes in sequences:
        r = radius_of(codes)
        radii.append(r)
        k = 2 * r + 2
        v = codes.astype(np.int64) + r
        outside = (v < 0) | (v > k - 2)
        escaped.append(codes[outside])
        symbols = np.where(outside, k - 1, v).astype(np.int32)
        for lo, hi in _chunks(symbols.size):
            chunk = symbols[lo:hi]
            coder.encode(chunk, counts.model(r))
            counts.add(chunk, r)
        counts.next_sequence()
    out = np.concatenate(escaped).astype("<i4") if escaped else np.zeros(0, "<i4")
    return coder.get_compressed().astype("<u4").tobytes() + out.tobytes(), int(out.size), radii


def decode(stream: bytes, n_escapes: int, radii: Sequence[int], sizes: Sequence[int]) -> list[np.ndarray]:
    """Invert :func:`encode` for sequences of the given sizes."""
    if len(stream) % 4 or not 0 <= 4 * n_escapes <= len(stream) or len(radii) != len(sizes):
        raise ContainerError("residual stream does not fit its escape count; the container is corrupted")
    split = len(stream) - 4 * n_escapes
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(stream[:split], "<u4").astype(np.uint32))
    escaped = np.frombuffer(stream[split:], "<i4").astype(np.int32)
    used, out, counts = 0, [], _Counts()
    for r, n in zip(radii, sizes):
        if not 0 <= r <= MAX_RADIUS:
            raise ContainerError(f"residual table radius {r} is out of range; the container is corrupted")
        k = 2 * r + 2
        symbols = np.empty(n, np.int32)
        for lo, hi in _chunks(n):
            chunk = decoder.decode(counts.model(r), hi - lo)
            symbols[lo:hi] = chunk
            counts.add(chunk, r)
        counts.next_sequence()
        codes = symbols.astype(np.int64) - r
        outside = symbols == k - 1
        m = int(outside.sum())
        if used + m > escaped.size:
            raise ContainerError("residual stream needs more escaped values than stored; the container is corrupted")
        codes[outside] = escaped[used : used + m]
        used += m
        out.append(codes.astype(np.int32))
    if used != escaped.size:
        raise ContainerError("escaped residual values left over; the container is corrupted")
    return out
