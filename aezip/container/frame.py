"""A frame: one array entry as bytes (formats/aezip-frame-v1.md), for a Zarr chunk or a
network message. Pure functions, no file:

    pack_entry(entry, model_id) -> bytes
    unpack_entry(data) -> (entry with its streams, model_id or None)

    magic "\\x89AEZ" | version 1 | entry record | codec record | figures record |
    stream table | streams | CRC-32 of everything before it

Records are compact binary forms of the entry's JSON records (layout.py): each field a
varint tag (its number in a frozen key list of this version) and its value, typed by
the record's TYPES; the parsed result goes through the same checks as a container's
records. The model is named by its content id (32 bytes), never by an index.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import struct
import zlib

import numpy as np

from ..codec import varint
from ..errors import ChecksumError, ContainerError, FormatVersionError
from ..metrics import abs_error_ratio, psnr
from .layout import DTYPES, ArrayEntry, CodecParams, Figures, _lean, check_values_justified, parse_entry

MAGIC = b"\x89AEZ"
FRAME_VERSION = 1
WHAT = "the frame"

# Frozen for frame version 1: tag k >= 2 is KEYS[k - 2]; tag 1 a key named in full; 0 ends a record.
CODEC_KEYS = ("storage", "ndim", "tile", "offset", "scale", "latent_shape", "symbols_crc32", "escapes", "model",
              "mode", "bound", "levels", "radii", "predictors", "residual_escapes", "base", "margin", "base_check",
              "integer", "fill_values", "latent_coding", "latent_radii", "interpolation", "weights", "coarse",
              "filter")
FIGURE_KEYS = ("original_bytes", "coded_bytes", "mse", "psnr", "max_abs_error", "value_range", "seconds", "bound",
               "bound_kind", "max_error_ratio", "invalid_values")
# Figures measured at compress time, kept as float32 under their short tag (a value beyond
# float32's range goes under its full name, tag 1, which always means the full form).
MEASURED = frozenset({"mse", "psnr", "max_abs_error", "value_range", "seconds", "max_error_ratio"})
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Strings written as an index: record values and stream names (frozen for version 1).
STRINGS = ("bounded", "raw", "constant", "latent", "abs", "rel", "psnr", "pw_rel", "groups", "diamond", "axes",
           "none", "model", "tiles", "tables", "adaptive", "residuals", "exact", "latents", "values", "nodata",
           "signs", "zeros", "mask", "masked_values", "transform")
ORDER_F, BIG_ENDIAN, HAS_SLAB, HAS_MODEL, HAS_NAME = 1, 2, 4, 8, 16
# Figures the reader derives when the frame's "derived" bits say so (bit i: DERIVED[i]),
# in this order: the writer sets a bit only where the derivation gives the figure (to
# float32 precision for the measured ones).
DERIVED = ("original_bytes", "coded_bytes", "bound", "psnr", "max_error_ratio")
# The time the encoder took is not carried (read as 0): frames of equal chunks are equal bytes.
NOT_CARRIED = {"seconds": 0.0}


# --- writing -----------------------------------------------------------------------

def _string(s: str) -> bytes:
    if s in STRINGS:
        return varint.pack(2 * STRINGS.index(s) + 1)
    b = s.encode()
    return varint.pack(2 * len(b)) + b


def _zigzag(n: int) -> bytes:
    return varint.pack(2 * n if n >= 0 else -2 * n - 1)


def _value(kind: str, v, single: bool) -> bytes:
    if kind.endswith("?"):
        return b"\x00" if v is None else b"\x01" + _value(kind[:-1], v, single)
    if kind == "bool":
        return b"\x01" if v else b"\x00"
    if kind == "int":
        return _zigzag(v)
    if kind == "number":
        return struct.pack("<f" if single else "<d", v)
    if kind == "str":
        return _string(v)
    if kind == "ints":  # each item, or each item's difference from the one before, whichever is shorter
        plain = b"".join(_zigzag(int(i)) for i in v)
        delta = b"".join(_zigzag(int(i) - int(p)) for i, p in zip(v, [0] + list(v[:-1])))
        differences = len(delta) < len(plain)
        return varint.pack(2 * len(v) + differences) + (delta if differences else plain)
    if kind == "numbers":
        return varint.pack(len(v)) + b"".join(struct.pack("<d", float(i)) for i in v)
    raise ValueError(kind)


def _record(record, keys: tuple[str, ...]) -> bytes:
    """The record's fields that are not at their default, then tag 0."""
    out = []
    for name, v in _lean(record).items():
        if isinstance(record, Figures) and name in NOT_CARRIED:
            continue
        kind = type(record).TYPES[name]
        single = _single(keys, name) and (v is None or abs(v) <= FLOAT32_MAX)
        short = name in keys and (single or not _single(keys, name))
        tag = varint.pack(keys.index(name) + 2) if short else varint.pack(1) + _string(name)
        out.append(tag + _value(kind, v, single))
    return b"".join(out) + b"\x00"


