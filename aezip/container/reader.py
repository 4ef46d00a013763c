"""Read a container: format and version first, then the records' checksums (version 5),
then the records, then streams with their checksums.

Version 5 (the one aezip writes: version 4 with a CRC-32 over the header and over each
entry record, formats/aezip-container-v5.md), 4 (version 3 with the codec key
``filter``), 3 (version 2 with the codec key ``coarse``), 2 and version 1
(formats/aezip-container-v1.md: one group per array, one attribute per record, one
dataset per stream) are read. A file of version N may use every key of versions up to N.

A container is untrusted input: its members are reached through hard links only (an
external or soft link is refused, never followed), and a stream dataset is read only
when its storage is plain (compact or contiguous in the file, no filters, no external
files) and its size is the one its record declares, so that no forged dataset makes the
reader allocate more than the file holds."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np

from ..errors import ChecksumError, ContainerError, FormatVersionError, InputNotFoundError
from .layout import (CHECKSUMMED_SINCE, FORMAT, SUPPORTED_VERSIONS, ArrayEntry, CodecParams, Container, Figures,
                     ModelRef, SourceRef, check_model_refs, check_names, check_values_justified, parse_entry,
                     parse_header, version_needed)
from .writer import crc32, text_crc32

_PLAIN_LAYOUTS = (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS)


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


def _record(attrs, key: str, path: str, version: int) -> str:
    """A JSON record attribute; from version 5 on, checked against its CRC-32 first."""
    text = _text(attrs, key, path)
    if version < CHECKSUMMED_SINCE:
        return text
    crc = attrs.get(f"{key}_crc32")
    if isinstance(crc, np.ndarray) and crc.shape == ():
        crc = crc[()]
    if not isinstance(crc, (int, np.integer)) or isinstance(crc, (bool, np.bool_)):
        raise ContainerError(f"{path}: the {key!r} record has no checksum; the container is corrupted")
    if text_crc32(text.encode()) != int(crc):
        raise ChecksumError(f"{path}: checksum of the {key!r} record does not match; the container is corrupted")
    return text


def _member(group: h5py.Group, name: str, path: str):
    """The object linked as ``name`` in ``group`` (None when absent), reached through a hard
    link only: a container's links never lead out of it."""
    link = group.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise ContainerError(f"{path}: {group.name.rstrip('/')}/{name} is {kind}, which aezip never follows; "
                             "the container is corrupted or forged")
    return group[name]


def _plain(ds, path: str, nbytes: int | None = None, *, file_bytes: int) -> h5py.Dataset:
    """``ds`` if it is a 1-D numeric dataset stored plainly in the file, holding ``nbytes``
    (its record's figure, when given): checked before a byte of it is read."""
    if not isinstance(ds, h5py.Dataset):
        raise ContainerError(f"{path}: a stream is not a dataset; the container is corrupted")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() not in _PLAIN_LAYOUTS or dcpl.get_external_count() or dcpl.get_nfilters():
        raise ContainerError(f"{path}: stream {ds.name} is chunked, filtered or stored outside the file, which "
                             "aezip never writes; the container is corrupted or forged")
    if ds.ndim != 1 or ds.dtype.kind not in "fiu":
        raise ContainerError(f"{path}: stream {ds.name} is not a 1-D numeric dataset; the container is corrupted")
    size = ds.size * ds.dtype.itemsize
    if nbytes is not None and size != nbytes:
        raise ContainerError(f"{path}: {ds.name} holds {size} bytes where its stream table says {nbytes}; "
                             "the container is corrupted")
    if size > file_bytes or (size and ds.id.get_storage_size() != size):
        raise ContainerError(f"{path}: {ds.name} declares more bytes than the file stores; the container is "
                             "truncated or corrupted")
    return ds


def _file_bytes(f: h5py.File) -> int:
    return f.id.get_filesize()


def _stream(obj, name: str, path: str) -> np.ndarray:
    ds = _plain(_member(obj, name, path), path, file_bytes=_file_bytes(obj.file))
    data = ds[()]
    if "crc32" not in ds.attrs or crc32(data.astype(data.dtype.newbyteorder("<"), copy=False)) != int(ds.attrs["crc32"]):
        raise ChecksumError(f"{path}: checksum of stream {ds.name} does not match; the container is corrupted")
    return np.asarray(data).reshape(-1)


