"""Error-bounded modes: the bound holds on every value, whatever the data and the machine."""

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import aezip
from aezip.codec import bounded, interp
from aezip.codec.sample import sample_field
from aezip.codec.tile import tile_sums
from aezip.coding import DRIFT, PredictionDriftWarning
from aezip.container import FORMAT_VERSION, read_container
from common import edit_record, model_field


def check_bound(x, x_hat, e):
    finite = np.isfinite(x)
    assert np.all(np.abs(x[finite].astype(np.float64) - x_hat[finite].astype(np.float64)) <= e)
    a, b = x[~finite], x_hat[~finite]
    assert np.all((a == b) | (np.isnan(a) & np.isnan(b)))


shapes = st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), shape=shapes, dtype=st.sampled_from([np.float32, np.float64]),
       log_e=st.floats(-6, 1))
def test_abs_bound_holds_on_random_data(tmp_path_factory, data, shape, dtype, log_e):
    x = data.draw(arrays(dtype, shape, elements=st.floats(-1e4, 1e4, width=32)))
    e = 10.0**log_e * max(1.0, float(np.ptp(x)))
    p = str(tmp_path_factory.mktemp("h") / "x.aez")
    r = aezip.compress(x, p, abs=e)
    x_hat, _ = aezip.decompress(p, write=False)
    assert x_hat.dtype == x.dtype
    check_bound(x, x_hat, e if r.storage != "constant" else 0.0)


orders = st.sampled_from([interp.GROUPS, interp.DIAMOND])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), log_e=st.floats(-7, -1), order=orders,
       coarse=st.sampled_from([(), (2, 4), (3, 2), (1.5, 1)]))
def test_interp_decoder_repeats_the_encoder_bit_for_bit(shape, seed, log_e, order, coarse):
    x = np.cumsum(np.random.default_rng(seed).standard_normal(shape), axis=-1)
    e = 10.0**log_e
    coded, r_hat = interp.encode(x, e, order=order, coarse=coarse)

    def read(step, contexts):
        np.testing.assert_array_equal(contexts, coded.contexts[step])  # the decoder sees the same contexts
        return coded.codes[step], coded.exact[step]

    np.testing.assert_array_equal(
        interp.decode(read, shape, e, coded.levels, coded.predictors, weights=coded.weights, order=order,
                      coarse=coarse),
        r_hat)
    assert np.all(np.abs(x - r_hat) <= e)
    if coarse:  # the points of stride S or more (every index a multiple of S) within e / q
        grid = tuple(slice(None, None, int(coarse[1])) for _ in shape)
        assert np.all(np.abs(x - r_hat)[grid] <= e / coarse[0])


@pytest.mark.parametrize("order", [interp.GROUPS, interp.DIAMOND])
@pytest.mark.parametrize("shape", [(3001,), (97, 131), (21, 33, 40), (5, 40, 130)], ids=str)
def test_bands_do_not_change_the_coding(shape, order):
    """Coding band by band (to stay in the cache) gives the bits of coding the whole array
    at once; a thin slab is cut in bands along its longest axis."""
    assert interp._band_axis(shape) == (2 if shape == (5, 40, 130) else 0)
    _same_coding_in_bands(shape, 3, 1e-2, order=order)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=3).map(tuple), seed=st.integers(0, 2**31),
       log_e=st.floats(-5, -1), band=st.integers(1, 50), order=orders)
def test_bands_of_any_size_on_any_shape(shape, seed, log_e, band, order):
    _same_coding_in_bands(shape, seed, 10.0**log_e, band, order)


def _same_coding_in_bands(shape, seed, rel, band=7, order=interp.GROUPS):
    x = np.cumsum(np.random.default_rng(seed).standard_normal(shape), axis=0)
    e = rel * max(1.0, float(np.ptp(x)))
    whole, r_whole = interp.encode(x, e, dtype=np.float32, order=order, band=1 << 40)
    banded, r_banded = interp.encode(x, e, dtype=np.float32, order=order, band=band)
    assert r_whole.tobytes() == r_banded.tobytes() and whole.predictors == banded.predictors
    assert whole.weights == banded.weights
    for a, b in zip(whole.codes + whole.contexts + whole.exact, banded.codes + banded.contexts + banded.exact):
        assert a.tobytes() == b.tobytes()

    def read(step, contexts):
        return banded.codes[step], banded.exact[step]

    decoded = interp.decode(read, shape, e, banded.levels, banded.predictors, weights=banded.weights, order=order,
                            band=band)
    assert decoded.tobytes() == r_whole.tobytes()


@pytest.mark.parametrize("rel", [1e-2, 1e-3, 1e-4])
@pytest.mark.parametrize("shape", [(3000,), (97, 131), (20, 33, 40)], ids=str)
def test_rel_bound_on_smooth_fields(rel, shape, tmp_path):
    x = sample_field(shape, seed=1) * 7 + 3
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, rel=rel)
    e = rel * float(x.max() - x.min())
    assert r.bound == pytest.approx(e) and r.max_error_ratio <= 1
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    check_bound(x, x_hat, e)
    assert r2.measured_ratio == pytest.approx(r.max_error_ratio)
    assert x.nbytes / sum(r.stream_bytes.values()) > {1e-2: 8, 1e-3: 3, 1e-4: 2}[rel]


