"""Arrays in slabs along axis 0: how thick, coded and decoded a few at a time, reassembled.

A slab is an independent container entry (formats/aezip-container-v1.md §3, ``slab``).
Slabs bound the memory of coding (``--memory``), let large arrays use every thread, and
let decompress decode only the slabs a region needs. The bounded modes' encoder spends
much of its time in Python between numpy calls, holding the interpreter lock, so on
Linux it codes slabs in forked worker processes instead of threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from . import io as aeio
from . import progress
from .codec.bounded import Bound
from .coding import Models, decode_array, encode_array, spatial_axes
from .container import ArrayEntry, read_streams
from .errors import ContainerError, UsageError, WorkerError
from .metrics import Accumulator, valid_mask
from .options import DEFAULT as DEFAULT_OPTIONS
from .options import EncoderOptions

DEFAULT_MEMORY = 1 << 30  # bytes: what coding (or decoding) the slabs at once may use (--memory)
CODING_BYTES_PER_VALUE = 96  # peak working memory of the coders per value of a slab
SLAB_VALUES = 1 << 22  # a large array gets a slab per this many values, up to PARALLEL_SLABS, to code on several workers
PARALLEL_SLABS = 16
# rows of each neighbour that the transform coder codes with a slab: measured on a 1024-wide
# strip of benchmarks/speed.py's field in slabs of 512 rows at 45 dB, the mean squared error
# of the 8 rows around a boundary was 2.71 times the rest's without them, 1.31 with 8, 1.13
# with 16, 0.97 with 32 (for 6 % more bytes than none), 0.90 with 64
HALO_ROWS = 32
SLABS_AT_ONCE = 2  # a slab needs at most 1/SLABS_AT_ONCE of --memory, so that this many code at once within it


def slab_rows(shape: tuple[int, ...], memory: int) -> int:
    """Rows along axis 0 per slab. They depend on the shape and ``memory`` alone, never on
    the number of workers, so that the streams are the same whatever ``--threads`` is: a
    slab per SLAB_VALUES values up to PARALLEL_SLABS slabs (enough for that many workers;
    more would only cut the array thinner, which costs ratio), and more where a slab would
    need more than 1/SLABS_AT_ONCE of ``memory``."""
    row_values = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    n = shape[0]
    cap = max(1, memory // (SLABS_AT_ONCE * CODING_BYTES_PER_VALUE * row_values))
    # slabs of equal size (so that no worker waits on a last odd one), as few as these limits allow
    k = max(min(-(-n * row_values // SLAB_VALUES), PARALLEL_SLABS), -(-n // cap))
    return min(_whole_grids(-(-n // k), cap), n)


def at_once(slab_values: int, memory: int, workers: int) -> int:
    """How many slabs of ``slab_values`` values to code or decode at once: at most
    ``workers``, within ``memory`` bytes (one at least, whatever its size)."""
    return max(1, min(workers, memory // max(1, slab_values * CODING_BYTES_PER_VALUE)))


def _whole_grids(rows: int, cap: int) -> int:
    """``rows`` as a multiple of 64 (whole tiles and interpolation grids) where it is large
    enough: rounded up if that stays within ``cap``, else down."""
    if rows < 128:
        return rows
    up = rows + (-rows % 64)
    return up if up <= cap else rows - rows % 64


_task = None  # what forked workers run: they inherit it (and the arrays it reads); items and results travel


def _run(item):
    """_task(item) in a worker, and the warnings it raised, for the parent to raise again."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _task(item)
    return result, [w.message for w in caught]


_parent = None  # the process id of the forking parent, which workers outlive never


def _worker_start() -> None:
    end_with_parent(_parent)
    # the parent alone handles an interruption (it starts no new slab, and the workers end with the
    # pool): a worker killed while it sends its result, by a signal to the whole process group,
    # would leave the parent waiting on the rest of the message for ever
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:  # OpenMP's thread pool does not survive a fork: run the network on one thread
        torch.set_num_threads(1)


PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int | None) -> None:
    """Have the kernel kill this (forked) process when its parent dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG): an orphaned worker would hold the caller's stdout open
    and its memory for ever. Workers are forked on Linux only; elsewhere they are threads."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # it died before the call above
        os._exit(1)


def in_order(func, items, workers: int, processes: bool = False):
    """``map(func, items)`` with results in order and at most ``workers`` items in flight
    (so at most that many slabs in memory): on threads (numpy and the coders release the
    GIL), or, with ``processes`` on Linux in a process with one thread that is not a
    daemon, in forked worker processes."""
    if workers <= 1:
        yield from map(func, items)
        return
    # forking is safe on Linux (not on macOS: its system frameworks), and only from a process
    # with no other thread (another thread could hold a lock the child would wait on forever);
    # a daemonic process (a multiprocessing.Pool worker, say) may not have children
    forked = processes and sys.platform.startswith("linux") and threading.active_count() == 1 \
        and not multiprocessing.current_process().daemon
    if forked:
        global _task, _parent
        _task, _parent, submit = func, os.getpid(), _run
        try:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_worker_start)
        except OSError:  # no semaphores here (a container without /dev/shm): threads
            forked = False
    if not forked:
        submit, pool = func, ThreadPoolExecutor(workers)

    def result(future):
        if not forked:
            return future.result()
        value, caught = future.result()
        for message in caught:
            warnings.warn(message, stacklevel=2)
        return value

    try:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(submit, item))
            if len(pending) >= workers:
                yield result(pending.popleft())
        while pending:
            yield result(pending.popleft())
    except BrokenProcessPool:
        pool.shutdown(cancel_futures=True)
        raise WorkerError("a worker process died (out of memory?): give --threads 1, or a lower --memory") from None
    except BaseException:
        # an error, an interruption or the caller stopped: no new item starts, and the running ones
        # finish (a slab, about a second); a worker killed while it sends its result would leave
        # the pool waiting on the rest of the message for ever
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def encode_field(fld, models: Models, ndim: int | None, bound: Bound | None, memory: int, workers: int,
                 quality: float | None = None, options: EncoderOptions = DEFAULT_OPTIONS):
    """The container entries of one field: the whole array, or its slabs along axis 0
    (``options``: coding.encode_array's)."""
    x = fld.x
    byteorder = ">" if fld.byteorder == ">" else "<"
    rows = slab_rows(x.shape, memory) if x.ndim >= 1 and x.shape[0] > 1 else 1
    if x.ndim == 0 or rows >= x.shape[0]:
        yield encode_array(aeio.load(x), fld.name, models, ndim, bound=bound, quality=quality, order=fld.order, byteorder=byteorder,
                           fill_values=fld.fill_values, options=options)[0]
        return
    spatial = spatial_axes(x, ndim, fld.fill_values)  # once for the array: every slab codes alike
    starts = range(0, x.shape[0], rows)
    lo, hi = np.inf, -np.inf
    for a in starts:  # the value range of the whole array, a slab at a time
        part = aeio.load(x, slice(a, a + rows))
        v = part[valid_mask(part, fld.fill_values)]
        if v.size:
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    vrange = hi - lo if hi >= lo else 0.0

    # the network runs on threads (torch has its own); the numpy coders in forked processes
    network = bound is None and (models.spec is not None or models.embedded is not None)
    # the transform coder codes a slab with its neighbours' rows when axis 0 is spatial
    h = HALO_ROWS if bound is None and not network and spatial.ndim == x.ndim else 0

    def code(a: int) -> ArrayEntry:
        b = min(a + rows, x.shape[0])
        halo = (aeio.load(x, slice(max(0, a - h), a)), aeio.load(x, slice(b, min(x.shape[0], b + h)))) if h else None
        return encode_array(aeio.load(x, slice(a, b)), fld.name, models, ndim, bound=bound, quality=quality, order=fld.order,
                            byteorder=byteorder, fill_values=fld.fill_values, vrange=vrange,
                            full_shape=tuple(x.shape), slab=(a, b), halo=halo, spatial=spatial, options=options)[0]

    workers = at_once((rows + 2 * h) * (x.size // x.shape[0]), memory, workers)
    yield from in_order(code, progress_slabs(starts, fld.name), workers, processes=not network)


def progress_slabs(starts: range, name: str):
    with progress.bar(len(starts), f"slabs {name}".strip(), unit="slab") as advance:
        for a in starts:
            yield a
            advance(1)


class LazyStreams(dict):
    """An entry's streams, read from the container on first use (and not kept)."""

    def __init__(self, path: str, index: int):
        super().__init__()
        self.path, self.index = path, index

    def load(self) -> dict:
        return read_streams(self.path, self.index)


def _loaded(e: ArrayEntry) -> ArrayEntry:
    return dataclasses.replace(e, streams=e.streams.load()) if isinstance(e.streams, LazyStreams) else e


def group(entries: Sequence[ArrayEntry]) -> list[list[ArrayEntry]]:
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
            if len({(e.dtype, e.figures.bound is None, e.figures.bound_kind, e.figures.value_range) for e in g}) > 1:
                raise ContainerError(f"array {g[0].name!r}: its slabs disagree on its dtype, value range or kind of "
                                     "bound; the container is corrupted")
        out.append(g)
    return out


def region_box(shape: tuple[int, ...], region: Sequence[tuple[int, int]] | None) -> tuple[slice, ...]:
    if region is None:
        return tuple(slice(0, n) for n in shape)
    if len(region) != len(shape) or any(not 0 <= a < b <= n for (a, b), n in zip(region, shape)):
        raise UsageError(f"--region {region_text(region)} does not fit shape {'x'.join(map(str, shape))}: give one "
                         "START:STOP per axis with 0 <= START < STOP <= extent")
    return tuple(slice(a, b) for a, b in region)


def region_text(region: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{a}:{b}" for a, b in region)


class _Discard:
    """An output that drops what is written into it: verify measures slabs and keeps none."""

    def __setitem__(self, key, value) -> None:
        pass


DISCARD = _Discard()


def decode_into(entries: list[ArrayEntry], out, models: Models, refs, box: tuple[slice, ...], ref,
                workers: int = 1, memory: int = DEFAULT_MEMORY):
    """Decode an array's part ``box`` into ``out``, slab by slab (a slab outside the box is
    never decoded; at most ``workers`` slabs at once, as many as ``memory`` holds), measuring
    against ``ref`` (the whole reference array, possibly lazy)."""
    first = entries[0]
    if ref is not None and tuple(ref.shape) != tuple(first.shape):
        raise UsageError(f"--original {first.name or 'array'} has shape {tuple(ref.shape)}, the container "
                         f"{tuple(first.shape)}")
    acc = Accumulator(first.figures.bound_kind) if ref is not None else None
    rows = box[0] if box else slice(0, 1)

    def span(e: ArrayEntry) -> tuple[int, int]:
        a, b = e.slab if e.slab is not None else (rows.start, rows.stop)
        return max(a, rows.start), min(b, rows.stop)

    needed = [e for e in entries if span(e)[0] < span(e)[1]]
    bounded = all(e.codec.storage == "bounded" for e in needed)
    workers = at_once(max((e.size for e in needed), default=1), memory, workers)
    decoded = contextlib.closing(in_order(lambda e: decode_array(_loaded(e), models, refs), needed, workers,
                                          processes=bounded and len(needed) > 1))
    with decoded as slabs_decoded:  # a failed write ends the workers at once
        for e, x_hat in zip(needed, slabs_decoded):
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
                acc.add(x, part, valid_mask(x, first.codec.fill_values), e.figures.bound)
    return acc.result() if acc is not None else (None, None)
