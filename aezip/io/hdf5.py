"""HDF5 and NetCDF-4 files (NetCDF-4 files are HDF5 files): one dataset, or the whole file."""

from __future__ import annotations

from collections.abc import Sequence

import h5py
import numpy as np

from ..errors import ContainerError, InputError, UnsupportedDataError, UsageError
from .base import (LAZY_BYTES, Field, Input, as_native_c, byteorder_of, check_numeric, declared_fill_values, short_list,
                   with_byteorder)
from .skeleton import build_skeleton, check_skeleton

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def dataset_path(name: str) -> str:
    """An absolute HDF5 path: ``g/d`` -> ``/g/d``; ``""`` -> ``/data``."""
    name = name.strip()
    if not name.strip("/"):
        return "/data"
    return "/" + name.lstrip("/")


def read_hdf5_dataset(path: str, name: str) -> Input:
    """Read the one dataset ``name`` (``/group/dataset``) of an HDF5 file; one larger than
    LAZY_BYTES stays in the file, read slab by slab (the Input's ``close`` closes it)."""
    name = dataset_path(name) if name.strip("/") else "/"
    f = _open(path)
    try:
        lazy = _lazy_dataset(f, path, name)
    except BaseException:
        f.close()
        raise
    if lazy is not None:
        return Input(path=path, kind="hdf5", fields=(lazy,), skeleton=None, close=f.close)
    f.close()
    with _open(path) as f:
        obj = f.get(name) if name in f else None
        if not isinstance(obj, h5py.Dataset):
            what = "no dataset" if obj is None else "a group, not a dataset, at" if isinstance(
                obj, h5py.Group) else "a datatype, not a dataset, at"
            raise InputError(f"{path} has {what} {name}; its datasets are: {short_list(list_datasets(f))}")
        where = f"{path}:{name}"
        if obj.shape is None:
            raise UnsupportedDataError(f"{where} has no dataspace (it holds no data); pick another dataset")
        check_numeric(obj.dtype, where, " (pick another dataset)")
        x = np.empty(obj.shape, dtype=obj.dtype.newbyteorder("="))
        if x.size:
            try:
                obj.read_direct(x)
            except OSError as err:
                raise InputError(f"cannot read {where}: {_one_line(err)}; check the file") from err
        field = Field(name=name, x=as_native_c(x), order="C", byteorder=byteorder_of(obj.dtype),
                      fill_values=declared_fill_values(obj.attrs))
    return Input(path=path, kind="hdf5", fields=(field,), skeleton=None)


def _lazy_dataset(f: h5py.File, path: str, name: str) -> Field | None:
    obj = f.get(name) if name in f else None
    if not isinstance(obj, h5py.Dataset) or obj.shape is None or obj.dtype.kind not in "fiu":
        return None
    if int(np.prod(obj.shape, dtype=np.int64)) * obj.dtype.itemsize <= LAZY_BYTES:
        return None
    check_numeric(obj.dtype, f"{path}:{name}", " (pick another dataset)")
    return Field(name=name, x=obj, order="C", byteorder=byteorder_of(obj.dtype),
                 fill_values=declared_fill_values(obj.attrs))


def read_hdf5_file(path: str) -> Input:
    """Read every float32/float64 dataset of an HDF5 file; keep the rest in a skeleton."""
    with _open(path) as f:
        try:
            skeleton, fields = build_skeleton(f, path)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
            if isinstance(err, InputError):
                raise
            raise InputError(f"cannot copy the structure of {path} ({_one_line(err)}); "
                             "compress single datasets with FILE:/path instead") from err
    if not fields:
        raise InputError(
            f"{path} has no float32/float64 dataset to compress (datasets: "
            f"{short_list(_all_datasets(path))})"
        )
    return Input(path=path, kind="hdf5", fields=tuple(fields), skeleton=skeleton)


def write_hdf5(tmp: str, fields: Sequence[tuple[str, np.ndarray, str, str]], skeleton: bytes | None) -> None:
    """Write the fields into the skeleton's placeholders, or as new datasets without one."""
    paths = [dataset_path(name) for name, *_ in fields]
    if len(set(paths)) != len(paths):
        raise UsageError("two arrays would go to the same HDF5 dataset; give them distinct names")
    if skeleton is None:
        with h5py.File(tmp, "w", locking=False) as f:
            for where, (_, x, _, byteorder) in zip(paths, fields, strict=True):
                f.create_dataset(where, data=x.astype(with_byteorder(x.dtype, byteorder), copy=False))
        return
    check_skeleton(skeleton)
    with open(tmp, "wb") as fp:
        fp.write(skeleton)
    try:
        _fill_skeleton(tmp, paths, fields)
    except ContainerError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # HDF5 refusing a damaged skeleton
        raise ContainerError(f"the stored file layout is damaged ({_one_line(err)[:160]}); the container is "
                             "corrupted") from None
    except OSError as err:
        if err.errno is not None:  # the disk: the caller's to report
            raise
        raise ContainerError(f"the stored file layout is damaged ({_one_line(err)[:160]}); the container is "
                             "corrupted") from None


def _fill_skeleton(tmp: str, paths: list[str], fields) -> None:
    with h5py.File(tmp, "r+", locking=False) as f:
        for where, (_, x, _, byteorder) in zip(paths, fields, strict=True):
            target = f.get(where) if where in f else None
            if target is None:
                f.create_dataset(where, data=x.astype(with_byteorder(x.dtype, byteorder), copy=False))
            elif not isinstance(target, h5py.Dataset) or target.shape != x.shape:
                raise ContainerError(
                    f"the stored file layout has no {x.shape} dataset at {where}; the container is damaged"
                )
            else:
                target.write_direct(np.ascontiguousarray(x))


def list_datasets(f: h5py.File) -> list[str]:
    """Absolute paths of every dataset in ``f``."""
    names: list[str] = []
    f.visititems(lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _all_datasets(path: str) -> list[str]:
    with _open(path) as f:
        return list_datasets(f)


def _open(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"cannot open {path} as HDF5 ({_one_line(err)}); check the file") from err


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
