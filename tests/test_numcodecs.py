"""aezip as a numcodecs codec (aezip.numcodecs.AEZip, codec_id "aezip")."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

import numcodecs
import numpy as np
import pytest

from aezip.codec.sample import sample_field
from aezip.errors import ModelNotFoundError, UsageError
from aezip.numcodecs import AEZip

CONFIGS = [
    {"mode": "abs", "bound": 1e-3},
    {"mode": "pw_rel", "bound": 1e-2},
    {"mode": "psnr", "bound": 40.0},
    {"mode": "rel", "bound": 1e-3, "value_range": 12.0},
    {"mode": "learned"},
    {"mode": "abs", "bound": 0.5, "fill_value": -9999.0, "ndim": 2},
]


def _chunk(seed=0, shape=(48, 40)):
    x = sample_field(shape, seed=seed) * 3 + 10
    x[0, :4] = np.nan
    x[5, 5], x[6, 6] = np.inf, -9999.0
    return x


def _within(x, y, config):
    valid = np.isfinite(x) & (x != config.get("fill_value", np.nan))
    d = np.abs(x[valid].astype(np.float64) - y[valid])
    mode, bound = config["mode"], config.get("bound")
    if mode == "abs":
        return d.max() <= bound
    if mode == "rel":
        return d.max() <= bound * config["value_range"]
    if mode == "pw_rel":
        return bool(np.all(d <= bound * np.abs(x[valid].astype(np.float64))))
    if mode == "psnr":
        r = float(x[valid].max() - x[valid].min())
        return 20 * np.log10(r) - 10 * np.log10(np.mean(d**2)) >= bound
    return np.isfinite(d).all()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["mode"])
def test_registered_configured_and_within_bound(config):
    codec = numcodecs.get_codec({"id": "aezip", **config})  # found through the entry point
    assert isinstance(codec, AEZip)
    back = numcodecs.get_codec(codec.get_config())
    assert back.get_config() == codec.get_config() and back.get_config()["id"] == "aezip"
    x = _chunk()
    y = codec.decode(codec.encode(x))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.array_equal(np.isnan(y), np.isnan(x)) and y[5, 5] == np.inf
    if config.get("fill_value") is not None:
        assert y[6, 6] == -9999.0
    assert _within(x, y, config)


def test_decode_into_out_and_from_other_buffers():
    codec = AEZip(mode="abs", bound=1e-3)
    x = _chunk()
    b = codec.encode(x)
    out = np.empty_like(x)
    codec.decode(memoryview(b), out=out)
    assert np.array_equal(out, codec.decode(np.frombuffer(b, np.uint8)), equal_nan=True)


@pytest.mark.parametrize("bad,match", [
    ({"mode": "rel", "bound": 1e-3}, "needs value_range"),
    ({"mode": "abs", "bound": 1e-3, "value_range": 2.0}, "value_range applies to mode 'rel' only"),
    ({"mode": "abs"}, "needs a bound"),
    ({"mode": "learned", "bound": 1.0}, "takes no bound"),
    ({"mode": "max", "bound": 1.0}, "unknown mode"),
    ({"mode": "abs", "bound": -1.0}, "must be positive"),
    ({"mode": "abs", "bound": 1e-3, "ndim": 4}, "ndim must be 1, 2 or 3"),
])
def test_bad_settings_are_refused_at_construction(bad, match):
    with pytest.raises(UsageError, match=match):
        AEZip(**bad)


def test_a_named_model_is_recorded_by_content_id():
    from aezip.model import model_header

    codec = AEZip(mode="abs", bound=1e-3, model="conv-ae-v1", ndim=2)
    config = codec.get_config()
    assert config["model_id"] == model_header(None, ndim=2)["id"]
    assert numcodecs.get_codec(config).get_config() == config


def test_a_missing_model_names_its_id_and_how_to_install_it(monkeypatch):
    from aezip import coding
    from aezip.model import load_model
    from tests.common import model_field

    monkeypatch.setattr(coding, "_model_may_pay", lambda *a: True)
    model = load_model(ndim=2)
    codec = AEZip(mode="rel", bound=1e-3, value_range=20.0, model=model.name)
    b = bytearray(codec.encode(model_field((64, 128), 128)))
    at = bytes(b).index(bytes.fromhex(model.id))
    b[at : at + 32] = bytes(32)  # a model nobody has
    body = bytes(b[:-4])
    forged = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    with pytest.raises(ModelNotFoundError, match="needs model " + "0" * 64 + ".*copy its model file") as e:
        AEZip(mode="abs", bound=1e-3).decode(forged)
    assert e.value.model_id == "0" * 64


def test_many_threads_at_once_give_what_one_gives():
    """One codec from 8 threads: every frame the same bytes as coded alone, every chunk back."""
    codec = AEZip(mode="abs", bound=1e-3)
    chunks = [_chunk(seed=i, shape=(40, 36)) for i in range(24)]
    alone = [codec.encode(c) for c in chunks]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(codec.encode, chunks))
        decoded = list(pool.map(codec.decode, together))
    assert together == alone
    for x, y in zip(chunks, decoded):
        assert _within(x, y, {"mode": "abs", "bound": 1e-3})


def test_loading_and_registering_import_no_torch():
    code = ("import sys, numpy as np, numcodecs\n"
            "c = numcodecs.get_codec({'id': 'aezip', 'mode': 'abs', 'bound': 1e-3})\n"
            "x = np.linspace(0, 1, 1024, dtype=np.float32).reshape(32, 32)\n"
            "assert np.abs(c.decode(c.encode(x)) - x).max() <= 1e-3\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_numcodecs_imports_beside_the_bench_extras():
    """numcodecs 0.16 fails to import beside zfpy 1.0.1.post0 (it parses the version with
    int()); the extras exclude that release, so [bench] and [zarr] work together."""
    done = subprocess.run([sys.executable, "-c", "import zfpy, numcodecs, numcodecs.zfpy, zarr"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
