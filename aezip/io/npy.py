"""NumPy files: ``.npy`` (one array) and ``.npz`` (a zip of ``.npy`` members).

Headers are parsed with NumPy's safe literal parser and the data read as raw bytes:
nothing is ever unpickled.
"""

from __future__ import annotations

import os
import tokenize

import zipfile
import zlib
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np

from ..errors import InputError, UsageError
from .base import (LAZY_BYTES, Field, Input, as_native_c, byteorder_of, check_numeric, require_one, short_list,
                   with_byteorder)

NPY_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 1 << 16


def read_npy(path: str) -> Input:
    """Read the single array of a ``.npy`` file (memory-mapped when larger than LAZY_BYTES)."""
    try:
        with open(path, "rb") as fp:
            field = read_npy_stream(fp, name="", label=path, path=path)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}; check the file") from err
    return Input(path=path, kind="npy", fields=(field,), skeleton=None)


def read_npz(path: str, key: str | None = None) -> Input:
    """Read every array of a ``.npz`` file, or only the one called ``key``."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = {_key_of(m): m for m in zf.namelist() if not m.endswith("/")}
            if not members:
                raise InputError(f"{path} holds no arrays; give a .npz with at least one array")
            if key is not None:
                wanted = _find_key(members, key)
                if wanted is None:
                    raise InputError(
                        f"{path} has no array {key!r}; its arrays are: {short_list(list(members))}"
                    )
                members = {wanted: members[wanted]}
            fields = []
            for name, member in members.items():
                with zf.open(member) as fp:
                    fields.append(read_npy_stream(fp, name=name, label=f"{path}[{name!r}]",
                                                  hint=" (pick another array with --key)"))
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise InputError(f"{path} is a damaged .npz ({err}); re-create it") from err
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}; check the file") from err
    return Input(path=path, kind="npz", fields=tuple(fields), skeleton=None)


def read_npy_stream(fp: BinaryIO, *, name: str, label: str, hint: str = "", path: str | None = None) -> Field:
    """Parse one ``.npy`` stream into a Field (native byte order, C order); with ``path``
    (a plain file) a large array is memory-mapped instead of read."""
    try:
        version = np.lib.format.read_magic(fp)
    except ValueError as err:
        raise InputError(f"{label} is not a valid .npy array ({_one_line(err)}); re-create it") from err
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=_MAX_HEADER)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=_MAX_HEADER)
    except (ValueError, SyntaxError, TypeError, tokenize.TokenError) as err:
        raise InputError(f"{label} has a damaged .npy header ({_one_line(err)}); re-create it") from err
    if dtype.hasobject:
        raise InputError(
            f"{label} holds pickled Python objects (dtype {dtype.str}); aezip never unpickles: "
            "save a float32/float64 array instead"
        )
    check_numeric(dtype, label, hint)
    count = int(np.prod(shape, dtype=np.int64))
    if path is not None and count * dtype.itemsize > LAZY_BYTES:
        offset = fp.tell()
        if os.path.getsize(path) < offset + count * dtype.itemsize:
            raise InputError(f"{label} is truncated: its header promises {count * dtype.itemsize} bytes of data; "
                             "re-create it")
        x = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
        return Field(name=name, x=x, order="F" if fortran else "C", byteorder=byteorder_of(dtype))
    flat = np.empty(count, dtype=dtype)
    got = _read_exactly(fp, flat.view(np.uint8))
    if got < flat.nbytes:
        raise InputError(
            f"{label} is truncated: its header promises {flat.nbytes} bytes of data "
            f"but the file holds {got}; re-create it"
        )
    x = flat.reshape(shape, order="F" if fortran else "C")
    return Field(name=name, x=as_native_c(x), order="F" if fortran else "C",
                 byteorder=byteorder_of(dtype))


def write_npy(tmp: str, fields: Sequence[tuple[str, np.ndarray, str, str]]) -> None:
    """Write one field to ``tmp`` as ``.npy`` in its source order and byte order."""
    require_one(fields, ".npy")
    _, x, order, byteorder = fields[0]
    with open(tmp, "wb") as fp:
        np.lib.format.write_array(fp, restore_layout(x, order, byteorder), allow_pickle=False)


def write_npz(tmp: str, fields: Sequence[tuple[str, np.ndarray, str, str]]) -> None:
    """Write the fields to ``tmp`` as an uncompressed ``.npz`` (as ``np.savez`` does)."""
    keys = npz_keys([name for name, *_ in fields])
    with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, (_, x, order, byteorder) in zip(keys, fields, strict=True):
            with zf.open(key + ".npy", mode="w", force_zip64=True) as fp:
                np.lib.format.write_array(fp, restore_layout(x, order, byteorder), allow_pickle=False)


def npz_keys(names: Sequence[str]) -> list[str]:
    """Member keys for field names: ``""`` -> ``arr_0``, ``arr_1``...; ``/g/d`` -> ``g/d``."""
    keys: list[str] = []
    unnamed = 0
    for name in names:
        key = name.strip("/")
        if not key:
            key = f"arr_{unnamed}"
            unnamed += 1
        if key in keys:
            raise UsageError(f"two arrays would both be called {key!r} in the .npz; use -o NAME.h5")
        keys.append(key)
    return keys


def restore_layout(x: np.ndarray, order: str, byteorder: str) -> np.ndarray:
    """``x`` in the byte order and memory order (``"C"``/``"F"``) its source had."""
    return x.astype(with_byteorder(x.dtype, byteorder), order="F" if order == "F" else "C", copy=False)


def _key_of(member: str) -> str:
    return member[: -len(".npy")] if member.endswith(".npy") else member


def _find_key(members: dict[str, str], key: str) -> str | None:
    for candidate in (key, _key_of(key), key.strip("/"), _key_of(key.strip("/"))):
        if candidate in members:
            return candidate
    return None


def _read_exactly(fp: BinaryIO, buffer: np.ndarray) -> int:
    """Fill ``buffer`` from ``fp``; return how many bytes were available."""
    view = memoryview(buffer)
    got = 0
    while got < len(view):
        n = fp.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