def _single(keys: tuple[str, ...], name: str) -> bool:
    return keys is FIGURE_KEYS and name in MEASURED


def pack_entry(entry: ArrayEntry, model_id: str | None = None) -> bytes:
    """The frame of ``entry`` (with its streams); ``model_id`` (64 hex digits) names the
    model of an entry that uses one (its codec's ``model`` index or ``model_id`` is not
    stored there)."""
    if entry.codec.uses_model != (model_id is not None):
        raise ValueError("an entry that uses a model needs its model_id, and only such an entry")
    flags = ((ORDER_F if entry.order == "F" else 0) | (BIG_ENDIAN if entry.byteorder == ">" else 0)
             | (HAS_SLAB if entry.slab is not None else 0) | (HAS_MODEL if model_id else 0)
             | (HAS_NAME if entry.name else 0))
    head = [MAGIC, bytes([FRAME_VERSION, flags, DTYPES.index(entry.dtype)]), varint.pack(len(entry.shape))]
    head += [varint.pack(n) for n in entry.shape]
    if entry.name:
        head.append(_string(entry.name))
    if entry.slab is not None:
        head += [varint.pack(entry.slab[0]), varint.pack(entry.slab[1])]
    if model_id:
        head.append(bytes.fromhex(model_id))
    codec = entry.codec if not entry.codec.uses_model else _without_model_index(entry.codec)
    figures, derived = _derivable(entry)
    head += [_record(codec, CODEC_KEYS), varint.pack(derived), _record(figures, FIGURE_KEYS),
             varint.pack(len(entry.streams))]
    parts = []
    for name, v in entry.streams.items():
        a = np.ascontiguousarray(v).reshape(-1)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        head += [_string(name), bytes([DTYPES.index(a.dtype.name)]), varint.pack(a.size)]
        parts.append(a.view(np.uint8).tobytes())
    body = b"".join(head + parts)
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


def _derive(name: str, f: dict, original_bytes: int, stream_bytes: int, codec_bound: float):
    """Figure ``name`` from the others (``f``: the figures as the reader holds them)."""
    if name == "original_bytes":
        return original_bytes
    if name == "coded_bytes":
        return stream_bytes
    if name == "bound":
        return codec_bound
    if name == "psnr":
        return psnr(f["mse"], f["value_range"])
    if f.get("bound") is None or f.get("bound_kind", "abs") != "abs":
        return None
    return abs_error_ratio(f["max_abs_error"], f["bound"])


def _as_read(name: str, v):
    """A figure as the reader holds it: the measured ones rounded to float32."""
    if name in MEASURED and v is not None and abs(v) <= FLOAT32_MAX:
        return float(np.float32(v))
    return v


