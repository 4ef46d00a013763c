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

import functools
import math
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import ContainerError
from . import subband, varint, wavelet
from .architecture import CompressionModel, Latents, register_model

ROUNDING = 0.45  # q = floor(|y| / step + ROUNDING): slightly more zeros than rounding to nearest
LAMBDA = 0.1  # the RD quantizer: bits against squared error in units of step^2 (measured best of 0, 0.05, 0.1, 0.2)
SEARCH_VALUES = 1 << 16  # coefficients the step search looks at (a regular sample of each subband)
SEARCH_ITERATIONS = 24
MAX_CODE = 2.0**30  # largest |code|
TRIES = 6  # rate-distortion quantizations of the whole array to reach the target (after the estimate)
AIM_DB = 0.025  # the search aims this far above the target
SLACK_DB = 0.06  # a decoded PSNR this far above the target is accepted (the quantizer's choices move the error by about 0.02 dB)


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
        if n > subband.MAX_PHASES * n_bands:
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


# Levels at most, by spatial axes. A long 1-D signal gains from more (at 45 dB with 9
# instead of 6: goes15 170 -> 107 B, seis 21,986 -> 21,795 B); in 2-D the 7th level and
# beyond, down to 1x1 or 2x2 low-pass bands, cost bytes (grf2d, fronts).
MAX_LEVELS = {1: 9, 2: 6, 3: 6}


def levels_for(shape: tuple[int, ...], ndim: int) -> int:
    """As many levels as the spatial axes allow, at most MAX_LEVELS[ndim]."""
    return len(wavelet.plan(_axes_shape(shape, ndim), MAX_LEVELS[ndim])) - 1


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


EDGE = 24  # positions at each end of a band whose basis functions are measured one by one


