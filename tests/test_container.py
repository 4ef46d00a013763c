"""The container layout: records, streams, checksums, version check, size overhead."""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from aezip.container import (FORMAT_VERSION, ArrayEntry, CodecParams, Container, Figures, ModelRef, SourceRef, read_container,
                             write_container)
from aezip.errors import ChecksumError, ContainerError, FormatVersionError, InputNotFoundError, OutputExistsError
from common import edit_record, set_record

FIG = Figures(original_bytes=400, coded_bytes=40, mse=0.5, psnr=30.0, max_abs_error=1.0, value_range=10.0, seconds=0.1)
MODEL = ModelRef(id="ab" * 32, name="conv2d-abababababab", config={"ndim": 2})


def _container(n_stream=2500, **kw):
    y = np.frombuffer(np.random.default_rng(0).bytes(n_stream), np.uint8)
    codec = CodecParams(storage="latent", ndim=2, tile=64, offset=1.0, scale=2.0, latent_shape=[1, 8, 16, 16],
                        symbols_crc32=7, model=0)
    entry = ArrayEntry(name="", shape=(10, 10), dtype="float32", order="C", byteorder="<", codec=codec, figures=FIG,
                       streams={"latents": y})
    return Container(writer="aezip test", source=SourceRef(kind="npy", name="x.npy"), arrays=(entry,),
                     models=(MODEL,), **kw)


def test_roundtrip_records_and_streams(tmp_path):
    p = str(tmp_path / "c.aez")
    c = _container()
    write_container(p, c)
    r = read_container(p)
    assert r.format_version == FORMAT_VERSION and r.models == c.models and r.source == c.source
    a, b = r.arrays[0], c.arrays[0]
    assert (a.name, a.shape, a.dtype, a.codec, a.figures) == (b.name, b.shape, b.dtype, b.codec, b.figures)
    np.testing.assert_array_equal(a.streams["latents"], b.streams["latents"])


@pytest.mark.parametrize("n_stream", [100, 2500, 30000, 200000])
def test_overhead_is_small(tmp_path, n_stream):
    """Beyond its stream a one-array container costs about 1 KiB (formats/aezip-container-v2.md §1),
    version 5's two record checksums included (v5 §1)."""
    p = str(tmp_path / "c.aez")
    size = write_container(p, _container(n_stream))
    assert size == os.path.getsize(p)
    assert size - n_stream <= 1150


