"""Shared checks for the test modules."""

from __future__ import annotations

import math

import numpy as np


def check_quality(x: np.ndarray, x_hat: np.ndarray, report) -> None:
    """The report's figures, recomputed independently in float64."""
    d = x.astype(np.float64) - x_hat.astype(np.float64)
    mse = float(np.mean(d**2))
    assert math.isclose(report.mse, mse, rel_tol=1e-9, abs_tol=1e-300)
    assert math.isclose(report.max_abs_error, float(np.abs(d).max()), rel_tol=1e-9, abs_tol=1e-300)
    if mse == 0:
        assert report.psnr is None
    else:
        vrange = float(x.max()) - float(x.min())
        assert math.isclose(report.psnr, 20 * math.log10(vrange) - 10 * math.log10(mse), rel_tol=1e-9)


def check_roundtrip(x: np.ndarray, x_hat: np.ndarray, report) -> None:
    assert x_hat.shape == x.shape
    assert x_hat.dtype == x.dtype
    check_quality(x, x_hat, report)


def set_record(attrs, key: str, text: bytes) -> None:
    """Store a JSON record attribute as a forger would: with its checksum (format v5 §1)
    made to match, when the file carries one."""
    from aezip.container.writer import text_crc32

    attrs[key] = np.bytes_(text)
    if f"{key}_crc32" in attrs:
        attrs[f"{key}_crc32"] = np.uint32(text_crc32(text))


def edit_record(path, index: int, change) -> None:
    """Rewrite the JSON record of array entry ``index`` of a container in place:
    ``change(record)`` edits the dict (format v2: the entry dataset's ``record`` attribute),
    its checksum made to match (v5): a forged record, not a damaged one."""
    import json

    import h5py

    with h5py.File(path, "r+") as f:
        attrs = f[f"array_{index}"].attrs
        record = json.loads(attrs["record"])
        change(record)
        set_record(attrs, "record", json.dumps(record).encode())


def model_field(shape: tuple[int, int], model_cols: int, rounds: int = 6, seed: int = 3) -> np.ndarray:
    """A float32 field whose first ``model_cols`` columns are close to a fixed point of the
    default 2-D model (x_hat of x, repeated ``rounds`` times: its latents reproduce them
    within a small residual) and whose other columns are a ramp along axis 0, which
    interpolation codes for almost nothing."""
    from aezip import coding
    from aezip.codec.sample import sample_field

    models = coding.Models(None, "cpu")
    x = sample_field(shape, seed=seed).astype(np.float64) * 4
    x[:, model_cols:] = np.linspace(x.min(), x.max(), shape[0])[:, None]
    for _ in range(rounds):
        x[:, :model_cols] = coding.run_model(x.astype(np.float32), 2, models, "")[3][:, :model_cols]
    return x.astype(np.float32)
