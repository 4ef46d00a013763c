"""Every input kind and layout, end to end through the command (``cli.main`` in-process).

HDF5 (one dataset, a whole file with its structure), .npz members, raw binaries, .npy
byte orders and memory orders, batch axes, refused data, determinism across thread
counts, and inputs left untouched. Arrays stay small: the module runs in seconds.
"""

import hashlib
import json
import math
import os
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import aezip
from aezip import cli
from aezip.codec.sample import sample_field
from common import check_quality


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def figures(r):
    """A JSON report as the attribute record check_quality expects."""
    return SimpleNamespace(**r)


def within(x, x_hat, max_abs_error):
    """x_hat is x up to the max error a report states (with float32 rounding slack)."""
    err = np.max(np.abs(x.astype(np.float64) - x_hat.astype(np.float64)))
    assert err <= max_abs_error * (1 + 1e-6) + 1e-12, (err, max_abs_error)


def sha256(path):
    with open(path, "rb") as fp:
        return hashlib.sha256(fp.read()).hexdigest()


def leftovers(folder):
    """Temporary files an interrupted or refused write could leave behind."""
    return [n for n in os.listdir(folder) if n.startswith(".aezip-")]


@pytest.fixture
def restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# --- HDF5: one dataset ---------------------------------------------------------------------------


@pytest.fixture
def h5_one(tmp_path):
    p = tmp_path / "one.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("/grp/ds", data=sample_field((40, 50), seed=11))
        f.create_dataset("/grp/other", data=sample_field((30, 30), seed=12))
        f.create_dataset("/ints", data=np.arange(10, dtype=np.int32))
    return p


@pytest.mark.parametrize("form", ["spec", "key"])
def test_hdf5_one_dataset(form, h5_one, tmp_path, capsys):
    aez = tmp_path / "ds.aez"
    source = [f"{h5_one}:/grp/ds"] if form == "spec" else [h5_one, "--key", "/grp/ds"]
    rc = run_json(capsys, "compress", *source, "-o", aez)
    assert rc["shape"] == [40, 50] and rc["dtype"] == "float32" and "arrays" not in rc
    c = aezip.info(str(aez))
    assert c.source.kind == "hdf5" and [e.name for e in c.arrays] == ["/grp/ds"]

    rd = run_json(capsys, "decompress", aez)  # default: the source's kind, next to the container
    out = tmp_path / "ds.h5"
    assert rd["output"] == str(out) and out.exists()
    with h5py.File(h5_one, "r") as f:
        x = f["/grp/ds"][()]
    with h5py.File(out, "r") as g:
        assert isinstance(g.get("/grp/ds"), h5py.Dataset)
        x_hat = g["/grp/ds"][()]
    assert x_hat.dtype == x.dtype and x_hat.shape == x.shape
    check_quality(x, x_hat, figures(rc))

    for original in ([f"{h5_one}:/grp/ds"], [h5_one, "--key", "/grp/ds"]):
        rm = run_json(capsys, "decompress", aez, "-o", tmp_path / "m.h5", "--force", "--original", *original)
        assert rm["measured"]["max_abs_error"] == pytest.approx(rc["max_abs_error"], rel=1e-9)
        assert rm["measured"]["mse"] == pytest.approx(rc["mse"], rel=1e-9)


def test_hdf5_one_dataset_big_endian(tmp_path, capsys):
    src = tmp_path / "be.h5"
    x = sample_field((30, 40), seed=13).astype(">f8")
    with h5py.File(src, "w") as f:
        f.create_dataset("v", data=x)
    aez = tmp_path / "be.aez"
    rc = run_json(capsys, "compress", f"{src}:v", "-o", aez)  # a relative dataset name
    assert aezip.info(str(aez)).arrays[0].name == "/v"
    run_json(capsys, "decompress", aez, "-o", tmp_path / "out.h5")
    with h5py.File(tmp_path / "out.h5", "r") as g:
        assert g["/v"].dtype == np.dtype(">f8")
        check_quality(x, g["/v"][()], figures(rc))