def test_nonfinite_restored_in_place(tmp_path):
    x = sample_field((50, 60), seed=2).astype(np.float64)
    x[3, 4], x[10, :5], x[-1, -1], x[20, 20] = np.nan, np.inf, -np.inf, np.nan
    for mode in ({"abs": 1e-3}, {}):
        p = str(tmp_path / f"x{len(mode)}.aez")
        aezip.compress(x, p, **mode)
        x_hat, _ = aezip.decompress(p, write=False)
        assert np.array_equal(np.isnan(x_hat), np.isnan(x))
        assert np.array_equal(x_hat[np.isinf(x)], x[np.isinf(x)])
        if mode:
            check_bound(x, x_hat, 1e-3)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_integers_lossless_by_default_and_bounded(dtype, tmp_path):
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -(10**6)), min(info.max, 10**6)
    x = np.clip(np.rint(sample_field((40, 50), seed=3) * (hi - lo) / 8 + (hi + lo) / 2), lo, hi).astype(dtype)
    p = str(tmp_path / "i.aez")
    r = aezip.compress(x, p)
    x_hat, _ = aezip.decompress(p, write=False)
    assert r.storage in ("bounded", "raw") and x_hat.dtype == x.dtype
    np.testing.assert_array_equal(x_hat, x)
    aezip.compress(x, p, abs=3, force=True)
    x_hat, _ = aezip.decompress(p, write=False)
    assert x_hat.dtype == x.dtype
    assert np.max(np.abs(x_hat.astype(np.int64) - x.astype(np.int64))) <= 3


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16])
def test_integers_at_the_limits_of_their_type_keep_the_bound(dtype, tmp_path):
    """A value within the bound of one at the type's limit may lie beyond it; such values are
    stored exactly instead of wrapping around in the cast."""
    info = np.iinfo(dtype)
    f = sample_field((120, 90), seed=5)
    x = np.clip(np.rint(f / np.abs(f).max() * (float(info.max) - info.min) + (float(info.max) + info.min) / 2),
                info.min, info.max).astype(dtype)
    assert np.count_nonzero(x == info.max) > 100 and np.count_nonzero(x == info.min) > 100
    p = str(tmp_path / "i.aez")
    for e in (1, 2, 7):
        assert aezip.compress(x, p, abs=e, force=True).storage == "bounded"
        x_hat, _ = aezip.decompress(p, write=False)
        assert np.max(np.abs(x_hat.astype(np.int64) - x.astype(np.int64))) <= e


def test_decoded_values_beyond_the_type_are_corruption(tmp_path):
    from common import edit_record

    x = np.rint(sample_field((40, 50), seed=3) * 20 + 150).astype(np.uint8)
    assert x.max() > 127
    p = str(tmp_path / "i.aez")
    aezip.compress(x, p, abs=2)

    def forge(record):  # the same codes, read back as int8: values above 127 do not fit
        record["dtype"] = "int8"

    edit_record(p, 0, forge)
    with pytest.raises(aezip.ContainerError, match="do not fit int8"):
        aezip.decompress(p, write=False)


def test_pw_rel_on_data_spanning_decades(tmp_path):
    rng = np.random.default_rng(4)
    x = (10.0 ** rng.uniform(-12, 3, 5000) * rng.choice([-1, 1], 5000)).astype(np.float32)
    x[::97] = 0
    x[5] = -0.0
    p = str(tmp_path / "p.aez")
    r = aezip.compress(x, p, pw_rel=1e-3)
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    assert np.all(np.abs(x.astype(np.float64) - x_hat) <= 1e-3 * np.abs(x.astype(np.float64)))
    assert np.array_equal(np.signbit(x_hat), np.signbit(x)) and np.all(x_hat[x == 0] == 0)
    assert r.max_error_ratio <= 1 and r2.measured_ratio <= 1


def test_psnr_mode_reaches_the_target(tmp_path):
    x = sample_field((128, 128), seed=5)
    for target in (40.0, 60.0, 80.0):
        p = str(tmp_path / f"s{target}.aez")
        r = aezip.compress(x, p, psnr=target)
        assert r.psnr >= target
        assert r.psnr < target + 0.5  # the loosest bound, not a needlessly tight one


