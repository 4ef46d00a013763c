"""The multiscale transform coder: the wavelet, the subband codes, the plain learned mode."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

import aezip
from aezip.codec import subband, transform, wavelet
from aezip.errors import ContainerError

SHAPES = [(1,), (2,), (3,), (7,), (1000,), (5, 3), (37, 53), (64, 64), (1, 40), (9, 17, 23), (2, 3, 4)]


def _smooth(shape, seed=0):
    """A smooth random field: cumulative sums of noise along every axis."""
    x = np.random.default_rng(seed).standard_normal(shape)
    for a in range(len(shape)):
        x = np.cumsum(x, axis=a)
    return x


@pytest.mark.parametrize("shape", SHAPES)
def test_wavelet_inverts_any_shape(shape):
    x = _smooth(shape)
    y = wavelet.forward(x)
    assert y.shape == x.shape
    assert np.allclose(wavelet.inverse(y), x, rtol=0, atol=1e-10 * max(1.0, float(np.abs(x).max())))


def test_wavelet_is_close_to_orthonormal():
    """The basis functions of the fine subbands have norms within 15 % of 1, so equal steps
    spend the squared error about evenly there; the coarsest ones, folded back by the
    symmetric extension on a short band, weigh more, which the step search accounts for."""
    shape = (128, 128)
    levels = len(wavelet.plan(shape)) - 1
    bands = subband.bands(shape, levels)
    gains = transform.band_gains(shape, levels, bands)
    assert len(bands) == 1 + 3 * levels
    assert all(0.7 < g < 1.35 for g in gains[-9:]), gains
    assert all(0.5 < g < 4 for g in gains), gains


def test_depth_reaches_five_levels_on_large_axes():
    assert len(wavelet.plan((512, 512))) - 1 == 6
    assert len(wavelet.plan((100_000,))) - 1 == 6
    assert wavelet.plan((24, 96, 128))[-1] == (3, 3, 2)  # short axes stop splitting, the others go on


def test_subbands_tile_the_array():
    shape = (33, 20, 7)
    covered = np.zeros(shape, int)
    for _, _, box in wavelet.subbands(shape):
        covered[box] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("shape", [(1, 1000), (3, 37, 53), (2, 9, 17, 23)])
def test_codes_round_trip(shape):
    rng = np.random.default_rng(1)
    levels = transform.levels_for(shape, len(shape) - 1)
    q = np.rint(rng.laplace(size=shape) * 3).astype(np.int32)
    q.reshape(-1)[::97] = 40000  # escaped codes
    stream, escapes, radii = subband.encode(q, levels)
    assert np.array_equal(subband.decode(stream, escapes, radii, shape, levels), q)


CASES = [((1001,), 1), ((37, 53), 2), ((9, 17, 23), 3), ((3, 200), 1), ((4, 30, 31), 2)]


@pytest.mark.parametrize("shape,ndim", CASES)
@pytest.mark.parametrize("quality", [35.0, 50.0])
def test_learned_mode_reaches_its_psnr(tmp_path, shape, ndim, quality):
    x = (_smooth(shape) + 0.1 * np.random.default_rng(2).standard_normal(shape)).astype(np.float32)
    path = str(tmp_path / "x.aez")
    r = aezip.compress(x, path, quality=quality, ndim=ndim)
    assert r.storage in ("transform", "raw")
    x_hat, d = aezip.decompress(path, write=False, original=x)
    assert x_hat.dtype == x.dtype and x_hat.shape == x.shape
    if r.storage == "transform":
        assert d.measured.psnr >= quality
        assert d.measured.mse == pytest.approx(r.mse, rel=1e-12)  # the decoder repeats the encoder's figures
    assert r.bound is None  # measured, not guaranteed


def test_default_quality_is_45_db_and_transform_is_the_default(tmp_path):
    x = _smooth((200, 300)).astype(np.float32)
    r = aezip.compress(x, str(tmp_path / "x.aez"))
    assert r.storage == "transform"
    assert 45.0 <= r.psnr <= 45.0 + 0.3
    e = aezip.info(str(tmp_path / "x.aez"))
    assert e.format_version >= 5 and e.arrays[0].codec.transform == "cdf97"


def test_integer_valued_floats_decode_to_integers(tmp_path):
    x = np.rint(_smooth((128, 128)) * 0.3).astype(np.float32)
    path = str(tmp_path / "x.aez")
    aezip.compress(x, path, quality=60)
    x_hat, _ = aezip.decompress(path, write=False)
    c = aezip.info(path).arrays[0].codec
    assert c.integer and np.array_equal(x_hat, np.rint(x_hat))


def test_slabs_decode_the_same_with_any_threads(tmp_path):
    """An array in several slabs (small --memory) codes to the same streams with 1 and 2
    threads, and decodes to the same values with 1 and 2 threads and in a region."""
    x = _smooth((96, 200)).astype(np.float32)
    paths = []
    for threads in (1, 2):
        p = str(tmp_path / f"t{threads}.aez")
        aezip.compress(x, p, memory=2 << 20, threads=threads, quality=40)
        paths.append(p)
    c1, c2 = (aezip.info(p) for p in paths)
    assert len(c1.arrays) > 1, "the test needs slabs"
    assert [a.codec for a in c1.arrays] == [a.codec for a in c2.arrays]
    a1, _ = aezip.decompress(paths[0], write=False, threads=1)
    a2, _ = aezip.decompress(paths[0], write=False, threads=2)
    assert np.array_equal(a1, a2)
    region, _ = aezip.decompress(paths[0], write=False, region=[(10, 70), (5, 150)])
    assert np.array_equal(region, a1[10:70, 5:150])


def test_nan_stays_in_place(tmp_path):
    x = _smooth((64, 80)).astype(np.float32)
    x[3, 4] = np.nan
    x[10:12, :] = np.inf
    path = str(tmp_path / "x.aez")
    r = aezip.compress(x, path)
    x_hat, _ = aezip.decompress(path, write=False)
    assert r.storage == "transform"
    assert np.isnan(x_hat[3, 4]) and np.isposinf(x_hat[10:12]).all()
    valid = np.isfinite(x)
    assert np.isfinite(x_hat[valid]).all()


def test_quality_is_checked():
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(aezip.UsageError):
        aezip.compress(x, "/tmp/never.aez", quality=-3)
    with pytest.raises(aezip.UsageError):
        aezip.compress(x, "/tmp/never.aez", quality=40, rel=1e-3)


def _forge(path, edit):
    with h5py.File(path, "r+") as f:
        d = f["array_0"]
        record = json.loads(d.attrs["record"])
        edit(record)
        d.attrs.modify("record", np.bytes_(json.dumps(record)))
        if "record_crc32" in d.attrs:  # keep the record's own checksum valid: the decoder's checks must refuse it
            import zlib

            d.attrs.modify("record_crc32", np.uint32(zlib.crc32(d.attrs["record"]) & 0xFFFFFFFF))


@pytest.mark.parametrize("edit", [
    lambda r: r["codec"].update(levels=40),
    lambda r: r["codec"].update(levels=r["codec"]["levels"] + 1),
    lambda r: r["codec"].update(transform="haar"),
    lambda r: r["codec"].update(step=-1.0),
    lambda r: r["codec"].update(ndim=1),
    lambda r: r["codec"].update(offset=float("nan")),
    lambda r: r["streams"][0].__setitem__(0, "values"),
    lambda r: r["codec"].update(symbols_crc32=(r["codec"]["symbols_crc32"] + 1) % 2**32),
    lambda r: r["codec"].update(storage="bounded", mode="abs"),
])
def test_forged_transform_records_are_refused(tmp_path, edit):
    x = _smooth((64, 64)).astype(np.float32)
    path = str(tmp_path / "x.aez")
    aezip.compress(x, path)
    _forge(path, edit)
    with pytest.raises(ContainerError):
        aezip.decompress(path, write=False)


@pytest.mark.parametrize("damage", [
    lambda b: b[:3],  # ends inside the header
    lambda b: bytes([200]) + b[1:],  # more coding steps than subbands
    lambda b: b[:1] + bytes([0xFF] * 12) + b[13:],  # a number that never ends
])
def test_damaged_code_headers_are_refused(damage):
    x = _smooth((40, 40))
    vr = float(np.ptp(x))
    c, _ = transform.encode(x, 2, vr * vr * 1e-4, vr, False)
    args = dict(offset=c.offset, step=c.step, levels=c.levels, integer=c.integer, crc32=c.crc32)
    n = transform.n_bands(x.shape, 2, c.levels)
    assert transform.Coded.unpack(c.pack(), n, **args) == c
    with pytest.raises(ContainerError):
        transform.decode(transform.Coded.unpack(damage(c.pack()), n, **args), x.shape, 2)


def test_ratio_beats_a_plain_bound_on_a_smooth_field(tmp_path):
    """At equal PSNR the transform coder's file is smaller than --psnr's on a smooth field
    (the reason it is the plain learned mode's engine)."""
    x = _smooth((256, 256)).astype(np.float32)
    r_t = aezip.compress(x, str(tmp_path / "t.aez"), quality=45)
    r_b = aezip.compress(x, str(tmp_path / "b.aez"), psnr=r_t.psnr)
    assert r_b.psnr >= r_t.psnr - 0.01
    assert r_t.compressed_bytes < r_b.compressed_bytes
    assert math.isfinite(r_t.psnr)


def test_latents_export(tmp_path, capsys):
    from aezip.cli import main

    x = _smooth((3, 64, 48)).astype(np.float32)
    path = str(tmp_path / "x.aez")
    aezip.compress(x, path, ndim=2)
    z = aezip.latents(path)
    codes = {k: v for k, v in z.items() if not k.endswith("/step")}
    c = aezip.info(path).arrays[0].codec
    assert len(codes) == len(subband.bands((64, 48), c.levels))
    assert sum(v.size for v in codes.values()) == x.size  # a complete basis: one code per value
    assert all(v.dtype == np.int32 and v.shape[0] == 3 for v in codes.values())
    assert float(z["array/level1_HH/step"]) == c.step
    out = tmp_path / "z.npz"
    assert main(["latents", path, "-o", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        assert np.array_equal(f["array/level1_HH"], z["array/level1_HH"])
    aezip.compress(x, str(tmp_path / "b.aez"), rel=1e-3)
    assert main(["latents", str(tmp_path / "b.aez"), "-o", str(tmp_path / "b.npz")]) == 2
    assert "holds no latent codes" in capsys.readouterr().err and not (tmp_path / "b.npz").exists()


def test_latents_of_the_conv_autoencoder(tmp_path):
    x = _smooth((64, 64)).astype(np.float32)
    path = str(tmp_path / "c.aez")
    aezip.compress(x, path, model="conv-ae-v1")
    z = aezip.latents(path)
    c = aezip.info(path).arrays[0].codec
    channels = [k for k in z if not k.endswith("/step")]
    assert len(channels) == c.latent_shape[1]
    assert z["array/channel0"].shape == (c.latent_shape[0],) + tuple(c.latent_shape[2:])


def test_architectures_register_by_name():
    from aezip.codec import architecture

    @architecture.register_model("test-uniform")
    class Uniform(architecture.CompressionModel):
        """x quantized with the step, the codes stored as int32: the smallest architecture."""

        def compress(self, x, step):
            q = np.rint(x / step).astype("<i4")
            return architecture.Latents(streams={"q": q.tobytes()}, fields={"step": step}, shape=x.shape)

        def decompress(self, latents):
            q = np.frombuffer(latents.streams["q"], "<i4").reshape(latents.shape)
            return q * latents.fields["step"]

        def latent_codes(self, latents):
            return {"q": (np.frombuffer(latents.streams["q"], "<i4"), latents.fields["step"])}

    x = _smooth((50, 40))
    model = architecture.get_model("test-uniform", ndim=2)
    target = float(np.ptp(x)) ** 2 * 1e-4
    latents, x_hat = model.compress_to(x, target, float(np.ptp(x)))
    assert np.mean((x - x_hat) ** 2) <= target
    assert np.mean((x - model.decompress(model.compress(x, latents.fields["step"] * 1.1))) ** 2) > target * 0.9
    assert "cdf97" in architecture.architectures() and "test-uniform" in architecture.architectures()
    with pytest.raises(ContainerError, match="'nope'"):
        architecture.get_model("nope", ndim=2)
    coder = architecture.get_model(architecture.DEFAULT, ndim=2)
    f = coder.forward(x, 0.5)
    assert f.x_hat.shape == x.shape and f.bits > 0


def test_no_seam_at_slab_boundaries(tmp_path):
    """A field coded in slabs (a small --memory) has no larger errors near the slabs'
    boundaries than elsewhere: each slab is coded with its neighbours' rows."""
    x = _smooth((256, 384), seed=5).astype(np.float32)
    path = str(tmp_path / "x.aez")
    aezip.compress(x, path, memory=4 << 20, quality=40)
    c = aezip.info(path)
    starts = [a.slab[0] for a in c.arrays][1:]
    assert len(starts) >= 2 and all(a.codec.halo for a in c.arrays)
    x_hat, _ = aezip.decompress(path, write=False)
    rows = np.mean((x.astype(np.float64) - x_hat) ** 2, axis=1)
    near = np.concatenate([rows[s - 4 : s + 4] for s in starts])
    assert near.mean() <= 1.25 * rows.mean()
    assert aezip.decompress(path, write=False, region=[(starts[0] - 3, starts[0] + 3), (0, 384)])[0].tolist() \
        == x_hat[starts[0] - 3 : starts[0] + 3].tolist()


@pytest.mark.parametrize("edit", [
    lambda r: r["codec"].update(halo=[5000, 0]),
    lambda r: r["codec"].update(halo=[1]),
])
def test_forged_halos_are_refused(tmp_path, edit):
    x = _smooth((256, 384), seed=5).astype(np.float32)
    path = str(tmp_path / "x.aez")
    aezip.compress(x, path, memory=4 << 20, quality=40)
    _forge(path, edit)
    with pytest.raises(ContainerError):
        aezip.decompress(path, write=False)


EXTREMES = {
    "one value": np.array([3.5]),
    "two values": np.array([1.0, 2.0], np.float32),
    "1x1x1": np.full((1, 1, 1), 2.5) + np.zeros((1, 1, 1)),
    "subnormal range": np.random.default_rng(6).standard_normal((40, 40)) * 1e-310,
    "range near 1e-250": 1.0e-250 * np.cumsum(np.random.default_rng(7).standard_normal(3000)),
    "range near 1e150": 1.0e150 * np.cumsum(np.random.default_rng(8).standard_normal(3000)),
    "white noise": np.random.default_rng(9).standard_normal((64, 64)),
    "steps": np.repeat(np.arange(50.0), 40),
    "5-D": np.cumsum(np.random.default_rng(10).standard_normal((2, 3, 4, 5, 6)), -1),
}


@pytest.mark.parametrize("name", sorted(EXTREMES))
@pytest.mark.parametrize("quality", [20.0, 45.0, 90.0])
def test_extreme_arrays_reach_the_target_or_are_stored_exactly(tmp_path, name, quality):
    x = EXTREMES[name]
    path = str(tmp_path / "x.aez")
    r = aezip.compress(x, path, quality=quality)
    x_hat, d = aezip.decompress(path, write=False, original=x)
    assert x_hat.shape == x.shape and np.isfinite(x_hat).all()
    assert d.measured.psnr is None or d.measured.psnr >= quality
    assert r.storage in ("transform", "raw", "constant")