def test_hdf5_spec_and_key_must_agree(h5_one, tmp_path, capsys):
    code, out, err = run(capsys, "compress", f"{h5_one}:/grp/ds", "--key", "/grp/other", "-o", tmp_path / "a.aez")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert not (tmp_path / "a.aez").exists()


def test_hdf5_missing_dataset_names_the_datasets(h5_one, tmp_path, capsys):
    code, out, err = run(capsys, "compress", f"{h5_one}:/grp/nope", "-o", tmp_path / "a.aez")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "/grp/ds" in err and "/grp/other" in err


# --- HDF5: the whole file ------------------------------------------------------------------------

VLEN_STR = h5py.string_dtype("utf-8")


def make_whole_h5(path):
    """Nested groups, attributes of several types, an int dataset, float datasets, dimension scales."""
    temp = sample_field((40, 50), seed=21).astype(np.float64) * 10 + 280
    pressure = sample_field((30, 40), seed=22)
    mask = np.arange(40 * 50, dtype=np.int32).reshape(40, 50) % 7 - 3
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "aezip whole-file test"  # variable-length str
        f.attrs["fixed"] = np.bytes_(b"abcde")  # fixed-length S5
        f.attrs["version"] = np.int32(3)
        f.attrs["levels"] = np.array([1.5, 2.5, 3.5])
        f.attrs.create("names", data=["a", "bb", "ccc"], dtype=VLEN_STR)  # vlen str array
        run1 = f.create_group("model/run1")
        f["model"].attrs["owner"] = np.bytes_(b"lab")
        run1.attrs["steps"] = np.int64(100)
        run1.attrs["coeffs"] = np.array([0.1, 0.2], dtype=np.float32)
        run1.attrs["note"] = "nested"
        y = f.create_dataset("y", data=np.arange(40, dtype=np.int32))
        y.make_scale("y")
        x = f.create_dataset("x", data=np.linspace(0.0, 4.9, 50))  # a float64 coordinate
        x.make_scale("x")
        t = run1.create_dataset("temp", data=temp, chunks=(20, 25), compression="gzip", compression_opts=4)
        t.attrs["units"] = "K"
        t.attrs["scale_factor"] = np.float32(0.5)
        t.attrs["valid_range"] = np.array([200.0, 350.0])
        t.attrs["flag"] = np.int16(-1)
        t.dims[0].attach_scale(y)
        t.dims[1].attach_scale(x)
        t.dims[0].label = "lat"
        p = f["model"].create_dataset("pressure", data=pressure)
        p.attrs["units"] = np.bytes_(b"hPa")
        m = run1.create_dataset("mask", data=mask)
        m.attrs["meaning"] = "land=1"
    # the coordinate /x is a dimension scale: copied exactly, not compressed
    return {"/model/run1/temp": temp, "/model/pressure": pressure}, mask


def walk(f):
    """{path: kind} for every object, and {path: {attr: (value, dtype)}} for every attribute."""
    kinds, attrs = {"/": "group"}, {}

    def visit(name, obj):
        kinds["/" + name] = "group" if isinstance(obj, h5py.Group) else "dataset"

    f.visititems(visit)
    for path in kinds:
        obj = f[path]
        attrs[path] = {}
        for name in obj.attrs:
            if name in ("DIMENSION_LIST", "REFERENCE_LIST"):  # references: checked through .dims
                continue
            attrs[path][name] = (obj.attrs[name], obj.attrs.get_id(name).dtype)
    return kinds, attrs


