"""The container's content as typed records, and their JSON forms (formats v1 and v2).

Each record mirrors one part of formats/aezip-container-v1.md; version 2 adds the codec
keys ``interpolation`` and ``weights`` and stores each entry's records as one JSON object
(formats/aezip-container-v2.md). ``parse`` functions
check every field and raise ``ContainerError`` naming the part that is wrong;
keys a record does not know are ignored, so later minor additions stay readable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..errors import ContainerError

FORMAT = "aezip"
FORMAT_VERSION = 5  # the version aezip writes: every record checksummed (formats/aezip-container-v5.md §1)
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5)
CHECKSUMMED_SINCE = 5  # the first version whose header and entry records carry a CRC-32
MAX_HALO = 1024  # rows a slab's transform coding may reach into its neighbours
STORAGES = ("latent", "raw", "constant", "bounded", "transform")
BASES = ("none", "model", "tiles")  # where a bounded prediction starts: 0, the model's x_hat, or it on some tiles
DTYPES = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _object(text: str | bytes, what: str) -> dict:
    try:
        d = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ContainerError(f"the {what} record is not valid JSON; the container is corrupted") from None
    if not isinstance(d, dict):
        raise ContainerError(f"the {what} record is not a JSON object; the container is corrupted")
    return d


def _from_json(cls, text: str | bytes, what: str):
    d = _object(text, what)
    known = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in d.items() if k in known})
    except ContainerError:
        raise
    except (TypeError, ValueError) as e:
        raise ContainerError(f"the {what} record is incomplete or invalid ({e}); the container is corrupted") from None


class _Record:
    """A JSON record of the container; ``parse`` reads one, named ``WHAT`` in errors, and
    refuses any field whose JSON type is not the one ``TYPES`` names (a damaged or forged
    record must fail as a corrupted container, never deep inside a decoder)."""

    WHAT: ClassVar[str] = "record"
    TYPES: ClassVar[dict] = {}

    @classmethod
    def parse(cls, text):
        record = _from_json(cls, text, cls.WHAT)
        for name, kind in cls.TYPES.items():
            if not _is(getattr(record, name), kind):
                raise ContainerError(f"the {cls.WHAT} record's {name!r} is {getattr(record, name)!r}, not {kind}; "
                                     "the container is corrupted")
        return record


def _is(value, kind: str) -> bool:
    """JSON type checks: "int", "number", "bool", "str", "ints", "numbers", optional with "?"."""
    if kind.endswith("?"):
        return value is None or _is(value, kind[:-1])
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    if kind in ("ints", "numbers"):
        return isinstance(value, list) and all(_is(v, kind[:-1] if kind == "ints" else "number") for v in value)
    raise ValueError(kind)


def _lean(record) -> dict:
    """The record's fields, less those at their default value (readers fill defaults back)."""
    d = asdict(record)
    for f in fields(record):
        default = f.default if f.default_factory is MISSING else f.default_factory()  # type: ignore[misc]
        if f.default is not MISSING or f.default_factory is not MISSING:
            if d[f.name] == default:
                del d[f.name]
    return d


def to_json(record) -> str:
    d = [_lean(r) for r in record] if isinstance(record, tuple) else _lean(record)
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _is_id(text: str) -> bool:
    """A model's content id: 64 lowercase hex digits."""
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True, kw_only=True)
class ModelRef(_Record):
    """The model the latents were coded with: identity, name and configuration."""

    WHAT: ClassVar[str] = "model"
    TYPES: ClassVar[dict] = {"name": "str"}

    id: str
    name: str
    config: dict

    def __post_init__(self) -> None:
        if not _is_id(self.id):
            raise ValueError("model id must be 64 lowercase hex digits")

    @classmethod
    def parse_list(cls, text) -> tuple[ModelRef, ...]:
        try:
            items = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise ContainerError("the models record is not valid JSON; the container is corrupted") from None
        if not isinstance(items, list):
            raise ContainerError("the models record is not a JSON list; the container is corrupted")
        return tuple(cls.parse(json.dumps(d)) for d in items)


@dataclass(frozen=True, kw_only=True)
class SourceRef(_Record):
    """What the arrays were read from: ``kind`` (npy, npz, hdf5, raw, array) and the file's base name."""

    WHAT: ClassVar[str] = "source"
    TYPES: ClassVar[dict] = {"kind": "str", "name": "str"}

    kind: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("npy", "npz", "hdf5", "raw", "array"):
            raise ValueError(f"unknown source kind {self.kind!r}")



