"""The compress / decompress data flow.

compress:   read -> check -> normalize -> tile -> encode (g_a, round) -> entropy-code
            -> decode (g_s, the decompressor's own path) -> measure -> write container
decompress: read container -> entropy-decode -> g_s -> untile -> denormalize -> write
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from collections.abc import Sequence

import numpy as np

from . import io as aeio
from . import progress
from ._version import __version__
from .codec import entropy
from .codec.normalize import Normalization
from .codec.tile import tile, untile
from .container import (ArrayEntry, CodecParams, Container, Figures, ModelRef, SourceRef, read_container,
                        write_container)
from .fileutil import check_writable
from .errors import BoundExceededError, ChecksumError, ContainerError, UnsupportedDataError, UsageError
from .metrics import Quality, Report, combine, value_range

WRITER = f"aezip {__version__}"


def _check(x: np.ndarray, name: str) -> None:
    what = f"array {name!r}" if name else "the array"
    if x.dtype.kind in "iub":
        raise UnsupportedDataError(
            f"{what} is {x.dtype}: integer data is not supported yet; convert it to float32 or float64 first"
        )
    if x.dtype not in (np.float32, np.float64):
        raise UnsupportedDataError(f"{what} is {x.dtype}; aezip compresses float32 and float64 arrays")
    if x.size == 0:
        raise UnsupportedDataError(f"{what} is empty (shape {x.shape}); there is nothing to compress")
    if not np.isfinite(x).all():
        raise UnsupportedDataError(
            f"{what} contains NaN or Inf; aezip does not handle non-finite values yet: replace them first"
        )


def spatial_ndim(x: np.ndarray, ndim: int | None) -> int:
    """Trailing axes that are spatial: ``ndim`` if given, else all axes up to 3."""
    if ndim is None:
        return min(x.ndim, 3)
    if ndim not in (1, 2, 3):
        raise UsageError(f"--ndim must be 1, 2 or 3, got {ndim}")
    if ndim > x.ndim:
        raise UsageError(f"--ndim {ndim} but the array has only {x.ndim} axes (shape {x.shape})")
    return ndim


class _Models:
    """The models a container uses, loaded once each, listed in order of first use."""

    def __init__(self, spec: str | None, device: str):
        from .model import load_model, resolve_device

        self._load, self.spec = load_model, spec
        self.embedded: bytes | None = None  # a model file carried by the container being decoded
        self.device = resolve_device(device)
        self.refs: list[ModelRef] = []
        self._by_ndim: dict[int, object] = {}

    def for_ndim(self, d: int):
        if d not in self._by_ndim:
            m = self._load(self.spec, ndim=d, device=self.device)
            self._by_ndim[d] = m
            self.refs.append(ModelRef(id=m.id, name=m.name, config=m.config.to_dict()))
        return self._by_ndim[d]

    def index(self, model) -> int:
        return [r.id for r in self.refs].index(model.id)

    def for_ref(self, ref: ModelRef):
        return self._load(self.spec, model_id=ref.id, embedded=self.embedded, device=self.device)


def _symbols_crc(y_hat: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(y_hat, dtype="<i4").tobytes()) & 0xFFFFFFFF


def _decode_latents(model, norm: Normalization, y_hat: np.ndarray, batch_shape: tuple[int, ...], dtype,
                    desc: str) -> np.ndarray:
    with progress.bar(y_hat.shape[0], desc) as advance:
        x_hat_tiles = model.decode(y_hat, advance)
    return norm.inverse(untile(x_hat_tiles[:, 0], batch_shape), dtype)


def encode_array(x: np.ndarray, name: str, models: _Models, ndim: int | None, *, order: str = "C",
                 byteorder: str = "<") -> tuple[ArrayEntry, np.ndarray]:
    """Code one array; returns its container entry and the reconstruction the decoder will produce."""
    t0 = time.perf_counter()
    _check(x, name)
    d = spatial_ndim(x, ndim)
    norm = Normalization.fit(x)
    dtype = x.dtype.name
    if norm.scale == 0:
        codec, streams, x_hat = CodecParams(storage="constant", offset=norm.offset), {}, np.full(x.shape, norm.offset, x.dtype)
    elif not math.isfinite(norm.scale) or not math.isfinite(norm.offset):
        codec, streams, x_hat = CodecParams(storage="raw"), {"values": x.reshape(-1)}, x
    else:
        model = models.for_ndim(d)
        batch_shape = (-1,) + x.shape[x.ndim - d:]
        x_b = x.reshape(batch_shape)
        tiles = tile(norm.forward(x_b), model.tile)
        with progress.bar(tiles.shape[0], f"encode {name}".strip()) as advance:
            y_hat = model.encode(tiles, advance)
        data, n_escapes = entropy.encode(y_hat, model.tables)
        x_hat = _decode_latents(model, norm, y_hat, x_b.shape, x.dtype, f"check {name}".strip()).reshape(x.shape)
        codec = CodecParams(storage="latent", ndim=d, tile=model.tile, offset=norm.offset, scale=norm.scale,
                            latent_shape=list(y_hat.shape), symbols_crc32=_symbols_crc(y_hat), escapes=n_escapes,
                            model=models.index(model))
        streams = {"latents": np.frombuffer(data, dtype=np.uint8)}
        if len(data) >= x.nbytes:  # never worse than raw: store the values exactly
            codec, streams, x_hat = CodecParams(storage="raw"), {"values": x.reshape(-1)}, x
    q = Quality.measure(x, x_hat)
    figures = Figures(
        original_bytes=int(x.nbytes), coded_bytes=int(sum(s.nbytes for s in streams.values())), mse=q.mse,
        psnr=q.psnr, max_abs_error=q.max_abs_error, value_range=value_range(x), seconds=time.perf_counter() - t0,
    )
    entry = ArrayEntry(name=name, shape=tuple(x.shape), dtype=dtype, order=order, byteorder=byteorder,
                       codec=codec, figures=figures, streams=streams)
    return entry, x_hat


def decode_array(entry: ArrayEntry, models: _Models, refs: Sequence[ModelRef]) -> np.ndarray:
    """Reconstruct one array from its entry (native byte order, C order)."""
    c, dtype = entry.codec, np.dtype(entry.dtype)
    if c.storage == "constant":
        return np.full(entry.shape, c.offset, dtype=dtype)
    if c.storage == "raw":
        x = entry.streams.get("values")
        if x is None or x.size != entry.size or x.dtype.kind != "f":
            raise ContainerError(f"array {entry.name!r}: raw stream missing or of the wrong length; the container is corrupted")
        return x.astype(dtype).reshape(entry.shape)
    if not 0 <= c.model < len(refs):
        raise ContainerError(f"array {entry.name!r} names model #{c.model}, which the container does not list")
    model = models.for_ref(refs[c.model])
    stream = entry.streams.get("latents")
    if stream is None or stream.dtype != np.uint8:
        raise ContainerError(f"array {entry.name!r}: latent stream missing; the container is corrupted")
    latent_shape = tuple(int(n) for n in c.latent_shape)
    batch_shape = (-1,) + tuple(entry.shape[len(entry.shape) - c.ndim:])
    n_tiles = int(np.prod(entry.shape[: len(entry.shape) - c.ndim], dtype=np.int64)) * int(
        np.prod([math.ceil(n / c.tile) for n in batch_shape[1:]]))
    if latent_shape != model.latent_shape(n_tiles) or c.tile != model.tile:
        raise ContainerError(f"array {entry.name!r}: latent shape {latent_shape} does not fit model {model.name}")
    y_hat = entropy.decode(stream.tobytes(), c.escapes, model.tables, latent_shape)
    if _symbols_crc(y_hat) != c.symbols_crc32:
        raise ChecksumError(f"array {entry.name!r}: decoded latents fail their checksum; the container is corrupted")
    norm = Normalization(offset=c.offset, scale=c.scale)
    batch = (int(np.prod(entry.shape[: len(entry.shape) - c.ndim], dtype=np.int64)),) + batch_shape[1:]
    return _decode_latents(model, norm, y_hat, batch, dtype, f"decode {entry.name}".strip()).reshape(entry.shape)


def _array_report(entry: ArrayEntry, *, compressed_bytes: int, seconds: float, refs: Sequence[ModelRef],
                  measured: Quality | None = None, input=None, output=None) -> Report:
    f = entry.figures
    model = refs[entry.codec.model].name if entry.codec.storage == "latent" else None
    return Report(input=input, output=output, name=entry.name, shape=entry.shape, dtype=entry.dtype,
                  original_bytes=f.original_bytes, compressed_bytes=compressed_bytes, mse=f.mse, psnr=f.psnr,
                  max_abs_error=f.max_abs_error, value_range=f.value_range, seconds=seconds,
                  storage=entry.codec.storage, model=model, bound=f.bound, measured=measured)


def _file_report(parts: list[Report], *, input, output, file_bytes: int, seconds: float) -> Report:
    if len(parts) == 1:
        return dataclasses.replace(parts[0], input=input, output=output, compressed_bytes=file_bytes, seconds=seconds)
    return combine(parts, input=input, output=output, compressed_bytes=file_bytes, seconds=seconds)


def default_container_name(path: str) -> str:
    return path + ".aez"


def compress(data: np.ndarray | str, output: str | None = None, *, model: str | None = None,
             ndim: int | None = None, device: str = "auto", key: str | None = None,
             shape: tuple[int, ...] | None = None, dtype: str | None = None, force: bool = False) -> Report:
    """Compress an array or a file into an .aez container and report the figures.

    ``data`` is a numpy array (``output`` required) or an input spec: ``x.npy``,
    ``x.npz``, ``x.h5``, ``x.h5:/group/dataset``, or a raw binary with ``shape`` and ``dtype``.

    Examples
    --------
    >>> import numpy as np, aezip
    >>> x = np.cumsum(np.random.default_rng(0).standard_normal((256, 256)), axis=1).astype(np.float32)
    >>> report = aezip.compress(x, "/tmp/x.aez", force=True)
    >>> report.compression_ratio > 1
    True
    """
    models = _Models(model, device)  # imports torch: process start-up, not compression time
    t0 = time.perf_counter()
    if isinstance(data, np.ndarray):
        if output is None:
            raise UsageError("compressing an in-memory array needs an output path")
        x = np.asarray(data)
        src = aeio.Input(path="", kind="array", skeleton=None, fields=(aeio.Field(
            name="", x=np.ascontiguousarray(x).astype(x.dtype.newbyteorder("="), copy=False),
            order="F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C",
            byteorder=">" if x.dtype.byteorder == ">" else "<"),))
    else:
        src = aeio.read_input(str(data), key=key, shape=shape, dtype=dtype)
        output = output or default_container_name(src.path)
    check_writable(output, force)
    entries = []
    for fld in src.fields:
        entry, _ = encode_array(fld.x, fld.name, models, ndim, order=fld.order,
                                byteorder=">" if fld.byteorder == ">" else "<")
        entries.append(entry)
    container = Container(writer=WRITER, source=SourceRef(kind=src.kind, name=os.path.basename(src.path)),
                          arrays=tuple(entries), models=tuple(models.refs), skeleton=src.skeleton)
    file_bytes = write_container(output, container, force=force)
    parts = [_array_report(e, compressed_bytes=e.figures.coded_bytes, seconds=e.figures.seconds, refs=models.refs)
             for e in entries]
    return _file_report(parts, input=src.path or None, output=output, file_bytes=file_bytes,
                        seconds=time.perf_counter() - t0)


def decompress(path: str, output: str | None = None, *, model: str | None = None, device: str = "auto",
               original: str | np.ndarray | None = None, key: str | None = None, force: bool = False,
               write: bool = True) -> tuple[np.ndarray | dict[str, np.ndarray], Report]:
    """Decode a container; write the reconstruction (unless ``write`` is False) and report.

    Returns the array (or a dict name -> array when the container holds several) and the
    report, whose ratio is recomputed from the container's size on disk. With
    ``original`` (a path or an array) the errors are measured against it too; a measured
    error above a bound stored in the container raises ``BoundExceededError`` after writing.
    """
    models = _Models(model, device)  # imports torch: process start-up, not decompression time
    t0 = time.perf_counter()
    c = read_container(path)
    file_bytes = os.path.getsize(path)
    kind = c.source.kind if c.source.kind != "array" else "npy"
    if write:
        if output is None:
            output = aeio.default_output_name(path, kind)
        kind = aeio.output_kind(output) or kind
        check_writable(output, force)
    models.embedded = c.embedded_model
    x_hats = [decode_array(e, models, c.models) for e in c.arrays]
    references = _references(original, c, key)
    seconds = time.perf_counter() - t0
    parts = []
    for e, x_hat, ref in zip(c.arrays, x_hats, references):
        measured = None
        if ref is not None:
            if ref.shape != x_hat.shape:
                raise UsageError(f"--original {e.name or 'array'} has shape {ref.shape}, the container {x_hat.shape}")
            measured = Quality.measure(ref, x_hat)
        parts.append(_array_report(e, compressed_bytes=e.figures.coded_bytes, seconds=seconds, refs=c.models,
                                   measured=measured))
    if write:
        fields = [(e.name, x_hat, e.order, e.byteorder) for e, x_hat in zip(c.arrays, x_hats)]
        aeio.write_output(output, fields, kind=kind, skeleton=c.skeleton if kind == "hdf5" else None, force=force)
    report = _file_report(parts, input=path, output=output if write else None, file_bytes=file_bytes,
                          seconds=time.perf_counter() - t0)
    for p in parts:
        if p.measured is not None and p.bound is not None and p.measured.max_abs_error > p.bound:
            raise BoundExceededError(
                f"array {p.name!r}: measured max error {p.measured.max_abs_error:.6g} exceeds the stored bound {p.bound:.6g}"
            )
    result = x_hats[0] if len(x_hats) == 1 else {e.name: x for e, x in zip(c.arrays, x_hats)}
    return result, report


def _references(original, c: Container, key: str | None) -> list[np.ndarray | None]:
    if original is None:
        return [None] * len(c.arrays)
    if isinstance(original, np.ndarray):
        if len(c.arrays) != 1:
            raise UsageError("the container holds several arrays; pass the original file, not one array")
        return [np.asarray(original)]
    src = aeio.read_input(str(original), key=key)
    by_name = {f.name: f.x for f in src.fields}
    if len(c.arrays) == 1 and len(src.fields) == 1:
        return [src.fields[0].x]
    missing = [e.name for e in c.arrays if e.name not in by_name]
    if missing:
        raise UsageError(f"--original {original} has no array named {missing[0]!r}; pass the file the container was made from")
    return [by_name[e.name] for e in c.arrays]


def info(path: str) -> Container:
    """The container's records without its streams: never decodes the payload."""
    return read_container(path, streams=False)


def verify(path: str, *, model: str | None = None, device: str = "auto") -> Report:
    """Check every checksum and decode every array without writing anything."""
    _, report = decompress(path, model=model, device=device, write=False)
    return report