def test_psnr_mode_tightens_the_coarse_steps(tmp_path):
    """--psnr on a 2-D float field quantizes the steps of stride 4 or more within half its
    bound (format version 3); a smooth field then codes smaller at the same PSNR than with
    one bound everywhere. Other modes and 1-D arrays keep version 2."""
    x = sample_field((256, 256), seed=12).astype(np.float32)
    p = str(tmp_path / "x.aez")
    unfiltered = aezip.EncoderOptions(psnr_filter=False)  # its corrections would blur the coarse grid's bound
    r = aezip.compress(x, p, psnr=45, options=unfiltered)
    c = aezip.info(p)
    assert c.format_version == FORMAT_VERSION and c.arrays[0].codec.coarse == [2, 4]
    x_hat, r2 = aezip.decompress(p, write=False)
    check_bound(x, x_hat, r.bound)
    d = np.abs(x.astype(np.float64) - x_hat)
    assert d[::4, ::4].max() <= r.bound / 2 and r2.psnr == pytest.approx(r.psnr) and r.psnr >= 45
    flat = aezip.compress(x, str(tmp_path / "flat.aez"), psnr=45,
                          options=aezip.EncoderOptions(psnr_filter=False, psnr_coarse=()))
    assert flat.psnr >= 45 and r.compressed_bytes < flat.compressed_bytes
    assert not aezip.info(str(tmp_path / "flat.aez")).arrays[0].codec.coarse
    for y, kwargs in ((x, {"rel": 1e-3}), (x[0], {"psnr": 45})):
        aezip.compress(y, p, force=True, **kwargs)
        assert not aezip.info(p).arrays[0].codec.coarse


@pytest.mark.parametrize("mode, coarse, match", [
    ({"rel": 1e-3}, [2, 4], "later format version"),  # in a container made version 2
    ({"psnr": 40}, [0.5, 4], "coarse"),
    ({"psnr": 40}, [2, 3], "coarse"),
])
def test_forged_coarse_keys_are_refused(tmp_path, mode, coarse, match):
    """``coarse`` only in a version-3 container, with a divisor of at least 1 and a stride
    that is a power of two."""
    p = str(tmp_path / "x.aez")
    aezip.compress(sample_field((64, 64), seed=13), p, **mode)
    edit_record(p, 0, lambda rec: rec["codec"].update(coarse=coarse))
    if match == "later format version":
        import h5py

        with h5py.File(p, "r+") as f:
            f.attrs["format_version"] = np.int32(2)
    with pytest.raises(aezip.ContainerError, match=match):
        aezip.decompress(p, write=False)


def test_post_filter_takes_back_error_within_its_clip():
    """The fitted filter lowers the error of a noisy decode, moves no value by more than
    its clip, keeps the values within the decoded range, and gives the same bits whatever
    the block size it works in."""
    from aezip.codec import postfilter

    rng = np.random.default_rng(3)
    for shape in ((4000,), (90, 70), (20, 18, 16)):
        x = sample_field(shape, seed=len(shape)).astype(np.float64)
        e = 0.05 * float(x.max() - x.min())
        f = x + rng.uniform(-e, e, shape)
        w = postfilter.fit(x, f)
        assert len(w) == len(postfilter.taps(len(shape))) and all(isinstance(v, int) for v in w)
        g = postfilter.apply(f, w, postfilter.clip(e, False))
        assert np.mean((g - x) ** 2) < 0.8 * np.mean((f - x) ** 2)
        assert np.abs(g - f).max() <= e / 2 * (1 + 1e-12) and f.min() <= g.min() and g.max() <= f.max()
        blocks, postfilter.BLOCK_VALUES = postfilter.BLOCK_VALUES, 7
        try:
            assert postfilter.apply(f, w, e / 2).tobytes() == g.tobytes()
        finally:
            postfilter.BLOCK_VALUES = blocks
    with pytest.raises(ValueError, match="weights"):
        postfilter.apply(f, w[:-1], e)
    assert postfilter.clip(5.0, True) == 2.0 and postfilter.clip(1.0, True) == 0.0


FILTERED = (sample_field((200, 180), seed=21) * 3).astype(np.float32)  # --psnr 45 filters it


def test_post_filter_taps_follow_the_spec():
    """The differences the filter weighs are f[n + o_j] - f[n], taps in lexicographic order
    (-3..3 in 1-D), indices clamped to the array (format v4 §2)."""
    from aezip.codec import postfilter

    assert postfilter.taps(1) == [(-3,), (-2,), (-1,), (1,), (2,), (3,)]
    assert postfilter.taps(2)[:3] == [(-1, -1), (-1, 0), (-1, 1)] and len(postfilter.taps(3)) == 26
    for shape in ((7,), (5, 4), (3, 4, 2)):
        f = np.random.default_rng(len(shape)).normal(size=shape)
        idx = np.indices(shape)
        expected = [(f[tuple(np.clip(idx[k] + o[k], 0, shape[k] - 1) for k in range(len(shape)))] - f).reshape(-1)
                    for o in postfilter.taps(len(shape))]
        assert np.array_equal(postfilter.differences(f), np.stack(expected, axis=1))


