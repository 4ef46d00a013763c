"""Read a container: format and version first, then records, then streams with their checksums.

Version 2 (the current one), version 3 (version 2 with the codec key ``coarse``) and 4
(version 3 with the codec key ``filter``), each written only for containers that use their
key, and version 1 (formats/aezip-container-v1.md: one group
per array, one attribute per record, one dataset per stream) are read."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np

from ..errors import ChecksumError, ContainerError, FormatVersionError, InputNotFoundError
from .layout import (FORMAT, SUPPORTED_VERSIONS, ArrayEntry, CodecParams, Container, Figures, ModelRef, SourceRef,
                     parse_entry, parse_header, version_needed)
from .writer import crc32


def _text(attrs, key: str, path: str) -> str:
    if key not in attrs:
        raise ContainerError(f"{path}: attribute {key!r} is missing; the container is corrupted")
    v = attrs[key]
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            raise ContainerError(f"{path}: attribute {key!r} is not UTF-8; the container is corrupted") from None
    if isinstance(v, str):
        return v
    raise ContainerError(f"{path}: attribute {key!r} is not a string; the container is corrupted")


def check_format(f: h5py.File, path: str) -> int:
    """The first thing read: is this an aezip container, and of a version we read?"""
    if "format" not in f.attrs or _text(f.attrs, "format", path) != FORMAT:
        raise ContainerError(f"{path} is an HDF5 file but not an aezip container")
    try:
        version = int(f.attrs["format_version"])
    except (KeyError, TypeError, ValueError):
        raise ContainerError(f"{path}: format_version is missing or not an integer; the container is corrupted") from None
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise FormatVersionError(
            f"{path} is container format version {version}; this aezip reads version {supported}: "
            "upgrade aezip to read it"
        )
    return version


def _stream(obj, name: str, path: str) -> np.ndarray:
    ds = obj[name]
    data = ds[()]
    if "crc32" not in ds.attrs or crc32(data.astype(data.dtype.newbyteorder("<"), copy=False)) != int(ds.attrs["crc32"]):
        raise ChecksumError(f"{path}: checksum of stream {ds.name} does not match; the container is corrupted")
    return np.asarray(data).reshape(-1)


def _array(g: h5py.Group, path: str, streams: bool) -> ArrayEntry:
    try:
        shape = tuple(int(n) for n in np.asarray(g.attrs["shape"]).reshape(-1))
    except (KeyError, TypeError, ValueError):
        raise ContainerError(f"{path}: {g.name} has no valid shape; the container is corrupted") from None
    try:
        return ArrayEntry(
            name=_text(g.attrs, "name", path), shape=shape, dtype=_text(g.attrs, "dtype", path),
            order=_text(g.attrs, "order", path), byteorder=_text(g.attrs, "byteorder", path),
            codec=CodecParams.parse(_text(g.attrs, "codec", path)),
            figures=Figures.parse(_text(g.attrs, "figures", path)),
            streams={k: _stream(g, k, path) for k in g} if streams else {},
            slab=tuple(int(v) for v in np.asarray(g.attrs["slab"]).reshape(-1)) if "slab" in g.attrs else None,
        )
    except ValueError as e:
        if isinstance(e, ContainerError):
            raise
        raise ContainerError(f"{path}: {g.name} is invalid ({e}); the container is corrupted") from None


def _entry_v2(f: h5py.File, index: int, path: str, streams: bool) -> ArrayEntry:
    ds = f.get(f"array_{index}")
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype != np.uint8:
        raise ContainerError(f"{path}: array entry {index} is missing; the container is corrupted")
    entry, table = parse_entry(_text(ds.attrs, "record", path))
    if not streams:
        return entry
    return dataclasses.replace(entry, streams=_split(ds[()], table, f"{path}: {ds.name}"))


def _split(payload: np.ndarray, table, where: str) -> dict[str, np.ndarray]:
    """The streams of an entry's bytes, by its stream table, checksums verified."""
    out, at = {}, 0
    for name, dtype, count, crc in table:
        n = count * np.dtype(dtype).itemsize
        if at + n > payload.size:
            raise ContainerError(f"{where} is shorter than its stream table says; the container is corrupted")
        part = payload[at : at + n]
        if crc32(part) != crc:
            raise ChecksumError(f"{where}: checksum of stream {name!r} does not match; the container is corrupted")
        out[name] = part.view(np.dtype(dtype).newbyteorder("<")).astype(np.dtype(dtype), copy=False)
        at += n
    if at != payload.size:
        raise ContainerError(f"{where} is longer than its stream table says; the container is corrupted")
    return out


def _open(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist") from None
    except OSError:
        raise ContainerError(f"cannot read {path}: not an HDF5 file, or truncated; is it an .aez container?") from None


def read_streams(path: str, index: int) -> dict[str, np.ndarray]:
    """The streams of array entry ``index``, checksums verified: for decoding entry by
    entry with only one entry's streams in memory (see ``read_container(streams="root")``)."""
    try:
        with _open(path) as f:
            if check_format(f, path) >= 2:
                return _entry_v2(f, index, path, True).streams
            g = f.get(f"array_{index}")
            if not isinstance(g, h5py.Group):
                raise ContainerError(f"{path}: array group {index} is missing; the container is corrupted")
            return {k: _stream(g, k, path) for k in g}
    except (OSError, KeyError, RuntimeError) as e:
        raise ContainerError(f"cannot read {path}: {e}; the container is truncated or corrupted") from None


def _root_v1(f: h5py.File, path: str, arrays: bool):
    n = f.attrs.get("n_arrays", -1)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ContainerError(f"{path}: n_arrays is not an integer; the container is corrupted")
    groups = [f"array_{i}" for i in range(int(n))]
    if any(not isinstance(f.get(g), h5py.Group) for g in groups):
        raise ContainerError(f"{path}: array groups are missing; the container is corrupted")
    return (_text(f.attrs, "writer", path), SourceRef.parse(_text(f.attrs, "source", path)),
            ModelRef.parse_list(_text(f.attrs, "models", path)) if "models" in f.attrs else (),
            tuple(_array(f[g], path, arrays) for g in groups))


def read_container(path: str, *, streams: bool | str = True) -> Container:
    """Read the records, and the streams: all of them (True), none (False), or only the
    root's skeleton and model ("root"; array streams then come from :func:`read_streams`)."""
    f = _open(path)
    with_streams, root = streams is True, streams in (True, "root")
    try:
        with f:
            version = check_format(f, path)
            if version == 1:
                writer, source, models, arrays = _root_v1(f, path, with_streams)
            else:
                writer, source, models, n = parse_header(_text(f.attrs, "header", path))
                arrays = tuple(_entry_v2(f, i, path, with_streams) for i in range(n))
                if any(version_needed(a.codec) > version for a in arrays):
                    raise ContainerError(f"{path}: an entry uses a key of a later format version than the file's "
                                         f"({version}); the container is corrupted")
            if not arrays:
                raise ContainerError(f"{path}: the container lists no array; it is corrupted")
            return Container(
                format_version=version, writer=writer, source=source, models=models, arrays=arrays,
                skeleton=_stream(f, "skeleton", path).tobytes() if root and "skeleton" in f else None,
                embedded_model=_stream(f, "model", path).tobytes() if root and "model" in f else None,
            )
    except (OSError, KeyError, RuntimeError) as e:
        raise ContainerError(f"cannot read {path}: {e}; the container is truncated or corrupted") from None
