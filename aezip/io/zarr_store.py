"""Zarr stores (a folder holding ``zarr.json``, or ``.zarray``/``.zgroup`` for version 2):
read for compression (``store.zarr`` or ``store.zarr:/group/array``), large arrays slab by
slab through slicing, and written by ``decompress -o out.zarr``. Needs ``aezip[zarr]``.

The container records such a source as kind "array" (its base name kept): decompress
writes npy unless ``-o`` names a ``.zarr`` folder.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np

from ..errors import InputError, OutputExistsError, UsageError
from .base import LAZY_BYTES, Field, Input, as_native_c, byteorder_of, check_numeric, declared_fill_values, short_list

MARKERS = ("zarr.json", ".zarray", ".zgroup")
SERIALIZERS = "bytes (uncompressed chunks, the default) or aezip:MODE:BOUND (e.g. aezip:abs:1e-3)"


def is_zarr_store(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in MARKERS)


def _zarr():
    try:
        import zarr
    except ImportError:
        raise UsageError("reading and writing Zarr stores needs zarr: pip install 'aezip[zarr]'") from None
    return zarr


def _field(array, name: str) -> Field:
    where = f"{array.store_path}" if not name else name
    dtype = np.dtype(array.dtype)
    check_numeric(dtype, where, " (pick another array)")
    fills = list(declared_fill_values(array.attrs))
    fill = array.metadata.fill_value if hasattr(array.metadata, "fill_value") else None
    if fill is not None and np.asarray(fill).dtype.kind in "fiu" and math.isfinite(float(fill)):
        fills.append(float(fill))  # Zarr pads edge chunks with it
    x = array if array.nbytes > LAZY_BYTES else as_native_c(np.asarray(array[...]))
    return Field(name=name, x=x, order="C", byteorder=byteorder_of(dtype), fill_values=tuple(dict.fromkeys(fills)))


def read_zarr(path: str, key: str | None) -> Input:
    """One array (``key``, or the store's root array) or every numeric array of a group."""
    zarr = _zarr()
    store = zarr.storage.LocalStore(path, read_only=True)
    inner = (key or "").strip("/")
    try:
        node = zarr.open(store=store, mode="r", path=inner)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise InputError(f"{path} has no Zarr array or group {'/' + inner if inner else 'at its root'} ({err})") from None
    if isinstance(node, zarr.Array):
        return Input(path=path, kind="array", fields=(_field(node, inner),), skeleton=None)
    arrays = sorted((f"{inner}/{k}" if inner else k, a) for k, a in node.arrays() if np.dtype(a.dtype).kind in "fiu")
    if not arrays:
        raise InputError(f"{path}{':/' + inner if inner else ''} holds no numeric array; its members are: "
                         f"{short_list(sorted(node.keys()))}")
    return Input(path=path, kind="array", fields=tuple(_field(a, name) for name, a in arrays), skeleton=None)


def parse_serializer(spec: str | None):
    """The Zarr serializer of ``--zarr-serializer``: None (bytes) or an aezip.zarr.AEZip."""
    if spec is None or spec == "bytes":
        return None
    parts = spec.split(":")
    if parts[0] != "aezip" or len(parts) != 3:
        raise UsageError(f"--zarr-serializer {spec!r}: use {SERIALIZERS}")
    try:
        bound = float(parts[2])
    except ValueError:
        raise UsageError(f"--zarr-serializer {spec!r}: the bound {parts[2]!r} is not a number") from None
    from ..zarr import AEZip

    return AEZip(mode=parts[1], bound=bound)


def write_zarr(path: str, fields: Sequence[tuple[str, np.ndarray, str, str]], serializer, force: bool) -> None:
    """Write arrays into a new Zarr v3 store at ``path`` (one unnamed array: at its root), in a
    temporary folder beside it that is renamed into place when complete."""
    zarr = _zarr()
    if os.path.exists(path) and not force:
        raise OutputExistsError(f"{path} exists; choose another name with -o or overwrite it with --force")
    if os.path.exists(path) and not is_zarr_store(path):
        raise UsageError(f"{path} exists and is not a Zarr store; aezip replaces only Zarr stores: choose another -o")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder {folder} does not exist; create it or choose another -o")
    tmp = tempfile.mkdtemp(prefix=".aezip-", suffix=".zarr.tmp", dir=folder)
    try:
        store = zarr.storage.LocalStore(tmp)
        how = {"compressors": None} if serializer is None else {"serializer": serializer, "compressors": None}
        for name, x, _order, _byteorder in fields:
            target = name.strip("/")
            if not target and len(fields) > 1:
                raise UsageError("several arrays, one of them unnamed, cannot share one Zarr store")
            z = zarr.create_array(store, name=target or None, shape=x.shape, dtype=x.dtype, **how)
            z[...] = x
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
