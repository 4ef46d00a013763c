"""Write a container (format v5): HDF5 capped at the v1.10 format so that HDF5 1.10
readers open it.

Lean by design, since the container's fixed bytes weigh on small arrays: the root
carries four attributes (format, format_version, one JSON header and its CRC-32), and
each array entry is one byte dataset holding its streams one after the other, with one
JSON attribute (its record and stream table) and that record's CRC-32
(formats/aezip-container-v5.md §1). Compact layout for small datasets, fixed-length
string attributes.
"""

from __future__ import annotations

import os
import sys
import zlib

import h5py
import numpy as np

from ..fileutil import atomic_output
from .layout import FORMAT, FORMAT_VERSION, ArrayEntry, Container, entry_json, header_json, version_needed

COMPACT_LIMIT = 32 * 1024  # bytes; HDF5 caps compact data at 64 KB per object header
LIBVER = ("v110", "v110")


def crc32(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).tobytes()) & 0xFFFFFFFF


def text_crc32(text: bytes) -> int:
    """The CRC-32 of a record: over its UTF-8 bytes exactly as stored (v5 §1)."""
    return zlib.crc32(text) & 0xFFFFFFFF


def _record_attrs(key: str, text: str) -> dict:
    """A JSON record as attribute ``key`` and its CRC-32 as ``key``_crc32."""
    data = text.encode()
    return {key: np.bytes_(data), f"{key}_crc32": np.uint32(text_crc32(data))}


def _dataset(group: h5py.Group, name: str, data: np.ndarray, attrs: dict) -> None:
    """A 1-D dataset of ``data`` in little-endian, compact when small, with attributes
    ``attrs``. It is linked into ``group`` as ``name``, and its values written, only once
    they are: its object header, still the last thing in the file, then grows in place
    instead of leaving a gap and a continuation block (about 0.2 KB less per dataset)."""
    data = np.ascontiguousarray(data)
    data = data.astype(data.dtype.newbyteorder("<"), copy=False)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT if 0 < data.nbytes <= COMPACT_LIMIT else h5py.h5d.CONTIGUOUS)
    ds = group.create_dataset(None, shape=data.shape, dtype=data.dtype, dcpl=dcpl)  # anonymous until linked
    for key, value in attrs.items():
        ds.attrs[key] = value
    group[name] = ds
    if data.size:
        ds[...] = data  # (contiguous: the values go after the header)


def _stream(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """A root stream (skeleton, model) with its CRC-32 attribute."""
    _dataset(group, name, data, {"crc32": np.uint32(crc32(data))})


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

    def __init__(self, path: str, *, writer: str, source, force: bool = False):
        self.path, self.force, self.size, self.n = path, force, 0, 0
        self._model_ids: set[str] = set()  # the models the entries name, which the header must list
        self._header = (writer, source)

    def __enter__(self) -> ContainerWriter:
        self._output = atomic_output(self.path, self.force)
        self._tmp = self._output.__enter__()
        try:
            self._f = h5py.File(self._tmp, "w", libver=LIBVER, meta_block_size=0, locking=False)  # flocked
            self._f.attrs["format"] = _text(FORMAT)
            self._f.attrs["format_version"] = np.int32(FORMAT_VERSION)
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def add(self, a: ArrayEntry) -> None:
        parts = [np.ascontiguousarray(v).astype(np.asarray(v).dtype.newbyteorder("<"), copy=False)
                 for v in a.streams.values()]
        table = [[name, v.dtype.name, int(v.size), crc32(v)] for name, v in zip(a.streams, parts)]
        payload = np.concatenate([v.reshape(-1).view(np.uint8) for v in parts]) if parts else np.zeros(0, np.uint8)
        _dataset(self._f, f"array_{self.n}", payload, _record_attrs("record", entry_json(a, table)))
        self.n += 1
        if a.codec.model_id:
            self._model_ids.add(a.codec.model_id)
        if version_needed(a.codec) > FORMAT_VERSION:
            raise ValueError(f"an entry needs format version {version_needed(a.codec)}, this aezip writes {FORMAT_VERSION}")

    def finish(self, *, models=(), skeleton: bytes | None = None, embedded_model: bytes | None = None) -> None:
        writer, source = self._header
        unlisted = self._model_ids - {m.id for m in models}
        if unlisted:
            raise ValueError(f"entries name model {min(unlisted)[:12]}, which models does not list")
        header = Container(writer=writer, source=source, arrays=(), models=tuple(models))
        for key, value in _record_attrs("header", header_json(header, self.n)).items():
            self._f.attrs[key] = value
        if skeleton is not None:
            _stream(self._f, "skeleton", np.frombuffer(skeleton, dtype=np.uint8))
        if embedded_model is not None:
            _stream(self._f, "model", np.frombuffer(embedded_model, dtype=np.uint8))
        self._finished = True

    def __exit__(self, kind, value, tb) -> None:
        try:
            self._f.close()
        except OSError as e:  # a full disk: flushing failed; the temporary file goes all the same
            if kind is None:
                kind, value, tb = type(e), e, e.__traceback__
        if kind is None and not getattr(self, "_finished", False):
            kind, value, tb = RuntimeError, RuntimeError("ContainerWriter closed without finish()"), None
        if kind is None:
            self.size = os.path.getsize(self._tmp)
        self._output.__exit__(kind, value, tb)


def write_container(path: str, c: Container, *, force: bool = False) -> int:
    """Write ``c`` to ``path`` atomically, in the current format version; returns the file's size in bytes."""
    with ContainerWriter(path, writer=c.writer, source=c.source, force=force) as w:
        for a in c.arrays:
            w.add(a)
        w.finish(models=c.models, skeleton=c.skeleton, embedded_model=c.embedded_model)
    return w.size
