"""The Python API end to end: round trips, figures, storage modes, refusals."""

import os

import numpy as np
import pytest

import aezip
from aezip.codec.sample import sample_field
from common import check_quality, check_roundtrip

SHAPES = [(300,), (1500,), (37, 70), (65, 64), (3, 40, 50), (20, 33, 17), (2, 3, 20, 20)]
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_roundtrip(shape, dtype, tmp_path):
    x = (sample_field(shape, seed=len(shape)) * 3 + 10).astype(dtype)
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p)
    assert r.compressed_bytes == os.path.getsize(p)
    assert r.compression_ratio == pytest.approx(x.nbytes / os.path.getsize(p))
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    check_roundtrip(x, x_hat, r)  # compress-time figures describe exactly what decompress returns
    check_quality(x, x_hat, r2.measured)
    assert r2.compressed_bytes == os.path.getsize(p)


def test_figures_agree_with_plain_numpy(tmp_path):
    x = sample_field((128, 128), seed=9)
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, model="conv-ae-v1")
    x_hat, _ = aezip.decompress(p, write=False)
    d = x.astype(np.float64) - x_hat
    assert r.storage == "latent"
    assert r.mse == pytest.approx(np.mean(d**2), rel=1e-12)
    assert r.bits_per_value == pytest.approx(8 * os.path.getsize(p) / x.size)
    assert r.psnr > 25  # the default model reconstructs a smooth field recognisably


def test_constant_array_is_exact_and_tiny(tmp_path):
    x = np.full((64, 64), 3.25, dtype=np.float32)
    p = str(tmp_path / "c.aez")
    r = aezip.compress(x, p)
    x_hat, _ = aezip.decompress(p, write=False)
    assert r.storage == "constant" and r.psnr is None and r.max_abs_error == 0
    np.testing.assert_array_equal(x_hat, x)
    assert os.path.getsize(p) < 1500


def test_tiny_array_is_stored_raw_never_worse(tmp_path):
    x = np.array([1.5, -2.25, 3.0, 7.0, 0.1], dtype=np.float64)
    p = str(tmp_path / "t.aez")
    r = aezip.compress(x, p, quality=300)  # beyond what float64 coefficients can reach
    x_hat, _ = aezip.decompress(p, write=False)
    assert r.storage == "raw" and r.max_abs_error == 0
    np.testing.assert_array_equal(x_hat, x)


def test_batch_axes(tmp_path):
    x = sample_field((4, 32, 48), seed=2)
    p = str(tmp_path / "b.aez")
    aezip.compress(x, p, ndim=2)
    info = aezip.info(p)
    assert info.arrays[0].codec.ndim == 2
    x_hat, _ = aezip.decompress(p, write=False)
    assert x_hat.shape == x.shape


@pytest.mark.parametrize("bad,match", [
    (np.array([np.nan, np.inf, -np.inf]), "no finite value"),
    (np.zeros((0, 4), np.float32), "empty"),
    (np.array(["a", "b"]), "float32, float64 and integer"),
    (np.zeros(4, np.complex64), "float32, float64 and integer"),
    (np.zeros(4, np.float16), "float32, float64 and integer"),
    (np.array([2**60, 1], dtype=np.int64), "2\\*\\*53"),
])
def test_unsupported_data(bad, match, tmp_path):
    p = tmp_path / "x.aez"
    with pytest.raises(aezip.UnsupportedDataError, match=match):
        aezip.compress(bad, str(p))
    assert not p.exists()


def test_ndim_larger_than_array(tmp_path):
    with pytest.raises(aezip.UsageError, match="--ndim 3"):
        aezip.compress(np.zeros((4, 4), np.float32) + np.arange(4), str(tmp_path / "x.aez"), ndim=3)


def test_existing_output_needs_force(tmp_path):
    x = sample_field((32, 32))
    p = tmp_path / "x.aez"
    p.write_bytes(b"old")
    with pytest.raises(aezip.OutputExistsError, match="--force"):
        aezip.compress(x, str(p))
    assert p.read_bytes() == b"old"
    aezip.compress(x, str(p), force=True)
    assert aezip.info(str(p)).arrays[0].shape == (32, 32)


def test_model_mismatch_is_refused(tmp_path):
    x = sample_field((32, 32))
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, model="conv-ae-v1")
    other = aezip.info(p).models[0]
    from aezip.model import list_models

    wrong = next(m for m in list_models() if m["id"] != other.id)
    with pytest.raises(aezip.ModelMismatchError, match=other.id[:12]):
        aezip.decompress(p, model=wrong["path"], write=False)


def test_info_reads_no_streams(tmp_path):
    x = sample_field((64, 64))
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p)
    c = aezip.info(p)
    assert c.arrays[0].streams == {} and c.format_version == aezip.container.FORMAT_VERSION


def test_embedded_model_is_used_when_no_other_is_found(tmp_path):
    """A container may carry its model (format v1 §2, root dataset 'model')."""
    import h5py

    from aezip.container.writer import crc32
    from aezip.model import train as tr

    cfg, tensors, tables, summary = tr.train([sample_field((64, 64), seed=1)],
                                             tr.TrainOptions(ndim=2, tile=16, channels=8, steps=2, batch_size=2,
                                                             val_tiles=2))
    model_file = tmp_path / "own.h5"
    tr.save(str(model_file), cfg, tensors, tables, summary, "test")
    x = sample_field((40, 40), seed=2)
    p = tmp_path / "x.aez"
    aezip.compress(x, str(p), model=str(model_file))
    with pytest.raises(aezip.ModelError, match="--model PATH"):
        aezip.decompress(str(p), write=False)
    blob = np.frombuffer(model_file.read_bytes(), np.uint8)
    with h5py.File(p, "r+") as f:
        f.create_dataset("model", data=blob).attrs["crc32"] = np.uint32(crc32(blob))
    x_hat, r = aezip.decompress(str(p), write=False, original=x)
    assert r.measured.mse == pytest.approx(r.mse, rel=1e-9)


def test_fit_embeds_the_fitted_model(tmp_path):
    x = sample_field((96, 96), seed=21)
    p = str(tmp_path / "f.aez")
    r = aezip.compress(x, p, fit=True, fit_steps=5)
    c = aezip.info(p)
    assert c.models[0].name.startswith("conv2d-fit-") and r.embedded_model_bytes > 0
    assert r.compressed_bytes == os.path.getsize(p)  # the embedded weights count in the ratio
    x_hat, r2 = aezip.decompress(p, write=False, original=x)  # found inside the container, no --model
    assert r2.measured.mse == pytest.approx(r.mse, rel=1e-9) and r2.embedded_model_bytes == r.embedded_model_bytes
    with pytest.raises(aezip.UsageError, match="--fit"):
        aezip.compress(x, str(tmp_path / "g.aez"), fit=True, rel=1e-3)
