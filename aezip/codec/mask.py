"""The values that are not data (NaN, Inf, declared fill values) as runs: stream
"nodata" of format version 5 (formats/aezip-container-v5.md §2).

In C order the array is cut into runs: a run of data values (possibly empty), a run of
one non-data value (one bit pattern), a run of data values, ..., a run of data values.
The m non-data runs and m + 1 data runs cost O(log n) bits each. With v = G for a data
run of G values and v = L - 1 for a non-data run of L, the stream is

    varint 2 P + coding | P varints: the patterns XOR the dtype's quiet NaN | varint m
    coding 0 (few runs)   Elias-gamma codes of v + 1, packed most significant bit first
    coding 1              varint radii (1, or 2 when P > 1), escapes, bytes B of the
                          range-coded symbols (codec.adaptive): c = bit_length(v) with
                          context 0 for data runs and 1 for non-data runs, then (P > 1)
                          each non-data run's index into the patterns; then B bytes; then
                          v's c - 1 bits below its leading 1 per run, packed likewise

whichever is smaller (ties: coding 0).
"""

from __future__ import annotations

import numpy as np

from ..errors import ContainerError
from . import adaptive, varint

WHAT = "the stream of non-data values"
CHUNK = 1 << 16  # codes whose bits are built at once
MAX_CLASS = 63
GAMMA_RUNS = 256  # the writer uses Elias-gamma codes for at most this many non-data runs (decoded in a loop)
QUIET_NAN = {4: 0x7FC00000, 8: 0x7FF8000000000000}  # float32's and float64's: a NaN costs one byte


def _patterns(x: np.ndarray) -> np.ndarray:
    """The values' bit patterns (unsigned integers of their size), little-endian in memory."""
    flat = np.ascontiguousarray(x).reshape(-1)
    return flat.astype(flat.dtype.newbyteorder("<"), copy=False).view(f"<u{flat.dtype.itemsize}")


def _nan(dtype: np.dtype) -> int:
    return QUIET_NAN[dtype.itemsize] if dtype.kind == "f" else 0


def _classes(v: np.ndarray) -> np.ndarray:
    """bit_length of each v (v < 2**53: float64 is exact there)."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int32)


def _runs(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patterns, v of the 2 m + 1 runs, each non-data run's index into the patterns)."""
    bits = _patterns(x)
    n = bits.size
    invalid = ~valid.reshape(-1)
    palette, index = np.unique(bits[invalid], return_inverse=True)
    label = np.full(n, -1, np.int64)
    label[invalid] = index.reshape(-1)
    starts = np.flatnonzero(np.concatenate([[True], label[1:] != label[:-1]]))
    run_label = label[starts]
    ends = np.concatenate([starts[1:], [n]])
    keep = run_label >= 0
    s, e = starts[keep], ends[keep]
    v = np.empty(2 * s.size + 1, np.int64)
    v[0:-1:2], v[1::2], v[-1] = s - np.concatenate([[0], e[:-1]]), e - s - 1, n - e[-1]
    return palette, v, run_label[keep]


def encode(x: np.ndarray, valid: np.ndarray) -> bytes:
    """The "nodata" stream of the values of ``x`` where ``valid`` is False (at least one)."""
    palette, v, p = _runs(x, valid)
    nan = _nan(x.dtype)
    head = [varint.pack(int(q) ^ nan) for q in palette.tolist()] + [varint.pack(p.size)]
    c = _classes(v)
    steps = [(c, (np.arange(v.size) % 2).astype(np.uint8))]
    if palette.size > 1:
        steps.append((p.astype(np.int32), np.zeros(p.size, np.uint8)))
    coded, n_escapes, radii = adaptive.encode(steps, 2)
    body = [varint.pack(r) for r in radii] + [varint.pack(n_escapes), varint.pack(len(coded)), coded,
                                                _bits(v, np.maximum(c - 1, 0)).tobytes()]
    options = [(1, b"".join(body))]
    if p.size <= GAMMA_RUNS and palette.size == 1:
        options.insert(0, (0, _bits(v + 1, 2 * _classes(v + 1) - 1).tobytes()))
    coding, data = min(options, key=lambda o: len(o[1]))
    return varint.pack(2 * palette.size + coding) + b"".join(head) + data


