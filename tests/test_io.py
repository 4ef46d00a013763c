"""Tests of aezip.io: reading user files into Fields and writing them back."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from aezip.errors import (
    AezipError,
    ContainerError,
    InputError,
    InputNotFoundError,
    OutputExistsError,
    UnsupportedDataError,
    UsageError,
)
from aezip.io import Field, Input, default_output_name, output_kind, read_input, write_output

RNG = np.random.default_rng(12345)


def specs(inp: Input) -> list[tuple[str, np.ndarray, str, str]]:
    """The (name, x, order, byteorder) tuples write_output takes."""
    return [(f.name, f.x, f.order, f.byteorder) for f in inp.fields]


def assert_native_c(field: Field) -> None:
    assert field.x.flags.c_contiguous and field.x.flags.writeable
    assert field.x.dtype.isnative


def raises_one_line(cls: type[AezipError], func, *args, **kwargs) -> str:
    """Call func, expect ``cls``; return its message after checking it is one line."""
    with pytest.raises(cls) as info:
        func(*args, **kwargs)
    assert type(info.value) is cls
    message = str(info.value)
    assert message and "\n" not in message
    return message


def no_temp_files(folder: Path) -> bool:
    return not [p for p in os.listdir(folder) if p.startswith(".aezip-")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- .npy -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_npy_round_trip(tmp_path: Path, dtype: str) -> None:
    a = RNG.standard_normal((6, 7)).astype(dtype)
    np.save(tmp_path / "a.npy", a)
    inp = read_input(str(tmp_path / "a.npy"))
    assert (inp.path, inp.kind, inp.skeleton) == (str(tmp_path / "a.npy"), "npy", None)
    (field,) = inp.fields
    assert (field.name, field.order, field.byteorder) == ("", "C", "<")
    assert field.x.dtype == np.dtype(dtype)
    assert_native_c(field)
    np.testing.assert_array_equal(field.x, a)
    assert write_output(str(tmp_path / "b.npy"), specs(inp)) == "npy"
    assert (tmp_path / "b.npy").read_bytes() == (tmp_path / "a.npy").read_bytes()


def test_npy_big_endian_restores_byteorder(tmp_path: Path) -> None:
    a = RNG.standard_normal((4, 5)).astype(">f8")
    np.save(tmp_path / "a.npy", a)
    (field,) = read_input(str(tmp_path / "a.npy")).fields
    assert field.byteorder == ">" and field.x.dtype == np.dtype("float64")
    assert_native_c(field)
    np.testing.assert_array_equal(field.x, a)
    write_output(str(tmp_path / "b.npy"), [(field.name, field.x, field.order, field.byteorder)])
    b = np.load(tmp_path / "b.npy")
    assert b.dtype == np.dtype(">f8")
    np.testing.assert_array_equal(b, a)


def test_npy_fortran_restores_order(tmp_path: Path) -> None:
    a = np.asfortranarray(RNG.standard_normal((3, 4, 5)).astype("f4"))
    np.save(tmp_path / "a.npy", a)
    (field,) = read_input(str(tmp_path / "a.npy")).fields
    assert field.order == "F"
    assert_native_c(field)
    np.testing.assert_array_equal(field.x, a)
    write_output(str(tmp_path / "b.npy"), [(field.name, field.x, field.order, field.byteorder)])
    b = np.load(tmp_path / "b.npy")
    assert b.flags.f_contiguous and not b.flags.c_contiguous
    np.testing.assert_array_equal(b, a)
    assert (tmp_path / "b.npy").read_bytes() == (tmp_path / "a.npy").read_bytes()


def test_npy_integer_and_nan_pass_through(tmp_path: Path) -> None:
    np.save(tmp_path / "i.npy", np.arange(5, dtype=np.int16))
    np.save(tmp_path / "n.npy", np.array([np.nan, np.inf, 1.0], dtype="f4"))
    assert read_input(str(tmp_path / "i.npy")).fields[0].x.dtype == np.int16
    assert np.isnan(read_input(str(tmp_path / "n.npy")).fields[0].x[0])


# --- .npz -------------------------------------------------------------------------------


def test_npz_round_trip_all_and_key(tmp_path: Path) -> None:
    a = RNG.standard_normal((3, 4)).astype("f4")
    b = np.asfortranarray(RNG.standard_normal((5, 2)))
    np.savez(tmp_path / "x.npz", a=a, b=b)
    inp = read_input(str(tmp_path / "x.npz"))
    assert inp.kind == "npz" and [f.name for f in inp.fields] == ["a", "b"]
    assert inp.fields[1].order == "F"
    for field in inp.fields:
        assert_native_c(field)
    write_output(str(tmp_path / "y.npz"), specs(inp))
    with np.load(tmp_path / "y.npz", allow_pickle=False) as y:
        assert sorted(y.files) == ["a", "b"]
        np.testing.assert_array_equal(y["a"], a)
        np.testing.assert_array_equal(y["b"], b)
        assert y["a"].dtype == np.float32

    for inp in (read_input(str(tmp_path / "x.npz"), key="b"), read_input(f"{tmp_path / 'x.npz'}:b")):
        assert [f.name for f in inp.fields] == ["b"]
        np.testing.assert_array_equal(inp.fields[0].x, b)


def test_npz_key_names(tmp_path: Path) -> None:
    x = np.ones(3, "f4")
    write_output(str(tmp_path / "o.npz"), [("", x, "C", "<"), ("/g/d", x, "C", ">")])
    with np.load(tmp_path / "o.npz") as o:
        assert sorted(o.files) == ["arr_0", "g/d"]
        assert o["g/d"].dtype == np.dtype(">f4")


# --- HDF5: one dataset ------------------------------------------------------------------


def test_hdf5_single_dataset(tmp_path: Path) -> None:
    a = RNG.standard_normal((4, 6)).astype(">f4")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("g/d", data=a)
        f["g/other"] = np.arange(3.0)
    for inp in (
        read_input(f"{tmp_path / 'f.h5'}:/g/d"),
        read_input(str(tmp_path / "f.h5"), key="/g/d"),
        read_input(str(tmp_path / "f.h5"), key="g/d"),
    ):
        assert inp.kind == "hdf5" and inp.skeleton is None and inp.path == str(tmp_path / "f.h5")
        (field,) = inp.fields
        assert (field.name, field.order, field.byteorder) == ("/g/d", "C", ">")
        assert_native_c(field)
        np.testing.assert_array_equal(field.x, a)
    write_output(str(tmp_path / "o.h5"), specs(inp) + [("", np.zeros(2), "C", "<")])
    with h5py.File(tmp_path / "o.h5", "r") as o:
        assert o["g/d"].dtype == np.dtype(">f4")
        np.testing.assert_array_equal(o["g/d"][()], a)
        np.testing.assert_array_equal(o["data"][()], np.zeros(2))


def test_colon_split_with_colons_in_path(tmp_path: Path) -> None:
    folder = tmp_path / "run:1"
    folder.mkdir()
    path = folder / "a:b.h5"
    with h5py.File(path, "w") as f:
        f["x:y/d"] = np.arange(6.0).reshape(2, 3)
    inp = read_input(f"{path}:/x:y/d")
    assert inp.path == str(path) and inp.fields[0].name == "/x:y/d"
    np.savez(folder / "c:d.npz", **{"k": np.ones(2)})
    assert read_input(f"{folder / 'c:d.npz'}:k").fields[0].name == "k"
    np.save(folder / "e:f.npy", np.ones(2))  # an existing name with ':' is never split
    assert read_input(str(folder / "e:f.npy")).kind == "npy"


# --- HDF5: the whole file ---------------------------------------------------------------


def build_rich_file(path: Path) -> dict[str, np.ndarray]:
    """A netCDF-4-like file: groups, attributes of many types, scales, filters, links."""
    floats = {
        "/grp/sub/temp": RNG.standard_normal((4, 8, 6)).astype(">f4"),
        "/lat": np.linspace(-90, 90, 8).astype("f8"),
        "/contig": RNG.standard_normal((5, 5)),
    }
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["_NCProperties"] = np.bytes_(b"version=2,netcdf=4.9.2,hdf5=1.14.3")
        f.attrs.create("title", "r\u00e9sum\u00e9", dtype=h5py.string_dtype("utf-8"))
        f.attrs["count"] = np.int64(7)
        f.attrs["big_endian_ints"] = np.array([1, 2, 3], dtype=">i2")
        f.attrs["floats"] = np.array([1.5, 2.5, np.nan])
        f.attrs.create("fixed", np.array([b"ab", b"cdef"]), dtype=h5py.string_dtype("ascii", 4))
        f.attrs["vlen_list"] = ["one", "two", "three"]
        f.attrs["empty"] = h5py.Empty("f4")

        time = f.create_dataset("time", data=np.arange(4, dtype="i4"), maxshape=(None,), chunks=(2,))
        time.make_scale("time")
        lat = f.create_dataset("lat", data=floats["/lat"])
        lat.make_scale("lat")
        lat.attrs["units"] = "degrees_north"
        lon = f.create_dataset("lon", shape=(6,), dtype="f4")  # a netCDF dimension without data
        lon.make_scale("This is a netCDF dimension but not a netCDF variable.         6")

        grp = f.create_group("grp", track_order=True)
        grp.attrs["group_attr"] = np.array([[1, 2], [3, 4]], dtype="u1")
        sub = grp.create_group("sub")
        sub.attrs["history"] = np.bytes_(b"made by a test")
        temp = sub.create_dataset(
            "temp", data=floats["/grp/sub/temp"], chunks=(1, 8, 6), compression="gzip",
            compression_opts=4, shuffle=True, fletcher32=True, fillvalue=np.float32(-999),
        )
        temp.attrs["units"] = "K"
        temp.attrs["_FillValue"] = np.float32(-999)
        temp.attrs["valid_range"] = np.array([-5, 5], dtype="f4")
        temp.dims[0].attach_scale(time)
        temp.dims[1].attach_scale(lat)
        temp.dims[2].attach_scale(lon)
        temp.dims[0].label = "t"

        ints = grp.create_dataset("counts", data=np.arange(12, dtype=">i4").reshape(3, 4), compression="gzip")
        ints.attrs["flag_values"] = np.array([0, 1], dtype="i1")
        grp["names"] = np.array([b"a", b"bc"], dtype="S2")
        grp.create_dataset("labels", data=["x", "yy"], dtype=h5py.string_dtype())
        grp["half"] = np.ones(3, dtype="f2")
        grp["scalar"] = 3.25
        grp.create_dataset("nothing", shape=(0, 3), dtype="f8")
        grp["alias"] = temp  # a second hard link
        grp["soft"] = h5py.SoftLink("/grp/sub/temp")
        f.create_dataset("contig", data=floats["/contig"])
        f["refs"] = np.array([lat.ref, grp.ref], dtype=h5py.ref_dtype)
        f.attrs["ref_attr"] = temp.ref
    return {k: v for k, v in floats.items() if k != "/lat"}  # /lat is a dimension scale: copied, not a field


def describe_file(path: Path) -> list[object]:
    """Everything that must survive a round trip, in a comparable form."""
    out: list[object] = []

    def attrs_of(obj: h5py.HLObject) -> list[object]:
        items = []
        for name in obj.attrs:
            if name in ("DIMENSION_LIST", "REFERENCE_LIST"):
                continue
            aid = h5py.h5a.open(obj.id, name.encode())
            value = obj.attrs[name]
            if isinstance(value, h5py.Reference):
                value = obj.file[value].name
            elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
                value = value.tobytes()
            items.append((name, aid.get_type().get_class(), aid.get_type().get_size(), aid.dtype.str, repr(value)))
        return items

    def walk(group: h5py.Group, prefix: str) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                out.append((prefix + name, repr(vars(link))))
                continue
            obj = group[name]
            out.append((prefix + name, type(obj).__name__, attrs_of(obj)))
            if isinstance(obj, h5py.Group):
                walk(obj, prefix + name + "/")
                continue
            out.append((obj.dtype.str, obj.shape, obj.chunks, obj.compression, obj.compression_opts,
                        obj.shuffle, obj.fletcher32, obj.fillvalue, obj.maxshape, obj.dims[0].label if obj.ndim else None))
            out.append([[scale.name for scale in dim.values()] for dim in obj.dims] if obj.ndim else [])
            if obj.shape and obj.size and h5py.check_ref_dtype(obj.dtype) is None:
                out.append(repr(obj[()]) if obj.dtype.kind == "O" else obj[()].tobytes())
            elif h5py.check_ref_dtype(obj.dtype) is not None:
                out.append([obj.file[r].name for r in obj[()]])

    with h5py.File(path, "r") as f:
        out.append(("/", attrs_of(f)))
        walk(f, "/")
    return out


def test_hdf5_whole_file_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "rich.nc"
    floats = build_rich_file(src)
    before = digest(src)
    inp = read_input(str(src))
    assert digest(src) == before  # the input is never modified
    assert inp.kind == "hdf5" and inp.path == str(src)
    assert sorted(f.name for f in inp.fields) == sorted(floats)
    for field in inp.fields:
        assert_native_c(field)
        np.testing.assert_array_equal(field.x, floats[field.name])
        assert field.byteorder == (">" if field.name == "/grp/sub/temp" else "<")
    assert inp.skeleton is not None and inp.skeleton.startswith(b"\x89HDF\r\n\x1a\n")
    assert floats["/grp/sub/temp"].tobytes()[:64] not in inp.skeleton  # no field data in it
    assert floats["/contig"].tobytes()[:64] not in inp.skeleton

    out = tmp_path / "restored.nc"
    assert write_output(str(out), specs(inp), skeleton=inp.skeleton) == "hdf5"
    assert describe_file(out) == describe_file(src)
    with h5py.File(out, "r") as f:
        temp = f["grp/sub/temp"]
        assert [dim[0].name for dim in temp.dims] == ["/time", "/lat", "/lon"]
        assert f["lat"].is_scale and f["lon"].is_scale and not temp.is_scale
        assert f["grp/alias"] == temp
        assert f["lon"].id.get_storage_size() == 0  # the data-less dimension stays data-less
        assert f.attrs["title"] == "r\u00e9sum\u00e9"


def test_hdf5_whole_file_without_skeleton_and_to_npz(tmp_path: Path) -> None:
    src = tmp_path / "rich.h5"
    floats = build_rich_file(src)
    inp = read_input(str(src))
    write_output(str(tmp_path / "plain.h5"), specs(inp))
    write_output(str(tmp_path / "all.npz"), specs(inp), skeleton=inp.skeleton)
    with h5py.File(tmp_path / "plain.h5", "r") as f, np.load(tmp_path / "all.npz") as z:
        for name, a in floats.items():
            np.testing.assert_array_equal(f[name][()], a)
            np.testing.assert_array_equal(z[name.lstrip("/")], a)


def test_hdf5_h5netcdf_file_round_trip(tmp_path: Path) -> None:
    h5netcdf = pytest.importorskip("h5netcdf")
    src, out = tmp_path / "a.nc", tmp_path / "b.nc"
    with h5netcdf.File(src, "w") as f:
        f.dimensions = {"time": None, "lat": 3, "lon": 4}
        f.attrs["title"] = "test"
        time = f.create_variable("time", ("time",), "f8")
        f.resize_dimension("time", 2)
        time[:] = [0.0, 1.0]
        temp = f.create_variable("temp", ("time", "lat", "lon"), "f4", compression="gzip", chunks=(1, 3, 4))
        temp[:] = RNG.standard_normal((2, 3, 4))
        temp.attrs["units"] = "K"
        sub = f.create_group("sub")
        sub.dimensions = {"z": 2}
        sub.create_variable("w", ("z", "lat"), "i2")[:] = 1
    inp = read_input(str(src))
    write_output(str(out), specs(inp), skeleton=inp.skeleton)
    with h5netcdf.File(src, "r") as a, h5netcdf.File(out, "r") as b:
        assert dict(b.dimensions.items()).keys() == dict(a.dimensions.items()).keys()
        assert b["temp"].dimensions == ("time", "lat", "lon") and b["sub/w"].dimensions == ("z", "lat")
        assert dict(b["temp"].attrs) == dict(a["temp"].attrs)
        np.testing.assert_array_equal(b["temp"][:], a["temp"][:])
    assert describe_file(out) == describe_file(src)


def test_hdf5_without_float_datasets(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "i.h5", "w") as f:
        f["counts"] = np.arange(4)
        f["scalar"] = 1.5
    message = raises_one_line(InputError, read_input, str(tmp_path / "i.h5"))
    assert "no float32/float64 dataset" in message and "/counts" in message


def test_skeleton_mismatch_is_refused_atomically(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["d"] = np.ones((2, 3))
    inp = read_input(str(tmp_path / "s.h5"))
    raises_one_line(ContainerError, write_output, str(tmp_path / "o.h5"), [("/d", np.ones(5), "C", "<")],
                    skeleton=inp.skeleton)
    assert not (tmp_path / "o.h5").exists() and no_temp_files(tmp_path)


# --- raw --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "dtype", "stored"), [
    ("a.f32", None, "<f4"),
    ("a.f64", None, "<f8"),
    ("a.dat", ">f8", ">f8"),
    ("a.bin", "float32", "<f4"),
    ("noext", "f8", "<f8"),
])
def test_raw_round_trip(tmp_path: Path, name: str, dtype: str | None, stored: str) -> None:
    a = RNG.standard_normal((3, 4, 5)).astype(stored)
    a.tofile(tmp_path / name)
    inp = read_input(str(tmp_path / name), shape=(3, 4, 5), dtype=dtype)
    (field,) = inp.fields
    assert inp.kind == "raw" and field.name == "" and field.byteorder == stored[0]
    assert field.x.dtype == np.dtype(stored).newbyteorder("=")
    assert_native_c(field)
    np.testing.assert_array_equal(field.x, a)
    out = tmp_path / ("out" + os.path.splitext(name)[1])
    assert write_output(str(out), specs(inp), kind="raw") == "raw"
    assert out.read_bytes() == (tmp_path / name).read_bytes()


# --- errors -----------------------------------------------------------------------------


def test_missing_file_folder_and_unknown_format(tmp_path: Path) -> None:
    raises_one_line(InputNotFoundError, read_input, str(tmp_path / "nope.npy"))
    raises_one_line(InputNotFoundError, read_input, f"{tmp_path / 'nope.h5'}:/d")
    raises_one_line(InputError, read_input, str(tmp_path))
    (tmp_path / "t.txt").write_text("hello\n")
    message = raises_one_line(InputError, read_input, str(tmp_path / "t.txt"))
    assert message.startswith(f"cannot tell the format of {tmp_path / 't.txt'}")
    (tmp_path / "old.nc").write_bytes(b"CDF\x01" + bytes(60))
    assert "NetCDF-3" in raises_one_line(InputError, read_input, str(tmp_path / "old.nc"))


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "a.npy", np.ones(2))
    real_open = open

    def deny(path, *args, **kwargs):
        if str(path) == str(tmp_path / "a.npy"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    assert "Permission denied" in raises_one_line(InputError, read_input, str(tmp_path / "a.npy"))


def test_missing_keys_list_the_available_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", alpha=np.ones(2), beta=np.ones(2))
    message = raises_one_line(InputError, read_input, str(tmp_path / "x.npz"), key="gamma")
    assert "alpha" in message and "beta" in message
    with h5py.File(tmp_path / "f.h5", "w") as f:
        for i in range(30):
            f[f"g/d{i:02d}"] = np.ones(2)
    message = raises_one_line(InputError, read_input, f"{tmp_path / 'f.h5'}:/g/missing")
    assert "/g/d00" in message and "and 18 more" in message
    assert "group" in raises_one_line(InputError, read_input, str(tmp_path / "f.h5"), key="/g")


@pytest.mark.parametrize("array", [
    np.array([1 + 2j, 3j], dtype="c8"),
    np.array([True, False]),
    np.array(["a", "b"]),
    np.array([b"a", b"b"]),
    np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]),
    np.array(["2020-01-01"], dtype="M8[D]"),
], ids=["complex", "bool", "str", "bytes", "structured", "datetime"])
def test_unsupported_dtypes(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    assert "dtype" in raises_one_line(UnsupportedDataError, read_input, str(tmp_path / "a.npy"))
    np.savez(tmp_path / "a.npz", good=np.ones(2), bad=array)
    assert "'bad'" in raises_one_line(UnsupportedDataError, read_input, str(tmp_path / "a.npz"))
    assert read_input(str(tmp_path / "a.npz"), key="good").fields[0].name == "good"
    if array.dtype.kind not in "UM":  # h5py stores neither numpy str nor datetime
        with h5py.File(tmp_path / "a.h5", "w") as f:
            f["bad"] = array
        raises_one_line(UnsupportedDataError, read_input, f"{tmp_path / 'a.h5'}:/bad")


def test_pickles_are_never_loaded(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "pickled" in raises_one_line(InputError, read_input, str(tmp_path / "obj.npy"))
    np.savez(tmp_path / "obj.npz", o=np.array([1, "x"], dtype=object))
    assert "pickled" in raises_one_line(InputError, read_input, str(tmp_path / "obj.npz"))
    (tmp_path / "p.npy").write_bytes(pickle.dumps([1.0, 2.0]))
    raises_one_line(InputError, read_input, str(tmp_path / "p.npy"))


def test_truncated_files(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((10, 10)))
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-8])
    assert "truncated" in raises_one_line(InputError, read_input, str(tmp_path / "a.npy"))
    (tmp_path / "b.npy").write_bytes(data[:20])
    raises_one_line(InputError, read_input, str(tmp_path / "b.npy"))
    np.savez(tmp_path / "c.npz", a=np.ones(100))
    (tmp_path / "c.npz").write_bytes((tmp_path / "c.npz").read_bytes()[:300])
    raises_one_line(InputError, read_input, str(tmp_path / "c.npz"))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = np.ones(1000)
    (tmp_path / "d.h5").write_bytes((tmp_path / "d.h5").read_bytes()[:1000])
    raises_one_line(InputError, read_input, str(tmp_path / "d.h5"))


def test_raw_errors(tmp_path: Path) -> None:
    np.ones(10, dtype="f4").tofile(tmp_path / "a.f32")
    message = raises_one_line(InputError, read_input, str(tmp_path / "a.f32"), shape=(3, 4))
    assert "40" in message and "48" in message
    raises_one_line(UsageError, read_input, str(tmp_path / "a.f32"))  # no shape
    np.ones(10, dtype="f4").tofile(tmp_path / "a.bin")
    assert "--dtype" in raises_one_line(UsageError, read_input, str(tmp_path / "a.bin"), shape=(10,))
    raises_one_line(UsageError, read_input, str(tmp_path / "a.bin"), shape=(10,), dtype="int32")
    raises_one_line(UsageError, read_input, str(tmp_path / "a.bin"), shape=(10,), dtype="nonsense")
    raises_one_line(UsageError, read_input, str(tmp_path / "a.bin"), shape=(0, 10), dtype="f4")
    np.save(tmp_path / "n.npy", np.ones(3))
    raises_one_line(UsageError, read_input, str(tmp_path / "n.npy"), shape=(3,), dtype="f8")
    raises_one_line(UsageError, read_input, str(tmp_path / "n.npy"), key="x")


# --- writing ----------------------------------------------------------------------------


def test_one_array_formats_refuse_several(tmp_path: Path) -> None:
    two = [("a", np.ones(2), "C", "<"), ("b", np.ones(2), "C", "<")]
    message = raises_one_line(UsageError, write_output, str(tmp_path / "o.npy"), two)
    assert message == "2 arrays cannot go into one .npy; use -o NAME.npz or NAME.h5"
    raises_one_line(UsageError, write_output, str(tmp_path / "o.f32"), two)
    raises_one_line(UsageError, write_output, str(tmp_path / "o.xyz"), two[:1])
    assert not os.listdir(tmp_path)


def test_atomic_write_and_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = [("", np.arange(4.0), "C", "<")]
    target = tmp_path / "o.npy"
    write_output(str(target), one)
    raises_one_line(OutputExistsError, write_output, str(target), one)
    write_output(str(target), [("", np.arange(5.0), "C", "<")], force=True)
    assert np.load(target).shape == (5,)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError):
        write_output(str(tmp_path / "new.npy"), one)
    with pytest.raises(OSError):
        write_output(str(target), one, force=True)
    assert not (tmp_path / "new.npy").exists() and no_temp_files(tmp_path)
    assert np.load(target).shape == (5,)  # the old output is left as it was


# --- names ------------------------------------------------------------------------------


def test_output_kind() -> None:
    cases = {"a.npy": "npy", "a.NPZ": "npz", "a.h5": "hdf5", "a.hdf5": "hdf5", "a.he5": "hdf5",
             "a.nc": "hdf5", "a.nc4": "hdf5", "a.f32": "raw", "a.f64": "raw", "a.dat": "raw",
             "a.bin": "raw", "a.raw": "raw", "a.txt": None, "a": None, "a.npy.aez": None}
    for path, kind in cases.items():
        assert output_kind(path) == kind, path


def test_default_output_name() -> None:
    assert default_output_name("x.npy.aez", "npy") == "x.npy"
    assert default_output_name("d/x.nc.aez", "hdf5") == "d/x.nc"
    assert default_output_name("x.f64.aez", "raw") == "x.f64"
    assert default_output_name("x.aez", "npz") == "x.npz"
    assert default_output_name("x.npy.aez", "npz") == "x.npy.npz"
    assert default_output_name("x.dat.aez", "hdf5") == "x.dat.h5"
    assert default_output_name("x.npy", "npy") == "x.npy.npy"  # never the container's own name


def test_hdf5_skeleton_stays_small(tmp_path: Path) -> None:
    big = RNG.standard_normal((256, 256)).astype("f4")
    with h5py.File(tmp_path / "big.h5", "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        space = h5py.h5s.create_simple(big.shape)
        early = h5py.Dataset(h5py.h5d.create(f.id, b"early", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl))
        early[...] = big
        f.create_dataset("chunked", data=big, chunks=(64, 64), compression="gzip")
    inp = read_input(str(tmp_path / "big.h5"))
    assert len(inp.fields) == 2 and len(inp.skeleton or b"") < 16 * 1024 < big.nbytes
    write_output(str(tmp_path / "out.h5"), specs(inp), skeleton=inp.skeleton)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        np.testing.assert_array_equal(f["early"][()], big)
        np.testing.assert_array_equal(f["chunked"][()], big)
        assert f["chunked"].chunks == (64, 64) and f["chunked"].compression == "gzip"


def test_hdf5_user_block_and_sniffing_by_content(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"  # an HDF5 file with a raw-looking name and a user block
    with h5py.File(path, "w", userblock_size=1024) as f:
        f["x"] = np.arange(10.0)
    with open(path, "r+b") as fp:
        fp.write(b"USER BLOCK")
    inp = read_input(str(path))
    assert inp.kind == "hdf5" and [f.name for f in inp.fields] == ["/x"]
    write_output(str(tmp_path / "out.h5"), specs(inp), skeleton=inp.skeleton)
    assert (tmp_path / "out.h5").read_bytes()[:10] == b"USER BLOCK"
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f.userblock_size == 1024
        np.testing.assert_array_equal(f["x"][()], np.arange(10.0))
    raises_one_line(UsageError, read_input, f"{path}:/x", key="/y")


def test_npy_header_cut_mid_expression_is_an_input_error(tmp_path: Path) -> None:
    """A damaged header that trips Python's tokenizer is bad input, not a crash."""
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((3, 4), np.float32))
    data = bytearray(p.read_bytes())
    data[data.index(b"}")] = ord(" ")  # the header dict is never closed
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="header"):
        read_input(str(p))
