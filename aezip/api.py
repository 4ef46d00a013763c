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
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence

import numpy as np

from . import io as aeio
from ._version import __version__
from .codec.bounded import Bound
from .coding import Models, decode_array, encode_array
from . import progress
from .container import ArrayEntry, ContainerWriter, ModelRef, SourceRef, read_container, read_streams
from .errors import BoundExceededError, ContainerError, UsageError
from .fileutil import check_writable
from .metrics import Accumulator, Quality, Report, combine, psnr, valid_mask

WRITER = f"aezip {__version__}"
DEFAULT_MEMORY = 1 << 30  # bytes: what coding one slab may use (--memory)
CODING_BYTES_PER_VALUE = 96  # peak working memory of the coders per value of a slab
PARALLEL_VALUES = 1 << 22  # arrays with more values get at least one slab per thread


def _array_report(entries: Sequence[ArrayEntry], *, seconds: float, refs: Sequence[ModelRef],
                  stream_bytes: Sequence[dict] | None = None, measured: Quality | None = None,
                  measured_ratio: float | None = None) -> Report:
    """One array's report from its entries (one, or its slabs): sizes add up, MSE is the
    value-weighted mean, max errors the largest; PSNR is against the whole array's range."""
    first = entries[0]
    f, c = first.figures, first.codec
    n = [e.size - e.figures.invalid_values for e in entries]
    mse = sum(k * e.figures.mse for k, e in zip(n, entries) if k) / max(1, sum(n))
    ratios = [e.figures.max_error_ratio for e in entries]
    streams: dict[str, int] = {}
    for sizes in stream_bytes or [{k: int(v.nbytes) for k, v in e.streams.items()} for e in entries]:
        for k, v in sizes.items():
            streams[k] = streams.get(k, 0) + v
    uses = sorted({e.codec.model for e in entries if e.codec.storage == "latent" or e.codec.base == "model"})
    return Report(input=None, output=None, name=first.name, shape=first.shape, dtype=first.dtype,
                  original_bytes=sum(e.figures.original_bytes for e in entries),
                  compressed_bytes=sum(e.figures.coded_bytes for e in entries), mse=mse,
                  psnr=f.psnr if len(entries) == 1 else psnr(mse, f.value_range),
                  max_abs_error=max(e.figures.max_abs_error for e in entries), value_range=f.value_range,
                  seconds=seconds, storage=",".join(sorted({e.codec.storage for e in entries})),
                  model=",".join(refs[i].name for i in uses) or None, mode=c.mode or None, bound=f.bound,
                  bound_kind=f.bound_kind, max_error_ratio=None if None in ratios else max(ratios),
                  stream_bytes=streams or None, slabs=len(entries) if first.slab is not None else 0,
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
             pw_rel: float | None = None, memory: int = DEFAULT_MEMORY, threads: int | None = None) -> Report:
    """Compress an array or a file into an .aez container and report the figures.

    ``data`` is a numpy array (``output`` required) or an input spec: ``x.npy``,
    ``x.npz``, ``x.h5``, ``x.h5:/group/dataset``, or a raw binary with ``shape`` and ``dtype``.
    At most one of ``abs`` (every finite value within E), ``rel`` (E = R × value range),
    ``psnr`` (the loosest bound reaching P dB) and ``pw_rel`` (|x - x_hat| <= R |x|)
    makes the error bounded; without them floats use the plain learned mode (error
    measured, not guaranteed) and integers are coded losslessly. Arrays whose coding would
    need more than ``memory`` bytes are coded in independent slabs along axis 0, and large
    arrays in at least one slab per thread (``threads``, default: the CPU count), coded at once.

    Examples
    --------
    >>> import numpy as np, aezip
    >>> x = np.cumsum(np.random.default_rng(0).standard_normal((256, 256)), axis=1).astype(np.float32)
    >>> report = aezip.compress(x, "/tmp/x.aez", force=True)
    >>> report.compression_ratio > 1
    True
    """
    bound = _bound(abs=abs, rel=rel, psnr=psnr, pw_rel=pw_rel)
    if memory < 1 << 20:
        raise UsageError(f"--memory must be at least 1 MB, got {memory} bytes")
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
    try:
        return _compress_input(src, output, models, ndim, bound, memory, _workers(threads), force, t0)
    finally:
        src.close()


def _compress_input(src, output: str, models: Models, ndim, bound, memory: int, workers: int, force: bool,
                    t0: float) -> Report:
    check_writable(output, force)
    parts = []
    with ContainerWriter(output, writer=WRITER, source=SourceRef(kind=src.kind, name=os.path.basename(src.path)),
                         force=force) as w:
        for fld in src.fields:
            t1 = time.perf_counter()
            entries, sizes = [], []
            for entry in _encode_field(fld, models, ndim, bound, memory, workers):
                w.add(entry)  # its streams are in the file now: keep only their sizes
                sizes.append({k: int(v.nbytes) for k, v in entry.streams.items()})
                entries.append(dataclasses.replace(entry, streams={}))
            parts.append(_array_report(entries, seconds=time.perf_counter() - t1, refs=models.refs,
                                       stream_bytes=sizes))
        w.finish(models=models.refs, skeleton=src.skeleton)
    return _file_report(parts, input=src.path or None, output=output, file_bytes=w.size,
                        seconds=time.perf_counter() - t0)