@pytest.mark.parametrize("x, target", [
    (FILTERED, 45),
    # a random walk with noise
    (np.rint(np.cumsum(np.random.default_rng(22).normal(size=200000)) * 20
             + np.random.default_rng(1).normal(size=200000) * 30).astype(np.int16), 45),
    # values at the ends of uint8: the filter must not push a decoded value past them
    (np.clip(np.rint(sample_field((120, 100), seed=23) * 120 + 128), 0, 255).astype(np.uint8), 38),
    (sample_field((30, 28, 26), seed=24).astype(np.float64), 45),
])
def test_psnr_mode_filters_after_decoding(tmp_path, x, target):
    """--psnr fits the post-filter (format version 4): the decoder repeats the encoder's
    values bit for bit, every value stays within the coding bound plus the clip (the
    figures' bound), the target is reached, and the file is smaller than without it."""
    from aezip.codec import postfilter

    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, psnr=target)
    c = aezip.info(p)
    e = c.arrays[0]
    assert c.format_version == FORMAT_VERSION and len(e.codec.filter) == len(postfilter.taps(x.ndim))
    integer = e.codec.integer or x.dtype.kind in "iu"
    assert e.figures.bound == e.codec.bound + postfilter.clip(e.codec.bound, integer)
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    check_bound(x, x_hat, r.bound)
    assert r.psnr >= target and r2.measured.psnr == r.psnr and r2.measured.max_abs_error == r.max_abs_error
    plain = aezip.compress(x, str(tmp_path / "plain.aez"), psnr=target, options=aezip.EncoderOptions(psnr_filter=False))
    assert plain.psnr >= target and r.compressed_bytes < plain.compressed_bytes


def test_post_filter_is_left_out_where_its_weights_outweigh_it(tmp_path):
    """On a small smooth array the filter's weights in the record would cost more than it
    saves: the search is run again without it and the smaller file kept."""
    x = np.rint(sample_field((5000,), seed=22) * 2000).astype(np.int16)
    r = aezip.compress(x, str(tmp_path / "x.aez"), psnr=45)
    plain = aezip.compress(x, str(tmp_path / "plain.aez"), psnr=45, options=aezip.EncoderOptions(psnr_filter=False))
    assert r.psnr >= 45 and not aezip.info(str(tmp_path / "x.aez")).arrays[0].codec.filter
    assert r.stream_bytes == plain.stream_bytes  # the file sizes may differ by the digits of the seconds taken


def test_post_filter_only_in_psnr_mode(tmp_path):
    """--rel, --abs and --pw-rel never filter: they promise their bound, which the filter
    may exceed; their containers hold no filter key."""
    x = sample_field((128, 128), seed=25)
    p = str(tmp_path / "x.aez")
    for mode, e in (({"rel": 1e-2}, None), ({"abs": 0.05}, 0.05), ({"pw_rel": 1e-2}, None)):
        r = aezip.compress(x, p, force=True, **mode)
        c = aezip.info(p)
        assert not c.arrays[0].codec.filter
        assert e is None or r.bound == e


@pytest.mark.parametrize("mode, change, match", [
    ({"psnr": 45}, lambda c: c.update(filter=c["filter"][:-1]), "filter's weights"),
    ({"psnr": 45}, lambda c: c.update(filter=[1 << 15] + c["filter"][1:]), "filter's weights"),
    ({"psnr": 45}, lambda c: c.update(filter=[0.5] * len(c["filter"])), "filter"),
    ({"rel": 1e-3}, lambda c: c.update(filter=[1] * 8), "filter"),  # --rel promises its bound
])
def test_forged_filter_keys_are_refused(tmp_path, mode, change, match):
    p = str(tmp_path / "x.aez")
    aezip.compress(FILTERED, p, **mode)
    edit_record(p, 0, lambda rec: change(rec["codec"]))
    with pytest.raises(aezip.ContainerError, match=match):
        aezip.decompress(p, write=False)


def test_filter_in_a_version_3_container_is_refused(tmp_path):
    p = str(tmp_path / "x.aez")
    aezip.compress(FILTERED, p, psnr=45)
    import h5py

    with h5py.File(p, "r+") as f:
        f.attrs["format_version"] = np.int32(3)
    with pytest.raises(aezip.ContainerError, match="later format version"):
        aezip.decompress(p, write=False)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_psnr_mode_on_integer_values(dtype, tmp_path):
    """Integer residuals move the bound in whole steps: the search still ends at or above
    the target, on an integer array and on floats holding integers."""
    x = np.rint(sample_field((96, 80), seed=9) * 300).astype(dtype)
    for target in (30.0, 45.0, 150.0):  # 150 dB: lossless
        p = str(tmp_path / "x.aez")
        r = aezip.compress(x, p, psnr=target, force=True)
        assert r.psnr is None or r.psnr >= target
        x_hat, _ = aezip.decompress(p, write=False)
        check_bound(x, x_hat, r.bound)


