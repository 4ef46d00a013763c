"""The compress / decompress data flow.

compress:   read -> for each array: code it (aezip.coding: learned or bounded) and measure
            what the decoder will return -> write the container -> report
decompress: read the container (checksums) -> decode each array -> measure against
            --original -> write -> report
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import numpy as np

from . import io as aeio
from ._version import __version__
from .codec.bounded import Bound
from .coding import Models, decode_array, encode_array
from .container import ArrayEntry, Container, ModelRef, SourceRef, read_container, write_container
from .errors import BoundExceededError, UsageError
from .fileutil import check_writable
from .metrics import Quality, Report, combine, max_error_ratio, valid_mask

WRITER = f"aezip {__version__}"


def _array_report(entry: ArrayEntry, *, compressed_bytes: int, seconds: float, refs: Sequence[ModelRef],
                  measured: Quality | None = None, measured_ratio: float | None = None, input=None,
                  output=None) -> Report:
    f, c = entry.figures, entry.codec
    uses_model = c.storage == "latent" or c.base == "model"
    return Report(input=input, output=output, name=entry.name, shape=entry.shape, dtype=entry.dtype,
                  original_bytes=f.original_bytes, compressed_bytes=compressed_bytes, mse=f.mse, psnr=f.psnr,
                  max_abs_error=f.max_abs_error, value_range=f.value_range, seconds=seconds,
                  storage=c.storage, model=refs[c.model].name if uses_model else None, mode=c.mode or None,
                  bound=f.bound, bound_kind=f.bound_kind, max_error_ratio=f.max_error_ratio,
                  stream_bytes={k: int(v.nbytes) for k, v in entry.streams.items()} if entry.streams else None,
                  measured=measured, measured_ratio=measured_ratio)


def _file_report(parts: list[Report], *, input, output, file_bytes: int, seconds: float) -> Report:
    if len(parts) == 1:
        return dataclasses.replace(parts[0], input=input, output=output, compressed_bytes=file_bytes, seconds=seconds)
    return combine(parts, input=input, output=output, compressed_bytes=file_bytes, seconds=seconds)


def default_container_name(path: str) -> str:
    return path + ".aez"


def compress(data: np.ndarray | str, output: str | None = None, *, model: str | None = None,
             ndim: int | None = None, device: str = "auto", key: str | None = None,
             shape: tuple[int, ...] | None = None, dtype: str | None = None, force: bool = False,
             abs: float | None = None, rel: float | None = None, psnr: float | None = None,
             pw_rel: float | None = None) -> Report:
    """Compress an array or a file into an .aez container and report the figures.

    ``data`` is a numpy array (``output`` required) or an input spec: ``x.npy``,
    ``x.npz``, ``x.h5``, ``x.h5:/group/dataset``, or a raw binary with ``shape`` and ``dtype``.
    At most one of ``abs`` (every finite value within E), ``rel`` (E = R × value range),
    ``psnr`` (the loosest bound reaching P dB) and ``pw_rel`` (|x - x_hat| <= R |x|)
    makes the error bounded; without them floats use the plain learned mode (error
    measured, not guaranteed) and integers are coded losslessly.

    Examples
    --------
    >>> import numpy as np, aezip
    >>> x = np.cumsum(np.random.default_rng(0).standard_normal((256, 256)), axis=1).astype(np.float32)
    >>> report = aezip.compress(x, "/tmp/x.aez", force=True)
    >>> report.compression_ratio > 1
    True
    """
    bound = _bound(abs=abs, rel=rel, psnr=psnr, pw_rel=pw_rel)
    models = Models(model, device)  # imports torch: process start-up, not compression time
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
        entry, _ = encode_array(fld.x, fld.name, models, ndim, bound=bound, order=fld.order,
                                byteorder=">" if fld.byteorder == ">" else "<", fill_values=fld.fill_values)
        entries.append(entry)
    entries, refs = _used_models(entries, models.refs)
    container = Container(writer=WRITER, source=SourceRef(kind=src.kind, name=os.path.basename(src.path)),
                          arrays=tuple(entries), models=refs, skeleton=src.skeleton)
    file_bytes = write_container(output, container, force=force)
    parts = [_array_report(e, compressed_bytes=e.figures.coded_bytes, seconds=e.figures.seconds, refs=refs)
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
    models = Models(model, device)  # imports torch: process start-up, not decompression time
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
        measured = ratio = None
        if ref is not None:
            if ref.shape != x_hat.shape:
                raise UsageError(f"--original {e.name or 'array'} has shape {ref.shape}, the container {x_hat.shape}")
            valid = valid_mask(ref, e.codec.fill_values)
            measured = Quality.measure(ref, x_hat, valid)
            if e.figures.bound is not None:
                ratio = max_error_ratio(ref, x_hat, e.figures.bound, e.figures.bound_kind, valid)
        parts.append(_array_report(e, compressed_bytes=e.figures.coded_bytes, seconds=seconds, refs=c.models,
                                   measured=measured, measured_ratio=ratio))
    if write:
        fields = [(e.name, x_hat, e.order, e.byteorder) for e, x_hat in zip(c.arrays, x_hats)]
        aeio.write_output(output, fields, kind=kind, skeleton=c.skeleton if kind == "hdf5" else None, force=force)
    report = _file_report(parts, input=path, output=output if write else None, file_bytes=file_bytes,
                          seconds=time.perf_counter() - t0)
    for p in parts:
        if p.measured_ratio is not None and p.measured_ratio > 1:
            what = "relative error" if p.bound_kind == "pw_rel" else "error"
            raise BoundExceededError(
                f"array {p.name!r}: the measured max {what} is {p.measured_ratio:.6g} times the stored bound "
                f"{p.bound:.6g}: it exceeds the bound"
            )
    result = x_hats[0] if len(x_hats) == 1 else {e.name: x for e, x in zip(c.arrays, x_hats)}
    return result, report


def _used_models(entries: list[ArrayEntry], refs: Sequence[ModelRef]) -> tuple[list[ArrayEntry], tuple[ModelRef, ...]]:
    """Keep only the models the entries use (one may have been tried and not kept), renumbered."""
    used = sorted({e.codec.model for e in entries if e.codec.model >= 0})
    new = {old: i for i, old in enumerate(used)}
    entries = [dataclasses.replace(e, codec=dataclasses.replace(e.codec, model=new[e.codec.model]))
               if e.codec.model >= 0 else e for e in entries]
    return entries, tuple(refs[i] for i in used)


def _bound(**modes: float | None) -> Bound | None:
    given = {k: v for k, v in modes.items() if v is not None}
    if len(given) > 1:
        names = " and ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{names} conflict: give one error-bound mode")
    return Bound(mode=next(iter(given)), value=float(next(iter(given.values())))) if given else None


def _references(original, c: Container, key: str | None) -> list[np.ndarray | None]:
    if original is None:
        return [None] * len(c.arrays)
    if isinstance(original, np.ndarray):
        if len(c.arrays) != 1:
            raise UsageError("the container holds several arrays; pass the original file, not one array")
        return [np.asarray(original)]
    if len(c.arrays) == 1 and aeio.output_kind(str(original)) == "raw":  # the container knows its layout
        e = c.arrays[0]
        src = aeio.read_input(str(original), shape=e.shape, dtype=np.dtype(e.dtype).newbyteorder(e.byteorder).str)
    else:
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
