"""Error-bounded modes: from a user's bound to codes whose reconstruction keeps it.

    x ──(fill non-finite)──▶ x_f ──[base = the autoencoder's x_hat, optional]──▶
      r = x_f - base ──interp──▶ codes ──adaptive range coder──▶ "residuals"
                                 exact values ───────────────────▶ "exact"

Modes (SZ's conventions): ``abs`` E; ``rel`` E = R × value range of the finite values;
``psnr`` the loosest E whose PSNR is at least P; ``pw_rel`` |x - x_hat| ≤ R |x| for every
value, coded as an absolute bound on log2|x| with signs and zeros kept exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ContainerError, UnsupportedDataError, UsageError
from . import adaptive, interp, mask

MODES = ("abs", "rel", "psnr", "pw_rel")
PW_SLACK = 2.0**-20  # taken off log2(1 + R): covers float32 rounding and exp2's last bit


@dataclass(frozen=True, kw_only=True)
class Bound:
    """A user's request: ``mode`` and its ``value`` (E, R or P)."""

    mode: str
    value: float

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"unknown error-bound mode {self.mode!r}; use one of {', '.join(MODES)}")
        if not math.isfinite(self.value):
            raise UsageError(f"the --{self.mode.replace('_', '-')} bound must be a finite number")
        if self.value < 0 or (self.mode == "psnr" and self.value <= 0):
            raise UsageError(f"the --{self.mode.replace('_', '-')} bound must be positive, got {self.value:g}")


def absolute_bound(bound: Bound, value_range: float, integer: bool) -> float:
    """E for modes abs, rel, psnr (the first guess; psnr is refined by the caller)."""
    if bound.mode == "abs":
        e = bound.value
    elif bound.mode == "rel":
        e = bound.value * value_range
    else:  # uniform quantization error: MSE = E^2 / 3
        e = value_range * 10 ** (-bound.value / 20) * math.sqrt(3)
    if integer:
        e = math.floor(e)
    elif e == 0:
        raise UsageError(
            "a zero error bound on float data would need lossless coding, which aezip does not do: "
            "give a positive bound (integer arrays accept --abs 0)"
        )
    return e


def fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """x with its invalid values (NaN, Inf, declared fill values) replaced by smooth stand-ins
    (mask.fill), so that they never reach a predictor or the network; they are stored apart."""
    if valid.all():
        return x
    if not valid.any():
        raise UnsupportedDataError("the array has no finite value that is not a fill value; there is nothing to compress")
    return mask.fill(x, valid).astype(x.dtype)


@dataclass(frozen=True, kw_only=True)
class Residual:
    """What the residual coder stores for one array."""

    stream: bytes  # adaptive range coder words, then escaped codes (int32)
    escapes: int
    radii: list[int]
    levels: int
    predictors: list[int]  # per step: interp.CUBIC, LINEAR, MEAN, FITTED or predictor_along(axes, cubic)
    order: str  # the interpolation's visiting order: interp.AXES (format v1), GROUPS or DIAMOND
    weights: list[int]  # the FITTED steps' weights, in step order
    exact: np.ndarray  # float64, values stored exactly, in visiting order
    coarse: tuple = ()  # (q, S): the anchors and the steps of stride S or more within e / q (interp.step_bound)
    bits: np.ndarray | None = None  # each value's estimated cost (interp.code_bits), when asked for


def planes_shape(shape: tuple[int, ...], ndim: int | None) -> tuple[int, ...]:
    """The shape the interpolation runs over: ``shape``, or with ``ndim`` spatial axes
    fewer than its axes, the leading axes merged into the first spatial one (a C-order
    reshape), so that the planes are coded one after another and never interpolated
    across, but at their seams."""
    if ndim is None or ndim >= len(shape):
        return tuple(shape)
    lead = len(shape) - ndim
    return (math.prod(shape[: lead + 1]),) + tuple(shape[lead + 1:])


def encode(x: np.ndarray, e: float, *, dtype, integer: bool, base: np.ndarray | None = None,
           exact_where: np.ndarray | None = None, bits: bool = False,
           coarse: tuple = (), ndim: int | None = None, band: int = interp.BAND) -> tuple[Residual, np.ndarray]:
    """Code float64 field x within e in the visiting order :func:`choose_orders` picks (in
    each it offers, keeping the smaller); returns the residual record and the decoder's
    x_hat (float64). Values where ``exact_where`` is set are stored exactly. ``bits``:
    the record also estimates each value's cost. ``coarse``: tighter bounds on the coarse
    steps (interp.step_bound). ``ndim``: the spatial axes, the others a batch of planes
    (:func:`planes_shape`; all by default). ``band``: interp.encode's."""
    shape, flat = x.shape, planes_shape(x.shape, ndim)
    if flat != shape:
        x = x.reshape(flat)
        base = None if base is None else base.reshape(flat)
        exact_where = None if exact_where is None else exact_where.reshape(flat)
    best = None
    for order in choose_orders(x if base is None else x - base, e, integer=integer, coarse=coarse):
        coded, r_hat = interp.encode(x, e, base=base, dtype=dtype, integer=integer, order=order,
                                     exact_where=exact_where, coarse=coarse, band=band)
        data, n_esc, radii = adaptive.encode(list(zip(coded.codes, coded.contexts)), interp.CONTEXTS)
        exact = np.concatenate(coded.exact) if coded.exact else np.zeros(0)
        res = Residual(stream=data, escapes=n_esc, radii=radii, levels=coded.levels, predictors=coded.predictors,
                       order=order, weights=coded.weights, exact=exact.astype(np.float64), coarse=tuple(coarse),
                       bits=interp.code_bits(coded, x.shape, order).reshape(shape) if bits else None)
        if best is None or _bytes(res) < _bytes(best[0]):
            best = res, r_hat
    res, r_hat = best
    return res, (r_hat if base is None else base + r_hat).reshape(shape)


