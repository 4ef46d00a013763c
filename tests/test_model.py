"""Model files, identity, lookup, and the network's contract."""

import numpy as np
import pytest

from aezip.errors import ModelError, ModelMismatchError
from aezip.model import list_models, load_model
from aezip.model import train as tr
from aezip.model.registry import find_model
from aezip.model.store import read_model, write_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-D model trained for a few steps: fast, and enough to check the plumbing."""
    from aezip.codec.sample import sample_field

    cfg, tensors, tables, summary = tr.train([sample_field((96, 96), seed=1)],
                                             tr.TrainOptions(ndim=2, tile=16, channels=8, steps=3, batch_size=4,
                                                             val_tiles=4))
    path = tmp_path_factory.mktemp("m") / "tiny.h5"
    name, mid = tr.save(str(path), cfg, tensors, tables, summary, "test")
    return path, name, mid


def test_identity_is_content_not_bytes(tiny, tmp_path):
    path, name, mid = tiny
    header, tensors, tables, config = read_model(str(path))
    assert header["id"] == mid and name.endswith(mid[:12])
    other = tmp_path / "copy.h5"
    again = write_model(str(other), name="renamed", config=config, tensors=tensors, tables=tables,
                        summary={"other": 1}, version="x")
    assert again == mid


def test_changed_weight_changes_identity_and_is_detected(tiny, tmp_path):
    import h5py

    path, _, _ = tiny
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(path.read_bytes())
    with h5py.File(damaged, "r+") as f:
        k = next(iter(f["weights"]))
        f["weights"][k][...] = f["weights"][k][()] + 1
    with pytest.raises(ModelError, match="damaged"):
        read_model(str(damaged))


def test_a_model_file_rewritten_in_place_is_read_again(tmp_path):
    """Loaded models are cached; a file overwritten at the same path must not come back stale."""
    import shutil

    path = str(tmp_path / "m.h5")
    shutil.copy(find_model(ndim=1), path)
    assert load_model(path).ndim == 1
    shutil.copy(find_model(ndim=2), path)
    assert load_model(path).ndim == 2


def test_model_file_is_not_a_pickle(tiny):
    assert tiny[0].read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def test_lookup_by_path_name_and_id(tiny, tmp_path, monkeypatch):
    path, name, mid = tiny
    monkeypatch.setenv("AEZIP_MODELS", str(path.parent))
    assert find_model(str(path)) == str(path)
    assert find_model(name).endswith("tiny.h5")
    assert find_model(mid[:10]).endswith("tiny.h5")
    assert find_model(model_id=mid).endswith("tiny.h5")
    assert any(m["name"] == name and m["where"] == "user" for m in list_models())


def test_mismatch_names_both(tiny):
    path, name, mid = tiny
    with pytest.raises(ModelMismatchError, match=mid[:12]):
        load_model(str(path), model_id="0" * 64)


def test_unknown_model_and_missing_file():
    with pytest.raises(ModelError, match="no model named"):
        find_model("no-such-model")
    with pytest.raises(ModelError, match="does not exist"):
        find_model("./nope/model.h5")


def test_wrong_ndim_is_refused(tiny):
    with pytest.raises(ModelError, match="--ndim"):
        load_model(str(tiny[0]), ndim=3)


def test_builtin_defaults_exist_for_every_ndim():
    for ndim in (1, 2, 3):
        m = load_model(ndim=ndim)
        assert m.ndim == ndim


def test_encode_decode_shapes(tiny):
    m = load_model(str(tiny[0]))
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 16, 16)).astype(np.float32)
    y_hat = m.encode(x)
    assert y_hat.dtype == np.int32 and y_hat.shape == m.latent_shape(5)
    x_hat = m.decode(y_hat)
    assert x_hat.shape == x.shape and x_hat.dtype == np.float32


def test_decode_does_not_depend_on_batch_position(tiny):
    """Each tile decodes the same alone or among others (no cross-tile state)."""
    m = load_model(str(tiny[0]))
    y_hat = np.random.default_rng(1).integers(-3, 4, m.latent_shape(40)).astype(np.int32)
    all_at_once = m.decode(y_hat)
    np.testing.assert_allclose(m.decode(y_hat[33:34])[0], all_at_once[33], rtol=0, atol=1e-5)


def test_factorized_density_learns_and_freezes_into_integer_tables():
    import torch

    from aezip.codec import entropy
    from aezip.model.density import FactorizedDensity

    torch.manual_seed(0)
    d = FactorizedDensity(2)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    spread = torch.tensor([0.5, 4.0]).view(1, 2, 1)
    for _ in range(200):
        y = torch.round(torch.randn(256, 2, 16) * spread)
        loss = d(y + torch.empty_like(y).uniform_(-0.5, 0.5)) / y.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    tables = d.tables()
    assert (tables.weights.sum(axis=1) == entropy.TOTAL - tables.weights.shape[1]).all()
    y = np.round(np.random.default_rng(1).standard_normal((500, 2, 16)) * np.array([0.5, 4.0]).reshape(1, 2, 1))
    bits = entropy.ideal_bits(y.astype(np.int64), tables) / y.size
    # the quantized Gaussians' entropies: about 1.1 and 4.0 bits; the learned tables come within 10 %
    assert bits < 1.1 * (1.1 + 4.0) / 2
    data, n_esc = entropy.encode(y.astype(np.int32), tables)
    np.testing.assert_array_equal(entropy.decode(data, n_esc, tables, y.shape), y)


cuda = pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_latents_written_on_a_gpu_decode_identically_on_the_cpu(tmp_path):
    """The latents decode to the same integers on both (their checksum is verified), and the
    networks' outputs agree within the drift the bounded modes allow."""
    import aezip
    from aezip.codec.sample import sample_field
    from aezip.coding import DRIFT

    x = sample_field((256, 256), seed=11)
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, device="cuda")
    on_gpu, _ = aezip.decompress(p, write=False, device="cuda")
    on_cpu, _ = aezip.decompress(p, write=False, device="cpu")
    assert np.max(np.abs(on_gpu.astype(np.float64) - on_cpu)) <= DRIFT * float(np.ptp(x)) / 2


@cuda
def test_bounded_with_the_model_written_on_a_gpu_keeps_the_bound_on_the_cpu(tmp_path):
    import aezip
    from aezip.codec.sample import sample_field

    x = sample_field((128, 128), seed=7) * 10
    p = str(tmp_path / "x.aez")
    force_model = aezip.EncoderOptions(keep_model=True, may_pay=float("inf"))  # the model's prediction, paying or not
    r = aezip.compress(x, p, rel=1e-2, device="cuda", options=force_model)
    assert aezip.info(p).arrays[0].codec.base == "model"
    x_hat, _ = aezip.decompress(p, write=False, device="cpu")
    assert np.max(np.abs(x.astype(np.float64) - x_hat)) <= r.bound
