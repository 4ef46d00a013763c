"""Write one array into its output file slab by slab, without holding it in memory."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

import h5py
import numpy as np

from ..fileutil import atomic_output
from .base import with_byteorder

STREAMABLE = ("npy", "raw", "hdf5")


@contextlib.contextmanager
def array_output(path: str, kind: str, name: str, shape: tuple[int, ...], dtype, order: str, byteorder: str,
                 *, force: bool = False) -> Iterator:
    """Yield an array-like the caller fills by slices (``out[a:b] = part``); the file appears
    at ``path`` complete, or not at all. npy keeps the source's order and byte order, raw its
    byte order, HDF5 puts the array at ``name`` ("/data" for an unnamed one)."""
    stored = with_byteorder(np.dtype(dtype), byteorder)
    with atomic_output(path, force) as tmp:
        if kind == "hdf5":
            with h5py.File(tmp, "w", locking=False) as f:  # atomic_output holds its lock
                yield f.create_dataset(name if name.strip("/") else "/data", shape=shape, dtype=stored)
        else:
            if kind == "npy":
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=stored, shape=shape,
                                                fortran_order=order == "F")
            else:
                out = np.memmap(tmp, dtype=stored, mode="w+", shape=shape)
            allocate(tmp)
            try:
                yield out
                out.flush()
            finally:
                del out


def allocate(path: str) -> None:
    """Give the memory-mapped file at ``path`` its disk blocks now: a full disk is then an
    error here, not a SIGBUS when a page is written. Where the file system cannot
    preallocate, the free space checked before writing must do."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
            raise
    except AttributeError:  # no posix_fallocate (macOS)
        pass
    finally:
        os.close(fd)


def open_written(path: str, kind: str, shape: tuple[int, ...], dtype, byteorder: str):
    """The array just written by :func:`array_output`, memory-mapped read-only (None for HDF5)."""
    if kind == "npy":
        return np.load(path, mmap_mode="r")
    if kind == "raw":
        return np.memmap(path, dtype=with_byteorder(np.dtype(dtype), byteorder), mode="r", shape=shape)
    return None
