#!/usr/bin/env python3
"""Write the golden containers of the current format version with their original arrays.

    python scripts/make_golden.py            # writes formats/golden/v<N>/ (refuses to overwrite)

Golden files are written once per format version and then kept forever: every later
aezip must decode them (tests/test_golden.py). One per built-in default model, the
storage modes that use no model, the error-bounded modes (NaN/Inf, integers, pw_rel,
the model's prediction as their base on every tile or on some), and a multi-array npz;
and in formats/golden/v3/ and v4/ the containers that need version 3 (--psnr's coarse
bounds) or 4 (--psnr's post-filter). In v5/ the base set is named ``checksummed-*``.
Existing golden files are never rewritten.
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import aezip  # noqa: E402
from aezip.codec.sample import sample_field  # noqa: E402
from aezip.container import FORMAT_VERSION  # noqa: E402
from aezip.model import load_model  # noqa: E402


# From version 5 on every container is written in the current version, so the base set of
# a version is named after the change it brings (v5: every record checksummed).
PREFIX = {5: "checksummed-"}.get(FORMAT_VERSION, "")


def _paths(folder: str, name: str, original: str = ".npy") -> tuple[str, str]:
    """The original's and the container's paths of golden case ``name`` in ``folder``."""
    stem = os.path.join(folder, PREFIX + name)
    return stem + original, stem + ".aez"


def main() -> None:
    folder = os.path.join(ROOT, "formats", "golden", f"v{FORMAT_VERSION}")
    os.makedirs(folder, exist_ok=True)
    shapes = {1: (3000,), 2: (70, 90), 3: (20, 40, 36)}
    cases = {}
    for ndim, shape in shapes.items():
        cases[load_model(ndim=ndim).name] = sample_field(shape, seed=40 + ndim) * 5 + 1
    cases["constant"] = np.full((8, 9), -2.5, dtype=np.float64)
    cases["raw"] = np.array([0.5, 1e-30, -3.0e30, 7.0], dtype=np.float32)
    bounded = {}
    # latents coded with counts learned from the array (seeded by the model's tables)
    # (named: from format 5 on, the plain learned mode codes with the transform coder unless a model is named)
    bounded["latent-adaptive-1d"] = (sample_field((5000,), slope=-2, seed=60) * 3, {"model": load_model(ndim=1).name})
    bounded["latent-adaptive-2d"] = (sample_field((40, 60), slope=-4, seed=60) * 3, {"model": load_model(ndim=2).name})
    with_nan = sample_field((50, 60), seed=50) * 3
    with_nan[5, 5], with_nan[7, :3], with_nan[-1, -1] = np.nan, np.inf, -np.inf
    bounded["bounded-abs-nan"] = (with_nan, {"abs": 1e-3})
    bounded["bounded-rel-3d"] = (sample_field((12, 20, 24), seed=51) + 10, {"rel": 1e-4})
    # smooth along axes 1 and 2, rough along axis 0: interpolated along the smooth axes only
    rough = sample_field((30, 28), seed=57)[None] * 5 + np.random.default_rng(57).normal(0, 2, (10, 1, 1))
    bounded["bounded-anisotropic-3d"] = (rough, {"abs": 1e-3})
    # an oscillating series: interpolation weights fitted by least squares
    t = np.arange(6000)
    wave = np.sin(t * 0.9) * 3 + np.sin(t * 0.31) + np.random.default_rng(58).normal(0, 0.05, t.size)
    bounded["bounded-fitted-1d"] = (wave.astype(np.float32), {"rel": 1e-2})
    # smooth fields at a loose bound: the diamond-square visiting order (v2 §4c, from aezip 0.3.0)
    bounded["bounded-diamond-2d"] = (sample_field((200, 120), seed=2) * 3, {"rel": 1e-2})
    bounded["bounded-diamond-3d"] = (sample_field((32, 32, 32), seed=61) * 3, {"rel": 3e-2})
    bounded["bounded-int16-lossless"] = (np.rint(sample_field((40, 45), seed=52) * 1000).astype(np.int16), {})
    bounded["bounded-uint8-abs2"] = (np.rint(sample_field((30, 30), seed=53) * 40 + 128).astype(np.uint8), {"abs": 2})
    rng = np.random.default_rng(54)
    decades = (10.0 ** rng.uniform(-8, 2, 1500) * rng.choice([-1, 1], 1500)).astype(np.float64)
    decades[::50] = 0
    bounded["bounded-pw-rel"] = (decades, {"pw_rel": 1e-3})
    models = {load_model(ndim=ndim).name for ndim in shapes}
    # "raw": a PSNR no coding reaches (the transform coder would code these four values at 45 dB)
    modes = {k: {"model": k} for k in models} | {"raw": {"quality": 300}}
    for name, (x, mode) in [(k, (v, modes.get(k, {}))) for k, v in cases.items()] + list(bounded.items()):
        src, aez = _paths(folder, name)
        if os.path.exists(aez):  # golden files are written once and kept forever
            continue
        np.save(src, x)
        aezip.compress(src, aez, **mode)
        print(name, x.shape, x.dtype, mode)
    src, aez = _paths(folder, "slabs-rel")
    if not os.path.exists(aez):  # an array in slabs of 64 rows (normally only above --memory)
        from aezip import slabs

        x = sample_field((200, 50), seed=55) * 2
        np.save(src, x)
        rows, slabs.slab_rows = slabs.slab_rows, lambda shape, memory, workers=1: 64
        try:
            aezip.compress(src, aez, rel=1e-3)
        finally:
            slabs.slab_rows = rows
        print("slabs-rel", x.shape)
    src, aez = _paths(folder, "fit-embedded")
    if not os.path.exists(aez):  # a container carrying its own (fitted) model
        x = sample_field((64, 64), seed=56)
        np.save(src, x)
        aezip.compress(src, aez, fit=True, fit_steps=3)
        print("fit-embedded", x.shape)
    from tests.common import model_field

    for name, cols in (("bounded-model-2d", 128), ("bounded-model-tiles-2d", 128)):
        src, aez = _paths(folder, name)
        if os.path.exists(aez):  # the model's prediction as the base: on every tile, or on some (aezip 0.4.0)
            continue
        x = model_field((64, 128) if name == "bounded-model-2d" else (128, 256), cols)
        np.save(src, x)
        aezip.compress(src, aez, rel=1e-3, options=aezip.EncoderOptions(try_model=True))  # the model's figures say no
        print(name, x.shape, aezip.info(aez).arrays[0].codec.base)
    for version, name, x, target in later_versions():  # written only for containers that need them
        later = os.path.join(ROOT, "formats", "golden", f"v{version}")
        os.makedirs(later, exist_ok=True)
        src, aez = os.path.join(later, name + ".npy"), os.path.join(later, name + ".aez")
        if os.path.exists(aez):
            continue
        np.save(src, x)
        aezip.compress(src, aez, psnr=target, options=aezip.EncoderOptions(psnr_filter=version >= 4))
        print(name, x.shape, "format version", aezip.info(aez).format_version)
    write_frames()
    v5 = os.path.join(ROOT, "formats", "golden", "v5")
    # v5 §2: values that are not data as runs; §3: the transform coder; §6: bounded planes
    for name, x, how in [*mask_cases(), *transform_cases(), *planes_cases()]:
        src, aez = os.path.join(v5, name + ".npy"), os.path.join(v5, name + ".aez")
        if not os.path.exists(aez):
            np.save(src, x)
            aezip.compress(src, aez, **how)
            print(name, x.shape, x.dtype, how)
    src, aez = _paths(folder, "several", ".npz")
    if not os.path.exists(aez):
        np.savez(src, series=sample_field((2000,), seed=7).astype(np.float64), image=sample_field((40, 50), seed=8))
        aezip.compress(src, aez)
        print("several.npz")


def frame_cases():
    """(name, x, encode_chunk's keywords) of the golden frames (formats/aezip-frame-v1.md)."""
    yield "bounded-abs-2d", sample_field((64, 48), seed=71), {"abs": 1e-3}
    yield "bounded-rel-range-3d", sample_field((16, 20, 24), seed=72) * 2, {"rel": 1e-3, "value_range": 20.0}
    with_nan = sample_field((40, 30), seed=73).astype(np.float64)
    with_nan[-1, 10:], with_nan[3, 3] = np.nan, -np.inf
    yield "nodata-fill-2d", with_nan, {"abs": 1e-2, "fill_values": [with_nan[5, 5]]}
    yield "pw-rel-1d", (10.0 ** np.random.default_rng(74).uniform(-3, 3, 500)).astype(np.float32), {"pw_rel": 1e-3}
    yield "psnr-2d", sample_field((80, 60), seed=75), {"psnr": 40}
    yield "int16-lossless", np.rint(sample_field((30, 40), seed=76) * 1000).astype(np.int16), {}
    yield "constant", np.full((5, 7), -1.25), {"abs": 1e-3}
    yield "raw", np.array([0.5, 1e-30, -3.0e30, 7.0], np.float32), {"abs": 1e-35}


def write_frames() -> None:
    """formats/golden/frame-v1/: each frame with its original, and one whose bounded coding
    starts from the default 2-D model's prediction (the model named by its content id)."""
    from aezip.chunk import encode_chunk
    from tests.common import model_field

    folder = os.path.join(ROOT, "formats", "golden", "frame-v1")
    os.makedirs(folder, exist_ok=True)
    cases = list(frame_cases())
    cases.append(("bounded-model-2d", model_field((64, 128), 128), {"rel": 1e-3, "model": load_model(ndim=2).name,
                                                                    "options": aezip.EncoderOptions(try_model=True)}))
    for name, x, how in cases:
        stem = os.path.join(folder, name)
        if os.path.exists(stem + ".aezf"):  # golden files are written once and kept forever
            continue
        np.save(stem + ".npy", x)
        with open(stem + ".aezf", "wb") as f:
            f.write(encode_chunk(x, **how))
        print("frame", name, x.shape, x.dtype, how)


def transform_cases():
    """(name, x, compress's keywords) of the containers of storage "transform" (format v5
    §3): odd sizes in 1-, 2- and 3-D, planes (a leading batch axis), integer-valued floats
    decoded to integers, NaN, and slabs coded with their neighbours' rows (a halo)."""
    yield "transform-1d", sample_field((3001,), seed=80).astype(np.float32), {"quality": 45}
    yield "transform-2d-odd", sample_field((75, 93), seed=81) * 4, {"quality": 50}
    yield "transform-3d", sample_field((21, 34, 40), seed=82).astype(np.float32), {"quality": 40}
    yield "transform-planes", np.stack([sample_field((40, 50), seed=s) for s in (83, 84, 85)]), {"ndim": 2}
    counts = np.rint(np.interp(sample_field((96, 80), seed=86), (-3, 3), (0, 255))).astype(np.float32)
    yield "transform-integers", counts, {"quality": 62}  # fine enough that rounding to integers pays
    holes = sample_field((60, 70), seed=87)
    holes[10, 10], holes[20:22, :5] = np.nan, np.inf
    yield "transform-nan", holes, {}
    yield "transform-slabs-halo", sample_field((160, 120), seed=88).astype(np.float32), {"memory": 2 << 20}


def planes_cases():
    """(name, x, compress's keywords) of bounded containers whose leading axes are a batch
    of planes (format v5 §6), chosen from the data: stacked independent 1-D signals at
    --psnr (with its post-filter), three unrelated 2-D fields, and the signals in slabs."""
    signals = np.stack([sample_field((4000,), slope=-2.5, seed=90 + i) for i in range(8)])
    yield "planes-signals-psnr", signals, {"psnr": 45}
    yield "planes-blocks-3d", np.stack([sample_field((40, 50), seed=s) for s in (91, 92, 93)]) * 3, {"rel": 1e-3}
    yield "planes-slabs", signals[:, :2000].astype(np.float64), {"abs": 1e-3, "memory": 1 << 20}


def mask_cases():
    """(name, x, mode) of the containers whose NaN and Inf go to stream "nodata" (format v5 §2):
    few runs of one NaN (Elias-gamma), and many runs of several values (range-coded)."""
    one = sample_field((256, 256), seed=68)
    one[100, 77] = np.nan
    yield "mask-one-nan-2d", one, {"rel": 1e-3}
    edge = sample_field((6, 90, 180), seed=69)
    edge[:, -1, 160:] = np.nan  # 120 values: an edge chunk's padding
    edge[2, 40, 7], edge[4, 0, 0] = -np.inf, np.inf
    yield "mask-edge-3d", edge, {"rel": 1e-3}
    land = sample_field((120, 160), seed=70).astype(np.float64) * 10
    yy, xx = np.mgrid[:120, :160]
    land[(yy - 60) ** 2 + (xx - 50) ** 2 < 900] = np.nan
    land[::17, 120:] = np.array([0x7FF4000000000001], np.uint64).view(np.float64)[0]  # a NaN with a payload
    yield "mask-land-2d", land, {"abs": 1e-3}


def later_versions():
    """(version, name, x, --psnr target) of the containers that need format version 3 (--psnr's coarse
    bounds, made without the post-filter) or 4 (--psnr's post-filter)."""
    yield 3, "psnr-coarse-2d", sample_field((150, 130), seed=62) * 3, 45
    yield 3, "psnr-coarse-3d", sample_field((24, 40, 36), seed=63) * 3, 45
    yield 4, "psnr-filter-1d-int16", np.rint(sample_field((3000,), seed=64) * 3000).astype(np.int16), 45
    yield 4, "psnr-filter-2d", (sample_field((150, 130), seed=65) * 3).astype(np.float32), 45
    yield 4, "psnr-filter-2d-uint8", np.rint(np.interp(sample_field((120, 90), seed=66), (-3, 3), (0, 255))).astype(np.uint8), 38
    yield 4, "psnr-filter-3d", sample_field((24, 40, 36), seed=67).astype(np.float64), 45


if __name__ == "__main__":
    main()