def _bits(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each v in its width w (bits, most significant first), packed."""
    out = []
    for lo in range(0, v.size, CHUNK):
        vv, ww = v[lo : lo + CHUNK], w[lo : lo + CHUNK]
        j = np.arange(max(1, int(ww.max(initial=0))))
        b = (vv[:, None] >> np.clip(ww[:, None] - 1 - j, 0, 63)) & 1
        out.append(b[j < ww[:, None]].astype(np.uint8))
    return np.packbits(np.concatenate(out)) if out else np.zeros(0, np.uint8)


def decode(data: bytes, shape: tuple[int, ...], dtype) -> tuple[np.ndarray, np.ndarray]:
    """(where the non-data values are, bool of ``shape``; those values in C order, of ``dtype``)
    from a "nodata" stream; ContainerError if it does not describe an array of ``shape``."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    r = varint.Reader(data, WHAT)
    head = r.varint()
    n_palette, coding = head // 2, head % 2
    if not 1 <= n_palette <= n:
        raise ContainerError(f"{WHAT} lists {n_palette} values for {n} places; it is corrupted")
    nan, top = _nan(dtype), 1 << (8 * dtype.itemsize)
    palette = np.array([r.varint() ^ nan for _ in range(n_palette)], dtype=object)
    if any(q >= top for q in palette):
        raise ContainerError(f"{WHAT} holds a value wider than {dtype.name}; it is corrupted")
    palette = palette.astype(f"<u{dtype.itemsize}")
    m = r.varint()
    if not 1 <= m <= n:
        raise ContainerError(f"{WHAT} declares {m} runs in {n} values; it is corrupted")
    if coding == 0:
        v, p = _gamma(r.rest(), 2 * m + 1), np.zeros(m, np.int64)
    else:
        v, p = _ranged(r, m, n_palette)
    lengths = v.copy()
    lengths[1::2] += 1
    if int(lengths.sum()) != n or (p.size and (p.min() < 0 or p.max() >= n_palette)):
        raise ContainerError(f"{WHAT} does not describe the array's {n} values; it is corrupted")
    starts = np.cumsum(lengths) - lengths
    s, run = starts[1::2], lengths[1::2]
    edges = np.zeros(n + 1, np.int64)  # +1 where a non-data run starts, -1 after it
    np.add.at(edges, s, 1)
    np.add.at(edges, s + run, -1)
    values = np.repeat(palette[p], run).view(dtype.newbyteorder("<")).astype(dtype)
    return (np.cumsum(edges[:-1]) > 0).reshape(shape), values


def _gamma(data: bytes, k: int) -> np.ndarray:
    """k values v from their Elias-gamma codes of v + 1 (every bit used, padding zero)."""
    if k > 8 * len(data):
        raise ContainerError(f"{WHAT} is shorter than its runs; it is corrupted")
    bits = np.unpackbits(np.frombuffer(data, np.uint8)).tolist()
    out, pos = [], 0
    for _ in range(k):
        z = pos
        while z < len(bits) and not bits[z]:
            z += 1
        width = z - pos
        if z == len(bits) or z + width + 1 > len(bits) or width > MAX_CLASS:
            raise ContainerError(f"{WHAT} ends inside a run length; it is corrupted")
        u = 0
        for b in bits[z : z + width + 1]:
            u = 2 * u + b
        out.append(u - 1)
        pos = z + width + 1
    if (len(bits) - pos) >= 8 or any(bits[pos:]):
        raise ContainerError(f"{WHAT} has bytes left over after its runs; it is corrupted")
    return np.array(out, np.int64)


def _ranged(r: varint.Reader, m: int, n_palette: int) -> tuple[np.ndarray, np.ndarray]:
    """(v, palette indices) of coding 1."""
    radii = [r.varint() for _ in range(2 if n_palette > 1 else 1)]
    n_escapes, n_coded = r.varint(), r.varint()
    decoder = adaptive.Decoder(r.take(n_coded), n_escapes, radii, 2)
    c = decoder.read(0, (np.arange(2 * m + 1) % 2).astype(np.uint8)).astype(np.int64)
    p = decoder.read(1, np.zeros(m, np.uint8)).astype(np.int64) if n_palette > 1 else np.zeros(m, np.int64)
    decoder.finish()
    if c.min() < 0 or c.max() > MAX_CLASS:
        raise ContainerError(f"{WHAT} holds a run length out of range; it is corrupted")
    return _unsuffix(r.rest(), c), p


def _unsuffix(data: bytes, c: np.ndarray) -> np.ndarray:
    """v from its class c and its c - 1 bits below the leading 1."""
    w = np.maximum(c - 1, 0)
    total = int(w.sum())
    if len(data) != (total + 7) // 8:
        raise ContainerError(f"{WHAT}'s run lengths take {len(data)} bytes, not {(total + 7) // 8}; it is corrupted")
    bits = np.append(np.unpackbits(np.frombuffer(data, np.uint8), count=total).astype(np.int64), 0)  # + a pad
    offsets = np.concatenate([[0], np.cumsum(w)[:-1]])
    v = np.where(c > 0, np.int64(1) << w, 0)
    for lo in range(0, c.size, CHUNK):
        ww, off = w[lo : lo + CHUNK], offsets[lo : lo + CHUNK]
        j = np.arange(max(1, int(ww.max(initial=0))))
        inside = j < ww[:, None]
        b = bits[np.where(inside, off[:, None] + j, 0)] * inside
        v[lo : lo + CHUNK] += (b << np.maximum(ww[:, None] - 1 - j, 0)).sum(axis=1)
    return v


def fill(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Stand-ins for the non-data values of ``x`` (float64, ``x``'s shape; data values kept):
    each the mean of the data values in the smallest block of a 2x pyramid around it that
    holds any (pull-push), so that a hole costs the predictors little; rounded when the data
    are integers, which keeps integer coding open."""
    v = np.where(valid, x, 0).astype(np.float64)
    w = valid.astype(np.float64)
    pyramid = [(v, w)]
    while any(n > 1 for n in v.shape):
        v, w = _pool(v), _pool(w)
        pyramid.append((v, w))
    estimate = v / w
    for v, w in reversed(pyramid[:-1]):
        up = estimate
        for axis, n in enumerate(v.shape):
            up = np.repeat(up, 2, axis=axis)[(slice(None),) * axis + (slice(0, n),)] if up.shape[axis] != n else up
        estimate = np.where(w > 0, v / np.maximum(w, 1.0), _smooth(up))
    data = x[valid]
    if x.dtype.kind in "iu" or bool(np.all(np.rint(data) == data)):
        estimate = np.rint(estimate)
    return np.where(valid, x, estimate)


def _smooth(a: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 along every axis longer than 2 (edges repeated): the upsampled coarse
    estimate without its block edges."""
    for axis, n in enumerate(a.shape):
        if n > 2:
            lo = np.concatenate([a.take([0], axis=axis), a.take(range(n - 1), axis=axis)], axis=axis)
            hi = np.concatenate([a.take(range(1, n), axis=axis), a.take([n - 1], axis=axis)], axis=axis)
            a = (lo + 2 * a + hi) / 4
    return a


def _pool(a: np.ndarray) -> np.ndarray:
    """Sums over blocks of 2 along every axis longer than 1 (an odd last block: its one value)."""
    for axis, n in enumerate(a.shape):
        if n > 1:
            if n % 2:
                a = np.concatenate([a, np.zeros_like(a.take([0], axis=axis))], axis=axis)
            a = a.reshape(a.shape[:axis] + (-1, 2) + a.shape[axis + 1:]).sum(axis=axis + 1)
    return a
