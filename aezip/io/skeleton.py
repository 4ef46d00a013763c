"""The HDF5 skeleton: a copy of a source file without the data of its float fields.

The skeleton holds every group, link, attribute and non-float dataset of the source,
copied exactly, and one *placeholder* per float field: a dataset with the field's
type, shape, chunking, filters and attributes whose storage was never written, so it
costs a few hundred bytes. Writing the fields' data into the placeholders restores
the file. Dimension scales (netCDF-4 dimensions) are re-attached with the dims API,
because the references they are made of cannot be copied between files.

What a skeleton may hold is one whitelist, :func:`foreign_content`, shared by compress
and decompress: groups, plain datasets (compact, contiguous or chunked in the file),
attributes, dimension scales and their references, soft and hard links inside the file,
committed datatypes. Whatever reaches outside the file (external links, datasets with
external storage, virtual datasets, user-defined links) is left out at compress, with
a :class:`LeftOutWarning` naming it, and a stored skeleton holding any is refused before
a byte is written (decompressing it would create or overwrite other files).
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import h5py
import numpy as np
from h5py import h5, h5a, h5d, h5g, h5l, h5o, h5p, h5s, h5t

import warnings

from ..errors import ContainerError, InputError, UnsupportedDataError

SKELETON_READ_VALUES = 1 << 24  # datasets of a skeleton up to this many values are read in full by its check
from .base import Field, as_native_c, byteorder_of, declared_fill_values

_FLOAT_TYPES = (h5t.IEEE_F32LE, h5t.IEEE_F32BE, h5t.IEEE_F64LE, h5t.IEEE_F64BE)
_DIMENSION_ATTRS = (b"DIMENSION_LIST", b"REFERENCE_LIST")
_LIBVER_OF_SUPERBLOCK = {0: "earliest", 1: "earliest", 2: "v108", 3: "v110"}

ObjectKey = tuple[int, int]


class LeftOutWarning(UserWarning):
    """Part of an HDF5 input reaches outside its file and is left out of the container."""


def build_skeleton(src: h5py.File, path: str) -> tuple[bytes, list[Field]]:
    """Copy ``src`` minus its float fields into an in-memory HDF5 image; return it and the
    fields. What reaches outside the file is left out, each with a LeftOutWarning."""
    return _SkeletonBuilder(src, path).build()


def outside_reach(link_type: int, obj: h5py.HLObject | None) -> str | None:
    """What of one link and the object it leads to reaches outside the file (None: nothing):
    the whitelist's single rule."""
    if link_type == h5l.TYPE_EXTERNAL:
        return "an external link"
    if link_type not in (h5l.TYPE_HARD, h5l.TYPE_SOFT):
        return "a user-defined link"
    if isinstance(obj, h5py.Dataset):
        dcpl = obj.id.get_create_plist()
        if dcpl.get_layout() == h5d.VIRTUAL:
            return "a virtual dataset"
        if dcpl.get_external_count() > 0:
            return "a dataset stored in external files"
    return None


def foreign_content(f: h5py.File) -> list[str]:
    """Every path of ``f`` whose link or object reaches outside the file, with what it is;
    soft links are never followed and external links never opened."""
    found: list[str] = []
    seen: set[ObjectKey] = set()

    def walk(group: h5py.Group, gpath: str) -> None:
        key = object_key(group.id)
        if key in seen:
            return
        seen.add(key)
        for name in _link_names(group):
            info = group.id.links.get_info(name)
            child = f"{gpath.rstrip('/')}/{name.decode('utf-8', 'surrogateescape')}"
            obj = group[name.decode("utf-8", "surrogateescape")] if info.type == h5l.TYPE_HARD else None
            what = outside_reach(info.type, obj)
            if what is not None:
                found.append(f"{child} ({what})")
            elif isinstance(obj, h5py.Group):
                walk(obj, child)

    walk(f["/"], "/")
    return found


SKELETON_CHECK_SECONDS = 10  # a child still reading a stored skeleton after this long is stopped (within fuzz.py's 20 s)


