"""The multiscale transform coder: the plain learned mode's engine.

    x --(- offset)--> wavelet.forward --> y --quantize(step)--> q --subband.encode--> stream
    stream --subband.decode--> q --dequantize--> y_hat --wavelet.inverse--> (+ offset) x_hat

One scalar, the quantization step, sets the rate: every subband is quantized with it
(the transform is close to orthonormal, so equal steps spend the squared error evenly).
The encoder finds the largest step whose decoded values reach a PSNR target: a search on
an estimate of the squared error in the transform domain (each subband's error weighted
by the energy its basis functions have in the array), then a check on the decoded array
itself, which tightens the step where the estimate was short.

The wavelet runs over the ``ndim`` trailing axes only; leading axes are a batch, never
transformed, so each of their planes is coded on its own.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import ContainerError
from . import subband, varint, wavelet

ROUNDING = 0.45  # q = floor(|y| / step + ROUNDING): slightly more zeros than rounding to nearest
LAMBDA = 0.1  # the RD quantizer: bits against squared error in units of step^2 (measured best of 0, 0.05, 0.1, 0.2)
SEARCH_VALUES = 1 << 20  # coefficients the step search looks at (a regular sample of each subband)
SEARCH_ITERATIONS = 24
MAX_CODE = 2.0**30  # largest |code|
CHECKS = 4  # decodings of the whole array to reach the target on the decoded values (after the estimate)
SLACK_DB = 0.1  # a decoded PSNR this far above the target is accepted


@dataclass(frozen=True)
class Coded:
    """What the decoder needs: the record's fields (offset, step, levels, integer, crc32)
    and the stream, which begins with the coder's own parameters (see :func:`pack`)."""

    offset: float
    step: float
    levels: int
    thetas: list[int]
    radii: list[int]
    escapes: int
    integer: bool
    crc32: int  # of the codes (int32, little-endian, C order)
    payload: bytes  # the adaptive coder's words, then the escaped codes

    def pack(self) -> bytes:
        """The stream "codes": varints (the number of coding steps, each step's table
        radius, the number of escaped codes), one byte per subband (its reconstruction
        offset), then the payload."""
        head = varint.pack(len(self.radii)) + b"".join(varint.pack(r) for r in self.radii)
        return head + varint.pack(self.escapes) + bytes(self.thetas) + self.payload

    @classmethod
    def unpack(cls, stream: bytes, n_bands: int, *, offset: float, step: float, levels: int, integer: bool,
               crc32: int) -> Coded:
        r = varint.Reader(stream, "the transform codes")
        n = r.varint()
        if n > 2 * n_bands:
            raise ContainerError(f"the transform codes declare {n} coding steps for {n_bands} subbands; "
                                 "the container is corrupted")
        radii = [r.varint() for _ in range(n)]
        escapes = r.varint()
        thetas = list(r.take(n_bands))
        if any(t >= subband.THETA_UNIT for t in thetas):
            raise ContainerError("a reconstruction offset of the transform codes is out of range; "
                                 "the container is corrupted")
        return cls(offset=offset, step=step, levels=levels, thetas=thetas, radii=radii, escapes=escapes,
                   integer=integer, crc32=crc32, payload=r.rest())