def test_constant_array_any_mode(tmp_path):
    x = np.full((30, 30), 2.5)
    p = str(tmp_path / "c.aez")
    r = aezip.compress(x, p, rel=1e-3)
    x_hat, _ = aezip.decompress(p, write=False)
    assert r.storage == "constant" and np.array_equal(x_hat, x)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"abs": -1.0}, aezip.UsageError, "positive"),
    ({"rel": float("nan")}, aezip.UsageError, "finite"),
    ({"abs": 0.0}, aezip.UsageError, "integer arrays accept --abs 0"),
    ({"abs": 1e-3, "rel": 1e-3}, aezip.UsageError, "conflict"),
    ({"pw_rel": 2.0}, aezip.UsageError, "pw-rel"),
])
def test_bad_bounds(kwargs, error, match, tmp_path):
    p = tmp_path / "x.aez"
    with pytest.raises(error, match=match):
        aezip.compress(sample_field((20, 20)), str(p), **kwargs)
    assert not p.exists()


def test_bound_on_empty_data(tmp_path):
    with pytest.raises(aezip.UnsupportedDataError, match="empty"):
        aezip.compress(np.zeros((0,), np.float32), str(tmp_path / "x.aez"), abs=1.0)


def test_perturbed_base_keeps_the_bound():
    """A decoder whose model prediction drifts by up to the margin still keeps the bound
    (the residuals are coded within the bound less the margin)."""
    rng = np.random.default_rng(6)
    x = sample_field((80, 90), seed=6).astype(np.float64)
    base = x + rng.normal(0, 0.05, x.shape)  # an imperfect prediction
    e, margin = 1e-3, 1e-4
    res, x_hat = bounded.encode(x, e - margin, dtype=np.float32, integer=False, base=base)
    for drift in (margin, -margin, rng.uniform(-margin, margin, x.shape)):
        x_hat2 = bounded.decode(res, x.shape, e - margin, integer=False, base=base + drift).astype(np.float32)
        check_bound(x, x_hat2, e)


def _decode_with_drift(p, x, bound, monkeypatch):
    """Perturb the network's output at decode time: within the allowed drift the bound
    holds; beyond it the decoder warns."""
    from aezip.model.runtime import Model

    original = Model.decode
    allowed = DRIFT  # in the network's normalized units: margin = DRIFT x scale in data units

    def drifting(self, y_hat, progress=None, amount=0.9 * allowed):
        out = original(self, y_hat, progress)
        return out + np.float32(amount) * np.sign(np.random.default_rng(0).standard_normal(out.shape)).astype(np.float32)

    monkeypatch.setattr(Model, "decode", drifting)
    x_hat, _ = aezip.decompress(p, write=False)
    check_bound(x, x_hat, bound)
    monkeypatch.setattr(Model, "decode", lambda self, y, progress=None: drifting(self, y, progress, 1000 * allowed))
    with pytest.warns(PredictionDriftWarning):
        aezip.decompress(p, write=False)


FORCE_MODEL = aezip.EncoderOptions(keep_model=True, may_pay=float("inf"))  # the model's prediction, paying or not


def test_model_drift_in_the_full_pipeline(tmp_path, monkeypatch):
    x = sample_field((128, 128), seed=7) * 10
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, rel=1e-2, options=FORCE_MODEL)
    assert aezip.info(p).arrays[0].codec.base == "model"
    _decode_with_drift(p, x, r.bound, monkeypatch)


TRY_MODEL = aezip.EncoderOptions(try_model=True)  # the default model's figures say it cannot pay


@pytest.fixture(scope="module")
def half_model_field():
    return model_field((128, 256), 128)


def test_the_model_predicts_only_the_tiles_where_it_pays(half_model_field, tmp_path, monkeypatch):
    """Left half: the model's own output (its latents reproduce it), right half: a ramp.
    The model's prediction is kept on left tiles only, its latents are those tiles' only,
    the file is smaller than without the model, and the bound holds, also under drift."""
    x = half_model_field
    classical = aezip.compress(x, str(tmp_path / "c.aez"), rel=1e-3, options=aezip.EncoderOptions(try_model=False))
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, rel=1e-3, options=TRY_MODEL)
    e = aezip.info(p).arrays[0]
    assert e.codec.base == "tiles" and e.tiles == 8
    flags = np.unpackbits(read_container(p).arrays[0].streams["tiles"], count=8).astype(bool).reshape(2, 4)
    assert flags[:, :2].any() and not flags[:, 2:].any()
    assert e.codec.latent_shape[0] == flags.sum()
    assert r.compressed_bytes < classical.compressed_bytes
    assert r.bound == classical.bound and e.codec.bound == r.bound - e.codec.margin
    x_hat, _ = aezip.decompress(p, write=False)
    check_bound(x, x_hat, r.bound)
    _decode_with_drift(p, x, r.bound, monkeypatch)


@pytest.mark.parametrize("change, match", [
    (lambda c: c.update(base="blocks"), "upgrade aezip"),
    (lambda c: c.update(base="model"), "latent shape"),
    (lambda c: c.update(latent_shape=[8] + c["latent_shape"][1:]), "latent shape"),
])
def test_forged_tile_records_are_refused(half_model_field, tmp_path, change, match):
    p = str(tmp_path / "x.aez")
    aezip.compress(half_model_field, p, rel=1e-3, options=TRY_MODEL)
    edit_record(p, 0, lambda rec: change(rec["codec"]))
    with pytest.raises(aezip.ContainerError, match=match):
        aezip.decompress(p, write=False)


