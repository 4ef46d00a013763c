"""aezip as a Zarr v3 serializer (aezip.zarr.AEZip), through xarray and Dask."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from aezip.codec.sample import sample_field
from aezip.zarr import AEZip

BOUND = 1e-3


def _field(shape, seed=0):
    x = sample_field(shape, seed=seed) * 5 + 20
    x.reshape(-1)[:: max(1, x.size // 7)] = np.nan  # a few NaN, some in edge chunks
    return x


def _check(x, y, bound=BOUND):
    valid = np.isfinite(x)
    assert np.array_equal(np.isnan(y), np.isnan(x))
    assert np.abs(x[valid].astype(np.float64) - y[valid]).max() <= bound


def test_create_array_with_the_serializer_round_trips_every_chunk():
    x = _field((300, 260))
    store = zarr.storage.MemoryStore()
    z = zarr.create_array(store, shape=x.shape, chunks=(128, 128), dtype="float32", fill_value=np.nan,
                          serializer=AEZip(mode="abs", bound=BOUND), compressors=None)
    z[:] = x
    assert z.metadata.to_dict()["codecs"][0] == {"name": "aezip", "configuration": {"mode": "abs", "bound": BOUND}}
    back = zarr.open_array(store)
    _check(x, back[:])
    _check(x[100:201, 7:250], back[100:201, 7:250])  # a region across chunk edges
    assert sum(len(v.to_bytes()) for v in store._store_dict.values()) < x.nbytes / 3


def test_the_array_fill_value_is_kept_exactly():
    """Zarr pads edge chunks with the array's fill value and xarray writes it where values
    are missing: it must come back exactly, not within the bound."""
    x = sample_field((70, 50), seed=3) * 3
    x[:5, :5] = -9999.0
    z = zarr.create_array(zarr.storage.MemoryStore(), shape=x.shape, chunks=(32, 32), dtype="float32",
                          fill_value=-9999.0, serializer=AEZip(mode="abs", bound=0.1), compressors=None)
    z[:] = x
    y = z[:]
    assert np.all(y[:5, :5] == -9999.0) and np.abs(y - x).max() <= 0.1


def test_aezip_as_the_inner_serializer_of_a_sharded_array():
    x = _field((256, 192), seed=1)
    store = zarr.storage.MemoryStore()
    z = zarr.create_array(store, shape=x.shape, chunks=(64, 64), shards=(128, 128), dtype="float32",
                          serializer=AEZip(mode="rel", bound=BOUND, value_range=40.0), compressors=None)
    z[:] = x
    assert z.metadata.to_dict()["codecs"][0]["name"] == "sharding_indexed"
    _check(x, zarr.open_array(store)[:], BOUND * 40.0)


@pytest.mark.parametrize("config", [{"mode": "psnr", "bound": 50.0}, {"mode": "pw_rel", "bound": 1e-2},
                                    {"mode": "learned"}])
def test_other_modes_and_dtypes(config):
    x = np.abs(_field((64, 64), seed=2)) + 1
    z = zarr.create_array(zarr.storage.MemoryStore(), shape=x.shape, chunks=(32, 32), dtype="float64",
                          serializer=AEZip(**config), compressors=None)
    z[:] = x.astype(np.float64)
    y = z[:]
    assert y.dtype == np.float64 and np.array_equal(np.isnan(y), np.isnan(x))
    ints = np.rint(sample_field((40, 30), seed=4) * 100).astype(np.int32)
    zi = zarr.create_array(zarr.storage.MemoryStore(), shape=ints.shape, chunks=(16, 16), dtype="int32",
                           serializer=AEZip(mode="abs", bound=2), compressors=None)
    zi[:] = ints
    assert np.abs(zi[:].astype(np.int64) - ints).max() <= 2


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 40)), chunks=st.tuples(st.integers(1, 17), st.integers(1, 17)),
       fill=st.sampled_from([np.nan, 0.0, -9999.0]), seed=st.integers(0, 2**16), holes=st.floats(0, 0.3))
def test_random_chunk_shapes_edges_and_fill_values_keep_the_bound(shape, chunks, fill, seed, holes):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(np.float32)
    x[rng.random(shape) < holes] = fill
    z = zarr.create_array(zarr.storage.MemoryStore(), shape=shape, chunks=chunks, dtype="float32", fill_value=fill,
                          serializer=AEZip(mode="abs", bound=1e-2), compressors=None)
    z[:] = x
    y = z[:]
    special = ~np.isfinite(x) | (x == fill)
    assert np.array_equal(y[special], x[special], equal_nan=True)
    assert np.abs(x[~special].astype(np.float64) - y[~special]).max(initial=0) <= 1e-2


# --- xarray ------------------------------------------------------------------------------

def _dataset():
    xr = pytest.importorskip("xarray")
    t = sample_field((6, 90, 180), seed=5) * 10 + 280
    t[:, :3, :3] = np.nan  # missing values: written as the _FillValue by xarray
    return xr.Dataset(
        {"t": (("time", "lat", "lon"), t, {"units": "K", "long_name": "air temperature"})},
        coords={"time": np.arange(6), "lat": np.linspace(-89, 89, 90), "lon": np.linspace(0, 358, 180)},
        attrs={"title": "a NetCDF-like dataset", "source": "tests/test_zarr.py"}), t


def test_xarray_to_zarr_and_open_zarr_round_trip():
    import xarray as xr

    ds, t = _dataset()
    store = zarr.storage.MemoryStore()
    serializer = AEZip(mode="abs", bound=0.01, fill_value=-9999.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)  # xarray's notices about future defaults
        ds.to_zarr(store, encoding={"t": {"serializer": serializer, "compressors": None, "chunks": (2, 45, 90),
                                          "_FillValue": -9999.0}}, zarr_format=3, consolidated=False)
        back = xr.open_zarr(store, consolidated=False).load()
    assert back.attrs == ds.attrs and back.t.attrs == ds.t.attrs
    for c in ("time", "lat", "lon"):
        assert np.array_equal(back[c].values, ds[c].values)
    y = back.t.values
    assert np.array_equal(np.isnan(y), np.isnan(t))
    for i in range(0, 6, 2):  # every chunk within the bound
        for j in range(0, 90, 45):
            for k in range(0, 180, 90):
                a, b = t[i:i + 2, j:j + 45, k:k + 90], y[i:i + 2, j:j + 45, k:k + 90]
                assert np.nanmax(np.abs(a - b)) <= 0.01


# --- Dask ----------------------------------------------------------------------------------

def _write_and_check(client_kwargs, shape, chunks, tmp_path):
    import dask.array as da
    from distributed import Client, LocalCluster

    def block(block_id=None):  # generated lazily, one chunk at a time, on the workers
        i, j = block_id
        rows = np.arange(i * chunks[0], min(shape[0], (i + 1) * chunks[0]))[:, None]
        cols = np.arange(j * chunks[1], min(shape[1], (j + 1) * chunks[1]))[None, :]
        return (np.sin(rows / 37.0) * np.cos(cols / 23.0) * 10).astype(np.float32)

    x = da.map_blocks(block, dtype=np.float32, chunks=tuple(
        tuple(min(c, n - s) for s in range(0, n, c)) for n, c in zip(shape, chunks)))
    path = str(tmp_path / "field.zarr")
    with LocalCluster(**client_kwargs) as cluster, Client(cluster):
        z = zarr.create_array(zarr.storage.LocalStore(path), shape=shape, chunks=chunks, dtype="float32",
                              serializer=AEZip(mode="abs", bound=BOUND), compressors=None)
        da.to_zarr(x, z, compute=True)
        back = da.from_zarr(path)
        err = float(abs(back - x).max().compute())
    assert err <= BOUND


def test_dask_local_cluster_writes_a_lazy_array_through_the_codec(tmp_path):
    _write_and_check(dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None),
                     (512, 384), (128, 128), tmp_path)


@pytest.mark.slow
def test_dask_local_cluster_larger(tmp_path):
    _write_and_check(dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None),
                     (4096, 4096), (1024, 1024), tmp_path)


# --- the CLI reads and writes Zarr stores ----------------------------------------------------

def _store(tmp_path, x):
    root = zarr.open_group(zarr.storage.LocalStore(str(tmp_path / "in.zarr")), mode="w", zarr_format=3)
    a = root.create_array("t", shape=x.shape, chunks=(64, 64), dtype="float32", fill_value=-9999.0)
    a[:] = x
    b = root.create_array("u", shape=(50,), chunks=(20,), dtype="float64")
    b[:] = np.linspace(0, 1, 50)
    return str(tmp_path / "in.zarr")


def test_cli_compresses_a_zarr_array_and_decompresses_into_a_zarr_store(tmp_path, monkeypatch):
    from aezip.cli import main
    from aezip.io import zarr_store

    x = sample_field((300, 200), seed=9)
    x[:3, :3], x[10, 10] = np.nan, -9999.0
    store = _store(tmp_path, x)
    monkeypatch.setattr(zarr_store, "LAZY_BYTES", 1)  # read lazily, slab by slab, as a large array would be
    aez, out, coded = str(tmp_path / "t.aez"), str(tmp_path / "out.zarr"), str(tmp_path / "coded.zarr")
    assert main(["compress", f"{store}:/t", "-o", aez, "--abs", "1e-3", "--memory", "1M", "--quiet"]) == 0
    assert main(["decompress", aez, "-o", out, "--quiet"]) == 0
    y = zarr.open_group(out)["t"]
    assert y.metadata.to_dict()["codecs"][0]["name"] == "bytes"  # uncompressed chunks by default
    _check(np.where(x == -9999.0, np.nan, x), np.where(y[:] == -9999.0, np.nan, y[:]))
    assert y[10, 10] == -9999.0  # the store's fill value, kept exactly
    assert main(["decompress", aez, "-o", coded, "--zarr-serializer", "aezip:abs:1e-3", "--quiet"]) == 0
    z = zarr.open_group(coded)["t"]
    assert z.metadata.to_dict()["codecs"][0]["name"] == "aezip"
    assert np.nanmax(np.abs(z[:] - y[:])) <= 1e-3


def test_cli_compresses_every_array_of_a_zarr_group(tmp_path):
    from aezip.cli import main

    store = _store(tmp_path, sample_field((100, 80), seed=10))
    aez, out = str(tmp_path / "all.aez"), str(tmp_path / "all.zarr")
    assert main(["compress", store, "-o", aez, "--rel", "1e-3", "--quiet"]) == 0
    assert main(["decompress", aez, "-o", out, "--quiet"]) == 0
    assert sorted(zarr.open_group(out).keys()) == ["t", "u"]


@pytest.mark.parametrize("argv,message", [
    (["--zarr-serializer", "zstd"], "use bytes"),
    (["--zarr-serializer", "aezip:abs:x"], "not a number"),
    (["--zarr-serializer", "aezip:rel:1e-3"], "needs value_range"),
])
def test_cli_zarr_errors_are_one_line(tmp_path, capsys, argv, message):
    from aezip.cli import main

    store = _store(tmp_path, sample_field((64, 64), seed=11))
    aez = str(tmp_path / "t.aez")
    assert main(["compress", f"{store}:/t", "-o", aez, "--abs", "1e-2", "--quiet"]) == 0
    assert main(["decompress", aez, "-o", str(tmp_path / "o.zarr")] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "o.zarr").exists()
    assert main(["decompress", aez, "-o", str(tmp_path / "o.npy"), "--zarr-serializer", "bytes"]) == 2
    assert main(["compress", f"{store}:/nothing", "-o", str(tmp_path / "n.aez")]) == 2


def test_an_array_the_codec_cannot_code_is_refused_when_created():
    with pytest.raises(ValueError, match="float32, float64 and integer"):
        zarr.create_array(zarr.storage.MemoryStore(), shape=(8,), chunks=(4,), dtype="float16",
                          serializer=AEZip(mode="abs", bound=1e-3), compressors=None)


def test_a_reader_finds_the_codec_through_its_entry_point_without_torch(tmp_path):
    """A fresh process that never imports aezip opens the array: Zarr finds the codec by the
    name in its metadata (the zarr.codecs entry point), and reading imports no torch."""
    import subprocess
    import sys

    path = str(tmp_path / "a.zarr")
    x = sample_field((64, 48), seed=12)
    z = zarr.create_array(zarr.storage.LocalStore(path), shape=x.shape, chunks=(32, 32), dtype="float32",
                          serializer=AEZip(mode="abs", bound=BOUND), compressors=None)
    z[:] = x
    np.save(str(tmp_path / "x.npy"), x)
    code = (f"import sys, numpy as np, zarr\ny = zarr.open_array({path!r})[:]\n"
            f"x = np.load({str(tmp_path / 'x.npy')!r})\nassert np.abs(y - x).max() <= {BOUND}\n"
            "assert 'torch' not in sys.modules and 'aezip.zarr' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