@dataclass(frozen=True, kw_only=True)
class CodecParams(_Record):
    """How one array was coded (keys at their default value are left out of the JSON).

    storage "latent": x_n = (x - offset) / scale was cut into tiles of edge ``tile`` over the
    trailing ``ndim`` axes and coded as latents of shape ``latent_shape``;
    "raw": the values are stored exactly; "constant": every value equals ``offset``;
    "bounded": every value within ``bound`` (mode ``mode``) by the residual coder with
    ``levels`` interpolation levels visited in the order ``interpolation`` ("axes": format
    v1's, "groups" or "diamond": v2's) with per-step predictors ``predictors`` (and the weights
    ``weights`` of the fitted ones), per-step table radii ``radii`` and
    ``residual_escapes`` escaped codes; with ``base`` "model" the prediction starts from
    the model's reconstruction (the latent keys describe it), and with "tiles" from that
    reconstruction on the model tiles the stream "tiles" flags and 0 elsewhere (the
    latents are those tiles' only); ``bound`` is then the promise less ``margin``, the
    network's allowed drift between machines, and ``base_check`` holds the sum and sum of
    squares of that prediction for the decoder to compare; ``integer``:
    integer residual coding (step 2 floor(bound) + 1, predictions rounded), used for
    integer dtypes and for floats holding only integers; ``fill_values``: the values the
    source declared missing, kept exactly and left out of every figure; ``latent_coding``:
    "tables" (the model's frozen integer tables) or "adaptive" (counts learned while coding,
    one sequence per latent channel with table radii ``latent_radii``), whichever was smaller.
    ``coarse`` (format version 3): [q, S], the anchors and the steps of stride S or more
    were quantized within ``bound`` / q (float bounded coding, for PSNR).
    ``filter`` (format version 4): the weights (units of 1/4096) of the linear filter
    applied after decoding (aezip.codec.postfilter; --psnr without a model), its
    corrections within bound/2.
    ``symbols_crc32`` is the CRC-32 of the decoded latents (int32, little-endian, C order);
    the stream's last ``escapes`` int32 values are the escaped latents;
    ``model_id`` (format version 5) names the model by its content id, one of the
    container's model list; ``model``, in earlier files, indexes that list (-1: no model).
    "transform" (format version 5, the plain learned mode's coder): ``transform`` names its
    architecture (aezip.codec.architecture's registry; "cdf97": aezip.codec.transform):
    x - ``offset`` went through ``levels`` levels of the wavelet over the
    trailing ``ndim`` axes, its coefficients quantized with ``step``, the codes range-coded
    per subband (the stream "codes" begins with the coder's table radii and the subbands'
    reconstruction offsets); ``symbols_crc32`` is the CRC-32 of the codes; ``integer``: the
    decoded values are rounded to integers; ``scale`` (when not 0): a power of two the
    decoded values are multiplied by (ranges beyond 2^+-200); ``halo`` [h0, h1]: a slab coded with h0 rows
    before it and h1 after it (of which it keeps its own), so that no seam shows.
    ``ndim`` (format version 5 also on "bounded"): the trailing axes coded as spatial, the
    leading ones a batch of planes; ``ndim_given``: --ndim said so (else chosen from the
    data); ``planes`` ("bounded"): the interpolation ran over the part shape with its
    leading axes merged into the first spatial one (aezip.codec.bounded.planes_shape).
    """

    WHAT: ClassVar[str] = "codec"
    TYPES: ClassVar[dict] = {
        "storage": "str", "ndim": "int", "tile": "int", "offset": "number", "scale": "number", "latent_shape": "ints",
        "symbols_crc32": "int", "escapes": "int", "model": "int", "mode": "str", "bound": "number", "levels": "int",
        "radii": "ints", "predictors": "ints", "residual_escapes": "int", "base": "str", "margin": "number",
        "base_check": "numbers", "integer": "bool", "fill_values": "numbers", "latent_coding": "str",
        "latent_radii": "ints", "interpolation": "str", "weights": "ints", "coarse": "numbers", "filter": "ints",
        "transform": "str", "step": "number", "halo": "ints", "model_id": "str", "planes": "bool",
        "ndim_given": "bool"}

    storage: str
    ndim: int = 0
    tile: int = 0
    offset: float = 0.0
    scale: float = 0.0
    latent_shape: list = field(default_factory=list)
    symbols_crc32: int = 0
    escapes: int = 0
    model: int = -1
    mode: str = ""
    bound: float = 0.0
    levels: int = 0
    radii: list = field(default_factory=list)
    predictors: list = field(default_factory=list)
    residual_escapes: int = 0
    base: str = "none"
    margin: float = 0.0
    base_check: list = field(default_factory=list)
    integer: bool = False
    fill_values: list = field(default_factory=list)
    latent_coding: str = "tables"
    latent_radii: list = field(default_factory=list)
    interpolation: str = "axes"
    weights: list = field(default_factory=list)
    coarse: list = field(default_factory=list)
    filter: list = field(default_factory=list)
    transform: str = ""
    step: float = 0.0
    halo: list = field(default_factory=list)
    model_id: str = ""
    planes: bool = False
    ndim_given: bool = False

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ContainerError(
                f"an array is stored as {self.storage!r}, which this aezip does not know: upgrade aezip to read it"
            )
        if self.base not in BASES:
            raise ContainerError(f"an array's prediction starts from {self.base!r}, which this aezip does not know: "
                                 "upgrade aezip to read it")
        if self.uses_model and not (self.ndim in (1, 2, 3) and self.tile > 0 and self.scale > 0):
            raise ValueError("latent coding needs ndim 1-3, a positive tile and a positive scale")
        if self.storage == "bounded" and (self.mode not in ("abs", "rel", "psnr", "pw_rel") or self.bound < 0):
            raise ValueError(f"bounded storage with mode {self.mode!r} and bound {self.bound}")
        if self.storage == "bounded" and not 0 <= self.levels <= 30:
            raise ValueError(f"{self.levels} interpolation levels")
        if self.escapes < 0 or self.residual_escapes < 0:
            raise ValueError("negative escape count")
        if self.interpolation not in ("axes", "groups", "diamond"):
            raise ContainerError(f"an array is interpolated in the order {self.interpolation!r}, which this aezip "
                                 "does not know: upgrade aezip to read it")
        if self.latent_coding not in ("tables", "adaptive"):
            raise ContainerError(f"latents coded as {self.latent_coding!r}, which this aezip does not know: upgrade aezip")
        if self.coarse and not (self.storage == "bounded" and not self.integer and _coarse_ok(self.coarse)):
            raise ValueError(f"coarse {self.coarse} is not (divisor >= 1, stride a power of two) on float bounded coding")
        if self.filter and not (self.storage == "bounded" and self.mode == "psnr" and self.base == "none"
                                ):
            raise ValueError("filter weights on an array that is not --psnr bounded coding without a model")
        if self.storage == "transform":
            if not self.transform:
                raise ValueError("transform coding without its architecture's name")
            if not (self.ndim in (1, 2, 3) and 0 <= self.levels <= 30 and self.step > 0):
                raise ValueError("transform coding needs ndim 1-3, 0-30 levels and a positive step")
            if self.scale and math.frexp(self.scale)[0] != 0.5:
                raise ValueError(f"transform scale {self.scale} is not a power of two")
            if self.halo and not (len(self.halo) == 2 and all(0 <= h <= MAX_HALO for h in self.halo)):
                raise ValueError(f"halo {self.halo} is not two row counts of at most {MAX_HALO}")
        elif self.transform or self.step or self.halo:
            raise ValueError("transform keys on an array that is not transform coded")
        if self.planes and not (self.storage == "bounded" and self.ndim in (1, 2, 3)):
            raise ValueError("planes on an array that is not bounded coding over 1-3 spatial axes")
        if self.model_id and not (_is_id(self.model_id) and self.uses_model and self.model == -1):
            raise ValueError(f"model_id {self.model_id[:70]!r} is not the 64 hex digits of a model this array uses, "
                             "named once")

    @property
    def uses_model(self) -> bool:
        """Whether decoding runs the model (storage latent, or a bounded base from it)."""
        return self.storage == "latent" or self.base != "none"