def test_model_is_not_run_on_everything_when_a_sample_says_it_cannot_pay(tmp_path, monkeypatch):
    """A smooth field at a loose bound: interpolation costs a few bytes, the model's latents
    alone cost more; a sample of tiles shows it, and the model never sees the whole array."""
    from aezip import coding

    x = sample_field((256, 256), seed=8)
    e = 1e-2 * float(np.ptp(x))
    model = coding.Models(None, "cpu").for_ndim(2)
    res = bounded.encode(x.astype(np.float64), e, dtype=np.float32, integer=False, bits=True)[0]
    classical = tile_sums(res.bits[None], model.tile)
    estimate, k = coding.sampled_model_bits(x, 2, model, e)
    assert np.all(estimate > TRY_MODEL.may_pay * classical[::k])

    def whole_array(*a, **k):
        raise AssertionError("the model ran on the whole array")

    monkeypatch.setattr(coding, "run_model", whole_array)
    r = aezip.compress(x, str(tmp_path / "x.aez"), rel=1e-2, options=TRY_MODEL)
    assert r.max_error_ratio <= 1


def test_float32_rounding_near_the_bound(tmp_path):
    """Large values with a bound near float32's spacing: the cast must not break it."""
    x = (np.linspace(1e6, 1e6 + 1, 4000) + np.sin(np.arange(4000))).astype(np.float32)
    e = 0.06  # float32 spacing at 1e6 is 0.0625
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, abs=e)
    x_hat, _ = aezip.decompress(p, write=False)
    check_bound(x, x_hat, e)


def test_decoding_with_other_thread_counts(tmp_path):
    import torch

    x = sample_field((150, 150), seed=8) * 3
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, rel=1e-2)
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(aezip.decompress(p, write=False)[0])
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


def test_declared_fill_values_are_kept_and_left_out_of_the_figures(tmp_path):
    """A NetCDF-style _FillValue / missing_value is not data: kept exactly, out of the range and errors."""
    import h5py

    x = sample_field((60, 70), seed=9).astype(np.float32)
    x[:10, :10] = -9999.0
    x[30, 30] = 1e20
    src = tmp_path / "f.h5"
    with h5py.File(src, "w") as f:
        ds = f.create_dataset("sst", data=x)
        ds.attrs["_FillValue"] = np.float32(-9999.0)
        ds.attrs["missing_value"] = np.float32(1e20)
    aez = str(tmp_path / "f.aez")
    r = aezip.compress(str(src), aez, rel=1e-3)
    valid = (x != -9999.0) & (x != 1e20)
    vrange = float(x[valid].max() - x[valid].min())
    assert r.bound == pytest.approx(1e-3 * vrange)  # the range of the data, not of the fill values
    x_hat, r2 = aezip.decompress(aez, write=False, original=str(src))
    assert np.array_equal(x_hat[~valid], x[~valid])
    check_bound(x[valid], x_hat[valid], r.bound)
    assert r2.measured.psnr == pytest.approx(r.psnr) and r2.measured_ratio <= 1


def _anisotropic(shape=(16, 48, 40), seed=3):
    """Smooth along axes 1 and 2, rough (uncorrelated slices) along axis 0."""
    rng = np.random.default_rng(seed)
    return sample_field(shape[1:], seed=seed)[None] * 5 + rng.normal(0, 2, (shape[0], 1, 1))


def test_rough_axis_is_left_out_of_the_averaging(tmp_path):
    """Points odd along several axes may be interpolated along the smoother ones only."""
    x = _anisotropic()
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, abs=1e-3, ndim=3)  # left alone, the axis choice codes these slices as a batch
    codec = aezip.info(p).arrays[0].codec
    assert codec.interpolation == interp.GROUPS
    assert any(q >= interp.ALONG for q in codec.predictors)
    x_hat, _ = aezip.decompress(p, write=False)
    check_bound(x, x_hat, 1e-3)


@pytest.mark.parametrize("predictor", [3, -1, interp.ALONG * 3 + interp.CUBIC, interp.ALONG * 4 + interp.LINEAR,
                                       interp.ALONG * 6 + interp.MEAN])
def test_forged_predictor_is_corruption(tmp_path, predictor):
    """A predictor that does not fit its step (unknown, or along axes the step is not odd on)."""
    from common import edit_record

    x = sample_field((20, 24), seed=2)
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, abs=1e-3)

    def forge(record):  # the last step is the group odd on both axes (0, 1)
        record["codec"]["predictors"][-1] = predictor

    edit_record(p, 0, forge)
    with pytest.raises(aezip.ContainerError, match="predictor"):
        aezip.decompress(p, write=False)