def same_value(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def test_hdf5_whole_file(tmp_path, capsys):
    src = tmp_path / "whole.h5"
    floats, mask = make_whole_h5(src)
    aez = tmp_path / "whole.aez"
    rc = run_json(capsys, "compress", src, "-o", aez)
    by_name = {a["name"]: a for a in rc["arrays"]}
    assert set(by_name) == set(floats)  # every float dataset, nothing else

    out = tmp_path / "back.h5"
    rd = run_json(capsys, "decompress", aez, "-o", out, "--original", src)
    assert rd["measured"]["max_abs_error"] == pytest.approx(rc["max_abs_error"], rel=1e-9)
    with h5py.File(src, "r") as f, h5py.File(out, "r") as g:
        kinds_f, attrs_f = walk(f)
        kinds_g, attrs_g = walk(g)
        assert kinds_g == kinds_f
        assert attrs_g.keys() == attrs_f.keys()
        for path, expected in attrs_f.items():
            got = attrs_g[path]
            assert got.keys() == expected.keys(), path
            for name, (value, dtype) in expected.items():
                assert got[name][1] == dtype, (path, name)
                assert h5py.check_string_dtype(got[name][1]) == h5py.check_string_dtype(dtype), (path, name)
                assert same_value(got[name][0], value), (path, name)

        assert g["/model/run1/mask"].dtype == np.int32
        np.testing.assert_array_equal(g["/model/run1/mask"][()], mask)
        np.testing.assert_array_equal(g["/y"][()], np.arange(40, dtype=np.int32))

        t = g["/model/run1/temp"]
        assert t.chunks == (20, 25) and t.compression == "gzip" and t.compression_opts == 4
        assert h5py.h5ds.is_scale(g["/x"].id) and h5py.h5ds.is_scale(g["/y"].id)
        assert [len(d) for d in t.dims] == [1, 1]
        assert t.dims[0][0].name == "/y" and t.dims[1][0].name == "/x"
        assert t.dims[0].label == "lat" and t.dims[1].label == ""
        assert g["/y"].attrs["NAME"] == f["/y"].attrs["NAME"]

        for path, x in floats.items():
            x_hat = g[path][()]
            assert x_hat.dtype == x.dtype and x_hat.shape == x.shape, path
            within(x, x_hat, by_name[path]["max_abs_error"])
            check_quality(x, x_hat, figures(by_name[path]))

    # the same container as .npz: the float datasets only, keyed by their paths
    rz = run_json(capsys, "decompress", aez, "-o", tmp_path / "back.npz")
    assert rz["output"] == str(tmp_path / "back.npz")
    with np.load(tmp_path / "back.npz") as z:
        assert sorted(z.files) == sorted(p.lstrip("/") for p in floats)
        for path, x in floats.items():
            assert z[path.lstrip("/")].dtype == x.dtype
            within(x, z[path.lstrip("/")], by_name[path]["max_abs_error"])


def test_hdf5_whole_file_default_output_is_hdf5(tmp_path, capsys):
    src = tmp_path / "w.h5"
    floats, _ = make_whole_h5(src)
    aez = tmp_path / "c.aez"
    run_json(capsys, "compress", src, "-o", aez)
    rd = run_json(capsys, "decompress", aez)
    assert rd["output"] == str(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "r") as g:
        for path, x in floats.items():
            assert g[path].shape == x.shape and g[path].dtype == x.dtype
        assert g["/model/run1/mask"].dtype == np.int32 and g.attrs["version"] == 3


def test_hdf5_whole_file_layouts(tmp_path, capsys):
    """A NetCDF-4 name, a user block, links, filters, a fill value, big-endian data, float data that is no field."""
    src = tmp_path / "e.nc"
    a = sample_field((30, 40), seed=23)
    b = sample_field((20, 30), seed=24).astype(">f8")
    with h5py.File(src, "w", userblock_size=512, track_order=True) as f:
        for name in ("zeta", "alpha", "mid"):  # creation order, not alphabetical
            f.attrs[name] = len(name)
        f.create_dataset("a", data=a, chunks=(10, 20), shuffle=True, fletcher32=True, fillvalue=-9.0)
        f.create_dataset("g/b", data=b)
        f["g/a_again"] = f["a"]  # a second hard link
        f["soft"] = h5py.SoftLink("/g/b")
        f.create_dataset("half", data=np.arange(6, dtype=np.float16))
        f.create_dataset("scalar", data=np.float64(3.25))
        f.create_dataset("empty", shape=(0, 3), dtype="f4")
        f.create_dataset("unwritten", shape=(4, 3), dtype="f4")
        f.create_dataset("table", data=np.array([(1, 2.5)], dtype=[("i", "<i4"), ("f", "<f8")]))
    with open(src, "r+b") as fp:
        fp.write(b"USERBLOCK-HELLO")
    aez = tmp_path / "e.aez"
    rc = run_json(capsys, "compress", src, "-o", aez)
    by_name = {r["name"]: r for r in rc["arrays"]}
    assert sorted(by_name) == ["/a", "/g/b"]
    rd = run_json(capsys, "decompress", aez)
    out = tmp_path / "e.h5"
    assert rd["output"] == str(out)
    with h5py.File(out, "r") as g:
        assert g.userblock_size == 512
        assert list(g.attrs) == ["zeta", "alpha", "mid"]
        assert list(g) == ["a", "g", "soft", "half", "scalar", "empty", "unwritten", "table"]
        d = g["a"]
        assert (d.chunks, d.shuffle, d.fletcher32, d.fillvalue, d.dtype) == ((10, 20), True, True, -9.0, np.float32)
        assert g["g/a_again"].id == g["a"].id
        assert isinstance(g.get("soft", getlink=True), h5py.SoftLink) and g["soft"].id == g["g/b"].id
        assert g["g/b"].dtype == np.dtype(">f8")
        assert g["half"].dtype == np.float16 and np.array_equal(g["half"][()], np.arange(6))
        assert g["scalar"][()] == 3.25 and g["empty"].shape == (0, 3)
        assert g["unwritten"].id.get_storage_size() == 0
        assert g["table"][()].tolist() == [(1, 2.5)]
        for name, x in (("/a", a), ("/g/b", b)):
            check_quality(x, g[name][()], figures(by_name[name]))
    assert out.read_bytes()[:15] == b"USERBLOCK-HELLO"


def test_hdf5_dimension_scale_coordinates_are_exact(tmp_path, capsys):
    src = tmp_path / "w.h5"
    make_whole_h5(src)
    aez = tmp_path / "w.aez"
    run_json(capsys, "compress", src, "-o", aez)
    run_json(capsys, "decompress", aez, "-o", tmp_path / "back.h5")
    with h5py.File(src, "r") as f, h5py.File(tmp_path / "back.h5", "r") as g:
        np.testing.assert_array_equal(g["/x"][()], f["/x"][()])


def test_hdf5_file_without_float_data(tmp_path, capsys):
    ints = tmp_path / "ints.h5"
    with h5py.File(ints, "w") as f:
        f.create_dataset("i", data=np.arange(10, dtype=np.int32))
        f.create_dataset("s", data=np.float32(1.0))
    code, out, err = run(capsys, "compress", ints)
    assert code == 2 and out == "" and err.count("\n") == 1 and "float32/float64" in err and "/i" in err
    assert os.listdir(tmp_path) == ["ints.h5"]


@pytest.mark.parametrize("output", ["r.npy", "r.f32"])
def test_several_arrays_refuse_one_array_outputs(output, tmp_path, capsys):
    src = tmp_path / "w.h5"
    make_whole_h5(src)
    aez = tmp_path / "w.aez"
    run_json(capsys, "compress", src, "-o", aez)
    before = set(os.listdir(tmp_path))
    code, out, err = run(capsys, "decompress", aez, "-o", tmp_path / output)
    assert code == 2 and out == "" and err.count("\n") == 1 and ".npz" in err
    assert set(os.listdir(tmp_path)) == before


# --- .npz ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["key", "spec"])
def test_npz_one_member(form, tmp_path, capsys):
    src = tmp_path / "two.npz"
    a, b = sample_field((40, 50), seed=31), sample_field((30, 30), seed=32).astype(np.float64)
    np.savez(src, a=a, b=b)
    aez = tmp_path / "one.aez"
    source = [src, "--key", "b"] if form == "key" else [f"{src}:b"]
    rc = run_json(capsys, "compress", *source, "-o", aez)
    assert rc["shape"] == [30, 30] and rc["dtype"] == "float64" and "arrays" not in rc
    c = aezip.info(str(aez))
    assert c.source.kind == "npz" and [e.name for e in c.arrays] == ["b"]

    rd = run_json(capsys, "decompress", aez)  # the source's kind: an .npz, not an .npy
    out = tmp_path / "one.npz"
    assert rd["output"] == str(out)
    with np.load(out) as z:
        assert z.files == ["b"]
        b_hat = z["b"]
    assert b_hat.dtype == np.float64
    check_quality(b, b_hat, figures(rc))

    rm = run_json(capsys, "decompress", aez, "-o", tmp_path / "m.npz", "--original", src, "--key", "b")
    assert rm["measured"]["max_abs_error"] == pytest.approx(rc["max_abs_error"], rel=1e-9)


def test_npz_member_layouts(tmp_path, capsys):
    src = tmp_path / "members.npz"
    members = {"f": np.asfortranarray(sample_field((30, 40), seed=33)),
               "be": sample_field((20, 30), seed=34).astype(">f8"),
               "bef": np.asfortranarray(sample_field((20, 20), seed=35).astype(">f4"))}
    np.savez(src, **members)
    aez = tmp_path / "lay.aez"
    rc = run_json(capsys, "compress", src, "-o", aez)
    by_name = {r["name"]: r for r in rc["arrays"]}
    run_json(capsys, "decompress", aez)
    with np.load(tmp_path / "lay.npz") as z:
        assert sorted(z.files) == sorted(members)
        for name, x in members.items():
            x_hat = z[name]
            assert x_hat.dtype.str == x.dtype.str and x_hat.flags.f_contiguous == x.flags.f_contiguous, name
            check_quality(x, x_hat, figures(by_name[name]))


def test_npz_missing_key(tmp_path, capsys):
    src = tmp_path / "two.npz"
    np.savez(src, a=sample_field((20, 20), seed=1))
    code, out, err = run(capsys, "compress", src, "--key", "zz", "-o", tmp_path / "a.aez")
    assert code == 2 and out == "" and err.count("\n") == 1 and "'zz'" in err and "a" in err


# --- raw binaries --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,options,dtype", [
    ("f.f32", [], np.dtype("<f4")),
    ("f.dat", ["--dtype", "float64"], np.dtype("<f8")),
    ("f.bin", ["--dtype", ">f4"], np.dtype(">f4")),
])
def test_raw(name, options, dtype, tmp_path, capsys):
    x = sample_field((40, 50), seed=41).astype(dtype)
    src = tmp_path / name
    x.tofile(src)
    aez = tmp_path / "r.aez"
    rc = run_json(capsys, "compress", src, "--shape", "40,50", *options, "-o", aez)
    assert rc["shape"] == [40, 50] and rc["dtype"] == dtype.name
    assert aezip.info(str(aez)).source.kind == "raw"

    rd = run_json(capsys, "decompress", aez)  # raw by default
    out = tmp_path / "r.raw"
    assert rd["output"] == str(out)
    assert out.stat().st_size == src.stat().st_size == x.nbytes
    x_hat = np.fromfile(out, dtype=dtype).reshape(40, 50)  # same byte order, C order
    within(x, x_hat, rc["max_abs_error"])
    check_quality(x, x_hat, figures(rc))