@dataclass(frozen=True, kw_only=True)
class Figures(_Record):
    """Measured at compress time, in float64 against the input. ``psnr`` is None when exact.

    ``bound`` is the promised max error (None in the plain learned mode: there the
    max error was measured, not guaranteed): absolute, or relative to |x| when
    ``bound_kind`` is "pw_rel". ``max_error_ratio`` is the measured max error / bound.
    Errors are over the valid values (``invalid_values`` NaN, Inf or declared fill values
    are restored exactly and left out).
    ``coded_bytes`` counts this array's streams.
    """

    WHAT: ClassVar[str] = "figures"
    TYPES: ClassVar[dict] = {
        "original_bytes": "int", "coded_bytes": "int", "mse": "number", "psnr": "number?", "max_abs_error": "number",
        "value_range": "number", "seconds": "number", "bound": "number?", "bound_kind": "str",
        "max_error_ratio": "number?", "invalid_values": "int"}

    original_bytes: int
    coded_bytes: int
    mse: float
    psnr: float | None
    max_abs_error: float
    value_range: float
    seconds: float
    bound: float | None = None
    bound_kind: str = "abs"
    max_error_ratio: float | None = None
    invalid_values: int = 0

    def __post_init__(self) -> None:  # a forged negative figure must fail here, not in a logarithm later
        figures = (self.original_bytes, self.coded_bytes, self.mse, self.max_abs_error, self.value_range,
                   self.invalid_values, self.bound or 0, self.max_error_ratio or 0)
        if any(v < 0 for v in figures if isinstance(v, (int, float))):
            raise ValueError("a negative size, error or range")