@pytest.mark.parametrize("wrong", ["none", "one short", "out of range"])
def test_fitted_step_with_wrong_weights_is_corruption(tmp_path, wrong):
    """A FITTED step needs one integer weight per neighbour, each below FIT_LIMIT."""
    from common import edit_record

    x = sample_field((20, 24), seed=2)
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, abs=1e-3)
    n = len(interp._fit_offsets(2, interp.Pass(1, (0, 1), order=interp.GROUPS)))
    weights = {"none": [], "one short": [0] * (n - 1), "out of range": [0] * (n - 1) + [interp.FIT_LIMIT]}[wrong]

    def forge(record):  # the last step is the group odd on both axes (0, 1)
        record["codec"]["predictors"] = [interp.CUBIC if q == interp.FITTED else q
                                         for q in record["codec"]["predictors"][:-1]] + [interp.FITTED]
        record["codec"]["weights"] = weights

    edit_record(p, 0, forge)
    with pytest.raises(aezip.ContainerError, match="predictors do not fit"):
        aezip.decompress(p, write=False)


def test_fitted_weights_decode_on_a_long_series(tmp_path):
    """A band-limited series takes least-squares weights, stored as integers, and keeps its bound."""
    t = np.arange(20000)
    x = np.sin(t * 0.9) * 3 + np.sin(t * 0.31) + np.random.default_rng(5).normal(0, 0.05, t.size)
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, rel=1e-2)
    codec = aezip.info(p).arrays[0].codec
    assert interp.FITTED in codec.predictors and codec.weights
    x_hat, _ = aezip.decompress(p, write=False)
    check_bound(x, x_hat, 1e-2 * float(np.ptp(x)))


@pytest.mark.parametrize("shape", [(256, 256), (200, 120)], ids=str)
def test_diamond_order_on_a_smooth_field_at_a_loose_bound(shape, tmp_path):
    """Smooth fields at loose bounds take the diamond-square order: every point interpolated
    along two or more directions (format v2 §4c); the bound holds."""
    x = sample_field(shape, seed=2) * 3
    e = 1e-2 * float(np.ptp(x))
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, abs=e)
    codec = aezip.info(p).arrays[0].codec
    assert codec.interpolation == interp.DIAMOND
    x_hat, _ = aezip.decompress(p, write=False)
    check_bound(x, x_hat, e)
    forced = str(tmp_path / "groups.aez")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bounded, "choose_orders", lambda *args, **kwargs: [interp.GROUPS])
        aezip.compress(x, forced, abs=e)
    assert os.path.getsize(p) < os.path.getsize(forced)


def test_order_is_chosen_only_where_there_is_a_choice():
    """In 1-D both orders are the same; the choice looks at a central crop of large arrays."""
    assert bounded.choose_orders(np.arange(50.0), 0.1, integer=False) == [interp.GROUPS]
    crop = bounded._crop((1000, 300, 7), 1 << 16)
    assert np.prod([c.stop - c.start for c in crop]) <= 1 << 16
    assert all(abs(c.start + c.stop - n) <= 1 for c, n in zip(crop, (1000, 300, 7)))  # centred


@pytest.mark.parametrize("predictor", [interp.ALONG * 1 + interp.CUBIC, interp.ALONG * 3 + interp.LINEAR, 7])
def test_forged_predictor_in_the_diamond_order_is_corruption(tmp_path, predictor):
    from common import edit_record

    x = sample_field((200, 120), seed=2)
    p = str(tmp_path / "x.aez")
    aezip.compress(x, p, rel=1e-2)
    assert aezip.info(p).arrays[0].codec.interpolation == interp.DIAMOND

    def forge(record):
        record["codec"]["predictors"][-1] = predictor

    edit_record(p, 0, forge)
    with pytest.raises(aezip.ContainerError, match="predictor"):
        aezip.decompress(p, write=False)


def test_close_estimates_on_a_small_array_code_it_both_ways(monkeypatch):
    """When the estimates cannot tell the orders apart, a small array is coded in both and
    the smaller kept."""
    x = sample_field((60, 70), seed=9).astype(np.float64)
    sizes = {}
    for order in (interp.GROUPS, interp.DIAMOND):
        monkeypatch.setattr(bounded, "choose_orders", lambda *args, order=order, **kwargs: [order])
        sizes[order] = bounded._bytes(bounded.encode(x, 1e-2, dtype=np.float32, integer=False)[0])
    monkeypatch.undo()
    monkeypatch.setattr(interp, "estimate", lambda *args, **kwargs: 1000.0)
    assert bounded.choose_orders(x, 1e-2, integer=False) == [interp.GROUPS, interp.DIAMOND]
    assert bounded._bytes(bounded.encode(x, 1e-2, dtype=np.float32, integer=False)[0]) == min(sizes.values())


