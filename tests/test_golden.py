"""Every golden container of every format version still decodes to its original."""

import glob
import os

import numpy as np
import pytest

import aezip

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "formats", "golden")
FILES = sorted(glob.glob(os.path.join(GOLDEN, "v*", "*.aez")))


def _originals(aez: str) -> dict[str, np.ndarray]:
    stem = aez[: -len(".aez")]
    if os.path.exists(stem + ".npy"):
        return {"": np.load(stem + ".npy")}
    with np.load(stem + ".npz") as z:
        return {k: z[k] for k in z.files}


def test_there_are_golden_files():
    assert len(FILES) >= 11


@pytest.mark.parametrize("aez", FILES, ids=lambda p: os.path.relpath(p, GOLDEN))
def test_golden_decodes_to_its_original(aez):
    originals = _originals(aez)
    stored = aezip.info(aez)
    result, _ = aezip.decompress(aez, write=False)
    x_hats = {"": result} if isinstance(result, np.ndarray) else result
    for entry in stored.arrays:
        x, x_hat = originals[entry.name], x_hats[entry.name]
        assert x_hat.shape == x.shape and x_hat.dtype == x.dtype
        f = entry.figures
        invalid = ~np.isfinite(x) if x.dtype.kind == "f" else np.zeros(x.shape, bool)
        assert np.array_equal(x_hat[invalid], x[invalid], equal_nan=True)
        d = np.abs(x[~invalid].astype(np.float64) - x_hat[~invalid].astype(np.float64))
        if f.bound is None:  # the stored max error (the largest of its slabs') plus 1e-6 relative slack
            largest = max(e.figures.max_abs_error for e in stored.arrays if e.name == entry.name)
            assert d.max() <= largest * (1 + 1e-6) + 1e-6 * f.value_range
        elif f.bound_kind == "pw_rel":
            assert np.all(d <= f.bound * np.abs(x[~invalid].astype(np.float64)))
        else:
            assert d.max() <= f.bound


def test_golden_decoding_does_not_depend_on_the_band_size():
    """The interpolation decodes band by band to stay in the cache; bands of a few targets
    must give the same bits as one band for the whole array."""
    from aezip.coding import Models, decode_array
    from aezip.container import read_container

    bounded = [f for f in FILES if any(e.codec.storage == "bounded" for e in aezip.info(f).arrays)]
    assert bounded
    for aez in bounded:
        c = read_container(aez)
        models = Models(None, "cpu")
        models.embedded = c.embedded_model
        for e in c.arrays:
            if e.codec.storage == "bounded":
                whole, banded = (decode_array(e, models, c.models, band=band) for band in (1 << 40, 5))
                assert whole.tobytes() == banded.tobytes(), aez


def test_golden_files_cover_every_interpolation_order():
    """Version 1 files use the axis-by-axis order, version 2 files the grouped one and the
    diamond-square one (2-D and 3-D)."""
    orders = {(os.path.basename(os.path.dirname(f)), e.codec.interpolation, len(e.shape))
              for f in FILES for e in aezip.info(f).arrays if e.codec.storage == "bounded"}
    assert {("v1", "axes"), ("v2", "groups"), ("v2", "diamond")} <= {o[:2] for o in orders}
    assert {("v2", "diamond", 2), ("v2", "diamond", 3)} <= orders


def test_golden_files_cover_every_base():
    """The bounded modes' prediction starts from 0, from the model's reconstruction, or
    from it on some tiles (version 2, aezip 0.4.0)."""
    bases = {e.codec.base for f in FILES for e in aezip.info(f).arrays if e.codec.storage == "bounded"}
    assert bases == {"none", "model", "tiles"}


def test_later_versions_are_written_only_where_needed():
    """Version 3 was written only for containers that need its key ``coarse``, version 4
    only for those that need ``filter``; from version 5 on every container is of the
    version written (v5 §1). Each folder holds its version's files."""
    assert {os.path.basename(os.path.dirname(f)) for f in FILES} >= {"v1", "v2", "v3", "v4", "v5"}
    for f in FILES:
        c = aezip.info(f)
        assert c.format_version == int(os.path.basename(os.path.dirname(f))[1:])
        if 2 <= c.format_version < 5:
            uses_filter = any(e.codec.filter for e in c.arrays)
            uses_coarse = any(e.codec.coarse for e in c.arrays)
            assert c.format_version == (4 if uses_filter else 3 if uses_coarse else 2), f


def test_version_5_golden_files_have_every_record_checksummed(tmp_path):
    """Format 5 §1: a CRC-32 over the header and each entry record; an edited record is refused."""
    import shutil

    import h5py

    v5 = [f for f in FILES if os.path.basename(os.path.dirname(f)) == "v5"]
    assert any(os.path.basename(f).startswith("checksummed-") for f in v5)
    for f in v5:
        with h5py.File(f) as h:
            assert "header_crc32" in h.attrs
            assert all("record_crc32" in h[k].attrs for k in h if k.startswith("array_"))
    p = str(tmp_path / "c.aez")
    shutil.copy(v5[0], p)
    with h5py.File(p, "r+") as h:
        h["array_0"].attrs["record"] = np.bytes_(h["array_0"].attrs["record"].replace(b'"figures"', b'"figures" '))
    with pytest.raises(aezip.ContainerError, match="checksum of the 'record' record"):
        aezip.info(p)


def test_golden_files_cover_the_transform_coder():
    """v5 §3: odd sizes in 1-, 2- and 3-D, planes, integer rounding, NaN and halos."""
    codecs = [(e.codec, e.shape) for f in FILES for e in aezip.info(f).arrays if e.codec.storage == "transform"]
    assert {c.ndim for c, _ in codecs} == {1, 2, 3}
    assert any(len(shape) > c.ndim for c, shape in codecs)  # planes
    assert any(c.integer for c, _ in codecs) and any(c.halo for c, _ in codecs)
    assert any(c.storage == "transform" and e.figures.invalid_values for f in FILES
               for e in aezip.info(f).arrays for c in [e.codec])


def test_golden_files_cover_bounded_planes():
    """v5 §6: bounded coding over a batch of planes, of 1-D and 2-D planes, with the
    post-filter, and in slabs that all record the array's axes."""
    codecs = [(e.codec, e.shape, e.slab) for f in FILES for e in aezip.info(f).arrays if e.codec.planes]
    assert {c.ndim for c, _, _ in codecs} == {1, 2} and all(len(shape) > c.ndim for c, shape, _ in codecs)
    assert any(c.filter for c, _, _ in codecs) and any(slab is not None for _, _, slab in codecs)


def test_golden_files_name_their_models_by_index_before_version_5_and_by_id_from_it():
    """Format v5 §4: an entry names its model by content id; older files by an index into
    the container's list, which still decode."""
    named = {}
    for aez in FILES:
        c = aezip.info(aez)
        for e in c.arrays:
            if e.codec.uses_model:
                by_id = bool(e.codec.model_id) and e.codec.model == -1 and e.codec.model_id in [m.id for m in c.models]
                named.setdefault(c.format_version >= 5, []).append(by_id)
    assert named[True] and all(named[True])
    assert named[False] and not any(named[False])