def test_raw_output_extension_matches_its_dtype(tmp_path, capsys):
    src = tmp_path / "s.f32"
    sample_field((40, 50), seed=45).tofile(src)
    aez = tmp_path / "s.aez"
    run_json(capsys, "compress", src, "--shape", "40,50", "-o", aez)
    out = tmp_path / "out.f64"
    code, _, _ = run(capsys, "decompress", aez, "-o", out, "--quiet")
    assert code == 2 or out.stat().st_size == 40 * 50 * 8  # refused, or converted to what .f64 means


def test_raw_original_measures(tmp_path, capsys):
    src = tmp_path / "s.f32"
    sample_field((40, 50), seed=46).tofile(src)
    aez = tmp_path / "s.aez"
    rc = run_json(capsys, "compress", src, "--shape", "40,50", "-o", aez)
    code, out, err = run(capsys, "decompress", aez, "-o", tmp_path / "o.f32", "--original", src, "--json")
    assert code == 0, err
    assert json.loads(out)["measured"]["max_abs_error"] == pytest.approx(rc["max_abs_error"], rel=1e-9)


def test_raw_wrong_shape(tmp_path, capsys):
    src = tmp_path / "f.f32"
    sample_field((40, 50), seed=42).tofile(src)  # 8000 bytes
    code, out, err = run(capsys, "compress", src, "--shape", "40,40", "-o", tmp_path / "a.aez")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "8000" in err and "6400" in err
    assert not (tmp_path / "a.aez").exists()