@pytest.mark.parametrize("mode", [{"rel": 1e-3}, {"rel": 0.3}, {"pw_rel": 1e-2}], ids=str)
@pytest.mark.parametrize("case", ["float32 near its max", "float32 subnormal", "float64 subnormal",
                                  "float64 beyond 1e154", "float32 over 78 decades"])
def test_extreme_float_values_keep_the_bound(case, mode, tmp_path):
    """Values near the float type's limits: a reconstruction that would overflow, round too
    coarsely (subnormals) or square to more than float64 holds is stored exactly (numpy
    warnings are errors in this suite)."""
    rng = np.random.default_rng(1)
    sign = rng.choice([-1.0, 1.0], (40, 50))
    x = {"float32 near its max": rng.uniform(0.9, 1.0, (40, 50)) * float(np.finfo(np.float32).max) * sign,
         "float32 subnormal": rng.uniform(0, 1, (40, 50)) * 1e-40 * sign,
         "float64 subnormal": rng.uniform(0, 1, (40, 50)) * 1e-310 * sign,
         "float64 beyond 1e154": rng.uniform(0, 1, (40, 50)) * 1e300 * sign,
         "float32 over 78 decades": 10.0 ** rng.uniform(-40, 38, (40, 50)) * sign}[case]
    x = x.astype(np.float64 if case.startswith("float64") else np.float32)
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, **mode)
    x_hat, _ = aezip.decompress(p, write=False)
    d = np.abs(x_hat.astype(np.float64) - x.astype(np.float64))
    if "pw_rel" in mode:
        assert np.all(d <= mode["pw_rel"] * np.abs(x.astype(np.float64)))
    else:
        assert np.all(d <= r.bound)


MODES = [{}, {"abs": 1e-3}, {"rel": 1e-3}, {"psnr": 40.0}, {"pw_rel": 1e-2}]


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("case", ["range beyond float64", "constant with NaN", "constant with Inf",
                                  "constant with NaN and -Inf"])
def test_real_data_that_once_crashed_compress(case, mode, tmp_path):
    """A value range that overflows float64 (kept exactly), and a constant whose NaN or Inf
    made the mean fill differ from it in the last bit (its PSNR came out -inf, which the
    JSON record cannot hold): every mode stores them exactly."""
    x = {"range beyond float64": np.array([1e308, -1e308, 0.0]),
         "constant with NaN": np.array([np.nan] + [-918052.9521276106] * 14),
         "constant with Inf": np.array([np.inf] + [0.1] * 14, np.float32),
         "constant with NaN and -Inf": np.array([3.3, np.nan, -np.inf] * 5)}[case]
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, **mode)
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    assert r.storage == ("raw" if case.startswith("range") else "constant")
    np.testing.assert_array_equal(x_hat, x)
    assert x_hat.dtype == x.dtype
    assert r.psnr is None and r.max_abs_error == 0 and r2.measured.max_abs_error == 0
    json.dumps(r.to_json(), allow_nan=False)


@pytest.mark.parametrize("x", [np.array([240] + [255] * 20, np.uint8), np.array([30000] + [32767] * 20, np.int16),
                               np.array([-32768] * 20 + [-30000], np.int16), np.array([60000] + [65535] * 20, np.uint16),
                               np.array([100] + [127] * 20 + [-128] * 20, np.int8)], ids=lambda x: x.dtype.name)
def test_pw_rel_on_saturated_integers(x, tmp_path):
    """A value within r|x| of an integer at its type's limit may lie beyond it: such values
    are stored exactly (the decoder refused the container as corrupted)."""
    p = str(tmp_path / "x.aez")
    r = aezip.compress(x, p, pw_rel=0.05)
    x_hat, r2 = aezip.decompress(p, write=False, original=x)
    assert x_hat.dtype == x.dtype
    assert np.all(np.abs(x_hat.astype(np.int64) - x.astype(np.int64)) <= 0.05 * np.abs(x.astype(np.int64)))
    assert r.max_error_ratio <= 1 and r2.measured_ratio <= 1


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
@pytest.mark.parametrize("r", [0.01, 0.05, 0.2])
def test_pw_rel_on_integers_keeps_the_bound_after_rounding(dtype, r):
    """The codec beneath --pw-rel on integers (storage raw would hide it: on random
    integers it wins): the decoded value, rounded to an integer, stays within r|x|, which a
    value coded within r|x| in the log domain did not always (1-2 of 20,000 here)."""
    info = np.iinfo(dtype)
    x = np.random.default_rng(0).integers(info.min, int(info.max) + 1, 20000).astype(dtype)
    x[::7] = info.max
    xd = x.astype(np.float64)
    field, e, negative, zero = bounded.pw_forward(xd, r, integer=True)
    _, f_hat = bounded.encode(field, e, dtype=np.float64, integer=True, exact_where=bounded.pw_exact(xd, r, dtype))
    x_hat = np.rint(bounded.pw_inverse(f_hat, negative, zero))
    assert np.all(np.abs(x_hat - xd) <= r * np.abs(xd))
    assert info.min <= x_hat.min() and x_hat.max() <= info.max
