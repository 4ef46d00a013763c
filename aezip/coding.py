"""Code one array into a container entry, and back. The decoder's functions are the
ones the encoder runs to measure what it promises.

storage   when                                    streams
constant  every finite value equal                -
raw       coding would not make it smaller        values
latent    plain learned mode (no bound given)     latents
bounded   --abs/--rel/--psnr/--pw-rel, integers   residuals, exact (+ latents when the
                                                  model's prediction pays off; + signs,
                                                  zeros in pw_rel)
Values that are not data, in any storage: NaN, Inf and declared fill values go to
"mask" (packed bits) and "masked_values", exactly; they never reach a predictor.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
import zlib

import numpy as np

from . import progress
from .codec import adaptive, bounded, entropy
from .codec.normalize import Normalization
from .codec.tile import tile, untile
from .container import ArrayEntry, CodecParams, Figures, ModelRef
from .errors import ChecksumError, ContainerError, UnsupportedDataError, UsageError
from .metrics import Quality, abs_error_ratio, max_error_ratio, psnr, valid_mask, value_range

INT_LIMIT = 2**53  # integers beyond this are not exact in float64
DRIFT = 2.0**-16  # allowed drift of the network's output between machines, relative to the half range


class PredictionDriftWarning(UserWarning):
    """The model's prediction differs from the encoder's by more than the drift aezip allows."""


class Models:
    """The models a container uses, loaded once each, listed in order of first use."""

    def __init__(self, spec: str | None, device: str):
        from .model import load_model, resolve_device

        self._load, self.spec = load_model, spec
        self.device = resolve_device(device)
        self.embedded: bytes | None = None  # a model file carried by the container being decoded
        self.refs: list[ModelRef] = []
        self._by_ndim: dict[int, object] = {}

    def for_ndim(self, d: int):
        if d not in self._by_ndim:
            self._by_ndim[d] = self._load(self.spec, ndim=d, device=self.device)
        return self._by_ndim[d]

    def fit_to(self, d: int, arrays, steps: int, version: str, report=None) -> None:
        """Replace the model for ``d`` spatial axes by one fine-tuned on ``arrays``; the
        container then carries it (``embedded``)."""
        from .model.fit import fit

        self.embedded = fit(self.for_ndim(d), arrays, steps=steps, version=version, report=report)
        self._by_ndim[d] = self._load(None, embedded=self.embedded, device=self.device)

    def use(self, model) -> int:
        """Index of ``model`` in the container's model list, adding it on first use."""
        ids = [r.id for r in self.refs]
        if model.id not in ids:
            self.refs.append(ModelRef(id=model.id, name=model.name, config=model.config.to_dict()))
            ids.append(model.id)
        return ids.index(model.id)

    def for_ref(self, ref: ModelRef):
        return self._load(self.spec, model_id=ref.id, embedded=self.embedded, device=self.device)


def check_dtype(x: np.ndarray, name: str) -> None:
    what = f"array {name!r}" if name else "the array"
    if x.dtype.kind not in "fiu" or x.dtype == np.float16 or x.dtype.itemsize > 8:
        raise UnsupportedDataError(f"{what} is {x.dtype}; aezip compresses float32, float64 and integer arrays")
    if x.size == 0:
        raise UnsupportedDataError(f"{what} is empty (shape {x.shape}); there is nothing to compress")
    if x.dtype.kind in "iu" and x.size and max(abs(int(x.min())), abs(int(x.max()))) >= INT_LIMIT:
        raise UnsupportedDataError(f"{what} holds integers beyond 2**53, which aezip cannot code exactly")


def spatial_ndim(shape: tuple[int, ...], ndim: int | None) -> int:
    """Trailing axes that are spatial: ``ndim`` if given, else all axes up to 3."""
    if ndim is None:
        return min(len(shape), 3)
    if ndim not in (1, 2, 3):
        raise UsageError(f"--ndim must be 1, 2 or 3, got {ndim}")
    if ndim > len(shape):
        raise UsageError(f"--ndim {ndim} but the array has only {len(shape)} axes (shape {shape})")
    return ndim


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes()) & 0xFFFFFFFF


# --- the learned part: x -> latents -> x_hat ---------------------------------------