@functools.lru_cache(maxsize=256)
def _gain_1d(n: int, splits: int, high: bool) -> float:
    """The mean squared norm of the basis functions of a 1-D band of length-n data: after
    ``splits`` levels, high-pass at the last one (``high``) or low-pass. Those near the
    ends, folded back by the symmetric extension, are measured one by one; the others are
    taken as the middle one."""
    if splits == 0:
        return 1.0
    shapes = wavelet.plan((n,), splits)
    start = shapes[splits][0] if high else 0
    stop = shapes[splits - 1][0] if high else shapes[splits][0]
    m = stop - start
    picks = sorted(set(range(min(EDGE, m))) | set(range(max(0, m - EDGE), m)) | {m // 2})
    impulses = np.zeros((n, len(picks)))
    impulses[[start + p for p in picks], range(len(picks))] = 1.0
    norms = np.sum(_inverse_1d(impulses, splits) ** 2, axis=0)
    inner = m - (len(picks) - 1)  # positions that count as the middle one
    middle = picks.index(m // 2)
    return float((np.sum(norms) - norms[middle] + inner * norms[middle]) / m) if inner > 0 else float(np.mean(norms))


def _inverse_1d(y: np.ndarray, levels: int) -> np.ndarray:
    """wavelet.inverse along axis 0 only, of every column of y."""
    x = np.array(y, dtype=np.float64)
    shapes = wavelet.plan((y.shape[0],), levels)
    for cur, nxt in reversed(list(zip(shapes, shapes[1:]))):
        x[: cur[0]] = wavelet.inverse_axis(x[: cur[0]])
    return x


def band_gains(spatial: tuple[int, ...], levels: int, bands: list[subband.Band]) -> list[float]:
    """Squared norm of each band's basis functions (the squared error in the array per unit
    squared error of a coefficient)."""
    shapes = wavelet.plan(spatial, levels)
    out = []
    for b in bands:
        g2 = 1.0
        for a, n in enumerate(spatial):
            splits = sum(1 for k in range(b.level) if shapes[k + 1][a] != shapes[k][a])
            g2 *= _gain_1d(n, splits, bool(b.orientation[a]))
        out.append(g2)
    return out


class _Estimate:
    """The squared error in the array from quantizing y with a step, estimated from a
    regular sample of each band (scaled to the whole array), each band through its gain."""

    def __init__(self, y: np.ndarray, bands: list[subband.Band], gains: list[float]):
        k = max(1, y.size // SEARCH_VALUES)
        parts, weights, ids = [], [], []
        for i, (b, g) in enumerate(zip(bands, gains)):
            v = np.abs(y[(slice(None),) + b.box]).reshape(-1)
            sample = v[::k] if v.size > 4 * k else v
            parts.append(sample)
            weights.append(g * v.size / max(1, sample.size))
            ids.append(np.full(sample.size, i, np.intp))
        self.v, self.ids = np.concatenate(parts), np.concatenate(ids)
        self.weights, self.n_bands = np.array(weights), len(bands)

    def sse(self, step: float) -> float:
        u = self.v * (1.0 / step)
        q = np.floor(u + ROUNDING)
        nz = q > 0
        n = np.bincount(self.ids[nz], minlength=self.n_bands)
        theta = np.bincount(self.ids[nz], weights=(q - u)[nz], minlength=self.n_bands) / np.maximum(n, 1)
        err = u - np.where(nz, q - theta[self.ids], 0.0)  # the offsets subband.thetas_for sets
        return step * step * float(np.dot(self.weights, np.bincount(self.ids, weights=err * err,
                                                                        minlength=self.n_bands)))


def _search_step(est: _Estimate, target_sse: float, vrange: float, near: float | None = None) -> float:
    """The largest step whose estimated squared error is within ``target_sse``: a bisection
    on log(step), between 1e-9 and 4 times ``vrange``, or within a factor 8 of ``near``
    where that brackets it."""
    lo, hi = math.log(vrange * 1e-9), math.log(vrange * 4.0)  # lo reaches the target, hi does not
    if near is not None:
        a, b = math.log(near) - math.log(8.0), math.log(near) + math.log(8.0)
        if lo < a and b < hi and est.sse(math.exp(a)) <= target_sse < est.sse(math.exp(b)):
            lo, hi = a, b
    for _ in range(SEARCH_ITERATIONS):
        mid = 0.5 * (lo + hi)
        if est.sse(math.exp(mid)) <= target_sse:
            lo = mid
        else:
            hi = mid
        if hi - lo < 0.002:
            break
    return math.exp(lo)


def _full(bands: list[subband.Band]) -> list[subband.Band]:
    """The bands over every plane (axis 0)."""
    return [subband.Band(b.level, (0,) + b.orientation, (slice(None),) + b.box) for b in bands]


def _coefficient_sse(y: np.ndarray, y_hat: np.ndarray, bands: list[subband.Band], gains: list[float]) -> float:
    """The squared error in the array that y_hat's errors make, band by band through the
    band's gain (close to the error measured after the inverse; see band_gains)."""
    total = 0.0
    for b, g in zip(bands, gains):
        d = (y[b.box] - y_hat[b.box]).reshape(-1)
        total += g * float(np.dot(d, d))
    return total


def encode(x: np.ndarray, ndim: int, target_mse: float, vrange: float, integer: bool):
    """Code x (float64, finite) so that the MSE of the decoded values is at most
    ``target_mse`` where a step reaches it (else with the finest step: the caller checks):
    (Coded, x_hat). ``integer``: x holds only integers, and x_hat is rounded where that
    lowers the error.

    The step comes from the estimate of a sample (:class:`_Estimate`), then from the
    squared error of the rate-distortion quantization in the transform domain, which
    calibrates the estimate (the quantizer's choices raise the error a little), and last
    from the decoded values themselves."""
    offset = float(np.mean(x))
    levels = levels_for(x.shape, ndim)
    spatial = _axes_shape(x.shape, ndim)
    bands = subband.bands(spatial, levels)
    full = _full(bands)
    gains = band_gains(spatial, levels, bands)
    y = forward(x - offset, ndim, levels)
    est = _Estimate(y, bands, gains)
    target_sse = target_mse * x.size
    finest = max(float(np.max(np.abs(y))), vrange) / MAX_CODE  # finer steps would overflow the codes
    step = max(finest, _search_step(est, target_sse, vrange))
    q = subband.quantize(y, step, ROUNDING)
    rate, thetas = subband.rate_table(q, levels), subband.thetas_for(y, q, step, full)
    aim = target_sse * 10 ** (-AIM_DB / 10)
    # est.sse(step) * c_quant estimates the transform-domain error of the quantizer's choices,
    # times c_gain the error of the decoded values; both ratios are measured as the search goes
    c_quant = c_gain = 1.0
    best = None  # (step, q, steps, thetas, x_hat, rounded) of the loosest step whose decoded values reach the target
    for _ in range(TRIES):
        q, steps = subband.quantize_rd(y, step, levels, LAMBDA, rate, thetas)
        thetas = subband.thetas_for(y, q, step, full)
        y_hat = subband.dequantize(q, step, thetas, full)
        sse = _coefficient_sse(y, y_hat, full, gains)
        c_quant = sse / max(est.sse(step), 1e-300)
        if sse * c_gain <= target_sse or step <= finest:  # worth a decoding
            x_hat = inverse(y_hat, x.shape, ndim, levels) + offset
            rounded = integer and _mse(x, np.rint(x_hat)) < _mse(x, x_hat)
            if rounded:
                x_hat = np.rint(x_hat)
            mse = _mse(x, x_hat)
            if mse == 0:  # rounded to the integers exactly: the estimates say nothing; loosen
                best = (step, q, steps, thetas, x_hat, rounded)
                step = min(step * 2.0, vrange * 4.0)
                continue
            c_gain = mse * x.size / max(sse, 1e-300)
            if mse <= target_mse and (best is None or step > best[0]):
                best = (step, q, steps, thetas, x_hat, rounded)
            if target_mse * 10 ** (-SLACK_DB / 10) <= mse <= target_mse or step <= finest:
                break
        step = max(finest, _search_step(est, aim / (c_quant * c_gain), vrange, near=step))
    shrink = math.sqrt(min(1.0, target_sse / max(sse * c_gain, 1e-300))) * 0.99
    if best is None:  # no try reached the target: tighten, by the last shortfall then faster, until one does
        while True:
            step, shrink = max(finest, step * shrink), max(0.5, shrink * shrink)
            q, steps = subband.quantize_rd(y, step, levels, LAMBDA, rate, thetas)
            thetas = subband.thetas_for(y, q, step, full)
            x_hat = inverse(subband.dequantize(q, step, thetas, full), x.shape, ndim, levels) + offset
            rounded = integer and _mse(x, np.rint(x_hat)) < _mse(x, x_hat)
            x_hat = np.rint(x_hat) if rounded else x_hat
            if _mse(x, x_hat) <= target_mse or step <= finest:
                best = (step, q, steps, thetas, x_hat, rounded)
                break
    step, q, steps, thetas, x_hat, rounded = best
    payload, escapes, radii = subband.encode_steps(steps)
    coded = Coded(offset=offset, step=step, levels=levels, thetas=thetas, radii=radii, escapes=escapes,
                  integer=bool(rounded), crc32=_crc(q), payload=payload)
    return coded, x_hat


def _crc(q: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(q, dtype="<i4").tobytes()) & 0xFFFFFFFF


def _mse(x: np.ndarray, x_hat: np.ndarray) -> float:
    d = x - x_hat
    return float(np.dot(d.reshape(-1), d.reshape(-1))) / max(1, d.size)


def codes(c: Coded, shape: tuple[int, ...], ndim: int) -> tuple[np.ndarray, list[subband.Band]]:
    """The decoded codes q (int32: planes, then the spatial axes in Mallat's layout) and
    the subbands (over the spatial axes) of a coding of an array of ``shape``."""
    spatial = _axes_shape(shape, ndim)
    planes = (int(np.prod(shape[: len(shape) - ndim], dtype=np.int64)),) + spatial
    if c.levels > levels_for(shape, ndim):
        raise ValueError(f"{c.levels} transform levels where the shape allows {levels_for(shape, ndim)}")
    q = subband.decode(c.payload, c.escapes, c.radii, planes, c.levels)
    if _crc(q) != c.crc32:
        raise ValueError("the decoded transform codes fail their checksum")
    bands = subband.bands(spatial, c.levels)
    if len(c.thetas) != len(bands):
        raise ValueError(f"{len(c.thetas)} reconstruction offsets for {len(bands)} subbands")
    return q, bands


def decode(c: Coded, shape: tuple[int, ...], ndim: int) -> np.ndarray:
    """x_hat (float64, ``shape``) from a coding."""
    q, bands = codes(c, shape, ndim)
    x_hat = inverse(subband.dequantize(q, c.step, c.thetas, _full(bands)), shape, ndim, c.levels) + c.offset
    return np.rint(x_hat) if c.integer else x_hat


@register_model("cdf97")
class WaveletCoder(CompressionModel):
    """The CDF 9/7 transform coder as a CompressionModel: no trained weights, so every
    configuration is its ``ndim``. Streams: "codes"; record fields: offset, step, levels,
    integer, symbols_crc32 (formats/aezip-container-v5.md §3)."""

    STREAMS = ("codes",)
    FIELDS = ("offset", "step", "levels", "integer", "symbols_crc32")

    def _latents(self, c: Coded, shape: tuple[int, ...]) -> Latents:
        return Latents(streams={"codes": c.pack()}, shape=tuple(shape),
                       fields=dict(offset=c.offset, step=c.step, levels=c.levels, integer=c.integer,
                                   symbols_crc32=c.crc32))

    def coding(self, latents: Latents) -> Coded:
        """The coding a Latents holds; ContainerError where it is damaged."""
        f, shape = latents.fields, latents.shape
        if "codes" not in latents.streams:
            raise ContainerError("the transform codes are missing; the container is corrupted")
        if len(shape) < self.ndim:
            raise ContainerError(f"an array of {len(shape)} axes coded with {self.ndim} spatial axes; "
                                 "the container is corrupted")
        return Coded.unpack(latents.streams["codes"], n_bands(shape, self.ndim, f["levels"]), offset=f["offset"],
                            step=f["step"], levels=f["levels"], integer=f["integer"], crc32=f["symbols_crc32"])

    def compress(self, x: np.ndarray, step: float) -> Latents:
        offset = float(np.mean(x))
        levels = levels_for(x.shape, self.ndim)
        bands = _full(subband.bands(_axes_shape(x.shape, self.ndim), levels))
        y = forward(x - offset, self.ndim, levels)
        q = subband.quantize(y, step, ROUNDING)
        thetas = subband.thetas_for(y, q, step, bands)
        q, steps = subband.quantize_rd(y, step, levels, LAMBDA, subband.rate_table(q, levels), thetas)
        payload, escapes, radii = subband.encode_steps(steps)
        return self._latents(Coded(offset=offset, step=step, levels=levels, thetas=subband.thetas_for(y, q, step, bands),
                                   radii=radii, escapes=escapes, integer=False, crc32=_crc(q), payload=payload),
                             x.shape)

    def compress_to(self, x: np.ndarray, target_mse: float, vrange: float, integer: bool = False):
        c, x_hat = encode(x, self.ndim, target_mse, vrange, integer)
        return self._latents(c, x.shape), x_hat

    def decompress(self, latents: Latents) -> np.ndarray:
        try:
            return decode(self.coding(latents), latents.shape, self.ndim)
        except ContainerError:
            raise
        except ValueError as err:
            raise ContainerError(f"{err}; the container is corrupted") from None

    def latent_codes(self, latents: Latents) -> dict[str, tuple[np.ndarray, float]]:
        """Per subband, ``level<L>_<L or H per axis>``: its codes (planes first) and step."""
        c = self.coding(latents)
        try:
            q, bands = codes(c, latents.shape, self.ndim)
        except ValueError as err:
            raise ContainerError(f"{err}; the container is corrupted") from None
        return {f"level{b.level}_" + "".join("H" if o else "L" for o in b.orientation):
                (np.ascontiguousarray(q[(slice(None),) + b.box]), c.step) for b in bands}