def _derivable(entry: ArrayEntry) -> tuple[Figures, int]:
    """(the figures to store, with the derivable ones at their defaults; the derived bits)."""
    f = {k: _as_read(k, v) for k, v in dataclasses.asdict(entry.figures).items()}
    stream_bytes = sum(int(np.asarray(v).nbytes) for v in entry.streams.values())
    bits, kept = 0, dict(dataclasses.asdict(entry.figures))
    for i, name in enumerate(DERIVED):
        d = _derive(name, f, entry.size * np.dtype(entry.dtype).itemsize, stream_bytes, entry.codec.bound)
        if d is not None and f[name] is not None and _as_read(name, d) == f[name]:
            bits |= 1 << i
            kept[name] = _placeholder(name)
    return Figures(**kept), bits


def _placeholder(name: str):
    """What a derived figure is stored as: its default, or 0 for a required one."""
    default = Figures.__dataclass_fields__[name].default
    return 0 if default is dataclasses.MISSING else default


def _without_model_index(codec: CodecParams) -> CodecParams:
    return dataclasses.replace(codec, model=-1, model_id="")


def _restore(figures: dict, derived: int, shape, dtype: str, table: list, codec: dict) -> None:
    """Fill in the derived figures, in DERIVED's order."""
    stream_bytes = sum(count * np.dtype(dt).itemsize for _, dt, count, _ in table)
    original_bytes = math.prod(shape) * np.dtype(dtype).itemsize
    for i, name in enumerate(DERIVED):
        if derived >> i & 1:
            try:
                figures[name] = _derive(name, figures, original_bytes, stream_bytes, codec.get("bound", 0.0))
            except (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError):
                raise ContainerError(f"{WHAT} derives figure {name!r} from figures it lacks; it is corrupted") from None


# --- reading -----------------------------------------------------------------------

def is_frame(data: bytes) -> bool:
    return bytes(data[:4]) == MAGIC


