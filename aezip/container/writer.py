"""Write a container: HDF5 capped at the v1.10 format so that HDF5 1.10 readers open it.

Lean by design: fixed-length string attributes, at most 8 attributes per object
(more switch HDF5 to dense attribute storage, a few KB), compact layout for small
streams.
"""

from __future__ import annotations

import os
import sys
import zlib

import h5py
import numpy as np

from ..fileutil import atomic_output
from .layout import FORMAT, FORMAT_VERSION, ArrayEntry, Container, to_json

COMPACT_LIMIT = 32 * 1024  # bytes; HDF5 caps compact data at 64 KB per object header
LIBVER = ("v110", "v110")


def crc32(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).tobytes()) & 0xFFFFFFFF


def _stream(group: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    data = np.ascontiguousarray(data)
    data = data.astype(data.dtype.newbyteorder("<"), copy=False)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT if 0 < data.nbytes <= COMPACT_LIMIT else h5py.h5d.CONTIGUOUS)
    ds = group.create_dataset(name, data=data, dcpl=dcpl)
    ds.attrs["crc32"] = np.uint32(crc32(data))
    return ds


def _text(s: str) -> np.bytes_:
    return np.bytes_(s.encode())


class ContainerWriter:
    """Write a container entry by entry, so that arrays larger than memory can stream
    through: the root records that depend on every entry (models, n_arrays) are written
    last, and the file appears at ``path`` only when :meth:`close` completes.

        with ContainerWriter(path, writer=..., source=..., force=False) as w:
            w.add(entry)
            ...
            w.finish(models=..., skeleton=...)
        w.size  # bytes on disk
    """

    def __init__(self, path: str, *, writer: str, source, force: bool = False,
                 format_version: int = FORMAT_VERSION):
        self.path, self.force, self.size, self.n = path, force, 0, 0
        self._header = (writer, source, format_version)

    def __enter__(self) -> ContainerWriter:
        self._output = atomic_output(self.path, self.force)
        self._tmp = self._output.__enter__()
        try:
            self._f = h5py.File(self._tmp, "w", libver=LIBVER, meta_block_size=0)
            writer, source, version = self._header
            self._f.attrs["format"] = _text(FORMAT)
            self._f.attrs["format_version"] = np.int32(version)
            self._f.attrs["writer"] = _text(writer)
            self._f.attrs["source"] = _text(to_json(source))
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def add(self, a: ArrayEntry) -> None:
        g = self._f.create_group(f"array_{self.n}")
        g.attrs["name"] = _text(a.name)
        g.attrs["shape"] = np.asarray(a.shape, dtype="<i8")
        g.attrs["dtype"] = _text(a.dtype)
        g.attrs["order"] = _text(a.order)
        g.attrs["byteorder"] = _text(a.byteorder)
        g.attrs["codec"] = _text(to_json(a.codec))
        g.attrs["figures"] = _text(to_json(a.figures))
        if a.slab is not None:
            g.attrs["slab"] = np.asarray(a.slab, dtype="<i8")
        for name, data in a.streams.items():
            _stream(g, name, data)
        self.n += 1

    def finish(self, *, models=(), skeleton: bytes | None = None, embedded_model: bytes | None = None) -> None:
        if models:
            self._f.attrs["models"] = _text(to_json(tuple(models)))
        self._f.attrs["n_arrays"] = np.int32(self.n)
        if skeleton is not None:
            _stream(self._f, "skeleton", np.frombuffer(skeleton, dtype=np.uint8))
        if embedded_model is not None:
            _stream(self._f, "model", np.frombuffer(embedded_model, dtype=np.uint8))
        self._finished = True

    def __exit__(self, kind, value, tb) -> None:
        self._f.close()
        if kind is None and not getattr(self, "_finished", False):
            kind, value, tb = RuntimeError, RuntimeError("ContainerWriter closed without finish()"), None
        if kind is None:
            self.size = os.path.getsize(self._tmp)
        self._output.__exit__(kind, value, tb)


def write_container(path: str, c: Container, *, force: bool = False) -> int:
    """Write ``c`` to ``path`` atomically; returns the file's size in bytes."""
    with ContainerWriter(path, writer=c.writer, source=c.source, force=force,
                         format_version=c.format_version) as w:
        for a in c.arrays:
            w.add(a)
        w.finish(models=c.models, skeleton=c.skeleton, embedded_model=c.embedded_model)
    return w.size