def _axes_shape(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return tuple(shape[len(shape) - ndim:])


def levels_for(shape: tuple[int, ...], ndim: int) -> int:
    """As many levels as the spatial axes allow, at most wavelet.MAX_LEVELS."""
    return len(wavelet.plan(_axes_shape(shape, ndim))) - 1


def n_bands(shape: tuple[int, ...], ndim: int, levels: int) -> int:
    return len(subband.bands(_axes_shape(shape, ndim), levels))


def _planes(x: np.ndarray, ndim: int) -> np.ndarray:
    return x.reshape((-1,) + _axes_shape(x.shape, ndim))


def forward(x: np.ndarray, ndim: int, levels: int) -> np.ndarray:
    p = _planes(x, ndim)
    return np.stack([wavelet.forward(v, levels) for v in p]) if p.shape[0] > 1 else wavelet.forward(p[0], levels)[None]


def inverse(y: np.ndarray, shape: tuple[int, ...], ndim: int, levels: int) -> np.ndarray:
    out = np.empty(y.shape, np.float64)
    for i in range(y.shape[0]):
        out[i] = wavelet.inverse(y[i], levels)
    return out.reshape(shape)


def _gain_1d(n: int, splits: int, high: bool) -> float:
    """The norm of a basis function of a 1-D band of length-n data: after ``splits``
    levels, high-pass at the last one (``high``) or low-pass."""
    if splits == 0:
        return 1.0
    shapes = wavelet.plan((n,), splits)
    lo = shapes[splits][0]
    hi_len = shapes[splits - 1][0] - lo
    y = np.zeros(n)
    y[lo + hi_len // 2 if high else lo // 2] = 1.0
    return float(np.sqrt(np.sum(wavelet.inverse(y, splits) ** 2)))


def band_gains(spatial: tuple[int, ...], levels: int, bands: list[subband.Band]) -> list[float]:
    """Squared norm of each band's basis functions (the squared error in the array per unit
    squared error of a coefficient)."""
    shapes = wavelet.plan(spatial, levels)
    out = []
    for b in bands:
        g2 = 1.0
        for a, n in enumerate(spatial):
            splits = sum(1 for k in range(b.level) if shapes[k + 1][a] != shapes[k][a])
            g2 *= _gain_1d(n, splits, bool(b.orientation[a])) ** 2
        out.append(g2)
    return out


class _Estimate:
    """The squared error in the array from quantizing y with a step, estimated from a
    sample of each band (the sum over the whole array)."""

    def __init__(self, y: np.ndarray, bands: list[subband.Band], gains: list[float]):
        self.parts = []
        n = y.size
        k = max(1, n // SEARCH_VALUES)
        for b, g in zip(bands, gains):
            v = y[(slice(None),) + b.box].reshape(-1)
            sample = v[::k] if v.size > 4 * k else v
            self.parts.append((sample, g * v.size / max(1, sample.size)))

    def sse(self, step: float) -> float:
        total = 0.0
        for v, w in self.parts:
            u = np.abs(v) * (1.0 / step)
            q = np.floor(u + ROUNDING)
            nz = q > 0
            theta = float(np.mean(q[nz] - u[nz])) if nz.any() else 0.0  # as subband.thetas_for sets it
            err = u - np.where(nz, q - theta, 0.0)
            total += w * step * step * float(np.dot(err, err))
        return total


def _search_step(est: _Estimate, target_sse: float, vrange: float) -> float:
    lo, hi = math.log(vrange * 1e-9), math.log(vrange * 4.0)  # lo reaches the target, hi does not
    for _ in range(SEARCH_ITERATIONS):
        mid = 0.5 * (lo + hi)
        if est.sse(math.exp(mid)) <= target_sse:
            lo = mid
        else:
            hi = mid
        if hi - lo < 0.01:
            break
    return math.exp(lo)


def _code(y: np.ndarray, step: float, levels: int, bands: list[subband.Band], spatial_ndim: int):
    """(q, thetas, y_hat) of y quantized with ``step``."""
    q = subband.quantize(y, step, ROUNDING)
    if LAMBDA:
        q = subband.quantize_rd(y, step, levels, LAMBDA, q)
    full = [subband.Band(b.level, (0,) + b.orientation, (slice(None),) + b.box) for b in bands]
    thetas = subband.thetas_for(y, q, step, full)
    return q, thetas, subband.dequantize(q, step, thetas, full)


def encode(x: np.ndarray, ndim: int, target_mse: float, vrange: float, integer: bool):
    """Code x (float64, finite) so that the MSE of the decoded values is at most
    ``target_mse`` where a step reaches it (else with the finest step: the caller checks):
    (Coded, x_hat). ``integer``: x holds only integers, and x_hat is rounded where that
    lowers the error."""
    offset = float(np.mean(x))
    levels = levels_for(x.shape, ndim)
    spatial = _axes_shape(x.shape, ndim)
    bands = subband.bands(spatial, levels)
    y = forward(x - offset, ndim, levels)
    est = _Estimate(y, bands, band_gains(spatial, levels, bands))
    target_sse = target_mse * x.size
    finest = max(float(np.max(np.abs(y))), vrange) / MAX_CODE  # finer steps would overflow the codes
    step = max(finest, _search_step(est, target_sse, vrange))
    best = None  # (step, q, thetas, x_hat, rounded) of the loosest step found that reaches the target
    tried: list[tuple[float, float]] = []  # (log step, log MSE) of each check
    for _ in range(CHECKS):
        q, thetas, y_hat = _code(y, step, levels, bands, ndim)
        x_hat = inverse(y_hat, x.shape, ndim, levels) + offset
        rounded = integer and _mse(x, np.rint(x_hat)) < _mse(x, x_hat)
        if rounded:
            x_hat = np.rint(x_hat)
        mse = _mse(x, x_hat)
        tried.append((math.log(step), math.log(max(mse, 1e-300))))
        if mse <= target_mse:
            if best is None or step > best[0]:
                best = (step, q, thetas, x_hat, rounded)
            if mse >= target_mse * 10 ** (-SLACK_DB / 10):
                break
        step = max(finest, _next_step(tried, math.log(target_mse * 10 ** (-SLACK_DB / 20)), best))
    if best is None:  # the estimate was far off: halve the step until the decoded values reach the target
        while True:
            step = max(finest, step * 0.5)
            q, thetas, y_hat = _code(y, step, levels, bands, ndim)
            x_hat = inverse(y_hat, x.shape, ndim, levels) + offset
            rounded = integer and _mse(x, np.rint(x_hat)) < _mse(x, x_hat)
            x_hat = np.rint(x_hat) if rounded else x_hat
            if _mse(x, x_hat) <= target_mse or step == finest:
                best = (step, q, thetas, x_hat, rounded)
                break
    step, q, thetas, x_hat, rounded = best
    payload, escapes, radii = subband.encode(q, levels)
    coded = Coded(offset=offset, step=step, levels=levels, thetas=thetas, radii=radii, escapes=escapes,
                  integer=bool(rounded), crc32=_crc(q), payload=payload)
    return coded, x_hat


def _next_step(tried: list[tuple[float, float]], log_aim: float, best) -> float:
    """The next step to check: along the secant of log MSE against log step through the
    last two checks (slope 2, high-rate quantization, after one), within a factor 2."""
    (ls, lm) = tried[-1]
    slope = 2.0
    if len(tried) >= 2:
        (ls0, lm0) = tried[-2]
        if ls != ls0 and (lm - lm0) / (ls - ls0) > 0.2:
            slope = (lm - lm0) / (ls - ls0)
    move = max(-math.log(2.0), min(math.log(2.0), (log_aim - lm) / slope))
    return math.exp(ls + move)


def _crc(q: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(q, dtype="<i4").tobytes()) & 0xFFFFFFFF


def _mse(x: np.ndarray, x_hat: np.ndarray) -> float:
    d = x - x_hat
    return float(np.dot(d.reshape(-1), d.reshape(-1))) / max(1, d.size)


def decode(c: Coded, shape: tuple[int, ...], ndim: int) -> np.ndarray:
    """x_hat (float64, ``shape``) from a coding."""
    spatial = _axes_shape(shape, ndim)
    planes = (int(np.prod(shape[: len(shape) - ndim], dtype=np.int64)),) + spatial
    if c.levels > levels_for(shape, ndim):
        raise ValueError(f"{c.levels} transform levels where the shape allows {levels_for(shape, ndim)}")
    q = subband.decode(c.payload, c.escapes, c.radii, planes, c.levels)
    if _crc(q) != c.crc32:
        raise ValueError("the decoded transform codes fail their checksum")
    bands = [subband.Band(b.level, (0,) + b.orientation, (slice(None),) + b.box)
             for b in subband.bands(spatial, c.levels)]
    if len(c.thetas) != len(bands):
        raise ValueError(f"{len(c.thetas)} reconstruction offsets for {len(bands)} subbands")
    x_hat = inverse(subband.dequantize(q, c.step, c.thetas, bands), shape, ndim, c.levels) + c.offset
    return np.rint(x_hat) if c.integer else x_hat