def test_strings_are_fixed_length(tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    with h5py.File(p) as f:
        for obj in (f, f["array_0"]):
            for k in obj.attrs:
                tid = obj.attrs.get_id(k).get_type()
                if isinstance(tid, h5py.h5t.TypeStringID):
                    assert not tid.is_variable_str(), k


def test_newer_version_is_refused_first(tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    with h5py.File(p, "r+") as f:
        f.attrs["format_version"] = np.int32(6)
        del f["array_0"]  # a newer version may look entirely different
    with pytest.raises(FormatVersionError, match="version 6.*reads version 1, 2, 3, 4, 5.*upgrade aezip"):
        read_container(p)


def test_not_aezip(tmp_path):
    p = str(tmp_path / "other.h5")
    with h5py.File(p, "w") as f:
        f["x"] = 1
    with pytest.raises(ContainerError, match="not an aezip container"):
        read_container(p)


def test_not_hdf5(tmp_path):
    p = tmp_path / "x.aez"
    p.write_bytes(b"hello")
    with pytest.raises(ContainerError, match="not an HDF5 file"):
        read_container(str(p))


def test_missing(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_container(str(tmp_path / "nope.aez"))


def test_flipped_byte_fails_checksum(tmp_path):
    p = str(tmp_path / "c.aez")
    c = _container(200000)
    write_container(p, c)
    data = bytearray(Path(p).read_bytes())
    pos = bytes(data).find(c.arrays[0].streams["latents"][:64].tobytes())
    data[pos + 1000] ^= 0xFF
    Path(p).write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        read_container(p)


def test_truncated(tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container(200000))
    data = Path(p).read_bytes()
    Path(p).write_bytes(data[: len(data) // 2])
    with pytest.raises(ContainerError):
        read_container(p)


def test_existing_output_refused_and_untouched(tmp_path):
    p = tmp_path / "c.aez"
    p.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="--force"):
        write_container(str(p), _container())
    assert p.read_bytes() == b"keep"
    assert [q.name for q in tmp_path.iterdir()] == ["c.aez"]


def test_unknown_json_keys_are_ignored(tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    edit_record(p, 0, lambda r: r["codec"].update(zzz_future=1))
    assert read_container(p).arrays[0].codec.tile == 64


@pytest.mark.parametrize("codec,match", [
    (b'{"storage": "latent", "codec"', "array"),  # damaged JSON
    (b'{"codec": {"storage": "hybrid-v9"}}', "upgrade aezip"),  # a storage from a newer aezip
    (b'{"codec": {"interpolation": "spiral"}}', "upgrade aezip"),  # ... a visiting order
])
def test_bad_codec_record(codec, match, tmp_path):
    import json

    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    with h5py.File(p, "r+") as f:
        record = f["array_0"].attrs["record"]
        if codec.startswith(b'{"codec"'):  # a valid record with this codec
            d = json.loads(record)
            d["codec"] = dict(d["codec"], **json.loads(codec)["codec"])
            record = json.dumps(d).encode()
        else:
            record = codec
        set_record(f["array_0"].attrs, "record", record)
    with pytest.raises(ContainerError, match=match):
        read_container(p)


def test_h5dump_shows_the_documented_layout(tmp_path):
    """A real HDF5 client (Debian's hdf5-tools, HDF5 1.10) reads the container."""
    import shutil
    import subprocess

    if shutil.which("h5dump") is None:
        pytest.skip("h5dump (Debian package hdf5-tools) is not installed")
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    out = subprocess.run(["h5dump", "-H", p], capture_output=True, text=True, check=True).stdout
    for name in ('ATTRIBUTE "format"', 'ATTRIBUTE "format_version"', 'ATTRIBUTE "header"', 'DATASET "array_0"',
                 'ATTRIBUTE "record"', "H5T_STR_NULLPAD"):
        assert name in out
    assert "H5T_VARIABLE" not in out


@pytest.mark.parametrize("key,value", [("tile", "x"), ("offset", None), ("latent_shape", "x"), ("model", "x"),
                                       ("scale", float("nan")), ("escapes", -1)])
def test_forged_record_types_are_corruption_not_crashes(key, value, tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    edit_record(p, 0, lambda r: r["codec"].update({key: value}))
    with pytest.raises(ContainerError):
        read_container(p)


def test_n_arrays_must_be_an_integer(tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    with h5py.File(p, "r+") as f:
        set_record(f.attrs, "header", f.attrs["header"].replace(b'"n_arrays":1', b'"n_arrays":"1"'))
    with pytest.raises(ContainerError, match="n_arrays"):
        read_container(p)


def test_several_streams_of_several_types_roundtrip(tmp_path):
    """An entry's streams share one dataset: each comes back with its type, values and order."""
    import dataclasses

    p = str(tmp_path / "c.aez")
    streams = {"residuals": np.arange(7, dtype=np.uint8), "exact": np.array([1.5, -2.25, 1e300]),
               "masked_values": np.array([-9999.0], np.float32), "values": np.array([-3, 70000], ">i8")}
    c = _container()
    c = dataclasses.replace(c, arrays=(dataclasses.replace(c.arrays[0], streams=streams),))
    write_container(p, c)
    back = read_container(p).arrays[0].streams
    assert list(back) == list(streams)
    for k, v in streams.items():
        assert back[k].dtype == v.dtype.newbyteorder("=") and np.array_equal(back[k], v), k


@pytest.mark.parametrize("table,match", [
    ([["latents", "uint8", 2501, 0]], "stream table says 2501"),  # more bytes than the dataset holds
    ([["latents", "uint8", 2000, 0]], "stream table says 2000"),  # fewer
    ([["latents", "object", 2500, 0]], "stream table"),  # a type that is not a number
    ([["latents", "uint8", -1, 0]], "stream table"),
    ("latents", "stream table"),
])
def test_forged_stream_table_is_corruption(table, match, tmp_path):
    p = str(tmp_path / "c.aez")
    write_container(p, _container())
    edit_record(p, 0, lambda r: r.update(streams=table))
    with pytest.raises(ContainerError, match=match):
        read_container(p)


def test_version_1_files_are_still_read():
    """Format version 1 (one group per array) is read as it was written."""
    v1 = os.path.join(os.path.dirname(__file__), "..", "formats", "golden", "v1", "several.aez")
    c = read_container(v1)
    assert c.format_version == 1 and {a.name for a in c.arrays} == {"series", "image"}
    assert all(a.streams for a in c.arrays)


@pytest.mark.parametrize("shape,mode,part,key,value", [
    ((40, 50), {"rel": 1e-3}, "codec", "bound", 0.0),  # the words no longer fit the tables (constriction asserts)
    ((64, 64), {"rel": 1e-3}, "codec", "radii", None),  # one radius short (set below)
    ((64, 64), {}, "record", "shape", [64]),  # fewer axes than the model's spatial ones
    ((64, 64), {}, "record", "shape", []),
])
def test_records_that_do_not_fit_their_streams_are_corruption(tmp_path, shape, mode, part, key, value):
    """A record edited by hand (its checksums still fine) fails as a corrupted container."""
    import aezip
    from aezip.codec.sample import sample_field

    p = str(tmp_path / "x.aez")
    aezip.compress(sample_field(shape, seed=3), p, **mode)

    def change(record):
        d = record if part == "record" else record[part]
        d[key] = d[key][:-1] if value is None else value

    edit_record(p, 0, change)
    with pytest.raises(ContainerError):
        aezip.decompress(p, write=False)


def test_records_leave_out_the_figures_that_follow_from_them(tmp_path):
    import aezip
    """v5 §5: original_bytes, coded_bytes and psnr are left out of a record and filled back."""
    import json as _json

    import h5py

    x = np.cumsum(np.random.default_rng(3).standard_normal((60, 70)), axis=1).astype(np.float32)
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, rel=1e-3)
    with h5py.File(p, "r") as f:
        stored = _json.loads(f["array_0"].attrs["record"])["figures"]
    assert not {"original_bytes", "coded_bytes", "psnr"} & set(stored)
    fig = aezip.info(p).arrays[0].figures
    assert fig.original_bytes == x.nbytes and fig.psnr == pytest.approx(r.psnr, rel=1e-12)
    with h5py.File(p, "r") as f:
        assert fig.coded_bytes == f["array_0"].size
