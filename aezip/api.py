"""The compress / decompress data flow.

compress:   read -> for each array: code it (aezip.coding: learned or bounded) and measure
            what the decoder will return -> write the container -> report
decompress: read the container (checksums) -> decode each array -> measure against
            --original -> write -> report
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Sequence

import numpy as np

from . import io as aeio
from . import slabs
from ._version import __version__
from .codec.bounded import Bound
from . import progress
from .coding import SPATIAL_STORAGES, Models, spatial_axes
from .container import ArrayEntry, Container, ContainerWriter, ModelRef, SourceRef, model_of, read_container
from .errors import BoundExceededError, UsageError
from .io.zarr_store import parse_serializer
from .fileutil import check_space, check_writable
from .metrics import Quality, Report, combine, psnr
from .options import EncoderOptions

WRITER = f"aezip {__version__}"
DEFAULT_MEMORY = slabs.DEFAULT_MEMORY
def _array_report(entries: Sequence[ArrayEntry], *, seconds: float, refs: Sequence[ModelRef],
                  stream_bytes: Sequence[dict] | None = None, measured: Quality | None = None,
                  measured_ratio: float | None = None, mode: str | None = None,
                  region: tuple[int, ...] | None = None) -> Report:
    """One array's report from its entries (one, or its slabs): sizes add up, MSE is the
    value-weighted mean, max errors the largest; PSNR is against the whole array's range.
    ``mode``: the bounded mode asked for (an entry stored exactly records none); ``region``:
    the shape decoded, where only a region was."""
    first = entries[0]
    f, c = first.figures, first.codec
    n = [e.size - e.figures.invalid_values for e in entries]
    mse = sum(k * e.figures.mse for k, e in zip(n, entries) if k) / max(1, sum(n))
    ratios = [e.figures.max_error_ratio for e in entries]
    streams: dict[str, int] = {}
    for sizes in stream_bytes or [{k: int(v.nbytes) for k, v in e.streams.items()} for e in entries]:
        for k, v in sizes.items():
            streams[k] = streams.get(k, 0) + v
    uses = sorted({model_of(e, refs).name for e in entries if e.codec.uses_model})
    return Report(input=None, output=None, name=first.name, shape=first.shape, dtype=first.dtype, region=region,
                  original_bytes=sum(e.figures.original_bytes for e in entries),
                  compressed_bytes=sum(e.figures.coded_bytes for e in entries), mse=mse,
                  psnr=f.psnr if len(entries) == 1 else psnr(mse, f.value_range),
                  max_abs_error=max(e.figures.max_abs_error for e in entries), value_range=f.value_range,
                  seconds=seconds, storage=",".join(sorted({e.codec.storage for e in entries})),
                  model=",".join(uses) or None, mode=mode or c.mode or None,
                  bound=None if f.bound is None else max(e.figures.bound for e in entries),
                  bound_kind=f.bound_kind, max_error_ratio=None if None in ratios else max(ratios),
                  stream_bytes=streams or None, slabs=len(entries) if first.slab is not None else 0,
                  measured=measured, measured_ratio=measured_ratio, **_spatial(entries))


def _spatial(entries: Sequence[ArrayEntry]) -> dict:
    """The report's spatial axes, from the first entry whose coding has them (format v5:
    bounded ones too; the same in every slab)."""
    c = next((e.codec for e in entries if e.codec.storage in SPATIAL_STORAGES and e.codec.ndim), None)
    return {} if c is None else {"ndim": c.ndim, "ndim_given": c.ndim_given}


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
             pw_rel: float | None = None, memory: int = DEFAULT_MEMORY, threads: int | None = None,
             fit: bool = False, fit_steps: int = 300, quality: float | None = None,
             options: EncoderOptions | None = None) -> Report:
    """Compress an array or a file into an .aez container and report the figures.

    ``data`` is a numpy array (``output`` required) or an input spec: ``x.npy``,
    ``x.npz``, ``x.h5``, ``x.h5:/group/dataset``, or a raw binary with ``shape`` and ``dtype``.
    At most one of ``abs`` (every finite value within E), ``rel`` (E = R × value range),
    ``psnr`` (the loosest bound reaching P dB) and ``pw_rel`` (|x - x_hat| <= R |x|)
    makes the error bounded; without them floats use the plain learned mode (error
    measured, not guaranteed: the multiscale transform coder at the PSNR ``quality``, 45 dB
    by default, or the model ``model`` names) and integers are coded losslessly. Arrays whose coding would
    need more than ``memory`` bytes are coded in independent slabs along axis 0, and large
    arrays in at least one slab per thread (``threads``, default: the CPU count), coded at once.
    ``fit`` (plain learned mode) fine-tunes the model on the input for ``fit_steps`` steps and
    embeds it in the container: its bytes count in the ratio, so it pays on large arrays.
    ``options``: the encoder's settings beyond these (:class:`aezip.options.EncoderOptions`;
    default: aezip's).

    Examples
    --------
    >>> import numpy as np, aezip
    >>> x = np.cumsum(np.random.default_rng(0).standard_normal((256, 256)), axis=1).astype(np.float32)
    >>> report = aezip.compress(x, "/tmp/x.aez", force=True)
    >>> report.compression_ratio > 1
    True
    """
    bound = _bound(abs=abs, rel=rel, psnr=psnr, pw_rel=pw_rel)
    if fit and bound is not None:
        raise UsageError("--fit applies to the plain learned mode: drop the error bound, or drop --fit")
    if quality is not None and (bound is not None or not (0 < quality < 400)):
        raise UsageError("--quality P (the plain learned mode's PSNR target, dB) needs 0 < P < 400 and no error "
                         f"bound, got {quality:g}" + (" with a bound" if bound is not None else ""))
    if fit and fit_steps < 1:
        raise UsageError(f"--fit-steps must be at least 1, got {fit_steps}")
    if memory < 1 << 20:
        raise UsageError(f"--memory must be at least 1 MB, got {memory} bytes")
    if options is not None and not isinstance(options, EncoderOptions):
        raise UsageError(f"options must be an aezip.EncoderOptions, got {type(options).__name__}")
    options = EncoderOptions() if options is None else options
    models = Models(model, device)  # no torch until a network runs
    t0 = time.perf_counter()
    if isinstance(data, np.ndarray):
        if output is None:
            raise UsageError("compressing an in-memory array needs an output path")
        x = np.asarray(data)
        src = aeio.Input(path="", kind="array", skeleton=None, fields=(aeio.Field(
            name="", x=np.ascontiguousarray(x).astype(x.dtype.newbyteorder("="), copy=False),
            order="F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C",
            byteorder=">" if x.dtype.byteorder == ">" else "<"),))
        label = None
    else:
        src = aeio.read_input(str(data), key=key, shape=shape, dtype=dtype)
        output = output or default_container_name(src.path)
        # the report names the input as given, with the dataset chosen: file.h5:/group/dataset
        label = f"{data}:{key}" if key is not None and src.path == str(data) else str(data)
    try:
        if fit:
            _fit(src, models, ndim, fit_steps)
        return _compress_input(src, output, models, ndim, bound, memory, _workers(threads), force, t0, quality,
                               label=label, options=options)
    finally:
        src.close()


FIT_BYTES = 256 << 20  # at most this much of each array is read to fit the model


def _fit(src, models: Models, ndim: int | None, steps: int) -> None:
    """Fine-tune the model on the input's float arrays (all of one dimensionality)."""
    floats = [f for f in src.fields if np.dtype(f.x.dtype).kind == "f"]
    dims = {spatial_axes(f.x, ndim, f.fill_values).ndim for f in floats}
    if len(dims) != 1:
        raise UsageError("--fit needs float arrays that all have the same number of spatial axes (see --ndim)")
    arrays = []
    for f in floats:
        rows = max(1, FIT_BYTES // max(1, f.x.nbytes // max(1, f.x.shape[0]))) if f.x.ndim else 1
        x = aeio.load(f.x, slice(0, rows)) if f.x.ndim else aeio.load(f.x)
        arrays.append(np.where(np.isfinite(x), x, np.nanmean(np.where(np.isfinite(x), x, np.nan))))
    with progress.training_bar(steps) as report:
        models.fit_to(dims.pop(), arrays, steps, __version__, report)


def _compress_input(src, output: str, models: Models, ndim, bound, memory: int, workers: int, force: bool,
                    t0: float, quality: float | None = None, label: str | None = None,
                    options: EncoderOptions | None = None) -> Report:
    check_writable(output, force, inputs=(src.path,))
    parts, named, refs = [], [], ()  # named: the entries that name a model; refs: the models they name
    with ContainerWriter(output, writer=WRITER, source=SourceRef(kind=src.kind, name=os.path.basename(src.path)),
                         force=force) as w:
        for fld in src.fields:
            t1 = time.perf_counter()
            entries, sizes = [], []
            # closed on a failed write, so that the workers end at once
            with contextlib.closing(slabs.encode_field(fld, models, ndim, bound, memory, workers, quality=quality,
                                                     options=options or EncoderOptions())) as coded:
                for entry in coded:
                    w.add(entry)  # its streams are in the file now: keep only their sizes
                    sizes.append({k: int(v.nbytes) for k, v in entry.streams.items()})
                    entries.append(dataclasses.replace(entry, streams={}))
            named += [e for e in entries if e.codec.model_id]
            refs = models.refs_for(named)  # from the ids the entries carry, coded here or in worker processes
            parts.append(_array_report(entries, seconds=time.perf_counter() - t1, refs=refs,
                                       stream_bytes=sizes, mode=None if bound is None else bound.mode))
        w.finish(models=refs, skeleton=src.skeleton, embedded_model=models.embedded if models.embedded and refs else None)
    report = _file_report(parts, input=label, output=output, file_bytes=w.size,
                          seconds=time.perf_counter() - t0)
    if models.embedded and refs:
        report = dataclasses.replace(report, embedded_model_bytes=len(models.embedded))
    return report


def decompress(path: str, output: str | None = None, *, model: str | None = None, device: str = "auto",
               original: str | np.ndarray | None = None, key: str | None = None, force: bool = False,
               write: bool = True, region: Sequence[tuple[int, int]] | None = None, threads: int | None = None,
               memory: int = DEFAULT_MEMORY, zarr_serializer: str | None = None,
               ) -> tuple[np.ndarray | dict[str, np.ndarray], Report]:
    """Decode a container; write the reconstruction (unless ``write`` is False) and report.

    Returns the array (or a dict name -> array when the container holds several) and the
    report, whose ratio is recomputed from the container's size on disk. With
    ``original`` (a path or an array) the errors are measured against it too; a measured
    error above a bound stored in the container raises ``BoundExceededError`` after writing.
    ``region``: one (start, stop) per axis; only that part is decoded (and only the slabs
    it touches), and returned, measured and written. Slabs are decoded at most ``threads``
    at once, as many as ``memory`` bytes hold; an output larger than its file system's free
    space is refused before decoding. An output ending in ``.zarr`` is a Zarr v3 store, its chunks
    uncompressed or coded by ``zarr_serializer`` (``aezip:MODE:BOUND``).
    """
    return _decompress(path, output, model=model, device=device, original=original, key=key, force=force,
                       write=write, region=region, threads=threads, memory=memory, keep=True,
                       zarr_serializer=zarr_serializer)


def _decompress(path: str, output: str | None, *, model, device, original, key, force, write: bool, region,
                threads, memory: int, keep: bool, zarr_serializer: str | None = None):
    """:func:`decompress`; without ``keep`` (and ``write``) the decoded values are measured and
    dropped, slab by slab, so that only the slabs in flight are in memory."""
    if memory < 1 << 20:
        raise UsageError(f"--memory must be at least 1 MB, got {memory} bytes")
    models = Models(model, device)  # no torch until a network runs
    t0 = time.perf_counter()
    c = read_container(path, streams="root")  # array streams are read entry by entry, when decoded
    if c.skeleton is not None:  # before anything is written: a forged skeleton could reach outside the output
        aeio.check_skeleton(c.skeleton)
    file_bytes = os.path.getsize(path)
    kind = c.source.kind if c.source.kind != "array" else "npy"
    if write:
        if output is None:
            output = aeio.default_output_name(path, kind)
        kind = aeio.output_kind(output) or kind
        check_writable(output, force, inputs=(path, *_files(original, model)))
    if zarr_serializer is not None and kind != "zarr":
        raise UsageError("--zarr-serializer applies to a Zarr output: -o NAME.zarr")
    serializer = parse_serializer(zarr_serializer) if kind == "zarr" else None
    models.embedded = c.embedded_model
    arrays = slabs.group([dataclasses.replace(e, streams=slabs.LazyStreams(path, i)) for i, e in enumerate(c.arrays)])
    references = _references(original, [g[0] for g in arrays], key)
    if write:
        boxes = [slabs.region_box(g[0].shape, region) for g in arrays]
        check_space(output, sum(math.prod(s.stop - s.start for s in box) * np.dtype(g[0].dtype).itemsize
                                for g, box in zip(arrays, boxes)))
    whole_file = kind == "hdf5" and c.skeleton is not None and region is None
    streaming = write and len(arrays) == 1 and arrays[0][0].slab is not None and kind in aeio.STREAMABLE \
        and not whole_file
    results, parts = [], []
    for g, ref in zip(arrays, references):
        e = g[0]
        box = slabs.region_box(e.shape, region)
        shape = tuple(s.stop - s.start for s in box)
        if streaming:  # slab by slab into the output file: the array is never whole in memory
            with aeio.array_output(output, kind, e.name, shape, e.dtype, e.order, e.byteorder, force=force) as out:
                measured, ratio = slabs.decode_into(g, out, models, c.models, box, ref, _workers(threads), memory)
            results.append(aeio.open_written(output, kind, shape, e.dtype, e.byteorder))
        else:
            out = _allocate(shape, np.dtype(e.dtype)) if keep else slabs.DISCARD
            measured, ratio = slabs.decode_into(g, out, models, c.models, box, ref, _workers(threads), memory)
            results.append(out)
        parts.append(_array_report(g, seconds=time.perf_counter() - t0, refs=c.models, measured=measured,
                                   measured_ratio=ratio, region=None if region is None else shape))
    if write and not streaming:
        fields = [(g[0].name, x_hat, g[0].order, g[0].byteorder) for g, x_hat in zip(arrays, results)]
        aeio.write_output(output, fields, kind=kind, skeleton=c.skeleton if whole_file else None, force=force,
                          serializer=serializer)
    report = _file_report(parts, input=path, output=output if write else None, file_bytes=file_bytes,
                          seconds=time.perf_counter() - t0)
    if c.embedded_model:
        report = dataclasses.replace(report, embedded_model_bytes=len(c.embedded_model))
    for p in parts:
        if p.measured_ratio is not None and p.measured_ratio > 1:
            what = "relative error" if p.bound_kind == "pw_rel" else "error"
            raise BoundExceededError(
                f"array {p.name!r}: the measured max {what} is {p.measured_ratio:.6g} times the stored bound "
                f"{p.bound:.6g}: it exceeds the bound"
            )
    result = results[0] if len(results) == 1 else {g[0].name: x for g, x in zip(arrays, results)}
    return result, report


def _allocate(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array a decode fills, or a clean error when memory cannot hold it."""
    try:
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError):
        raise UsageError(f"the decoded {'x'.join(map(str, shape))} {dtype.name} array does not fit in memory; "
                         "decompress it to a .npy or raw file, which slabbed arrays stream into, or use --region") \
            from None


def _workers(threads: int | None) -> int:
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    return threads or os.cpu_count() or 1


def _bound(**modes: float | None) -> Bound | None:
    given = {k: v for k, v in modes.items() if v is not None}
    if len(given) > 1:
        names = " and ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{names} conflict: give one error-bound mode")
    return Bound(mode=next(iter(given)), value=float(next(iter(given.values())))) if given else None


def _references(original, arrays: Sequence[ArrayEntry], key: str | None) -> list:
    """The reference arrays for --original, one per array (large ones stay lazy)."""
    if original is None:
        return [None] * len(arrays)
    if isinstance(original, np.ndarray):
        if len(arrays) != 1:
            raise UsageError("the container holds several arrays; pass the original file, not one array")
        refs = [np.asarray(original)]
    else:
        if len(arrays) == 1 and aeio.output_kind(str(original)) == "raw":  # the container knows its layout
            e = arrays[0]
            src = aeio.read_input(str(original), shape=e.shape, dtype=np.dtype(e.dtype).newbyteorder(e.byteorder).str)
        else:
            src = aeio.read_input(str(original), key=key)
        by_name = {f.name: f.x for f in src.fields}
        if len(arrays) == 1 and len(src.fields) == 1:
            refs = [src.fields[0].x]
        else:
            missing = [e.name for e in arrays if e.name not in by_name]
            if missing:
                raise UsageError(f"--original {original} has no array named {missing[0]!r}; "
                                 "pass the file the container was made from")
            refs = [by_name[e.name] for e in arrays]
    return refs


def info(path: str) -> Container:
    """The container's records without its streams: never decodes the payload."""
    return read_container(path, streams=False)


def verify(path: str, *, model: str | None = None, device: str = "auto", threads: int | None = None,
           memory: int = DEFAULT_MEMORY) -> Report:
    """Check every checksum and decode every array without writing anything, holding only
    the slabs in flight: at most ``threads`` at once, as many as ``memory`` bytes hold."""
    _, report = _decompress(path, None, model=model, device=device, original=None, key=None, force=False,
                            write=False, region=None, threads=threads, memory=memory, keep=False)
    return report


def _files(original, model: str | None) -> list[str]:
    """The files besides the container that decompress reads: an output must not be one of them."""
    files = [aeio.split_spec(original)[0]] if isinstance(original, str) else []
    return files + ([model] if model and os.path.isfile(model) else [])