def slab_rows(shape: tuple[int, ...], memory: int, workers: int = 1) -> int:
    """Rows along axis 0 per slab: ``workers`` slabs coded at once stay within ``memory``
    bytes, and a large array gets at least one slab per worker."""
    row_values = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    n = shape[0]
    rows = max(1, memory // (max(1, workers) * CODING_BYTES_PER_VALUE * row_values))
    rows = rows - rows % 64 if rows >= 128 else rows  # whole tiles and interpolation grids where possible
    if workers > 1 and n * row_values > PARALLEL_VALUES:
        share = -(-n // workers)
        rows = min(rows, share + (-share % 64) if share >= 128 else share)
    return min(rows, n)


def in_order(func, items, workers: int):
    """``map(func, items)`` on ``workers`` threads (numpy and the coders release the GIL),
    results in order, at most ``workers`` items in flight (so at most that many slabs in memory)."""
    if workers <= 1:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _encode_field(fld, models: Models, ndim: int | None, bound: Bound | None, memory: int, workers: int):
    """The container entries of one field: the whole array, or its slabs along axis 0."""
    x = fld.x
    byteorder = ">" if fld.byteorder == ">" else "<"
    rows = slab_rows(x.shape, memory, workers) if x.ndim >= 1 and x.shape[0] > 1 else 1
    if x.ndim == 0 or rows >= x.shape[0]:
        yield encode_array(aeio.load(x), fld.name, models, ndim, bound=bound, order=fld.order, byteorder=byteorder,
                           fill_values=fld.fill_values)[0]
        return
    starts = range(0, x.shape[0], rows)
    lo, hi = np.inf, -np.inf
    for a in starts:  # the value range of the whole array, a slab at a time
        part = aeio.load(x, slice(a, a + rows))
        v = part[valid_mask(part, fld.fill_values)]
        if v.size:
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    vrange = hi - lo if hi >= lo else 0.0

    def code(a: int) -> ArrayEntry:
        b = min(a + rows, x.shape[0])
        return encode_array(aeio.load(x, slice(a, b)), fld.name, models, ndim, bound=bound, order=fld.order,
                            byteorder=byteorder, fill_values=fld.fill_values, vrange=vrange,
                            full_shape=tuple(x.shape), slab=(a, b))[0]

    yield from in_order(code, progress_slabs(starts, fld.name), workers)


def progress_slabs(starts: range, name: str):
    with progress.bar(len(starts), f"slabs {name}".strip(), unit="slab") as advance:
        for a in starts:
            yield a
            advance(1)


def decompress(path: str, output: str | None = None, *, model: str | None = None, device: str = "auto",
               original: str | np.ndarray | None = None, key: str | None = None, force: bool = False,
               write: bool = True, region: Sequence[tuple[int, int]] | None = None, threads: int | None = None,
               ) -> tuple[np.ndarray | dict[str, np.ndarray], Report]:
    """Decode a container; write the reconstruction (unless ``write`` is False) and report.

    Returns the array (or a dict name -> array when the container holds several) and the
    report, whose ratio is recomputed from the container's size on disk. With
    ``original`` (a path or an array) the errors are measured against it too; a measured
    error above a bound stored in the container raises ``BoundExceededError`` after writing.
    ``region``: one (start, stop) per axis; only that part is decoded (and only the slabs
    it touches), and returned, measured and written.
    """
    models = Models(model, device)  # imports torch: process start-up, not decompression time
    t0 = time.perf_counter()
    c = read_container(path, streams="root")  # array streams are read entry by entry, when decoded
    file_bytes = os.path.getsize(path)
    kind = c.source.kind if c.source.kind != "array" else "npy"
    if write:
        if output is None:
            output = aeio.default_output_name(path, kind)
        kind = aeio.output_kind(output) or kind
        check_writable(output, force)
    models.embedded = c.embedded_model
    arrays = _group([dataclasses.replace(e, streams=_Streams(path, i)) for i, e in enumerate(c.arrays)])
    references = _references(original, [g[0] for g in arrays], key)
    whole_file = kind == "hdf5" and c.skeleton is not None and region is None
    streaming = write and len(arrays) == 1 and arrays[0][0].slab is not None and kind in aeio.STREAMABLE \
        and not whole_file
    results, parts = [], []
    for g, ref in zip(arrays, references):
        e = g[0]
        box = _region(e.shape, region)
        shape = tuple(s.stop - s.start for s in box)
        if streaming:  # slab by slab into the output file: the array is never whole in memory
            with aeio.array_output(output, kind, e.name, shape, e.dtype, e.order, e.byteorder, force=force) as out:
                measured, ratio = _decode_into(g, out, models, c.models, box, ref, _workers(threads))
            results.append(aeio.open_written(output, kind, shape, e.dtype, e.byteorder))
        else:
            out = np.empty(shape, dtype=np.dtype(e.dtype))
            measured, ratio = _decode_into(g, out, models, c.models, box, ref, _workers(threads))
            results.append(out)
        parts.append(_array_report(g, seconds=time.perf_counter() - t0, refs=c.models, measured=measured,
                                   measured_ratio=ratio))
    if write and not streaming:
        fields = [(g[0].name, x_hat, g[0].order, g[0].byteorder) for g, x_hat in zip(arrays, results)]
        aeio.write_output(output, fields, kind=kind, skeleton=c.skeleton if whole_file else None, force=force)
    report = _file_report(parts, input=path, output=output if write else None, file_bytes=file_bytes,
                          seconds=time.perf_counter() - t0)
    for p in parts:
        if p.measured_ratio is not None and p.measured_ratio > 1:
            what = "relative error" if p.bound_kind == "pw_rel" else "error"
            raise BoundExceededError(
                f"array {p.name!r}: the measured max {what} is {p.measured_ratio:.6g} times the stored bound "
                f"{p.bound:.6g}: it exceeds the bound"
            )
    result = results[0] if len(results) == 1 else {g[0].name: x for g, x in zip(arrays, results)}
    return result, report


class _Streams(dict):
    """An entry's streams, read from the container on first use (and not kept)."""

    def __init__(self, path: str, index: int):
        super().__init__()
        self.path, self.index = path, index

    def load(self) -> dict:
        return read_streams(self.path, self.index)


def _loaded(e: ArrayEntry) -> ArrayEntry:
    return dataclasses.replace(e, streams=e.streams.load()) if isinstance(e.streams, _Streams) else e


def _group(entries: Sequence[ArrayEntry]) -> list[list[ArrayEntry]]:
    """Entries per array, in order: one entry, or the slabs of one array sorted by start."""
    groups: dict[str, list[ArrayEntry]] = {}
    for e in entries:
        groups.setdefault(e.name, []).append(e)
    out = []
    for g in groups.values():
        if len(g) > 1 or g[0].slab is not None:
            g = sorted(g, key=lambda e: e.slab[0] if e.slab else -1)
            starts = [e.slab for e in g]
            n = g[0].shape[0]
            if None in starts or starts[0][0] != 0 or starts[-1][1] != n or any(
                    a[1] != b[0] for a, b in zip(starts, starts[1:])) or any(e.shape != g[0].shape for e in g):
                raise ContainerError(f"array {g[0].name!r}: its slabs do not tile it; the container is corrupted")
        out.append(g)
    return out


def _region(shape: tuple[int, ...], region: Sequence[tuple[int, int]] | None) -> tuple[slice, ...]:
    if region is None:
        return tuple(slice(0, n) for n in shape)
    if len(region) != len(shape) or any(not 0 <= a < b <= n for (a, b), n in zip(region, shape)):
        raise UsageError(f"--region {region_text(region)} does not fit shape {'x'.join(map(str, shape))}: give one "
                         "START:STOP per axis with 0 <= START < STOP <= extent")
    return tuple(slice(a, b) for a, b in region)


def region_text(region: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{a}:{b}" for a, b in region)


def _decode_into(entries: list[ArrayEntry], out, models: Models, refs, box: tuple[slice, ...], ref,
                 workers: int = 1):
    """Decode an array's part ``box`` into ``out``, slab by slab (a slab outside the box is
    never decoded; ``workers`` slabs at once), measuring against ``ref`` (the whole
    reference array, possibly lazy)."""
    first = entries[0]
    if ref is not None and tuple(ref.shape) != tuple(first.shape):
        raise UsageError(f"--original {first.name or 'array'} has shape {tuple(ref.shape)}, the container "
                         f"{tuple(first.shape)}")
    acc = Accumulator(first.figures.bound, first.figures.bound_kind) if ref is not None else None
    rows = box[0] if box else slice(0, 1)

    def span(e: ArrayEntry) -> tuple[int, int]:
        a, b = e.slab if e.slab is not None else (rows.start, rows.stop)
        return max(a, rows.start), min(b, rows.stop)

    needed = [e for e in entries if span(e)[0] < span(e)[1]]
    for e, x_hat in zip(needed, in_order(lambda e: decode_array(_loaded(e), models, refs), needed, workers)):
        (lo, hi), a = span(e), e.slab[0] if e.slab is not None else 0
        if e.slab is None:
            part, target, ref_rows = x_hat[box], (), box
        else:
            part = x_hat[(slice(lo - a, hi - a),) + box[1:]]
            target, ref_rows = (slice(lo - rows.start, hi - rows.start),), (slice(lo, hi),) + box[1:]
        out[target] = part
        if acc is not None:
            x = aeio.load(ref, ref_rows[0] if ref_rows else None)[(slice(None),) + tuple(ref_rows[1:])] \
                if ref_rows else aeio.load(ref)
            acc.add(x, part, valid_mask(x, first.codec.fill_values))
    return acc.result() if acc is not None else (None, None)


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


def verify(path: str, *, model: str | None = None, device: str = "auto") -> Report:
    """Check every checksum and decode every array without writing anything."""
    _, report = decompress(path, model=model, device=device, write=False)
    return report