def _bytes(res: Residual) -> float:
    return len(res.stream) + res.exact.nbytes + interp.FIT_COST / 8 * len(res.weights)


CHOICE_VALUES = 1 << 16  # the visiting order is estimated on a central crop of about this many values
CLOSE = 0.03  # ... and arrays of up to BOTH_VALUES values are coded in both orders when the estimates are this close
BOTH_VALUES = 1 << 18


def choose_orders(r: np.ndarray, e: float, *, integer: bool, coarse: tuple = ()) -> list[str]:
    """The interpolation orders to code field r in: the one of interp.GROUPS and DIAMOND
    that :func:`interp.estimate` finds cheaper on a central crop, or both for a small
    array on which the estimates are close (they rank the orders right when they differ
    by more). In 1-D there is no choice: the orders are one."""
    if r.ndim < 2:
        return [interp.GROUPS]
    crop = r[_crop(r.shape, CHOICE_VALUES)]
    bits = {order: interp.estimate(crop, e, order, integer, coarse) for order in (interp.GROUPS, interp.DIAMOND)}
    ranked = sorted(bits, key=bits.get)
    if r.size <= BOTH_VALUES and bits[ranked[1]] <= (1 + CLOSE) * bits[ranked[0]]:
        return ranked
    return ranked[:1]


def _crop(shape: tuple[int, ...], limit: int) -> tuple[slice, ...]:
    """A central box of ``shape`` with at most ``limit`` values (the longest axis halved
    until it fits), or the whole shape."""
    size = list(shape)
    while math.prod(size) > limit:
        a = size.index(max(size))
        size[a] = (size[a] + 1) // 2
    return tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(shape, size))


def decode(res: Residual, shape: tuple[int, ...], e: float, *, integer: bool,
           base: np.ndarray | None = None, ndim: int | None = None, band: int = interp.BAND) -> np.ndarray:
    """The field of ``shape`` that :func:`encode` returned for ``res`` (``ndim`` as given
    there; ``band``: interp.decode's)."""
    flat = planes_shape(tuple(shape), ndim)
    return _decode(res, flat, e, integer=integer, base=None if base is None else base.reshape(flat),
                   band=band).reshape(shape)


def _decode(res: Residual, shape: tuple[int, ...], e: float, *, integer: bool, base: np.ndarray | None,
            band: int) -> np.ndarray:
    decoder = adaptive.Decoder(res.stream, res.escapes, res.radii, interp.CONTEXTS)
    used = 0

    def read(step: int, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal used
        codes = decoder.read(step, contexts)
        n = int((codes == interp.ESCAPE).sum())
        if used + n > res.exact.size:
            raise ContainerError("fewer exactly stored values than the codes need; the container is corrupted")
        used += n
        return codes, res.exact[used - n : used]

    if len(res.predictors) != len(res.radii) or res.levels > 30:
        raise ContainerError("the residual record lists steps inconsistently; the container is corrupted")
    try:
        interp.step_weights(shape, res.levels, res.order, res.predictors, res.weights)
    except ValueError as err:
        raise ContainerError(f"the residual record's predictors do not fit the array ({err}); "
                             "the container is corrupted") from None
    r_hat = interp.decode(read, shape, e, res.levels, res.predictors, integer=integer, order=res.order,
                          weights=res.weights, coarse=res.coarse, band=band)
    decoder.finish()
    if used != res.exact.size:
        raise ContainerError("exactly stored values left over; the container is corrupted")
    return r_hat if base is None else base + r_hat


def pw_forward(x: np.ndarray, r: float, integer: bool = False) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Point-wise relative mode: (log2|x| with zeros filled, its absolute bound, sign bits,
    zero mask). On integers (``integer``) the bound is log2(1 + r/2): a value x̂ within r|x|/2
    of x rounds to an integer within r|x| of it (within 0 when r|x| < 1, else floor(r|x|) +
    1/2 > r|x|/2), where one within r|x| could round past the bound."""
    if r <= PW_SLACK * 4 or r >= 1:
        raise UsageError(f"--pw-rel must lie between {PW_SLACK * 4:.1g} and 1, got {r:g}")
    zero = x == 0
    magnitude = np.abs(x.astype(np.float64))
    y = np.log2(np.where(zero, 1.0, magnitude))
    if zero.any() and (~zero).any():
        y[zero] = float(np.min(y[~zero]))
    return y, math.log2(1 + (r / 2 if integer else r)) - PW_SLACK, np.signbit(x), zero


def pw_exact(x: np.ndarray, r: float, dtype) -> np.ndarray:
    """Where the point-wise relative mode stores values exactly: values of a float ``dtype``
    too small to be normal (their rounding is coarser than the bound allows), and values
    so large that one within the bound could lie beyond the dtype (float or integer)."""
    kind = np.dtype(dtype).kind
    info = np.finfo(dtype) if kind == "f" else np.finfo(np.float64)
    limit = float(np.iinfo(dtype).max) if kind in "iu" else float(info.max)
    magnitude = np.abs(x)
    return ((magnitude < info.tiny) & (magnitude > 0)) | (magnitude * (1 + 2 * r) >= limit)


def pw_inverse(y_hat: np.ndarray, negative: np.ndarray, zero: np.ndarray) -> np.ndarray:
    x_hat = np.exp2(y_hat)
    x_hat[negative] *= -1
    x_hat[zero] = np.where(negative[zero], -0.0, 0.0)
    return x_hat