def test_raw_dat_needs_dtype(tmp_path, capsys):
    src = tmp_path / "f.dat"
    sample_field((40, 50), seed=43).tofile(src)
    code, out, err = run(capsys, "compress", src, "--shape", "40,50", "-o", tmp_path / "a.aez")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--dtype" in err
    assert not (tmp_path / "a.aez").exists()


def test_raw_needs_shape(tmp_path, capsys):
    src = tmp_path / "f.f32"
    sample_field((40, 50), seed=44).tofile(src)
    code, out, err = run(capsys, "compress", src, "-o", tmp_path / "a.aez")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--shape" in err


# --- .npy byte order and memory order ------------------------------------------------------------


@pytest.mark.parametrize("dtype,order", [(">f4", "C"), (">f8", "C"), ("<f4", "F"), (">f8", "F"), ("<f8", "C")])
def test_npy_layout_restored(dtype, order, tmp_path, capsys):
    x = np.asarray(sample_field((40, 50), seed=51), dtype=dtype, order=order)
    assert x.dtype.str == dtype and x.flags.f_contiguous == (order == "F")
    src = tmp_path / "src.npy"
    np.save(src, x)
    aez = tmp_path / "x.aez"
    rc = run_json(capsys, "compress", src, "-o", aez)
    e = aezip.info(str(aez)).arrays[0]
    assert (e.order, e.byteorder) == (order, dtype[0])
    rd = run_json(capsys, "decompress", aez)  # .npy by default
    assert rd["output"] == str(tmp_path / "x.npy")
    x_hat = np.load(tmp_path / "x.npy")
    assert x_hat.dtype.str == dtype
    assert x_hat.flags.f_contiguous == x.flags.f_contiguous
    assert x_hat.flags.c_contiguous == x.flags.c_contiguous
    check_quality(x, x_hat, figures(rc))


