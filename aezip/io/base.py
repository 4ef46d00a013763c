"""The records io hands out (Field, Input) and the dtype checks every reader shares."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedDataError, UsageError

NATIVE_BYTEORDER = "<" if sys.byteorder == "little" else ">"


@dataclass(frozen=True, kw_only=True)
class Field:
    """One array to compress, with the layout its source had.

    ``x`` is native byte order and C-contiguous, except for inputs larger than
    ``LAZY_BYTES``: there it is a lazy array (``np.memmap`` or ``h5py.Dataset``) read
    slab by slab through slicing along axis 0 (see :func:`load`). ``order`` and
    ``byteorder`` record how the source stored it so that writers can restore it. ``fill_values``
    are the values the source declares as missing (NetCDF/HDF5 ``_FillValue`` and
    ``missing_value``): they are not data and are kept exactly.
    """

    name: str
    x: np.ndarray
    order: str
    byteorder: str
    fill_values: tuple[float, ...] = ()


def declared_fill_values(attrs) -> tuple[float, ...]:
    """The numeric ``_FillValue`` and ``missing_value`` attributes of a dataset, as floats."""
    found: list[float] = []
    for key in ("_FillValue", "missing_value"):
        if key in attrs:
            try:
                values = np.asarray(attrs[key]).reshape(-1)
            except (OSError, TypeError, ValueError):
                continue
            if values.dtype.kind in "fiu":
                found += [float(v) for v in values]
    return tuple(dict.fromkeys(found))

@dataclass(frozen=True, kw_only=True)
class Input:
    """A user file read for compression: its arrays, plus (HDF5 only) everything else.

    ``close`` releases what lazy fields hold open (call it when done; a no-op otherwise)."""

    path: str
    kind: str
    fields: tuple[Field, ...]
    skeleton: bytes | None
    close: Callable[[], None] = lambda: None


LAZY_BYTES = 256 << 20  # inputs larger than this are read slab by slab


def load(x, rows: slice | None = None) -> np.ndarray:
    """Rows of a field's data (all by default) as a native, C-contiguous ndarray."""
    part = np.asarray(x if rows is None else x[rows])
    return as_native_c(part)


def byteorder_of(dtype: np.dtype) -> str:
    """``"<"``, ``">"`` or ``"|"`` (not byte-ordered) for ``dtype``; never ``"="``."""
    order = dtype.byteorder
    if order == "=":
        return NATIVE_BYTEORDER if dtype.itemsize > 1 else "|"
    return order


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in native byte order."""
    return dtype if byteorder_of(dtype) in ("|", NATIVE_BYTEORDER) else dtype.newbyteorder("=")


def with_byteorder(dtype: np.dtype, byteorder: str) -> np.dtype:
    """``dtype`` in ``byteorder`` (``"<"`` or ``">"``); unchanged for ``"="``, ``"|"``, ``""``."""
    if byteorder in ("<", ">") and dtype.itemsize > 1:
        return dtype.newbyteorder(byteorder)
    return dtype


def describe_dtype(dtype: np.dtype) -> str:
    """A short readable name: ``float32``, ``>f8``, ``complex64``, ``structured [('a', '<i4')]``."""
    if dtype.fields is not None:
        return f"structured {dtype.descr}"
    if dtype.subdtype is not None:
        return f"subarray {dtype.str}{dtype.shape}"
    if dtype.kind in "OSUV":
        return {"O": "object", "S": "bytes", "U": "str", "V": "void"}[dtype.kind] + f" ({dtype.str})"
    name = dtype.name
    return name if byteorder_of(dtype) in ("|", NATIVE_BYTEORDER) else f"{name} ({dtype.str})"


def check_numeric(dtype: np.dtype, where: str, hint: str = "") -> None:
    """Refuse dtypes that are not real numbers (floats and integers pass; the codec judges those)."""
    if dtype.fields is None and dtype.subdtype is None and dtype.kind in "fiu":
        return
    raise UnsupportedDataError(
        f"{where} has dtype {describe_dtype(dtype)}, which aezip cannot compress; "
        f"it compresses float32/float64 arrays{hint}"
    )


def as_native_c(x: np.ndarray) -> np.ndarray:
    """``x`` as a native-byte-order, C-contiguous, writable array (copies only when needed)."""
    x = x.astype(native(x.dtype), order="C", copy=False)
    if not x.flags.writeable:
        x = x.copy()
    return x


def require_one(fields: Sequence[object], what: str) -> None:
    """Refuse anything but exactly one array for a one-array format (``.npy``, raw)."""
    if len(fields) != 1:
        raise UsageError(f"{len(fields)} arrays cannot go into one {what}; use -o NAME.npz or NAME.h5")


def short_list(names: list[str], limit: int = 12) -> str:
    """``a, b, c`` or ``a, b, ... and 40 more`` for messages."""
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return f"{shown}, ... and {more} more" if more > 0 else shown
