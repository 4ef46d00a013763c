"""read_input and write_output: pick the reader or writer for a user file."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError, InputNotFoundError, UsageError
from ..fileutil import atomic_output
from .base import Input, require_one
from .formats import KINDS, output_kind, sniff
from .hdf5 import read_hdf5_dataset, read_hdf5_file, write_hdf5
from .npy import read_npy, read_npz, write_npy, write_npz
from .raw import RAW_EXTENSIONS, check_raw_extension, read_raw, write_raw
from .zarr_store import is_zarr_store, read_zarr, write_zarr

FieldSpec = tuple[str, np.ndarray, str, str]

_UNKNOWN_FORMAT = (
    "cannot tell the format of {path}: use .npy, .npz, HDF5/NetCDF-4, "
    "or a raw binary with --shape and --dtype"
)
_FORMAT_NAMES = {"npy": ".npy", "npz": ".npz", "hdf5": "HDF5"}


def split_spec(spec: str) -> tuple[str, str | None]:
    """Split ``file.h5:/group/dataset`` into the file and the dataset.

    A spec naming an existing file is never split; otherwise it is split at the last
    ``':'`` whose left part is an existing file (file names may contain ``':'``).
    """
    if os.path.exists(spec):
        return spec, None
    end = len(spec)
    while (end := spec.rfind(":", 0, end)) > 0:
        if os.path.isfile(spec[:end]) or is_zarr_store(spec[:end]):
            inner = spec[end + 1:]
            return spec[:end], inner or None
    return spec, None


def read_input(spec: str, *, key: str | None = None, shape: tuple[int, ...] | None = None,
               dtype: str | None = None) -> Input:
    """Read the arrays to compress from ``spec`` (see the module docs for the forms)."""
    path, inner = split_spec(spec)
    if inner is not None:
        if key is not None and key.strip("/") != inner.strip("/"):
            raise UsageError(f"{spec} names {inner!r} but --key names {key!r}; give one of them")
        key = inner
    if is_zarr_store(path):
        return read_zarr(path, key)
    kind = _input_format(path)
    raw_options = shape is not None or dtype is not None
    if raw_options and kind in _FORMAT_NAMES:
        raise UsageError(
            f"--shape and --dtype are for raw binaries; {path} is a {_FORMAT_NAMES[kind]} file, "
            "which records its own shape and dtype"
        )
    if key is not None and kind not in ("npz", "hdf5"):
        what = "a .npy file holds one array" if kind == "npy" else "a raw binary holds one array"
        raise UsageError(f"{path}: {what}, so there is nothing to pick with --key or ':NAME'; drop it")
    if kind == "npy":
        return read_npy(path)
    if kind == "npz":
        return read_npz(path, key)
    if kind == "hdf5":
        return read_hdf5_dataset(path, key) if key is not None else read_hdf5_file(path)
    if kind == "netcdf3":
        raise InputError(
            f"{path} is a classic NetCDF-3 file; aezip reads NetCDF-4: convert it with nccopy -k nc4"
        )
    if raw_options or os.path.splitext(path)[1].lower() in RAW_EXTENSIONS:
        return read_raw(path, shape, dtype)
    raise InputError(_UNKNOWN_FORMAT.format(path=path))


def write_output(path: str, fields: Sequence[FieldSpec], *, kind: str | None = None,
                 skeleton: bytes | None = None, force: bool = False, serializer=None) -> str:
    """Write ``(name, x, order, byteorder)`` fields to ``path`` atomically; return the kind written.

    ``kind`` defaults to the one ``path``'s extension implies. ``skeleton`` (from an
    HDF5 whole-file Input) restores the source file around the fields; other kinds
    ignore it.
    """
    if kind is None:
        kind = output_kind(path)
        if kind is None:
            raise UsageError(
                f"cannot tell the output format of {path}: end it in .npy, .npz, .h5/.nc or .f32/.f64/.raw"
            )
    if kind not in KINDS:
        raise UsageError(f"unknown output kind {kind!r}; use one of {', '.join(KINDS)}")
    if not fields:
        raise UsageError(f"no arrays to write to {path}")
    if kind == "zarr":  # a folder: written beside and renamed into place, with ``serializer`` (None: bytes)
        write_zarr(path, fields, serializer, force)
        return kind
    writers: dict[str, Callable[[str], None]] = {
        "npy": lambda tmp: write_npy(tmp, fields),
        "npz": lambda tmp: write_npz(tmp, fields),
        "hdf5": lambda tmp: write_hdf5(tmp, fields, skeleton),
        "raw": lambda tmp: write_raw(tmp, fields),
    }
    if kind in ("npy", "raw"):  # refuse before creating anything
        require_one(fields, ".npy" if kind == "npy" else "raw file")
    if kind == "raw":
        check_raw_extension(path, fields[0][1].dtype)
    with atomic_output(path, force) as tmp:
        writers[kind](tmp)
    return kind


def _input_format(path: str) -> str | None:
    """Check that ``path`` is a readable file and sniff its format."""
    if not os.path.lexists(path):
        raise InputNotFoundError(f"{path} does not exist; check the name")
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder; give a file")
    if not os.path.exists(path):
        raise InputNotFoundError(f"{path} is a broken link; check where it points")
    try:
        return sniff(path)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}; check its permissions") from err