class _Reader(varint.Reader):
    def string(self) -> str:
        s = self.varint()
        if s % 2:
            if s // 2 >= len(STRINGS):
                raise ContainerError(f"{WHAT} names string #{s // 2}, which frame version 1 does not list; "
                                     "it is corrupted")
            return STRINGS[s // 2]
        try:
            return self.take(s // 2).decode()
        except UnicodeDecodeError:
            raise ContainerError(f"{WHAT} holds a name that is not UTF-8; it is corrupted") from None

    def byte(self) -> int:
        return self.take(1)[0]

    def value(self, kind: str, single: bool):
        if kind.endswith("?"):
            flag = self.byte()
            if flag > 1:
                raise ContainerError(f"{WHAT} holds a malformed optional value; it is corrupted")
            return self.value(kind[:-1], single) if flag else None
        if kind == "bool":
            flag = self.byte()
            if flag > 1:
                raise ContainerError(f"{WHAT} holds a malformed flag; it is corrupted")
            return bool(flag)
        if kind == "int":
            z = self.varint()
            return z // 2 if z % 2 == 0 else -(z + 1) // 2
        if kind == "number":
            v = struct.unpack("<f" if single else "<d", self.take(4 if single else 8))[0]
            if not math.isfinite(v):
                raise ContainerError(f"{WHAT} holds a number that is not finite; it is corrupted")
            return v
        if kind == "str":
            return self.string()
        n = self.varint()
        differences = kind == "ints" and n % 2
        n = n // 2 if kind == "ints" else n
        if n > len(self.data) - self.pos:  # every item takes a byte at least
            raise ContainerError(f"{WHAT} declares a list longer than itself; it is corrupted")
        items = [self.value("int" if kind == "ints" else "number", False) for _ in range(n)]
        return list(itertools.accumulate(items)) if differences else items

    def record(self, cls, keys: tuple[str, ...]) -> dict:
        d = {}
        while True:
            tag = self.varint()
            if tag == 0:
                return d
            name = self.string() if tag == 1 else keys[tag - 2] if tag - 2 < len(keys) else None
            if name is None or name not in cls.TYPES or name in d:
                raise ContainerError(f"{WHAT}'s {cls.WHAT} record holds an unknown or repeated field; "
                                     "it is corrupted or from a later aezip")
            d[name] = self.value(cls.TYPES[name], tag != 1 and _single(keys, name))


def unpack_entry(data: bytes) -> tuple[ArrayEntry, str | None]:
    """(the entry with its streams, its model's content id or None) from a frame;
    ContainerError (ChecksumError, FormatVersionError) naming what is wrong."""
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        raise ContainerError("these bytes are not an aezip frame (no magic)")
    if len(data) < 9:
        raise ContainerError(f"{WHAT} is truncated ({len(data)} bytes)")
    if data[4] != FRAME_VERSION:
        raise FormatVersionError(f"the frame is frame format version {data[4]}; this aezip reads version "
                                 f"{FRAME_VERSION}: upgrade aezip to read it")
    body, stored = data[:-4], struct.unpack("<I", data[-4:])[0]
    if zlib.crc32(body) & 0xFFFFFFFF != stored:
        raise ChecksumError(f"{WHAT} fails its CRC-32: it is corrupted or truncated")
    r = _Reader(body, WHAT)
    r.take(5)
    flags, dtype_code = r.byte(), r.byte()
    if flags >= 32 or dtype_code >= len(DTYPES):
        raise ContainerError(f"{WHAT}'s flags or dtype are unknown; it is corrupted or from a later aezip")
    ndim = r.varint()
    if ndim > 32:
        raise ContainerError(f"{WHAT} declares {ndim} axes; it is corrupted")
    shape = [r.varint() for _ in range(ndim)]
    name = r.string() if flags & HAS_NAME else ""
    slab = [r.varint(), r.varint()] if flags & HAS_SLAB else None
    model_id = r.take(32).hex() if flags & HAS_MODEL else None
    codec = r.record(CodecParams, CODEC_KEYS)
    if model_id is not None:
        codec["model_id"] = model_id  # the one model this frame names
    derived = r.varint()
    if derived >= 1 << len(DERIVED):
        raise ContainerError(f"{WHAT} derives figures frame version 1 does not know; it is corrupted")
    figures = r.record(Figures, FIGURE_KEYS)
    n_streams = r.varint()
    if n_streams > 64:
        raise ContainerError(f"{WHAT} declares {n_streams} streams; it is corrupted")
    table = []
    for _ in range(n_streams):
        s_name, s_dtype, count = r.string(), r.byte(), r.varint()
        if s_dtype >= len(DTYPES) or any(t[0] == s_name for t in table):
            raise ContainerError(f"{WHAT}'s stream table is malformed; it is corrupted")
        table.append([s_name, DTYPES[s_dtype], count, 0])
    figures = NOT_CARRIED | figures
    _restore(figures, derived, shape, DTYPES[dtype_code], table, codec)
    record = {"name": name, "shape": shape, "dtype": DTYPES[dtype_code], "order": "F" if flags & ORDER_F else "C",
              "byteorder": ">" if flags & BIG_ENDIAN else "<", "codec": codec, "figures": figures, "streams": table}
    if slab is not None:
        record["slab"] = slab
    try:
        text = json.dumps(record, allow_nan=False)
    except ValueError:  # a derived figure that is not finite
        raise ContainerError(f"{WHAT}'s figures are not finite; it is corrupted") from None
    entry, table = parse_entry(text)
    if entry.codec.uses_model != (model_id is not None):
        raise ContainerError(f"{WHAT}'s array {'uses a model it does not name' if model_id is None else 'names a model it does not use'}; it is corrupted")
    sizes = [count * np.dtype(dt).itemsize for _, dt, count, _ in table]
    if sum(sizes) != len(body) - r.pos:
        raise ContainerError(f"{WHAT}'s streams take {len(body) - r.pos} bytes, its table declares {sum(sizes)}; "
                             "it is corrupted")
    check_values_justified(entry, {t[0]: s for t, s in zip(table, sizes)})
    streams = {}
    for (s_name, dt, count, _), size in zip(table, sizes):
        streams[s_name] = np.frombuffer(r.take(size), np.dtype(dt).newbyteorder("<")).astype(dt)
    return dataclasses.replace(entry, streams=streams), model_id
