"""Raw binaries: bare array bytes in C order; the shape and dtype come from the user."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError, UsageError
from .base import LAZY_BYTES, Field, Input, as_native_c, byteorder_of, require_one, with_byteorder

RAW_EXTENSIONS = (".f32", ".f64", ".dat", ".bin", ".raw")
_DEFAULT_DTYPE = {".f32": "float32", ".f64": "float64"}


def parse_dtype(dtype: str | None, path: str) -> np.dtype:
    """The dtype of a raw file: ``dtype`` if given, else implied by a .f32/.f64 extension."""
    if dtype is None:
        dtype = _DEFAULT_DTYPE.get(os.path.splitext(path)[1].lower())
        if dtype is None:
            raise UsageError(f"{path} is a raw binary: give its --dtype (float32 or float64)")
    try:
        parsed = np.dtype(dtype)
    except TypeError as err:
        raise UsageError(f"--dtype {dtype!r} is not a dtype; use float32 or float64 (or f4, >f8 ...)") from err
    if parsed.kind != "f" or parsed.itemsize not in (4, 8):
        raise UsageError(f"--dtype {dtype!r} is not supported for raw files; use float32 or float64")
    return parsed


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints, or a UsageError."""
    try:
        dims = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as err:
        raise UsageError(f"--shape {shape!r} must be whole numbers, e.g. --shape 100,200") from err
    if not dims or any(n <= 0 for n in dims) or any(n != s for n, s in zip(dims, shape)):
        raise UsageError(f"--shape {tuple(shape)} must be one or more positive whole numbers, e.g. 100,200")
    return dims


def read_raw(path: str, shape: Sequence[int] | None, dtype: str | None) -> Input:
    """Read a raw binary of ``shape`` (C order, slowest axis first) and ``dtype``."""
    if shape is None:
        raise UsageError(f"{path} is a raw binary: give its --shape (C order, slowest axis first) and --dtype")
    dims = check_shape(shape)
    parsed = parse_dtype(dtype, path)
    expected = int(np.prod(dims, dtype=np.int64)) * parsed.itemsize
    try:
        size = os.path.getsize(path)
        if size != expected:
            raise InputError(
                f"{path} holds {size} bytes but --shape {','.join(map(str, dims))} of {parsed.name} "
                f"needs {expected}; check --shape and --dtype"
            )
        if expected > LAZY_BYTES:
            x = np.memmap(path, dtype=parsed, mode="r", shape=dims)
            return Input(path=path, kind="raw", fields=(Field(name="", x=x, order="C", byteorder=byteorder_of(parsed)),),
                         skeleton=None)
        x = np.fromfile(path, dtype=parsed).reshape(dims)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}; check the file") from err
    field = Field(name="", x=as_native_c(x), order="C", byteorder=byteorder_of(parsed))
    return Input(path=path, kind="raw", fields=(field,), skeleton=None)


def check_raw_extension(path: str, dtype: np.dtype) -> None:
    """A .f32/.f64 name promises a dtype: refuse to write another one under it."""
    implied = _DEFAULT_DTYPE.get(os.path.splitext(path)[1].lower())
    if implied is not None and np.dtype(implied) != np.dtype(dtype).newbyteorder("="):
        ext = {"float32": ".f32", "float64": ".f64"}.get(np.dtype(dtype).name, ".raw")
        raise UsageError(f"{path} names {implied} data but the array is {np.dtype(dtype).name}; "
                         f"name the output {ext} (or .raw/.dat/.bin to keep its dtype)")


def write_raw(tmp: str, fields: Sequence[tuple[str, np.ndarray, str, str]]) -> None:
    """Write one field's bytes in C order and its source byte order."""
    require_one(fields, "raw file")
    _, x, _, byteorder = fields[0]
    np.ascontiguousarray(x.astype(with_byteorder(x.dtype, byteorder), copy=False)).tofile(tmp)