# --- batch axes ----------------------------------------------------------------------------------


def test_ndim_2_makes_the_leading_axis_a_batch(tmp_path, capsys):
    x = np.stack([sample_field((40, 50), seed=s) for s in (61, 62, 63)])
    src = tmp_path / "b.npy"
    np.save(src, x)
    aez = tmp_path / "b.aez"
    rc = run_json(capsys, "compress", src, "--ndim", "2", "-o", aez, "--model", "conv-ae-v1")
    d = run_json(capsys, "info", aez)
    assert d["arrays"][0]["shape"] == [3, 40, 50] and d["arrays"][0]["storage"] == "latent"
    codec = aezip.info(str(aez)).arrays[0].codec
    assert codec.ndim == 2
    tiles_per_slice = math.ceil(40 / codec.tile) * math.ceil(50 / codec.tile)
    assert codec.latent_shape[0] == 3 * tiles_per_slice
    assert d["models"][0]["config"]["ndim"] == 2
    run_json(capsys, "decompress", aez, "-o", tmp_path / "out.npy")
    x_hat = np.load(tmp_path / "out.npy")
    assert x_hat.shape == x.shape
    check_quality(x, x_hat, figures(rc))


def test_4d_array_is_a_batch_of_3d(tmp_path, capsys):
    x = sample_field((2, 16, 20, 20), seed=71)  # 16 planes that continue each other: axis 1 stays spatial
    src = tmp_path / "q.npy"
    np.save(src, x)
    aez = tmp_path / "q.aez"
    rc = run_json(capsys, "compress", src, "-o", aez, "--model", "conv-ae-v1")
    codec = aezip.info(str(aez)).arrays[0].codec
    assert codec.storage == "latent" and codec.ndim == 3
    per_item = math.ceil(16 / codec.tile) * math.ceil(20 / codec.tile) ** 2
    assert codec.latent_shape[0] == 2 * per_item
    rd = run_json(capsys, "decompress", aez, "-o", tmp_path / "q_out.npy", "--original", src)
    x_hat = np.load(tmp_path / "q_out.npy")
    assert x_hat.shape == (2, 16, 20, 20) and x_hat.dtype == np.float32
    check_quality(x, x_hat, figures(rc))
    assert rd["measured"]["max_abs_error"] == pytest.approx(rc["max_abs_error"], rel=1e-9)


