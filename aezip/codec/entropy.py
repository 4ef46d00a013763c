"""Entropy coding of integer symbols with integer frequency tables (constriction range coder).

Decoding must not depend on the machine, so every table is integral: a row of
``weights`` (non-negative integers) over ``K`` entries, the last entry being the
escape. The coder sees probability ``(w_i + 1) / 2**24`` for entry ``i``: the row
sums to ``2**24 - K`` and is handed to constriction as exact integers in float64,
so its fast quantizer (``floor(cumsum * 1.0) + i``) reproduces the table exactly, on
every machine (see constriction's ``LazyContiguousCategoricalEntropyModel``).

Symbol ``v`` of channel ``c`` maps to entry ``v - lo[c]`` when that lies in
``[0, K-2]``; any other value is coded as the escape entry and appended verbatim
(int32, little-endian) after the coded words, so nothing is ever clipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

from ..errors import ContainerError

PRECISION = 24
TOTAL = 1 << PRECISION


@dataclass(frozen=True, kw_only=True)
class Tables:
    """Per-channel integer tables: ``lo`` (C,) int32, ``weights`` (C, K) int64."""

    lo: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, dtype=np.int64)
        w = np.asarray(self.weights, dtype=np.int64)
        if w.ndim != 2 or lo.shape != (w.shape[0],) or w.shape[1] < 2:
            raise ContainerError("entropy tables have inconsistent shapes; the model file is damaged")
        if (w < 0).any() or (w.sum(axis=1) != TOTAL - w.shape[1]).any():
            raise ContainerError("entropy table weights do not sum to 2**24 - K; the model file is damaged")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "weights", w)

    @property
    def channels(self) -> int:
        return int(self.weights.shape[0])

    @classmethod
    def from_counts(cls, counts: np.ndarray, lo: np.ndarray, escape: np.ndarray | None = None) -> Tables:
        """Turn symbol counts (C, K-1) and escape counts (C,) into integer tables.

        Without ``escape`` the escape gets the weight of one observed symbol. Only IEEE
        basic operations on integers are used, so the same counts give the same table
        on every machine (the adaptive coder rebuilds tables while decoding).
        """
        counts = np.asarray(counts, dtype=np.float64)
        c = counts.shape[0]
        esc = np.ones((c, 1)) if escape is None else np.asarray(escape, dtype=np.float64).reshape(c, 1)
        return cls(lo=np.asarray(lo, dtype=np.int64), weights=quantize(np.concatenate([counts, esc], axis=1)))


def quantize(p: np.ndarray) -> np.ndarray:
    """Integer weights (C, K) summing to ``2**24 - K`` per row, proportional to the
    non-negative float64 masses ``p`` (C, K), by IEEE basic operations only (the same
    on every machine)."""
    p = p / p.sum(axis=1, keepdims=True)
    budget = TOTAL - p.shape[1]
    w = np.floor(p * budget).astype(np.int64)
    # hand the rounding remainder to the most probable entry: exact sum, deterministic
    w[np.arange(p.shape[0]), w.argmax(axis=1)] += budget - w.sum(axis=1)
    return w


def quantize_row(p: list[float]) -> list[int]:
    """:func:`quantize` of one row, in plain Python floats (IEEE doubles: the same bits).
    The masses must be integers (their sum is then exact in any order)."""
    total = sum(p)
    budget = TOTAL - len(p)
    w = [math.floor(v / total * budget) for v in p]
    w[w.index(max(w))] += budget - sum(w)
    return w


def _models(tables: Tables) -> list:
    return [
        constriction.stream.model.Categorical(row.astype(np.float64), perfect=False)
        for row in tables.weights
    ]


def encode(y_hat: np.ndarray, tables: Tables) -> tuple[bytes, int]:
    """Code integer latents ``y_hat`` (N, C, ...) channel by channel.

    Returns the stream (coded 32-bit words, then the escaped values as int32, both
    little-endian) and the number of escaped values.
    """
    if y_hat.shape[1] != tables.channels:
        raise ValueError(f"latents have {y_hat.shape[1]} channels, tables {tables.channels}")
    k = tables.weights.shape[1]
    coder = constriction.stream.queue.RangeEncoder()
    escapes = []
    for c, model in enumerate(_models(tables)):
        v = y_hat[:, c].reshape(-1).astype(np.int64) - tables.lo[c]
        outside = (v < 0) | (v > k - 2)
        escapes.append(y_hat[:, c].reshape(-1)[outside])
        coder.encode(np.where(outside, k - 1, v).astype(np.int32), model)
    escaped = np.concatenate(escapes).astype("<i4")
    return coder.get_compressed().astype("<u4").tobytes() + escaped.tobytes(), int(escaped.size)


def decode(stream: bytes, n_escapes: int, tables: Tables, shape: tuple[int, ...]) -> np.ndarray:
    """Invert :func:`encode` for latents of ``shape`` (N, C, ...)."""
    n, c = shape[0], shape[1]
    if c != tables.channels:
        raise ContainerError(f"stream has {c} latent channels but the model's tables have {tables.channels}")
    per_channel = int(np.prod(shape)) // c
    k = tables.weights.shape[1]
    if len(stream) % 4 or not 0 <= 4 * n_escapes <= len(stream):
        raise ContainerError("latent stream length does not fit its escape count; the container is corrupted")
    split = len(stream) - 4 * n_escapes
    words = np.frombuffer(stream[:split], dtype="<u4").astype(np.uint32)
    escapes = np.frombuffer(stream[split:], dtype="<i4").astype(np.int32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    y_hat = np.empty((c, per_channel), dtype=np.int32)
    used = 0
    for ch, model in enumerate(_models(tables)):
        try:
            idx = decoder.decode(model, per_channel).astype(np.int64)
        except AssertionError:  # constriction: words this model cannot have produced
            raise ContainerError("the latent stream does not decode with the model's tables; "
                                 "the container is corrupted") from None
        outside = idx == k - 1
        m = int(outside.sum())
        if used + m > escapes.size:
            raise ContainerError("latent stream needs more escaped values than stored; the container is corrupted")
        v = idx + tables.lo[ch]
        v[outside] = escapes[used : used + m]
        used += m
        y_hat[ch] = v
    if used != escapes.size:
        raise ContainerError("escaped values left over after decoding; the container is corrupted")
    rest = shape[2:]
    return np.ascontiguousarray(y_hat.reshape((c, n, *rest)).swapaxes(0, 1))


def empirical_bits(counts: np.ndarray) -> float:
    """Bits of symbols coded at their own empirical frequencies ``counts``."""
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def symbol_bits(symbols: np.ndarray) -> np.ndarray:
    """Each symbol's cost at the zeroth-order entropy of ``symbols`` (same shape)."""
    _, idx, counts = np.unique(symbols, return_inverse=True, return_counts=True)
    return -np.log2(counts / symbols.size)[idx.reshape(symbols.shape)]


def ideal_bits(y_hat: np.ndarray, tables: Tables) -> float:
    """Bits the symbols cost under the tables (escaped values not counted)."""
    return float(tile_bits(y_hat, tables).sum())


def tile_bits(y_hat: np.ndarray, tables: Tables) -> np.ndarray:
    """Bits the symbols of each tile (first axis of ``y_hat``) cost under the tables."""
    k = tables.weights.shape[1]
    bits = np.zeros(y_hat.shape[0])
    for c in range(tables.channels):
        v = y_hat[:, c].reshape(y_hat.shape[0], -1).astype(np.int64) - tables.lo[c]
        idx = np.where((v < 0) | (v > k - 2), k - 1, v)
        bits -= np.log2((tables.weights[c][idx] + 1) / TOTAL).sum(axis=1)
    return bits
