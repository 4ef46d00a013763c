"""Quality and size figures: MSE, PSNR, max error, ratio, bits per value."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Quality:
    """Error of a reconstruction against its original, all in float64.

    ``psnr`` is None when the reconstruction is exact (MSE 0).
    PSNR = 20 log10(value range) - 10 log10(MSE).
    """

    mse: float
    psnr: float | None
    max_abs_error: float

    @classmethod
    def measure(cls, x: np.ndarray, x_hat: np.ndarray, valid: np.ndarray | None = None,
                vrange: float | None = None) -> Quality:
        """Over the valid values of x (default: the finite ones); an invalid value (NaN, Inf,
        a declared fill value) not restored exactly counts as an infinite error. The PSNR
        is relative to ``vrange`` (default: the valid values' range)."""
        if x.shape != x_hat.shape:
            raise ValueError(f"shapes differ: {x.shape} vs {x_hat.shape}")
        valid = valid_mask(x) if valid is None else valid
        d = _valid_values(x, valid).astype(np.float64) - _valid_values(x_hat, valid).astype(np.float64)
        mse = float(np.mean(d * d)) if d.size else 0.0
        np.abs(d, out=d)
        max_err = float(np.max(d)) if d.size else 0.0
        if not _same_invalid(x, x_hat, valid):
            max_err = mse = math.inf
        return cls(mse=mse, psnr=psnr(mse, value_range(x, valid) if vrange is None else vrange), max_abs_error=max_err)


def _valid_values(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """x[valid], without the copy when every value is valid."""
    return x.reshape(-1) if valid.all() else x[valid]


def valid_mask(x: np.ndarray, fill_values=()) -> np.ndarray:
    """The values that are data: finite and not a declared fill value."""
    valid = np.isfinite(x) if x.dtype.kind == "f" else np.ones(x.shape, bool)
    if len(fill_values):
        valid &= ~np.isin(x, np.asarray(fill_values, dtype=np.float64).astype(x.dtype))
    return valid


def _same_invalid(x: np.ndarray, x_hat: np.ndarray, valid: np.ndarray) -> bool:
    if valid.all():
        return True
    a, b = x[~valid], x_hat[~valid]
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    return bool(np.all(same))


def value_range(x: np.ndarray, valid: np.ndarray | None = None) -> float:
    """max - min of the valid values (0 for none)."""
    v = _valid_values(x, valid_mask(x) if valid is None else valid)
    return float(np.max(v)) - float(np.min(v)) if v.size else 0.0


def max_error_ratio(x: np.ndarray, x_hat: np.ndarray, bound: float, kind: str,
                    valid: np.ndarray | None = None) -> float:
    """Largest |x - x_hat| / bound ("abs") or |x - x_hat| / (bound |x|) ("pw_rel") over valid values."""
    valid = valid_mask(x) if valid is None else valid
    if not _same_invalid(x, x_hat, valid):
        return math.inf
    x_v = _valid_values(x, valid).astype(np.float64)
    d = np.abs(x_v - _valid_values(x_hat, valid).astype(np.float64))
    if d.size == 0:
        return 0.0
    if kind == "pw_rel":
        scale = bound * np.abs(x_v)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(d == 0, 0.0, d / scale)
        return float(np.max(r))
    return abs_error_ratio(float(np.max(d)), bound)


def abs_error_ratio(max_abs_error: float, bound: float) -> float:
    """max |x - x_hat| / bound, with a zero bound met exactly giving 0."""
    return max_abs_error / bound if bound > 0 else (0.0 if max_abs_error == 0 else math.inf)


class Accumulator:
    """Errors of a reconstruction measured a slab at a time, as :meth:`Quality.measure` and
    :func:`max_error_ratio` would give on the whole array; each slab against its own bound
    (``--psnr`` may settle on a different one per slab)."""

    def __init__(self, kind: str = "abs"):
        self.kind, self.bounded = kind, False
        self.n, self.sse, self.max_err, self.ratio = 0, 0.0, 0.0, 0.0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, x: np.ndarray, x_hat: np.ndarray, valid: np.ndarray, bound: float | None = None) -> None:
        n = int(np.count_nonzero(valid))
        if n:
            v = _valid_values(x, valid)
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        q = Quality.measure(x, x_hat, valid, vrange=0.0)  # the PSNR comes from the whole array's range
        self.n += n
        self.sse += q.mse * n if math.isfinite(q.mse) else math.inf
        self.max_err = max(self.max_err, q.max_abs_error)
        if bound is not None:
            self.bounded = True
            ratio = (abs_error_ratio(q.max_abs_error, bound) if self.kind == "abs"
                     else max_error_ratio(x, x_hat, bound, self.kind, valid))
            self.ratio = max(self.ratio, ratio)

    def result(self) -> tuple[Quality, float | None]:
        mse = self.sse / self.n if self.n else 0.0
        vrange = self.hi - self.lo if self.n else 0.0
        return (Quality(mse=mse, psnr=psnr(mse, vrange), max_abs_error=self.max_err),
                self.ratio if self.bounded else None)


def psnr(mse: float, vrange: float) -> float | None:
    if mse == 0:
        return None
    if vrange == 0:
        return -math.inf
    return 20 * math.log10(vrange) - 10 * math.log10(mse)


def ratio(original_bytes: int, compressed_bytes: int) -> float:
    return original_bytes / compressed_bytes if compressed_bytes else math.inf


def bits_per_value(compressed_bytes: int, n_values: int) -> float:
    return 8 * compressed_bytes / n_values if n_values else 0.0


@dataclass(frozen=True, kw_only=True)
class Report:
    """What compress and decompress report, for one array or (with ``arrays``) a whole file.

    ``compressed_bytes`` is the whole container file for a file's report and the
    array's own coded streams for an entry of ``arrays``. ``measured`` holds the
    errors against a reference given to decompress (``--original``).
    """

    input: str | None
    output: str | None
    name: str
    shape: tuple[int, ...]
    dtype: str
    original_bytes: int
    compressed_bytes: int
    mse: float
    psnr: float | None
    max_abs_error: float
    value_range: float
    seconds: float
    storage: str
    model: str | None = None
    mode: str | None = None
    bound: float | None = None
    bound_kind: str = "abs"
    max_error_ratio: float | None = None
    stream_bytes: dict | None = None
    slabs: int = 0
    embedded_model_bytes: int = 0
    measured: Quality | None = None
    measured_ratio: float | None = None
    arrays: tuple[Report, ...] = ()
    region: tuple[int, ...] | None = None  # the shape decoded, where decompress was given a region
    ndim: int | None = None  # the trailing axes coded as spatial (the others a batch), where the coding has them
    ndim_given: bool | None = None  # ... given by --ndim, else chosen from the data

    @property
    def n_values(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if not self.arrays else sum(a.n_values for a in self.arrays)

    @property
    def compression_ratio(self) -> float:
        return ratio(self.original_bytes, self.compressed_bytes)

    @property
    def bits_per_value(self) -> float:
        return bits_per_value(self.compressed_bytes, self.n_values)

    @property
    def mb_per_s(self) -> float:
        return self.original_bytes / 1e6 / self.seconds if self.seconds > 0 else math.inf

    def to_json(self) -> dict:
        d = {
            "input": self.input, "output": self.output, "name": self.name, "shape": list(self.shape),
            "dtype": self.dtype, "storage": self.storage, "model": self.model,
            "original_bytes": self.original_bytes, "compressed_bytes": self.compressed_bytes,
            "compression_ratio": _finite(self.compression_ratio), "bits_per_value": self.bits_per_value,
            "mse": self.mse, "psnr": _finite(self.psnr), "max_abs_error": self.max_abs_error,
            "mode": self.mode, "bound": self.bound, "bound_kind": self.bound_kind,
            "max_error_over_bound": self.max_error_ratio,
            "seconds": round(self.seconds, 6), "mb_per_s": _finite(self.mb_per_s),
        }
        if self.stream_bytes is not None:
            d["stream_bytes"] = self.stream_bytes
        if self.slabs:
            d["slabs"] = self.slabs
        if self.embedded_model_bytes:
            d["embedded_model_bytes"] = self.embedded_model_bytes
        if self.measured is not None:
            m = self.measured
            d["measured"] = {"mse": m.mse, "psnr": _finite(m.psnr), "max_abs_error": m.max_abs_error,
                             "max_error_over_bound": self.measured_ratio}
        if self.arrays:
            d["arrays"] = [a.to_json() for a in self.arrays]
        if self.region is not None:
            d["region_shape"] = list(self.region)
        if self.ndim is not None:
            d["ndim"] = self.ndim
            d["ndim_chosen"] = "given" if self.ndim_given else "auto"
        return d


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _relative(mse: float, vrange: float) -> float:
    """mse / vrange^2 without the square underflowing (ranges below 1e-154 are real data too)."""
    return (math.sqrt(mse) / vrange) ** 2 if vrange > 0 else 0.0


def combine(parts: list[Report], **totals) -> Report:
    """A file's report from its arrays: sizes add up, MSE is the value-weighted mean,
    PSNR is that of the errors relative to each array's own range, max error the largest."""
    n = [p.n_values for p in parts]
    total_n = sum(n) or 1
    mse = sum(k * p.mse for k, p in zip(n, parts)) / total_n
    rel = sum(k * _relative(p.mse, p.value_range) for k, p in zip(n, parts)) / total_n
    measured = None
    if all(p.measured is not None for p in parts) and parts:
        mm = sum(k * p.measured.mse for k, p in zip(n, parts)) / total_n
        mrel = sum(k * _relative(p.measured.mse, p.value_range) for k, p in zip(n, parts)) / total_n
        measured = Quality(mse=mm, psnr=None if mrel == 0 else -10 * math.log10(mrel),
                           max_abs_error=max(p.measured.max_abs_error for p in parts))
    dtypes = sorted({p.dtype for p in parts})
    ratios = [p.max_error_ratio for p in parts]
    measured_ratios = [p.measured_ratio for p in parts]
    return Report(
        name="", shape=(), dtype=",".join(dtypes), original_bytes=sum(p.original_bytes for p in parts),
        mse=mse, psnr=None if rel == 0 else -10 * math.log10(rel),
        max_abs_error=max((p.max_abs_error for p in parts), default=0.0), value_range=0.0,
        storage=",".join(sorted({p.storage for p in parts})), measured=measured, arrays=tuple(parts),
        mode=",".join(sorted({p.mode for p in parts if p.mode})) or None,
        max_error_ratio=max(ratios) if None not in ratios else None,
        measured_ratio=max(measured_ratios) if None not in measured_ratios else None, **totals,
    )