def test_ndim_larger_than_the_array(tmp_path, capsys):
    src = tmp_path / "v.npy"
    np.save(src, sample_field((200,), seed=72))
    code, out, err = run(capsys, "compress", src, "--ndim", "2", "-o", tmp_path / "v.aez")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--ndim" in err
    assert not (tmp_path / "v.aez").exists()


# --- refused and special data --------------------------------------------------------------------------------


@pytest.mark.parametrize("make,match", [
    (lambda: np.ones((30, 30), dtype=np.complex64), "complex"),
    (lambda: np.ones((30, 30), dtype=np.float16), "float16"),
    (lambda: np.zeros((0, 30), dtype=np.float32), "empty"),
], ids=["complex64", "float16", "empty"])
def test_refused_arrays(make, match, tmp_path, capsys):
    src = tmp_path / "bad.npy"
    np.save(src, make())
    before = set(os.listdir(tmp_path))
    code, out, err = run(capsys, "compress", src)  # default output name: bad.npy.aez
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert match in err, err
    assert set(os.listdir(tmp_path)) == before and not leftovers(tmp_path)


def kept(capsys, tmp_path, source, arrays, read_back):
    """Integer and NaN/Inf data: integers come back exactly (lossless by default) and non-finite
    values in place, the finite ones within the stated error."""
    aez = tmp_path / "kept.aez"
    code, out, err = run(capsys, "compress", *source, "-o", aez, "--json")
    assert code == 0, err
    reports = {r["name"]: r for r in json.loads(out).get("arrays", [json.loads(out)])}
    back = read_back(aez)
    for name, x in arrays.items():
        x_hat = back[name]
        assert x_hat.dtype.str == x.dtype.str and x_hat.shape == x.shape, name
        if x.dtype.kind in "iu":
            np.testing.assert_array_equal(x_hat, x)
        else:
            finite = np.isfinite(x)
            np.testing.assert_array_equal(x_hat[~finite], x[~finite])  # NaN where NaN, each Inf with its sign
            within(x[finite], x_hat[finite], reports[name]["max_abs_error"])


def _nan_field():
    x = sample_field((30, 30), seed=81)
    x[3, 4] = np.nan
    return x


def _inf_field():
    x = sample_field((30, 30), seed=82).astype(np.float64)
    x[0, 0], x[7, 9] = -np.inf, np.inf
    return x


@pytest.mark.parametrize("make", [
    lambda: np.arange(900, dtype=np.int32).reshape(30, 30) * 7 - 100,
    lambda: (np.arange(900) % 256).astype(np.uint8).reshape(30, 30),
    lambda: np.arange(900, dtype=">i2").reshape(30, 30),
    _nan_field,
    _inf_field,
], ids=["int32", "uint8", "int16-big-endian", "nan", "inf"])
def test_integer_and_nonfinite_npy(make, tmp_path, capsys):
    x = make()
    src = tmp_path / "in.npy"
    np.save(src, x)

    def read_back(aez):
        run_json(capsys, "decompress", aez, "-o", tmp_path / "out.npy")
        return {"": np.load(tmp_path / "out.npy")}

    kept(capsys, tmp_path, [src], {"": x}, read_back)


def test_nonfinite_dataset_in_a_whole_hdf5_file(tmp_path, capsys):
    src = tmp_path / "nan.h5"
    arrays = {"/ok": sample_field((20, 20), seed=1), "/bad": _nan_field()}
    with h5py.File(src, "w") as f:
        for name, x in arrays.items():
            f.create_dataset(name, data=x)

    def read_back(aez):
        run_json(capsys, "decompress", aez, "-o", tmp_path / "out.h5")
        with h5py.File(tmp_path / "out.h5", "r") as g:
            return {name: g[name][()] for name in arrays}

    kept(capsys, tmp_path, [src], arrays, read_back)