@dataclass(frozen=True, kw_only=True)
class ArrayEntry:
    """One array: its identity, how it was coded, its figures and its streams.

    ``streams`` maps a stream name to a 1-D numpy array: "latents" (uint8: the coded
    latents, then the escaped values) for storage "latent", "values" for "raw", none for
    "constant". Empty when the container was read without streams.

    ``slab`` = (start, stop): the entry holds rows [start, stop) along axis 0 of the array
    ``name`` of full shape ``shape``, coded on its own; None: the whole array.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    order: str
    byteorder: str
    codec: CodecParams
    figures: Figures
    streams: dict = field(default_factory=dict)
    slab: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype!r}")
        if any(n < 0 for n in self.shape):
            raise ValueError("negative extent in shape")
        if self.order not in ("C", "F") or self.byteorder not in ("<", ">"):
            raise ValueError("order must be C or F and byteorder < or >")
        if self.slab is not None and not (len(self.slab) == 2 and len(self.shape) >= 1
                                          and 0 <= self.slab[0] < self.slab[1] <= self.shape[0]):
            raise ValueError(f"slab {self.slab} does not fit shape {self.shape}")
        if self.codec.halo and (self.slab is None or self.slab[0] < self.codec.halo[0]
                                or self.slab[1] + self.codec.halo[1] > self.shape[0]):
            raise ValueError(f"halo {self.codec.halo} reaches beyond the array (slab {self.slab}, shape {self.shape})")

    @property
    def part_shape(self) -> tuple[int, ...]:
        """Shape of what this entry codes: the slab, or the whole array."""
        if self.slab is None:
            return self.shape
        return (self.slab[1] - self.slab[0],) + tuple(self.shape[1:])

    @property
    def tiles(self) -> int:
        """Number of model tiles over what this entry codes (codec ``tile`` along its
        ``ndim`` trailing axes, one row of tiles per index of the leading axes)."""
        c, shape = self.codec, self.part_shape
        spatial = shape[len(shape) - c.ndim:]
        return math.prod(shape[: len(shape) - c.ndim]) * math.prod(-(-n // c.tile) for n in spatial)

    @property
    def integer_coded(self) -> bool:
        """Whether bounded coding ran on integers (an integer dtype, or floats holding
        integers: codec ``integer``), with step 2 floor(bound) + 1."""
        return self.codec.integer or np.dtype(self.dtype).kind in "iu"

    @property
    def size(self) -> int:
        """Number of values this entry codes."""
        return math.prod(self.part_shape)


def _coarse_ok(coarse: list) -> bool:
    """[q, S]: a divisor q >= 1 and a stride S that is a power of two."""
    if len(coarse) != 2:
        return False
    q, s = coarse
    return 1 <= q < math.inf and s >= 1 and float(s).is_integer() and int(s) & (int(s) - 1) == 0


# A range coder at 24-bit precision spends at least 2**-24 / ln 2 bits on a symbol, so one
# byte of coded stream stands for at most 8 ln 2 * 2**24 < 2**27 symbols.
CODED_SYMBOLS_PER_BYTE = 1 << 27
MAX_BYTES = 1 << 62  # no array (numpy's sizes are signed 64-bit) is larger
MAX_VALUES_PER_LATENT = 1 << 20  # a latent symbol stands for at most a tile's values (tile**ndim), capped


def values_justified(entry: ArrayEntry, stream_bytes: dict[str, int]) -> float:
    """The most values an entry's streams (name -> stored bytes) can stand for, by its storage:
    any number for a constant (legitimately tiny at any size), the stored values for raw,
    and for coded storages the range coder's limit per byte (per latent symbol, a tile)."""
    storage = entry.codec.storage
    if storage == "constant":
        return math.inf
    if storage == "raw":
        return stream_bytes.get("values", 0) // np.dtype(entry.dtype).itemsize
    per_symbol = min(entry.codec.tile ** entry.codec.ndim, MAX_VALUES_PER_LATENT) if storage == "latent" else 1
    return (sum(stream_bytes.values()) + 8) * CODED_SYMBOLS_PER_BYTE * per_symbol


