"""Telling formats apart: by content for inputs, by extension for outputs."""

from __future__ import annotations

import os

from ..errors import UsageError
from .hdf5 import HDF5_SIGNATURE
from .npy import NPY_MAGIC
from .raw import RAW_EXTENSIONS

KINDS = ("npy", "npz", "hdf5", "raw", "zarr")
HDF5_EXTENSIONS = (".h5", ".hdf5", ".he5", ".nc", ".nc4", ".h5part")
_EXTENSION_KIND = {".npy": "npy", ".npz": "npz"}
_EXTENSION_KIND.update({ext: "hdf5" for ext in HDF5_EXTENSIONS})
_EXTENSION_KIND.update({ext: "raw" for ext in RAW_EXTENSIONS})
_EXTENSION_KIND[".zarr"] = "zarr"  # a Zarr v3 store (a folder), written by io.zarr_store
DEFAULT_EXTENSION = {"npy": ".npy", "npz": ".npz", "hdf5": ".h5", "raw": ".raw", "zarr": ".zarr"}
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NETCDF3_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")


def sniff(path: str) -> str | None:
    """The format of ``path`` from its first bytes: npy, npz, hdf5, netcdf3, or None.

    HDF5 files may start with a user block, so the signature is also looked for at
    512, 1024, 2048... bytes, as HDF5 itself does. Raises OSError if unreadable.
    """
    with open(path, "rb") as fp:
        head = fp.read(8)
        if head.startswith(NPY_MAGIC):
            return "npy"
        if head[:4] in _ZIP_MAGICS:
            return "npz"
        if head == HDF5_SIGNATURE:
            return "hdf5"
        if head[:4] in _NETCDF3_MAGICS:
            return "netcdf3"
        size = os.fstat(fp.fileno()).st_size
        offset = 512
        while offset + 8 <= size:
            fp.seek(offset)
            if fp.read(8) == HDF5_SIGNATURE:
                return "hdf5"
            offset *= 2
    return None


def output_kind(path: str) -> str | None:
    """The kind to write for ``path``, from its extension; None if the extension is unknown."""
    return _EXTENSION_KIND.get(os.path.splitext(path)[1].lower())


def default_output_name(aez_path: str, kind: str) -> str:
    """Where to decompress ``aez_path`` to: ``x.npy.aez`` -> ``x.npy``, ``x.aez`` -> ``x.npy``.

    The name without ``.aez`` is kept when its extension is one of ``kind``'s; otherwise
    the kind's default extension (``.npy``, ``.npz``, ``.h5``, ``.raw``) is appended.
    """
    if kind not in DEFAULT_EXTENSION:
        raise UsageError(f"unknown output kind {kind!r}; use one of {', '.join(KINDS)}")
    stem = aez_path[: -len(".aez")] if aez_path.lower().endswith(".aez") else aez_path
    if stem != aez_path and os.path.basename(stem) and output_kind(stem) == kind:
        return stem
    return stem + DEFAULT_EXTENSION[kind]