def _latents(x: np.ndarray, d: int, models: Models, name: str):
    """Encode with the default (or chosen) model: (codec fields, latents stream, x_hat in float64)."""
    norm = Normalization.fit(x)
    model = models.for_ndim(d)
    x_b = x.reshape((-1,) + x.shape[x.ndim - d:])
    tiles = tile(norm.forward(x_b), model.tile)
    with progress.bar(tiles.shape[0], f"encode {name}".strip()) as advance:
        y_hat = model.encode(tiles, advance)
    fields = dict(ndim=d, tile=model.tile, offset=norm.offset, scale=norm.scale, latent_shape=list(y_hat.shape),
                  symbols_crc32=_crc(y_hat))
    data, n_escapes = entropy.encode(y_hat, model.tables)
    learned, n_learned, radii = adaptive.encode_channels(y_hat, model.tables)
    if len(learned) < len(data):  # the array's latents are unlike the training data's: learn their statistics
        data, fields = learned, dict(fields, escapes=n_learned, latent_coding="adaptive", latent_radii=radii)
    else:
        fields["escapes"] = n_escapes
    x_hat = _reconstruct(model, norm, y_hat, x_b.shape, name).reshape(x.shape)
    return fields, model, np.frombuffer(data, dtype=np.uint8), x_hat


def _reconstruct(model, norm: Normalization, y_hat: np.ndarray, batch_shape: tuple[int, ...], name: str) -> np.ndarray:
    with progress.bar(y_hat.shape[0], f"decode {name}".strip()) as advance:
        x_hat_tiles = model.decode(y_hat, advance)
    return norm.inverse(untile(x_hat_tiles[:, 0], batch_shape), np.float64)


def _latents_back(entry: ArrayEntry, models: Models, refs) -> np.ndarray:
    """x_hat (float64) of the latent part of an entry."""
    c = entry.codec
    if not 0 <= c.model < len(refs):
        raise ContainerError(f"array {entry.name!r} names model #{c.model}, which the container does not list")
    model = models.for_ref(refs[c.model])
    stream = entry.streams.get("latents")
    if stream is None or stream.dtype != np.uint8:
        raise ContainerError(f"array {entry.name!r}: latent stream missing; the container is corrupted")
    shape = entry.part_shape
    if len(shape) < c.ndim:
        raise ContainerError(f"array {entry.name!r} has {len(shape)} axes but was coded with {c.ndim} spatial axes; "
                             "the container is corrupted")
    spatial = tuple(shape[len(shape) - c.ndim:])
    batch = int(np.prod(shape[: len(shape) - c.ndim], dtype=np.int64))
    n_tiles = batch * int(np.prod([math.ceil(n / c.tile) for n in spatial]))
    latent_shape = tuple(int(n) for n in c.latent_shape)
    if latent_shape != model.latent_shape(n_tiles) or c.tile != model.tile:
        raise ContainerError(f"array {entry.name!r}: latent shape {latent_shape} does not fit model {model.name}")
    if c.latent_coding == "adaptive":
        y_hat = adaptive.decode_channels(stream.tobytes(), c.escapes, c.latent_radii, latent_shape, model.tables)
    else:
        y_hat = entropy.decode(stream.tobytes(), c.escapes, model.tables, latent_shape)
    if _crc(y_hat) != c.symbols_crc32:
        raise ChecksumError(f"array {entry.name!r}: decoded latents fail their checksum; the container is corrupted")
    norm = Normalization(offset=c.offset, scale=c.scale)
    return _reconstruct(model, norm, y_hat, (batch,) + spatial, entry.name).reshape(shape)


# --- encoders per storage ------------------------------------------------------------

def _raw(x: np.ndarray):
    return CodecParams(storage="raw"), {"values": x.reshape(-1)}, x.astype(np.float64)


def _learned(x: np.ndarray, d: int, models: Models, name: str):
    fields, model, stream, x_hat = _latents(x, d, models, name)
    if stream.nbytes >= x.nbytes:  # never worse than raw: store the values exactly
        return _raw(x)
    return CodecParams(storage="latent", model=models.use(model), **fields), {"latents": stream}, x_hat