def check_values_justified(entry: ArrayEntry, stream_bytes: dict[str, int]) -> None:
    """ContainerError when an entry declares more values than its streams can hold (a forged
    shape): checked before anything of that size is allocated."""
    most = min(values_justified(entry, stream_bytes), MAX_BYTES // np.dtype(entry.dtype).itemsize)
    if entry.size > most:
        raise ContainerError(f"array {entry.name!r}: the container declares {entry.size:,} values; its streams hold "
                             f"at most {int(most):,}; the container is corrupted")


def check_names(arrays: Sequence[ArrayEntry], where: str) -> None:
    """Entry names place outputs inside the chosen file only: '/'-separated segments, none
    empty, '.' or '..', no backslash or control character; and no two entries share a
    name and slab (names compared without their leading or trailing '/')."""
    seen = set()
    for a in arrays:
        inner = a.name.strip("/")
        segments = inner.split("/") if inner else []
        if any(s in ("", ".", "..") for s in segments) or any(ch == "\\" or ord(ch) < 32 for ch in a.name):
            raise ContainerError(f"{where}: array name {a.name!r} is not a plain path inside the output; "
                                 "the container is corrupted or forged")
        key = (inner, a.slab)
        if key in seen:
            raise ContainerError(f"{where}: two entries are both array {a.name!r}"
                                 f"{'' if a.slab is None else f' rows {a.slab[0]}:{a.slab[1]}'}; "
                                 "the container is corrupted or forged")
        seen.add(key)


def model_of(a: ArrayEntry, models: Sequence[ModelRef]) -> ModelRef | None:
    """The record, in the container's model list ``models``, of the model entry ``a``
    names: by its content id ``model_id`` (format version 5) or by its index ``model``
    (earlier); None if it names none. ContainerError if the list does not hold it."""
    c = a.codec
    if c.model_id:
        ref = next((m for m in models if m.id == c.model_id), None)
        if ref is None:
            raise ContainerError(f"array {a.name!r} names model {c.model_id[:12]}, which the container does not list; "
                                 "the container is corrupted")
        return ref
    if not -1 <= c.model < len(models):
        raise ContainerError(f"array {a.name!r} names model #{c.model}, which the container does not list; "
                             "the container is corrupted")
    return models[c.model] if c.model >= 0 else None


def check_model_refs(arrays: Sequence[ArrayEntry], models: Sequence[ModelRef], where: str) -> None:
    """Each entry names no model or one of the container's model list, and one that runs
    the model names one."""
    for a in arrays:
        try:
            ref = model_of(a, models)
        except ContainerError as err:
            raise ContainerError(f"{where}: {err}") from None
        if a.codec.uses_model and ref is None:
            raise ContainerError(f"{where}: array {a.name!r} uses a model but names none; the container is corrupted")


def version_needed(codec: CodecParams) -> int:
    """The lowest format version that can hold an entry coded this way (version 3:
    ``coarse``; version 4: ``filter``; version 5: storage "transform", ``model_id``;
    version 2 otherwise). A file of version N may hold
    any entry that needs version N or less."""
    return 5 if codec.storage == "transform" or codec.model_id else 4 if codec.filter else 3 if codec.coarse else 2


@dataclass(frozen=True, kw_only=True)
class Container:
    writer: str
    source: SourceRef
    arrays: tuple[ArrayEntry, ...]
    models: tuple[ModelRef, ...] = ()
    skeleton: bytes | None = None
    embedded_model: bytes | None = None
    format_version: int = FORMAT_VERSION


# --- format v2: one JSON record per array entry and one for the root -----------------------

STREAM_DTYPES = DTYPES  # a stream's values: little-endian numbers of one of these types


def header_json(c: Container, n_arrays: int) -> str:
    """The root's ``header`` record (v2): writer, source, models, number of entries."""
    d = {"writer": c.writer, "source": _lean(c.source), "n_arrays": n_arrays}
    if c.models:
        d["models"] = [_lean(m) for m in c.models]
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _derived(d: dict, table: list) -> dict:
    """The figures a record may leave out (format v5 §5), from the rest of the record ``d``
    (shape, dtype, slab, figures' mse and value_range) and its stream ``table``."""
    shape = list(d["shape"])
    if d.get("slab") is not None and shape:
        shape[0] = d["slab"][1] - d["slab"][0]
    f = d["figures"]
    out = {"original_bytes": math.prod(shape) * np.dtype(d["dtype"]).itemsize,
           "coded_bytes": sum(int(count) * np.dtype(kind).itemsize for _, kind, count, _ in table)}
    if _is(f.get("mse"), "number") and _is(f.get("value_range"), "number") and f["mse"] >= 0:
        mse, vrange = f["mse"], f["value_range"]
        out["psnr"] = None if mse == 0 else -math.inf if vrange == 0 else 20 * math.log10(vrange) - 10 * math.log10(mse)
    return out


def entry_json(a: ArrayEntry, table: list[list]) -> str:
    """An entry's ``record`` (v2): its identity, codec, figures and the table of its streams,
    ``[name, dtype, count, crc32]`` each, in the order they follow each other in the dataset;
    figures that follow from the rest are left out (v5 §5)."""
    d = {"name": a.name, "shape": list(a.shape), "dtype": a.dtype, "order": a.order, "byteorder": a.byteorder,
         "codec": _lean(a.codec), "figures": _lean(a.figures), "streams": table}
    if a.slab is not None:
        d["slab"] = list(a.slab)
    for key, value in _derived(d, table).items():
        if key in d["figures"] and d["figures"][key] == value:
            del d["figures"][key]
    return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _typed(d: dict, key: str, kind: str, what: str):
    if key not in d or not _is(d[key], kind):
        raise ContainerError(f"the {what} record's {key!r} is missing or not {kind}; the container is corrupted")
    return d[key]


def parse_header(text) -> tuple[str, SourceRef, tuple[ModelRef, ...], int]:
    """(writer, source, models, number of entries) from the root's ``header`` record."""
    d = _object(text, "header")
    writer, n = _typed(d, "writer", "str", "header"), _typed(d, "n_arrays", "int", "header")
    if not isinstance(d.get("source"), dict) or not isinstance(d.get("models", []), list):
        raise ContainerError("the header record's source or models are malformed; the container is corrupted")
    source = SourceRef.parse(json.dumps(d["source"]))
    models = tuple(ModelRef.parse(json.dumps(m)) for m in d.get("models", []))
    return writer, source, models, n


def parse_entry(text) -> tuple[ArrayEntry, list[tuple[str, str, int, int]]]:
    """An entry (without its streams) and its stream table from an entry's ``record``."""
    d = _object(text, "array")
    for key, kind in (("name", "str"), ("shape", "ints"), ("dtype", "str"), ("order", "str"), ("byteorder", "str")):
        _typed(d, key, kind, "array")
    if not isinstance(d.get("codec"), dict) or not isinstance(d.get("figures"), dict):
        raise ContainerError("the array record's codec or figures are malformed; the container is corrupted")
    table = d.get("streams")
    if not isinstance(table, list) or not all(
            isinstance(t, list) and len(t) == 4 and _is(t[0], "str") and t[1] in STREAM_DTYPES
            and _is(t[2], "int") and t[2] >= 0 and _is(t[3], "int") for t in table):
        raise ContainerError("the array record's stream table is malformed; the container is corrupted")
    slab = d.get("slab")
    if slab is not None and not _is(slab, "ints"):
        raise ContainerError("the array record's slab is malformed; the container is corrupted")
    if slab is not None and len(slab) != 2:
        raise ContainerError("the array record's slab is malformed; the container is corrupted")
    try:
        d["figures"] = {**_derived(d, table), **d["figures"]}
    except (TypeError, ValueError, OverflowError):
        raise ContainerError("the array record's shape or dtype is malformed; the container is corrupted") from None
    try:
        entry = ArrayEntry(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"], order=d["order"],
                           byteorder=d["byteorder"], codec=CodecParams.parse(json.dumps(d["codec"])),
                           figures=Figures.parse(json.dumps(d["figures"])),
                           slab=None if slab is None else tuple(slab))
    except ContainerError:
        raise
    except ValueError as e:
        raise ContainerError(f"an array record is invalid ({e}); the container is corrupted") from None
    return entry, [tuple(t) for t in table]