def _array(g: h5py.Group, path: str, streams: bool) -> ArrayEntry:
    try:
        shape = tuple(int(n) for n in np.asarray(g.attrs["shape"]).reshape(-1))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ContainerError(f"{path}: {g.name} has no valid shape; the container is corrupted") from None
    members = {k: _plain(_member(g, k, path), path, file_bytes=_file_bytes(g.file)) for k in g}
    try:
        entry = ArrayEntry(
            name=_text(g.attrs, "name", path), shape=shape, dtype=_text(g.attrs, "dtype", path),
            order=_text(g.attrs, "order", path), byteorder=_text(g.attrs, "byteorder", path),
            codec=CodecParams.parse(_text(g.attrs, "codec", path)),
            figures=Figures.parse(_text(g.attrs, "figures", path)),
            slab=tuple(int(v) for v in np.asarray(g.attrs["slab"]).reshape(-1)) if "slab" in g.attrs else None,
        )
    except (ValueError, TypeError, OverflowError) as e:
        if isinstance(e, ContainerError):
            raise
        raise ContainerError(f"{path}: {g.name} is invalid ({e}); the container is corrupted") from None
    check_values_justified(entry, {k: ds.size * ds.dtype.itemsize for k, ds in members.items()})
    return dataclasses.replace(entry, streams={k: _stream(g, k, path) for k in g}) if streams else entry


def _entry_v2(f: h5py.File, index: int, path: str, version: int, streams: bool) -> ArrayEntry:
    ds = _member(f, f"array_{index}", path)
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype != np.uint8:
        raise ContainerError(f"{path}: array entry {index} is missing; the container is corrupted")
    entry, table = parse_entry(_record(ds.attrs, "record", path, version))
    sizes = [count * np.dtype(dtype).itemsize for _, dtype, count, _ in table]
    _plain(ds, path, sum(sizes), file_bytes=_file_bytes(f))
    check_values_justified(entry, {name: n for (name, *_), n in zip(table, sizes)})
    if not streams:
        return entry
    return dataclasses.replace(entry, streams=_split(ds[()], table, f"{path}: {ds.name}"))


def _split(payload: np.ndarray, table, where: str) -> dict[str, np.ndarray]:
    """The streams of an entry's bytes, by its stream table, checksums verified."""
    out, at = {}, 0
    if len({name for name, *_ in table}) != len(table):
        raise ContainerError(f"{where} names a stream twice; the container is corrupted")
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
            version = check_format(f, path)
            if version >= 2:
                return _entry_v2(f, index, path, version, True).streams
            g = _member(f, f"array_{index}", path)
            if not isinstance(g, h5py.Group):
                raise ContainerError(f"{path}: array group {index} is missing; the container is corrupted")
            return _array(g, path, True).streams
    except (OSError, KeyError, RuntimeError) as e:
        raise ContainerError(f"cannot read {path}: {e}; the container is truncated or corrupted") from None


def _root_v1(f: h5py.File, path: str, arrays: bool):
    n = f.attrs.get("n_arrays", -1)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ContainerError(f"{path}: n_arrays is not an integer; the container is corrupted")
    groups = [f"array_{i}" for i in range(int(n))]
    if any(not isinstance(_member(f, g, path), h5py.Group) for g in groups):
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
                writer, source, models, n = parse_header(_record(f.attrs, "header", path, version))
                if n > len(f):
                    raise ContainerError(f"{path}: the header lists {n} entries, the file holds fewer; "
                                         "the container is corrupted")
                arrays = tuple(_entry_v2(f, i, path, version, with_streams) for i in range(n))
                if any(version_needed(a.codec) > version for a in arrays):
                    raise ContainerError(f"{path}: an entry uses a key of a later format version than the file's "
                                         f"({version}); the container is corrupted")
            if not arrays:
                raise ContainerError(f"{path}: the container lists no array; it is corrupted")
            check_names(arrays, path)
            check_model_refs(arrays, models, path)
            return Container(
                format_version=version, writer=writer, source=source, models=models, arrays=arrays,
                skeleton=_stream(f, "skeleton", path).tobytes() if root and _linked(f, "skeleton") else None,
                embedded_model=_stream(f, "model", path).tobytes() if root and _linked(f, "model") else None,
            )
    except (OSError, KeyError, RuntimeError) as e:
        raise ContainerError(f"cannot read {path}: {e}; the container is truncated or corrupted") from None


def _linked(f: h5py.File, name: str) -> bool:
    """Whether the root has a link ``name`` (of any kind: ``_member`` refuses all but hard links)."""
    return f.get(name, getlink=True) is not None