def _cast(x_hat: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """x_hat in ``dtype``; ContainerError if its values do not fit (the encoder never makes
    such values: a record that was tampered with)."""
    if dtype.kind in "iu":
        x_hat = np.rint(x_hat)
        info = np.iinfo(dtype)
        if x_hat.size and not (info.min <= np.min(x_hat) and np.max(x_hat) <= info.max):
            raise ContainerError(f"decoded values do not fit {dtype.name}; the container is corrupted")
    elif dtype.itemsize < 8 and x_hat.size and np.max(np.abs(x_hat)) > np.finfo(dtype).max:
        raise ContainerError(f"decoded values do not fit {dtype.name}; the container is corrupted")
    return x_hat.astype(dtype)


def _model_may_pay(model, n_values: int, classical: int, e: float, scale: float) -> bool:
    """Whether trying the model (an encode and a decode) can pay: not when its latents alone,
    at half the rate it reached on its validation tiles, cost more than the classical
    residuals, nor when its typical error (from its validation PSNR on [-1, 1] tiles) is
    many times the bound: then x - prediction is rougher than x and interpolates worse."""
    summary = model.summary
    bpv = float(summary.get("val_bits_per_value", 0.0))
    rms = 2.0 * 10 ** (-float(summary.get("val_psnr_normalized", 0.0)) / 20) * scale
    return 0.5 * bpv * n_values / 8 < classical and rms <= 4 * e


# The model is tried when its estimated cost is below MAY_PAY times the classical one (on
# the development arrays the estimate was at most 1.7 times the real cost: interpolating
# the residual does better than its zeroth-order entropy).
MAY_PAY = 2.0
SAMPLE_VALUES = 1 << 16  # values the model is run on for that estimate


def sampled_model_bytes(x: np.ndarray, d: int, model, e: float) -> float:
    """Estimated bytes of the model's path for ``x`` within ``e``, from every k-th tile:
    the latents under the model's tables plus the zeroth-order entropy of the residual
    codes at step 2e, scaled to the whole array. A quick look (1/k of the work) before
    running the model on everything."""
    norm = Normalization.fit(x)
    tiles = tile(norm.forward(x.reshape((-1,) + x.shape[x.ndim - d:])), model.tile)
    sample = tiles[:: max(1, tiles.size // SAMPLE_VALUES)]
    y_hat = model.encode(sample)
    r = (sample.astype(np.float64) - model.decode(y_hat).astype(np.float64)) * norm.scale
    residual_bits = entropy.empirical_bits(np.unique(np.rint(r / (2 * e)), return_counts=True)[1])
    return (entropy.ideal_bits(y_hat, model.tables) + residual_bits) / 8 * tiles.shape[0] / sample.shape[0]


def prefer_model(with_model: int, classical: int) -> bool:
    """Keep the model's prediction only where it makes the array smaller."""
    return with_model < classical


def integer_valued(x: np.ndarray, e: float) -> bool:
    """Float data holding only integers (sensor counts, DEMs, images stored as floats), with a
    bound for which integer coding (step 2 floor(E) + 1) is at least as fine as step 2E."""
    limit = 2**24 if x.dtype == np.float32 else INT_LIMIT
    head = x.reshape(-1)[:4096]  # most float data shows a fraction at once: spare the full pass
    return (2 * math.floor(e) + 1 >= 2 * e and bool(np.all(np.rint(head) == head))
            and bool(np.all(np.rint(x) == x)) and float(np.max(np.abs(x))) <= limit)


def _bounded(x: np.ndarray, d: int, models: Models | None, name: str, bound: bounded.Bound, vrange: float):
    """Residual coding within the bound; with a model, also tries its prediction as the base."""
    integer = x.dtype.kind in "iu"
    xd = x.astype(np.float64)
    streams: dict[str, np.ndarray] = {}
    exact_where = None
    if bound.mode == "pw_rel":
        field, e, negative, zero = bounded.pw_forward(xd, bound.value)
        exact_where = bounded.pw_exact(xd, bound.value, x.dtype)
        if negative.any():
            streams["signs"] = np.packbits(negative.reshape(-1))
        if zero.any():
            streams["zeros"] = np.packbits(zero.reshape(-1))
        out_dtype = np.dtype(np.float64)  # the bound check is made in the log domain
    else:
        field, e, out_dtype = xd, bounded.absolute_bound(bound, vrange, integer), x.dtype
        if not integer and integer_valued(x, e):
            integer, e = True, float(math.floor(e))

    learned = []  # the model's latents and prediction, computed once

    def code(e: float):
        res, f_hat = bounded.encode(field, e, dtype=out_dtype, integer=integer, exact_where=exact_where)
        best = ({}, res, f_hat)
        if models is not None and not integer and bound.mode != "pw_rel":
            scale = Normalization.fit(x).scale
            margin = DRIFT * scale
            classical = len(res.stream) + res.exact.nbytes
            model = models.for_ndim(d)
            if e > 8 * margin and _model_may_pay(model, x.size, classical, e, scale) \
                    and sampled_model_bytes(x, d, model, e) < MAY_PAY * classical:
                if not learned:
                    learned.append(_latents(x, d, models, name))
                fields, model, latents, base = dict(learned[0][0]), *learned[0][1:]
                res_m, f_hat_m = bounded.encode(field, e, dtype=out_dtype, integer=False, base=base, margin=margin)
                if prefer_model(latents.nbytes + len(res_m.stream) + res_m.exact.nbytes,
                                len(res.stream) + res.exact.nbytes):
                    fields.update(base="model", margin=margin,
                                  base_check=[float(np.sum(base)), float(np.sum(base * base))])
                    best = ({"fields": fields, "latents": latents, "model": model}, res_m, f_hat_m)
        return best

    extra, res, f_hat = code(e)
    if bound.mode == "psnr":  # tighten until the PSNR is reached (the uniform-error guess is close)
        for _ in range(4):
            achieved = psnr(Quality.measure(x, _cast(f_hat, x.dtype)).mse, vrange)
            if achieved is None or achieved >= bound.value:
                break
            e *= 10 ** (-(bound.value - achieved) / 20) * 0.98
            e = math.floor(e) if integer else e
            extra, res, f_hat = code(e)
    x_hat = bounded.pw_inverse(f_hat, np.signbit(xd), xd == 0) if bound.mode == "pw_rel" else f_hat
    fields = extra.get("fields", {})
    if "model" in extra:
        fields["model"] = models.use(extra["model"])
    codec = CodecParams(storage="bounded", mode=bound.mode, bound=e, levels=res.levels, radii=res.radii,
                        predictors=res.predictors, residual_escapes=res.escapes, integer=integer,
                        interpolation=res.order, weights=res.weights, **fields)
    streams["residuals"] = np.frombuffer(res.stream, dtype=np.uint8)
    if res.exact.size:
        streams["exact"] = res.exact
    if "latents" in extra:
        streams["latents"] = extra["latents"]
    figure_bound = bound.value if bound.mode == "pw_rel" else e
    if sum(s.nbytes for s in streams.values()) >= x.nbytes:  # never worse than raw (exact)
        return _raw(x) + (figure_bound,)
    return codec, streams, x_hat, figure_bound


def _exact_bound(bound: bounded.Bound | None) -> float | None:
    """The bound figure of an array stored exactly: 0, or the relative bound in pw_rel mode."""
    return None if bound is None else (bound.value if bound.mode == "pw_rel" else 0.0)


def encode_array(x: np.ndarray, name: str, models: Models | None, ndim: int | None, *,
                 bound: bounded.Bound | None = None, order: str = "C", byteorder: str = "<",
                 fill_values: tuple[float, ...] = (), vrange: float | None = None,
                 full_shape: tuple[int, ...] | None = None,
                 slab: tuple[int, int] | None = None) -> tuple[ArrayEntry, np.ndarray]:
    """Code one array, or one slab of it; returns its container entry and exactly what the
    decoder will return.

    ``fill_values`` (declared by the source) are kept exactly like NaN and Inf and left out
    of the value range and every error figure. For a slab, ``x`` holds rows ``slab`` of an
    array of shape ``full_shape`` whose valid values span ``vrange`` (bounds and PSNR are
    relative to the whole array)."""
    t0 = time.perf_counter()
    check_dtype(x, name)
    d = spatial_ndim(tuple(x.shape if full_shape is None else full_shape), ndim)
    if x.dtype.kind in "iu" and bound is None:
        bound = bounded.Bound(mode="abs", value=0)  # integers: lossless unless a bound is given
    valid = valid_mask(x, fill_values)
    x_f = bounded.fill_invalid(x, valid)
    own_range = value_range(x, valid)
    vrange = own_range if vrange is None else vrange
    figure_bound = None
    if own_range == 0:
        codec, streams, x_hat = CodecParams(storage="constant", offset=float(x_f.reshape(-1)[0])), {}, None
        x_hat = np.full(x.shape, codec.offset)
        figure_bound = _exact_bound(bound)
    elif not math.isfinite(vrange * vrange):  # squared errors would overflow float64: kept exactly
        if bound is not None and bound.mode != "pw_rel":
            bounded.absolute_bound(bound, vrange, x.dtype.kind in "iu")  # the same refusals as coded arrays
        codec, streams, x_hat = _raw(x_f)
        figure_bound = _exact_bound(bound)
    elif bound is None:
        codec, streams, x_hat = _learned(x_f, d, models, name)
    else:
        codec, streams, x_hat, figure_bound = _bounded(x_f, d, models, name, bound, vrange)
    x_hat = _cast(x_hat, x.dtype)
    if not valid.all():
        streams["mask"] = np.packbits(~valid.reshape(-1))
        streams["masked_values"] = x[~valid]
        x_hat[~valid] = x[~valid]
    if fill_values:
        codec = dataclasses.replace(codec, fill_values=list(fill_values))
    q = Quality.measure(x, x_hat, valid, vrange)
    kind = "pw_rel" if bound is not None and bound.mode == "pw_rel" else "abs"
    if figure_bound is None:
        ratio = None
    elif kind == "abs":  # the max error just measured, against the bound
        ratio = abs_error_ratio(q.max_abs_error, figure_bound)
    else:
        ratio = max_error_ratio(x, x_hat, figure_bound, kind, valid)
    figures = Figures(
        original_bytes=int(x.nbytes), coded_bytes=int(sum(s.nbytes for s in streams.values())), mse=q.mse,
        psnr=q.psnr, max_abs_error=q.max_abs_error, value_range=vrange, seconds=round(time.perf_counter() - t0, 6),
        bound=figure_bound, bound_kind=kind,
        max_error_ratio=ratio,
        invalid_values=int(x.size - np.count_nonzero(valid)),
    )
    entry = ArrayEntry(name=name, shape=tuple(x.shape if full_shape is None else full_shape), dtype=x.dtype.name,
                       order=order, byteorder=byteorder, codec=codec, figures=figures, streams=streams, slab=slab)
    return entry, x_hat


def decode_array(entry: ArrayEntry, models: Models, refs) -> np.ndarray:
    """Reconstruct one array from its entry (native byte order, C order)."""
    c, dtype = entry.codec, np.dtype(entry.dtype)
    if c.storage == "constant":
        x_hat = np.full(entry.part_shape, c.offset)
    elif c.storage == "raw":
        v = entry.streams.get("values")
        if v is None or v.size != entry.size:
            raise ContainerError(f"array {entry.name!r}: raw stream missing or of the wrong length; the container is corrupted")
        x_hat = v.reshape(entry.part_shape)
    elif c.storage == "latent":
        x_hat = _latents_back(entry, models, refs)
    else:
        x_hat = _bounded_back(entry, models, refs)
    x_hat = _cast(x_hat, dtype)
    if "mask" in entry.streams:
        mask = np.unpackbits(entry.streams["mask"], count=entry.size).astype(bool).reshape(entry.part_shape)
        values = entry.streams.get("masked_values", np.zeros(0))
        if values.size != int(mask.sum()):
            raise ContainerError(f"array {entry.name!r}: masked values do not match their mask; the container is corrupted")
        x_hat[mask] = values
    return x_hat


def _bounded_back(entry: ArrayEntry, models: Models, refs) -> np.ndarray:
    c = entry.codec
    base = None
    if c.base == "model":
        base = _latents_back(entry, models, refs)
        check = [float(np.sum(base)), float(np.sum(base * base))]
        if c.base_check and not np.allclose(check, c.base_check, rtol=1e-5, atol=c.margin * base.size):
            warnings.warn(f"array {entry.name!r}: the model's prediction differs from the encoder's by more than "
                          "aezip allows; the error bound may not hold on this machine", PredictionDriftWarning)
    res = bounded.Residual(stream=entry.streams.get("residuals", np.zeros(0, np.uint8)).tobytes(),
                           escapes=c.residual_escapes, radii=list(c.radii), levels=c.levels, predictors=list(c.predictors),
                           order=c.interpolation, weights=list(c.weights),
                           exact=entry.streams.get("exact", np.zeros(0)).astype(np.float64))
    integer = c.integer or np.dtype(entry.dtype).kind in "iu"
    f_hat = bounded.decode(res, entry.part_shape, c.bound, integer=integer, base=base)
    if c.mode != "pw_rel":
        return f_hat
    n = entry.size

    def bits(key):
        s = entry.streams.get(key)
        return np.zeros(entry.part_shape, bool) if s is None else np.unpackbits(s, count=n).astype(bool).reshape(entry.part_shape)

    return bounded.pw_inverse(f_hat, bits("signs"), bits("zeros"))