def check_skeleton(skeleton: bytes) -> None:
    """Refuse a stored skeleton that is not an HDF5 image or holds anything outside the
    whitelist (ContainerError): checked before any output is created.

    Where forking is safe (Linux, one thread), the image is first read in a forked child,
    which also writes into a copy of it as filling it will: damaged bytes can crash the
    HDF5 library itself or send it round a loop (benchmarks/fuzz.py met segmentation faults
    and reads that never ended), and a child that dies, or has not finished within
    SKELETON_CHECK_SECONDS, means a corrupted container, never a dead or hung aezip."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        pid = os.fork()
        if pid == 0:  # the child: read everything the copy will read, write as the fill will
            code = 1
            try:
                _check(skeleton, touch=True)
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + SKELETON_CHECK_SECONDS
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise ContainerError("reading the stored file layout does not finish; the container is corrupted")
            time.sleep(0.005)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 1)):
            raise ContainerError("the stored file layout crashes the HDF5 library when read; the container is corrupted")
    _check(skeleton, touch=False)


def _check(skeleton: bytes, touch: bool) -> None:
    try:
        image = io.BytesIO(skeleton)
        with h5py.File(image, "r+" if touch else "r") as f:
            foreign = foreign_content(f)
            if touch and not foreign:
                f.visititems(_read_everything)
    except (OSError, RuntimeError, ValueError, KeyError, OverflowError, TypeError) as err:  # h5py's in-memory
        # driver raises OverflowError where damaged bytes declare addresses beyond any file
        raise ContainerError(f"the stored file layout is not a readable HDF5 image ({' '.join(str(err).split())}); "
                             "the container is corrupted") from None
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ContainerError(f"the stored file layout holds {foreign[0]}{more}, which would reach outside the "
                             "output file; the container is corrupted or forged")


def _read_everything(name: str, obj) -> None:
    """Read an object's attributes and, for a dataset, its values (the skeleton's are
    small), and write its values back, as the fill writes its placeholders."""
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset) and obj.shape is not None and obj.size <= SKELETON_READ_VALUES:
        values = obj[()]
        if obj.size and obj.dtype.kind in "fiub":
            obj[()] = values


def is_float_field(ds: h5py.Dataset) -> bool:
    """True for a float32/float64 dataset with data to compress: not scalar, empty or
    unwritten, and not a dimension scale (coordinates such as a netCDF lat/lon/time
    axis are copied exactly)."""
    if ds.attrs.get("CLASS") in (b"DIMENSION_SCALE", "DIMENSION_SCALE"):
        return False
    tid = ds.id.get_type()
    if tid.get_class() != h5t.FLOAT or not any(tid.equal(t) for t in _FLOAT_TYPES):
        return False
    if ds.shape is None or len(ds.shape) == 0 or ds.size == 0:
        return False
    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() == h5d.VIRTUAL:
        return False
    return ds.id.get_storage_size() > 0


def object_key(oid: h5py.h5o.ObjectID) -> ObjectKey:
    """Identify an object across its hard links."""
    info = h5o.get_info(oid)
    return (info.fileno, info.addr)


class _SkeletonBuilder:
    """One walk over the source, mirroring it into a new in-memory file."""

    def __init__(self, src: h5py.File, path: str) -> None:
        self.src = src
        self.path = path
        self.copied: dict[ObjectKey, str] = {}  # source object -> its path in the skeleton
        self.fields: list[Field] = []
        self.scales: list[tuple[str, int, ObjectKey, str]] = []  # dataset, axis, scale, scale name
        self.deferred: list[Callable[[h5py.File], None]] = []
        self.copy_plist = h5p.create(h5p.OBJECT_COPY)
        self.copy_plist.set_copy_object(h5o.COPY_WITHOUT_ATTR_FLAG)
        self.left_out: list[str] = []  # what reaches outside the file, with what it is

    def build(self) -> tuple[bytes, list[Field]]:
        root = self.src["/"]
        superblock = self.src.id.get_create_plist().get_version()[0]
        userblock = self.src.userblock_size
        options: dict[str, object] = {
            "libver": (_LIBVER_OF_SUPERBLOCK.get(superblock, "v110"), "latest"),
            "track_order": bool(root.id.get_create_plist().get_link_creation_order()),
        }
        if userblock:
            options["userblock_size"] = userblock
        image = io.BytesIO()
        with h5py.File(image, "w", **options) as dst:
            self.copied[object_key(root.id)] = "/"
            self._copy_attrs(root, dst["/"], "/")
            self._copy_members(root, dst["/"], "/")
            for finish in self.deferred:
                finish(dst)
            self._attach_scales(dst)
        data = image.getvalue()
        if self.left_out:
            warnings.warn(f"{self.path}: left out of the container, as it reaches outside the file: "
                          f"{', '.join(self.left_out)}", LeftOutWarning, stacklevel=3)
        if userblock:
            with open(self.path, "rb") as fp:
                data = fp.read(userblock) + data[userblock:]
        return data, self.fields

    # --- links and objects -------------------------------------------------------------

    def _copy_members(self, sgroup: h5py.Group, dgroup: h5py.Group, gpath: str) -> None:
        for name in _link_names(sgroup):
            info = sgroup.id.links.get_info(name)
            lcpl = h5p.create(h5p.LINK_CREATE)
            lcpl.set_char_encoding(info.cset)
            child = f"{gpath.rstrip('/')}/{name.decode('utf-8', 'surrogateescape')}"
            obj = sgroup[name.decode("utf-8", "surrogateescape")] if info.type == h5l.TYPE_HARD else None
            what = outside_reach(info.type, obj)
            if what is not None:
                self.left_out.append(f"{child} ({what})")
            elif info.type == h5l.TYPE_SOFT:
                dgroup.id.links.create_soft(name, sgroup.id.links.get_val(name), lcpl=lcpl)
            else:
                self._copy_object(sgroup, dgroup, name, child, lcpl)

    def _copy_object(self, sgroup: h5py.Group, dgroup: h5py.Group, name: bytes, path: str,
                     lcpl: h5p.PropID) -> None:
        sobj = sgroup[name.decode("utf-8", "surrogateescape")]
        key = object_key(sobj.id)
        if key in self.copied:  # a second hard link to an object already copied
            target = self.copied[key].encode("utf-8", "surrogateescape")
            dgroup.id.links.create_hard(name, dgroup.id, target, lcpl=lcpl)
            return
        self.copied[key] = path
        if isinstance(sobj, h5py.Group):
            gid = h5g.create(dgroup.id, name, lcpl=lcpl, gcpl=_group_plist(sobj))
            dobj = h5py.Group(gid)
            self._copy_attrs(sobj, dobj, path)
            self._copy_members(sobj, dobj, path)
        elif isinstance(sobj, h5py.Dataset):
            self._copy_dataset(sgroup, sobj, dgroup, name, path, lcpl)
        else:  # a committed datatype
            h5o.copy(sgroup.id, name, dgroup.id, name, copypl=self.copy_plist, lcpl=lcpl)
            self._copy_attrs(sobj, dgroup[path], path)

    def _copy_dataset(self, sgroup: h5py.Group, sds: h5py.Dataset, dgroup: h5py.Group, name: bytes,
                      path: str, lcpl: h5p.PropID) -> None:
        tid = sds.id.get_type()
        if is_float_field(sds):
            did = h5d.create(dgroup.id, name, tid.copy(), sds.id.get_space(),
                             dcpl=_placeholder_plist(sds), lcpl=lcpl)
            x = np.empty(sds.shape, dtype=sds.dtype.newbyteorder("="))
            sds.read_direct(x)
            self.fields.append(Field(name=path, x=as_native_c(x), order="C", byteorder=byteorder_of(sds.dtype),
                                     fill_values=declared_fill_values(sds.attrs)))
        elif _holds_references(tid):
            if not tid.equal(h5t.STD_REF_OBJ):
                raise UnsupportedDataError(
                    f"{self.path}:{path} holds HDF5 region or compound references aezip cannot copy; "
                    "compress single datasets with FILE:/path instead"
                )
            did = h5d.create(dgroup.id, name, tid.copy(), sds.id.get_space(),
                             dcpl=sds.id.get_create_plist(), lcpl=lcpl)
            self.deferred.append(lambda dst, p=path: self._translate_dataset(dst, p))
        else:
            h5o.copy(sgroup.id, name, dgroup.id, name, copypl=self.copy_plist, lcpl=lcpl)
            did = h5o.open(dgroup.id, name)
        self._copy_attrs(sds, h5py.Dataset(did), path)
        if h5a.exists(sds.id, b"DIMENSION_LIST"):
            self._record_scales(sds, path)

    # --- attributes ------------------------------------------------------------------

    def _copy_attrs(self, sobj: h5py.HLObject, dobj: h5py.HLObject, path: str) -> None:
        for name in _attr_names(sobj):
            if isinstance(sobj, h5py.Dataset) and name in _DIMENSION_ATTRS:
                continue  # rebuilt by _attach_scales
            self._copy_attr(sobj, dobj, name, path)

    def _copy_attr(self, sobj: h5py.HLObject, dobj: h5py.HLObject, name: bytes, path: str) -> None:
        source = h5a.open(sobj.id, name)
        tid = source.get_type()
        space = source.get_space()
        target = h5a.create(dobj.id, name, tid.copy(), space)
        if space.get_simple_extent_type() == h5s.NULL:
            return
        if _holds_references(tid):
            if not tid.equal(h5t.STD_REF_OBJ):
                raise UnsupportedDataError(
                    f"attribute {name.decode(errors='replace')!r} of {self.path}:{path} holds HDF5 region "
                    "or compound references aezip cannot copy; compress single datasets with FILE:/path"
                )
            self.deferred.append(lambda dst, p=path, n=name: self._translate_attr(dst, p, n))
        elif _holds_variable_length(tid):
            buffer = np.empty(source.shape, dtype=source.dtype)
            source.read(buffer)
            target.write(buffer)
        else:  # copy the bytes as they are, in the file's own type
            buffer = np.empty(source.shape, dtype=np.dtype((np.void, tid.get_size())))
            source.read(buffer, mtype=tid)
            target.write(buffer, mtype=tid)

    # --- references ------------------------------------------------------------------

    def _translate(self, dst: h5py.File, ref: h5py.Reference, where: str) -> h5py.Reference:
        if not ref:
            return ref
        key = object_key(self.src[ref].id)
        if key not in self.copied:
            raise UnsupportedDataError(
                f"{where} refers to an object no link leads to; aezip cannot copy it: "
                "compress single datasets with FILE:/path instead"
            )
        return dst[self.copied[key]].ref

    def _translate_refs(self, dst: h5py.File, refs: np.ndarray, where: str) -> np.ndarray:
        out = np.empty(refs.shape, dtype=h5py.ref_dtype)
        for index, ref in np.ndenumerate(refs):
            out[index] = self._translate(dst, ref, where)
        return out

    def _translate_attr(self, dst: h5py.File, path: str, name: bytes) -> None:
        source = h5a.open(self.src[path].id, name)
        refs = np.empty(source.shape, dtype=h5py.ref_dtype)
        source.read(refs)
        where = f"attribute {name.decode(errors='replace')!r} of {self.path}:{path}"
        h5a.open(dst[path].id, name).write(self._translate_refs(dst, refs, where))

    def _translate_dataset(self, dst: h5py.File, path: str) -> None:
        source = self.src[path]
        if source.shape is None:  # a null dataspace: nothing stored
            return
        refs = np.asarray(source[()], dtype=h5py.ref_dtype)
        if refs.size:
            dst[path][()] = self._translate_refs(dst, refs, f"{self.path}:{path}")

    # --- dimension scales ------------------------------------------------------------

    def _record_scales(self, sds: h5py.Dataset, path: str) -> None:
        try:
            for axis, dim in enumerate(sds.dims):
                for i in range(len(dim)):
                    scale = dim[i]
                    self.scales.append((path, axis, object_key(scale.id), scale.name or "?"))
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise InputError(
                f"{self.path}:{path} has damaged dimension scales ({' '.join(str(err).split())}); "
                "repair the file or compress single datasets with FILE:/path"
            ) from err

    def _attach_scales(self, dst: h5py.File) -> None:
        for path, axis, key, scale_name in self.scales:
            if key not in self.copied:
                raise UnsupportedDataError(
                    f"{self.path}:{path} uses dimension scale {scale_name} that no link leads to; "
                    "compress single datasets with FILE:/path instead"
                )
            dst[path].dims[axis].attach_scale(dst[self.copied[key]])


def _link_names(group: h5py.Group) -> list[bytes]:
    """The link names of ``group``, in creation order where it is tracked."""
    tracked = group.id.get_create_plist().get_link_creation_order() & h5p.CRT_ORDER_TRACKED
    return _ordered_names(lambda collect, index: group.id.links.iterate(collect, idx_type=index), tracked)


def _attr_names(obj: h5py.HLObject) -> list[bytes]:
    """The attribute names of ``obj``, in creation order where it is tracked."""
    tracked = obj.id.get_create_plist().get_attr_creation_order() & h5p.CRT_ORDER_TRACKED
    return _ordered_names(lambda collect, index: h5a.iterate(obj.id, collect, index_type=index), tracked)


def _ordered_names(iterate: Callable[[Callable[[bytes], None], int], object], tracked: int) -> list[bytes]:
    """Collect names by creation order if ``tracked`` (falling back when it is not indexed), else by name."""
    if tracked:
        names: list[bytes] = []
        try:
            iterate(names.append, h5.INDEX_CRT_ORDER)
            return names
        except (RuntimeError, ValueError, KeyError):  # tracked but not indexed
            pass
    names = []
    iterate(names.append, h5.INDEX_NAME)
    return names


def _group_plist(sgroup: h5py.Group) -> h5p.PropGCID:
    """A group's creation properties: link and attribute ordering, time tracking.

    Built afresh, because a group's own plist can carry addresses inside its file.
    """
    source = sgroup.id.get_create_plist()
    gcpl = h5p.create(h5p.GROUP_CREATE)
    gcpl.set_link_creation_order(source.get_link_creation_order())
    gcpl.set_attr_creation_order(source.get_attr_creation_order())
    gcpl.set_attr_phase_change(*source.get_attr_phase_change())
    gcpl.set_obj_track_times(source.get_obj_track_times())
    return gcpl


def _placeholder_plist(sds: h5py.Dataset) -> h5p.PropDCID:
    """The source's creation properties, allocating storage only when data is written."""
    dcpl = sds.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5d.CONTIGUOUS:
        dcpl.set_alloc_time(h5d.ALLOC_TIME_LATE)
    elif layout == h5d.CHUNKED:
        dcpl.set_alloc_time(h5d.ALLOC_TIME_INCR)
    return dcpl


def _type_classes(tid: h5t.TypeID) -> set[int]:
    """Every type class inside ``tid`` (compound members, array and vlen bases, enum base)."""
    cls = tid.get_class()
    classes = {cls}
    if cls == h5t.STRING and tid.is_variable_str():
        classes.add(h5t.VLEN)
    elif cls == h5t.COMPOUND:
        for i in range(tid.get_nmembers()):
            classes |= _type_classes(tid.get_member_type(i))
    elif cls in (h5t.ARRAY, h5t.VLEN, h5t.ENUM):
        classes |= _type_classes(tid.get_super())
    return classes


def _holds_references(tid: h5t.TypeID) -> bool:
    return h5t.REFERENCE in _type_classes(tid)


def _holds_variable_length(tid: h5t.TypeID) -> bool:
    return h5t.VLEN in _type_classes(tid)