class _Trap:
    """Unpickling this creates a folder: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("payload", ["dict", "trap"])
def test_object_npy_is_never_unpickled(payload, tmp_path, capsys, monkeypatch):
    import pickle

    marker = tmp_path / "unpickled"
    src = tmp_path / "obj.npy"
    value = {} if payload == "dict" else _Trap(str(marker))
    np.save(src, np.array([value], dtype=object), allow_pickle=True)

    def refuse(*a, **k):
        raise AssertionError("aezip unpickled its input")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    before = set(os.listdir(tmp_path))
    code, out, err = run(capsys, "compress", src)
    assert code == 2 and out == "" and err.count("\n") == 1 and "pickle" in err
    assert not marker.exists()
    assert set(os.listdir(tmp_path)) == before


def test_object_member_of_npz_is_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "unpickled"
    src = tmp_path / "obj.npz"
    np.savez(src, good=sample_field((20, 20), seed=1), bad=np.array([_Trap(str(marker))], dtype=object))
    code, out, err = run(capsys, "compress", src, "-o", tmp_path / "o.aez")
    assert code == 2 and out == "" and err.count("\n") == 1 and "bad" in err
    assert not marker.exists() and not (tmp_path / "o.aez").exists()


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(100, 100), (30, 30, 30)])
def test_thread_count_does_not_change_the_result(shape, tmp_path, capsys, restore_threads):
    src = tmp_path / "d.npy"
    np.save(src, sample_field(shape, seed=91))
    aez = tmp_path / "d.aez"
    run_json(capsys, "compress", src, "-o", tmp_path / "d1.aez", "--threads", "1")
    run_json(capsys, "compress", src, "-o", aez, "--threads", "2")
    with h5py.File(tmp_path / "d1.aez", "r") as c1, h5py.File(aez, "r") as c2:
        assert aezip.info(str(aez)).arrays[0].codec.storage == "transform"
        assert c1["array_0"][()].tobytes() == c2["array_0"][()].tobytes()
    run_json(capsys, "decompress", aez, "-o", tmp_path / "t1.npy", "--threads", "1")
    run_json(capsys, "decompress", aez, "-o", tmp_path / "t2.npy", "--threads", "2")
    a, b = np.load(tmp_path / "t1.npy"), np.load(tmp_path / "t2.npy")
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert (tmp_path / "t1.npy").read_bytes() == (tmp_path / "t2.npy").read_bytes()


# --- inputs are never modified -------------------------------------------------------------------


def test_inputs_are_not_modified(tmp_path, capsys):
    npy = tmp_path / "in.npy"
    np.save(npy, sample_field((40, 50), seed=101))
    h5 = tmp_path / "in.h5"
    make_whole_h5(h5)
    npz = tmp_path / "in.npz"
    np.savez(npz, a=sample_field((30, 30), seed=102))
    raw = tmp_path / "in.f32"
    sample_field((40, 50), seed=103).tofile(raw)
    inputs = [npy, h5, npz, raw]
    before = {p: (sha256(p), p.stat().st_mtime_ns) for p in inputs}
    runs = [
        ([npy], [npy]),
        ([h5], [h5]),
        ([f"{h5}:/model/pressure"], [f"{h5}:/model/pressure"]),
        ([h5, "--key", "/model/run1/temp"], [h5, "--key", "/model/run1/temp"]),
        ([npz], [npz]),
        ([raw, "--shape", "40,50"], None),
    ]
    for i, (source, original) in enumerate(runs):
        aez = tmp_path / f"c{i}.aez"
        run_json(capsys, "compress", *source, "-o", aez)
        if original is not None:
            run_json(capsys, "decompress", aez, "-o", tmp_path / f"o{i}.npz", "--original", *original)
    after = {p: (sha256(p), p.stat().st_mtime_ns) for p in inputs}
    assert after == before
