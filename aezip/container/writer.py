"""Write a container: HDF5 capped at the v1.10 format so that HDF5 1.10 readers open it.

Lean by design: fixed-length string attributes, at most 8 attributes per object
(more switch HDF5 to dense attribute storage, a few KB), compact layout for small
streams.
"""

from __future__ import annotations

import zlib

import h5py
import numpy as np

from ..fileutil import atomic_output
from .layout import FORMAT, Container, to_json

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


def write_container(path: str, c: Container, *, force: bool = False) -> int:
    """Write ``c`` to ``path`` atomically; returns the file's size in bytes."""
    import os

    with atomic_output(path, force) as tmp:
        with h5py.File(tmp, "w", libver=LIBVER, meta_block_size=0) as f:
            f.attrs["format"] = _text(FORMAT)
            f.attrs["format_version"] = np.int32(c.format_version)
            f.attrs["writer"] = _text(c.writer)
            f.attrs["source"] = _text(to_json(c.source))
            if c.models:
                f.attrs["models"] = _text(to_json(c.models))
            f.attrs["n_arrays"] = np.int32(len(c.arrays))
            for i, a in enumerate(c.arrays):
                g = f.create_group(f"array_{i}")
                g.attrs["name"] = _text(a.name)
                g.attrs["shape"] = np.asarray(a.shape, dtype="<i8")
                g.attrs["dtype"] = _text(a.dtype)
                g.attrs["order"] = _text(a.order)
                g.attrs["byteorder"] = _text(a.byteorder)
                g.attrs["codec"] = _text(to_json(a.codec))
                g.attrs["figures"] = _text(to_json(a.figures))
                for name, data in a.streams.items():
                    _stream(g, name, data)
            if c.skeleton is not None:
                _stream(f, "skeleton", np.frombuffer(c.skeleton, dtype=np.uint8))
            if c.embedded_model is not None:
                _stream(f, "model", np.frombuffer(c.embedded_model, dtype=np.uint8))
        size = os.path.getsize(tmp)
    return size
