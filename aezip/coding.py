"""Code one array into a container entry, and back. The decoder's functions are the
ones the encoder runs to measure what it promises.

storage   when                                    streams
constant  every finite value equal                -
raw       coding would not make it smaller        values
latent    plain learned mode (no bound given)     latents
bounded   --abs/--rel/--psnr/--pw-rel, integers   residuals, exact (+ latents where the
                                                  model's prediction pays off, + tiles
                                                  when on some tiles only; + signs,
                                                  zeros in pw_rel)
Values that are not data, in any storage: NaN, Inf and declared fill values go to
"nodata" (codec.mask: run lengths and a palette of their bit patterns, format version 5;
earlier files: "mask", packed bits, and "masked_values"), exactly; they never reach a predictor.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
import zlib

import numpy as np

from . import progress
from .codec import adaptive, architecture, axes, bounded, entropy, interp, mask, postfilter
from .codec.normalize import Normalization
from .codec.tile import spread, tile, tile_sums, untile
from .container import ArrayEntry, CodecParams, Figures, ModelRef, model_of
from .errors import ChecksumError, ContainerError, UnsupportedDataError, UsageError
from .metrics import Quality, abs_error_ratio, max_error_ratio, psnr, valid_mask, value_range
from .options import DEFAULT as DEFAULT_OPTIONS
from .options import EncoderOptions

INT_LIMIT = 2**53  # integers beyond this are not exact in float64
FLOAT_MAX = float(np.finfo(np.float64).max)  # the figure of a value range beyond float64 (stored exactly)
DRIFT = 2.0**-16  # allowed drift of the network's output between machines, relative to the half range
DEVICES = ("auto", "cpu", "cuda")


class PredictionDriftWarning(UserWarning):
    """The model's prediction differs from the encoder's by more than the drift aezip allows."""


class Models:
    """The models of a compression or decompression, loaded once each."""

    def __init__(self, spec: str | None, device: str):
        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
        self.spec, self._device = spec, device
        self.embedded: bytes | None = None  # a model file carried by the container being decoded
        self._by_ndim: dict[int, object] = {}

    @property
    def device(self) -> str:
        """The device the networks run on, resolved (which imports torch) when one first runs."""
        if self._device == "auto" or self._device == "cuda":
            from .model import resolve_device

            self._device = resolve_device(self._device)
        return self._device

    def _load(self, spec: str | None, **how):
        from .model import load_model  # torch: only when a network is to run

        return load_model(spec, device=self.device, **how)

    def for_ndim(self, d: int):
        if d not in self._by_ndim:
            self._by_ndim[d] = self._load(self.spec, ndim=d)
        return self._by_ndim[d]

    def summary(self, d: int) -> dict:
        """The training summary of the model for ``d`` spatial axes, read from its header
        while it is not loaded (no torch)."""
        if d in self._by_ndim:
            return self._by_ndim[d].summary
        from .model import model_header

        return model_header(self.spec, ndim=d)["summary"]

    def fit_to(self, d: int, arrays, steps: int, version: str, report=None) -> None:
        """Replace the model for ``d`` spatial axes by one fine-tuned on ``arrays``; the
        container then carries it (``embedded``)."""
        from .model.fit import fit

        self.embedded = fit(self.for_ndim(d), arrays, steps=steps, version=version, report=report)
        self._by_ndim[d] = self._load(None, embedded=self.embedded)

    def ref(self, model_id: str, d: int) -> ModelRef:
        """The container's record of model ``model_id``, which coded an entry of ``d``
        spatial axes here or in a forked worker: from the model loaded here, else from the
        header of its file (no torch)."""
        model = self._by_ndim.get(d)
        if model is not None and model.id == model_id:
            return ModelRef(id=model.id, name=model.name, config=model.config.to_dict())
        from .model import model_header

        h = model_header(self.spec, ndim=d)
        if h["id"] != model_id:
            raise RuntimeError(f"an entry names model {model_id[:12]}, but this compression's model for {d}-D data "
                               f"is {h['id'][:12]}")
        return ModelRef(id=h["id"], name=h["name"], config=h["config"])

    def refs_for(self, entries) -> tuple[ModelRef, ...]:
        """The container's model list: the models ``entries`` name, in order of first use."""
        ids = {e.codec.model_id: e.codec.ndim for e in entries if e.codec.model_id}
        return tuple(self.ref(i, d) for i, d in ids.items())

    def for_ref(self, ref: ModelRef):
        return self._load(self.spec, model_id=ref.id, embedded=self.embedded)


def check_dtype(x: np.ndarray, name: str) -> None:
    what = f"array {name!r}" if name else "the array"
    if x.dtype.kind not in "fiu" or x.dtype == np.float16 or x.dtype.itemsize > 8:
        raise UnsupportedDataError(f"{what} is {x.dtype}; aezip compresses float32, float64 and integer arrays")
    if x.size == 0:
        raise UnsupportedDataError(f"{what} is empty (shape {x.shape}); there is nothing to compress")
    if x.dtype.kind in "iu" and x.size and max(abs(int(x.min())), abs(int(x.max()))) >= INT_LIMIT:
        raise UnsupportedDataError(f"{what} holds integers beyond 2**53, which aezip cannot code exactly")


def spatial_ndim(shape: tuple[int, ...], ndim: int | None) -> int:
    """Trailing axes that are spatial: ``ndim`` if given (checked), else all axes up to 3."""
    if ndim is None:
        return axes.default_ndim(shape)
    if ndim not in (1, 2, 3):
        raise UsageError(f"--ndim must be 1, 2 or 3, got {ndim}")
    if ndim > len(shape):
        raise UsageError(f"--ndim {ndim} but the array has only {len(shape)} axes (shape {shape})")
    return ndim


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpatialAxes:
    """The trailing ``ndim`` axes of an array are spatial, the others a batch of planes;
    ``given``: by --ndim, else chosen from the data (codec.axes)."""

    ndim: int
    given: bool


def spatial_axes(x, ndim: int | None, fill_values: tuple[float, ...] = ()) -> SpatialAxes:
    """The spatial axes of array ``x`` (possibly lazy): ``ndim`` if given, else measured
    (codec.axes.choose_ndim, on a sample of planes); once per array, never per slab."""
    if ndim is not None:
        return SpatialAxes(ndim=spatial_ndim(tuple(x.shape), ndim), given=True)
    return SpatialAxes(ndim=axes.choose_ndim(x, fill_values) if x.ndim else 0, given=False)


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes()) & 0xFFFFFFFF


# --- the learned part: x -> latents -> x_hat ---------------------------------------

def run_model(x: np.ndarray, d: int, models: Models, name: str):
    """The model (default or chosen) on every tile of x: (model, normalization, integer
    latents y_hat, x_hat in float64)."""
    norm = Normalization.fit(x)
    model = models.for_ndim(d)
    x_b = x.reshape((-1,) + x.shape[x.ndim - d:])
    tiles = tile(norm.forward(x_b), model.tile)
    with progress.bar(tiles.shape[0], f"encode {name}".strip()) as advance:
        y_hat = model.encode(tiles, advance)
    return model, norm, y_hat, _reconstruct(model, norm, y_hat, x_b.shape, name).reshape(x.shape)


def _code_latents(y_hat: np.ndarray, model, norm: Normalization, d: int) -> tuple[dict, np.ndarray]:
    """The latents' codec fields and stream: coded with the model's tables, or with counts
    learned from them where that is smaller."""
    fields = dict(ndim=d, tile=model.tile, offset=norm.offset, scale=norm.scale, latent_shape=list(y_hat.shape),
                  symbols_crc32=_crc(y_hat))
    data, n_escapes = entropy.encode(y_hat, model.tables)
    learned, n_learned, radii = adaptive.encode_channels(y_hat, model.tables)
    if len(learned) < len(data):  # the array's latents are unlike the training data's: learn their statistics
        data, fields = learned, dict(fields, escapes=n_learned, latent_coding="adaptive", latent_radii=radii)
    else:
        fields["escapes"] = n_escapes
    return fields, np.frombuffer(data, dtype=np.uint8)


def _reconstruct(model, norm: Normalization, y_hat: np.ndarray, batch_shape: tuple[int, ...], name: str,
                 flags: np.ndarray | None = None) -> np.ndarray:
    """x_hat (float64, ``batch_shape``) from the latents of every tile, or of the tiles
    whose ``flags`` are set only (0 on the others)."""
    with progress.bar(y_hat.shape[0], f"decode {name}".strip()) as advance:
        x_hat_tiles = model.decode(y_hat, advance)
    if flags is None:
        return norm.inverse(untile(x_hat_tiles[:, 0], batch_shape), np.float64)
    every = np.zeros((flags.size,) + x_hat_tiles.shape[1:], x_hat_tiles.dtype)
    every[flags] = x_hat_tiles
    x_hat = norm.inverse(untile(every[:, 0], batch_shape), np.float64)
    return np.where(spread(flags, batch_shape, model.tile), x_hat, 0.0)


def _latents_back(entry: ArrayEntry, models: Models, refs, flags: np.ndarray | None = None) -> np.ndarray:
    """x_hat (float64) of the latent part of an entry: every tile, or the flagged ones (0 elsewhere)."""
    model, y_hat = _decoded_latents(entry, models, refs, flags)
    c, shape = entry.codec, entry.part_shape
    spatial = tuple(shape[len(shape) - c.ndim:])
    batch = int(np.prod(shape[: len(shape) - c.ndim], dtype=np.int64))
    norm = Normalization(offset=c.offset, scale=c.scale)
    return _reconstruct(model, norm, y_hat, (batch,) + spatial, entry.name, flags).reshape(shape)


def latent_codes(entry: ArrayEntry, models: Models, refs) -> np.ndarray:
    """The decoded latents y_hat (tiles, channels, ...) of an entry that holds them."""
    flags = _tile_flags(entry) if entry.codec.base == "tiles" else None
    return _decoded_latents(entry, models, refs, flags)[1]


def _decoded_latents(entry: ArrayEntry, models: Models, refs, flags: np.ndarray | None):
    """(model, y_hat) of the latent part of an entry: of every tile, or of the flagged ones."""
    c, ref = entry.codec, model_of(entry, refs)
    if ref is None:
        raise ContainerError(f"array {entry.name!r} uses a model but names none; the container is corrupted")
    model = models.for_ref(ref)
    stream = entry.streams.get("latents")
    if stream is None or stream.dtype != np.uint8:
        raise ContainerError(f"array {entry.name!r}: latent stream missing; the container is corrupted")
    shape = entry.part_shape
    if len(shape) < c.ndim:
        raise ContainerError(f"array {entry.name!r} has {len(shape)} axes but was coded with {c.ndim} spatial axes; "
                             "the container is corrupted")
    n_tiles = entry.tiles
    if flags is not None:
        if flags.size != n_tiles or not flags.any():
            raise ContainerError(f"array {entry.name!r}: its tile flags do not fit its {n_tiles} tiles; "
                                 "the container is corrupted")
        n_tiles = int(flags.sum())
    latent_shape = tuple(int(n) for n in c.latent_shape)
    if latent_shape != model.latent_shape(n_tiles) or c.tile != model.tile:
        raise ContainerError(f"array {entry.name!r}: latent shape {latent_shape} does not fit model {model.name}")
    if c.latent_coding == "adaptive":
        y_hat = adaptive.decode_channels(stream.tobytes(), c.escapes, c.latent_radii, latent_shape, model.tables)
    else:
        y_hat = entropy.decode(stream.tobytes(), c.escapes, model.tables, latent_shape)
    if _crc(y_hat) != c.symbols_crc32:
        raise ChecksumError(f"array {entry.name!r}: decoded latents fail their checksum; the container is corrupted")
    return model, y_hat


# --- encoders per storage ------------------------------------------------------------

def _raw(x: np.ndarray):
    return CodecParams(storage="raw"), {"values": x.reshape(-1)}, x.astype(np.float64)


def _learned(x: np.ndarray, d: int, models: Models, name: str):
    model, norm, y_hat, x_hat = run_model(x, d, models, name)
    fields, stream = _code_latents(y_hat, model, norm, d)
    if stream.nbytes >= x.nbytes:  # never worse than raw: store the values exactly
        return _raw(x)
    return CodecParams(storage="latent", model_id=model.id, **fields), {"latents": stream}, x_hat


DEFAULT_QUALITY = 45.0  # dB: the plain learned mode's PSNR target unless --quality says otherwise


SCALE_REACH = 200  # value ranges within 2^-200 .. 2^200 are coded as they are


def _transformed(x: np.ndarray, d: int, quality: float, vrange: float, valid: np.ndarray,
                 halo: tuple[np.ndarray, np.ndarray] | None = None, fill_values: tuple[float, ...] = ()):
    """The plain learned mode's architecture (codec.architecture.DEFAULT) at the PSNR
    ``quality`` (relative to ``vrange``, the whole array's range) over the ``valid``
    values. It aims at the squared error of every value (the invalid ones hold fills),
    scaled so that the valid ones alone reach the target whatever the fills cost. With
    ``halo`` (the rows before and after a slab), the slab is coded with them, so that its
    edges are coded as its inside is, and keeps its own rows. Values spanning less than
    2^-200 or more than 2^200 are coded times a power of two (exact) that brings their
    range near 1, so that no squared error underflows or overflows."""
    k = 0 if 2.0**-SCALE_REACH <= vrange <= 2.0**SCALE_REACH else -math.frexp(vrange)[1]
    scale = math.ldexp(1.0, -k)
    vrange = math.ldexp(vrange, k)
    target_mse = vrange * vrange * 10 ** (-quality / 10) * np.count_nonzero(valid) / valid.size
    integer = x.dtype.kind == "f" and k == 0 and holds_integers(x)
    window, h = np.ldexp(x.astype(np.float64), k), (0, 0)
    if halo is not None and (halo[0].shape[0] or halo[1].shape[0]):
        parts = [np.ldexp(bounded.fill_invalid(r, valid_mask(r, fill_values)).astype(np.float64), k) for r in halo]
        window, h = np.concatenate([parts[0], window, parts[1]]), (parts[0].shape[0], parts[1].shape[0])
        integer = integer and all(p.size == 0 or holds_integers(p) for p in parts)
    model = architecture.get_model(architecture.DEFAULT, ndim=d)
    # the window's squared error within the slab's budget, so that the slab's is
    latents, x_hat = model.compress_to(window, target_mse * x.size / window.size, vrange, integer)
    x_hat = np.ldexp(x_hat[h[0] : h[0] + x.shape[0]], -k)
    reached = float(np.mean(np.ldexp(_cast(x_hat, x.dtype) - x.astype(np.float64), k) ** 2)) <= target_mse
    if latents.nbytes >= x.nbytes or not reached:  # never worse than raw, never short of the target: exact values
        return _raw(x)
    codec = CodecParams(storage="transform", transform=model.name, ndim=d, halo=list(h) if any(h) else [],
                        scale=scale if k else 0.0, **latents.fields)
    return codec, {k: np.frombuffer(v, dtype=np.uint8) for k, v in latents.streams.items()}, x_hat


def transform_latents(entry: ArrayEntry):
    """(model, Latents) of a transform-coded entry: its architecture, configured, and what
    it needs of the entry's record and streams."""
    c = entry.codec
    model = architecture.get_model(c.transform, ndim=c.ndim)
    streams = {}
    for k in model.STREAMS:
        s = entry.streams.get(k)
        if s is None or s.dtype != np.uint8:
            raise ContainerError(f"array {entry.name!r}: its stream {k!r} is missing; the container is corrupted")
        streams[k] = s.tobytes()
    h0, h1 = c.halo or (0, 0)
    shape = (entry.part_shape[0] + h0 + h1,) + tuple(entry.part_shape[1:]) if entry.part_shape else ()
    return model, architecture.Latents(streams=streams, fields={k: getattr(c, k) for k in model.FIELDS},
                                       shape=shape)


def _transform_back(entry: ArrayEntry) -> np.ndarray:
    model, latents = transform_latents(entry)
    h0 = entry.codec.halo[0] if entry.codec.halo else 0
    try:
        x_hat = model.decompress(latents)[h0 : h0 + entry.part_shape[0]]
        return x_hat * entry.codec.scale if entry.codec.scale else x_hat
    except ContainerError as err:
        raise ContainerError(f"array {entry.name!r}: {err}") from None


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


def _model_may_pay(summary: dict, e: float, scale: float) -> bool:
    """Whether the model's prediction can pay anywhere: not when its typical error (from
    its validation PSNR on [-1, 1] tiles, in its ``summary``) is many times the bound, for
    then x - prediction is rougher than x and interpolates worse."""
    rms = 2.0 * 10 ** (-float(summary.get("val_psnr_normalized", 0.0)) / 20) * scale
    return rms <= 4 * e


SAMPLE_VALUES = 1 << 16  # values the model is run on for the estimate of _tiles_may_pay


def _tiles_may_pay(x: np.ndarray, d: int, model, e: float, classical: np.ndarray, may_pay: float) -> bool:
    """Whether the model's path may cost less than ``may_pay`` (EncoderOptions) times
    ``classical`` (bits per tile) on some tile: first its latents alone at half the rate it
    reached on its validation tiles, then :func:`sampled_model_bits` on every k-th tile."""
    floor = 0.5 * float(model.summary.get("val_bits_per_value", 0.0)) * model.tile**d
    if not np.any(floor < may_pay * classical):
        return False
    bits, k = sampled_model_bits(x, d, model, e)
    return bool(np.any(bits < may_pay * np.maximum(classical[::k], 1.0)))


def sampled_model_bits(x: np.ndarray, d: int, model, e: float) -> tuple[np.ndarray, int]:
    """Estimated bits of the model's path for ``x`` within ``e`` on every k-th tile (and
    k): the latents under the model's tables plus the residual codes x - x_hat at step 2e,
    at their zeroth-order entropy over those tiles. A quick look (1/k of the work) before
    running the model on everything."""
    norm = Normalization.fit(x)
    tiles = tile(norm.forward(x.reshape((-1,) + x.shape[x.ndim - d:])), model.tile)
    k = max(1, tiles.size // SAMPLE_VALUES)
    sample = tiles[::k]
    y_hat = model.encode(sample)
    r = (sample.astype(np.float64) - model.decode(y_hat).astype(np.float64)) * norm.scale
    residual = entropy.symbol_bits(np.rint(r / (2 * e))).reshape(len(sample), -1).sum(axis=1)
    return entropy.tile_bits(y_hat, model.tables) + residual, k


def _size(res: bounded.Residual) -> int:
    return len(res.stream) + res.exact.nbytes


def model_tile_bits(field: np.ndarray, e: float, out_dtype, run, coarse: tuple = (),
                    band: int = interp.BAND) -> tuple[np.ndarray, bounded.Residual, np.ndarray]:
    """The estimated bits of the model's path per tile (its latents under its tables and
    the residual codes against its prediction) for ``run``, a :func:`run_model` result,
    with that residual coding within ``e`` (``coarse``, ``band``: bounded.encode's) and its x_hat."""
    model, _, y_hat, base = run
    res, f_hat = bounded.encode(field, e, dtype=out_dtype, integer=False, base=base, bits=True, coarse=coarse,
                                ndim=model.ndim, band=band)
    residual = tile_sums(res.bits.reshape((-1,) + field.shape[field.ndim - model.ndim:]), model.tile)
    return entropy.tile_bits(y_hat, model.tables) + residual, res, f_hat


def _with_model(x: np.ndarray, d: int, models: Models, name: str, field: np.ndarray, e: float, out_dtype,
                classical: bounded.Residual, learned: list, coarse: tuple, options: EncoderOptions):
    """The model's prediction as the base of the residual coding, on every tile or on the
    tiles where its path (latents and residual codes) is estimated to cost less than the
    classical one: the smallest of these and ``classical`` (with ``options.keep_model``:
    the last tried) as (extra fields and streams, or None for classical; residual; its
    x_hat). ``learned`` caches the model's run; ``coarse``: bounded.encode's."""
    model = models.for_ndim(d)
    batch_shape = (-1,) + x.shape[x.ndim - d:]
    per_tile = tile_sums(classical.bits.reshape(batch_shape), model.tile)
    if not _tiles_may_pay(x, d, model, e, per_tile, options.may_pay):
        return None
    if not learned:
        learned.append(run_model(x, d, models, name))
    model, norm, y_hat, base = learned[0]
    margin = DRIFT * norm.scale
    e_m = e - margin  # a decoder whose base drifts by up to margin keeps e
    bits, res, f_hat = model_tile_bits(field, e_m, out_dtype, learned[0], coarse, options.band)
    wins = bits < per_tile
    candidates = [(None, y_hat, base, res, f_hat)]
    if 0 < wins.sum() < wins.size:
        base_t = _reconstruct(model, norm, y_hat[wins], x.reshape(batch_shape).shape, name, wins).reshape(x.shape)
        res_t, f_hat_t = bounded.encode(field, e_m, dtype=out_dtype, integer=False, base=base_t, coarse=coarse,
                                        ndim=d, band=options.band)
        candidates.insert(0, (wins, y_hat[wins], base_t, res_t, f_hat_t))
    best, best_size = None, _size(classical)
    for flags, y, b, res, f_hat in candidates:
        fields, latents = _code_latents(y, model, norm, d)
        fields.update(base="model" if flags is None else "tiles", margin=margin, bound=e_m,
                      base_check=[float(np.sum(b)), float(np.sum(b * b))])
        streams = {"latents": latents} if flags is None else {"latents": latents, "tiles": np.packbits(flags)}
        coded = ({"fields": fields, "streams": streams, "model": model}, res, f_hat)
        if options.keep_model or _coded_bytes(coded) < best_size:
            best, best_size = coded, _coded_bytes(coded)
    return best


def holds_integers(x: np.ndarray) -> bool:
    """Float data holding only integers (sensor counts, DEMs, images stored as floats), each
    exact in its type."""
    limit = 2**24 if x.dtype == np.float32 else INT_LIMIT
    head = x.reshape(-1)[:4096]  # most float data shows a fraction at once: spare the full pass
    return bool(np.all(np.rint(head) == head)) and bool(np.all(np.rint(x) == x)) and float(np.max(np.abs(x))) <= limit


def integer_step_as_fine(e: float) -> bool:
    """Whether integer coding within floor(E) (step 2 floor(E) + 1) is as fine as step 2E."""
    return 2 * math.floor(e) + 1 >= 2 * e


PSNR_SLACK = 0.1  # dB above the --psnr target accepted without loosening the bound further
PSNR_TRIES = 6  # codings at most once one reaches the target
PSNR_TRIES_MISSING = 12  # ... and while none does; then the array is stored exactly


def _reach_psnr(code, snap, e: float, coded: tuple, target: float, measure) -> tuple[float, bool, tuple] | None:
    """(bound, whether on integers, coding) of the smallest coding found whose PSNR
    (``measure`` of its x_hat; None when exact) is at least ``target``, or None if none is.
    The bound is searched from the first guess ``e``, whose coding is ``coded``, by regula
    falsi on log(E) against PSNR between the loosest bound that reaches the target and the
    tightest that does not; it stops within PSNR_SLACK dB above the target. ``snap(E)`` gives the bound a coding
    for E keeps and whether it codes integers (whose bound 0 is lossless); where that
    changes, the search starts again from the coding made, for integer and float codings
    lie on different curves."""
    best = None
    ok = short = None  # (log E, PSNR) of the loosest bound reaching the target, of the tightest missing it
    tried, points = set(), []
    integer = snap(e)[1]
    for i in range(PSNR_TRIES_MISSING):
        tried.add((e, integer))
        p = measure(coded[2])
        p = math.inf if p is None else p
        log_e = math.log(e) if e > 0 else -math.inf  # integer data: 0 is lossless
        points.append((log_e, p))
        if p >= target:
            if best is None or _coded_bytes(coded) < _coded_bytes(best[2]):
                best = (e, integer, coded)
            if ok is None or log_e > ok[0]:
                ok = (log_e, p)
        elif short is None or log_e < short[0]:
            short = (log_e, p)
        if target <= p <= target + PSNR_SLACK or (best is not None and i >= PSNR_TRIES - 1):
            break
        aim = target + PSNR_SLACK / 2
        if ok is not None and short is not None and math.isfinite(ok[1]):
            t = min(0.9, max(0.1, (aim - ok[1]) / (short[1] - ok[1])))
            e_next = math.exp(ok[0] + t * (short[0] - ok[0]))
        elif short is not None:  # tighten
            e_next = math.exp(short[0] - _log_step(points, short, aim - short[1], target, False))
        elif math.isinf(ok[1]):  # exact: loosen four times
            e_next = math.exp(ok[0]) * 4.0
        else:  # loosen
            e_next = math.exp(ok[0] + _log_step(points, ok, ok[1] - aim, target, True))
        e_next, integer_next = snap(e_next)
        if (e_next, integer_next) in tried or (e_next <= 0 and not integer_next):
            break
        if integer_next != integer and e_next > 0:
            ok = short = None
            points = []
        e, integer, coded = e_next, integer_next, code(e_next)
    return best


PSNR_SLOPE = 20.0  # dB per decade of the bound assumed before two codings on one side give a slope


def _log_step(points: list, ref: tuple, gap: float, target: float, reached: bool) -> float:
    """How far to move log(E) from ``ref`` to cover ``gap`` dB while every coding so far is on
    one side of the target (``reached``): at PSNR_SLOPE dB per decade, or at the slope of the
    two codings nearest the target when that is shallower (fields whose PSNR falls slowly
    with the bound), at most a factor 4."""
    step = gap / PSNR_SLOPE * math.log(10)
    side = sorted(q for q in points if (q[1] >= target) == reached and math.isfinite(q[0]) and math.isfinite(q[1]))
    if len(side) >= 2:
        a, b = side[-2:] if reached else side[:2]
        if b[0] > a[0] and b[1] < a[1]:
            step = max(step, gap * (b[0] - a[0]) / (a[1] - b[1]))
    return min(step, math.log(4.0))


def _search(code, snap, e: float, coded: tuple, target: float, measure) -> tuple | None:
    """(extra, res, x_hat, bound, whether on integers) of --psnr's coding, or None where none
    reaches the target:
    :func:`_reach_psnr` from the first guess e, whose coding is ``coded``. Where the
    filter's weights would weigh against the streams of that first coding (over
    1/FILTER_SHARE of them), the search is made without the filter: the first guess is
    tighter than the bound found, so this errs towards keeping the filter, which costs at
    most its weights."""
    weights = len(coded[0].get("fields", {}).get("filter", ()))
    if weights and _coded_bytes(coded) < FILTER_SHARE * weights * FILTER_WEIGHT_BYTES:
        code = functools.partial(code, post=False)
        coded = code(e)
    found = _reach_psnr(code, snap, e, coded, target, measure)
    return None if found is None else found[2] + found[:2]


FILTER_WEIGHT_BYTES = interp.FIT_COST // 8  # what a weight of the filter costs in the JSON record
FILTER_SHARE = 40


def _coded_bytes(coded: tuple) -> int:
    extra, res, _ = coded
    weights = len(extra.get("fields", {}).get("filter", ()))
    return _size(res) + sum(v.nbytes for v in extra.get("streams", {}).values()) + FILTER_WEIGHT_BYTES * weights


def _bounded(x: np.ndarray, d: int, models: Models | None, name: str, bound: bounded.Bound, vrange: float,
             valid: np.ndarray, options: EncoderOptions):
    """Residual coding within the bound; with a model, also tries its prediction as the base.
    ``valid``: the values that are data (--psnr measures its PSNR on them)."""
    integer = x.dtype.kind in "iu"
    xd = x.astype(np.float64)
    streams: dict[str, np.ndarray] = {}
    exact_where = None
    if bound.mode == "pw_rel":
        field, e, negative, zero = bounded.pw_forward(xd, bound.value, integer)
        exact_where = bounded.pw_exact(xd, bound.value, x.dtype)
        if negative.any():
            streams["signs"] = np.packbits(negative.reshape(-1))
        if zero.any():
            streams["zeros"] = np.packbits(zero.reshape(-1))
        out_dtype = np.dtype(np.float64)  # the bound check is made in the log domain
    else:
        field, e, out_dtype = xd, bounded.absolute_bound(bound, vrange, integer), x.dtype
    int_dtype, data_integers = integer, functools.cache(lambda: holds_integers(x))
    whole_steps = [bound.mode == "psnr" and not int_dtype and integer_step_as_fine(e) and e >= 1 and data_integers()]

    def snap(e: float) -> tuple[float, bool]:
        """(the bound coded for bound e, whether on integers). Integer data are coded on
        integers within floor(E) (pw_rel: within E, on log2|x|); so are float data holding
        integers where that is as fine as step 2E. --psnr on such float data moves in whole
        steps from a first guess of at least 1 until it needs a bound below 1: from there
        on it codes floats (lossless where E <= 1/2), whose PSNR lies between the steps'."""
        if bound.mode == "pw_rel":
            return e, int_dtype
        if int_dtype or whole_steps[0] and e >= 1:
            return float(math.floor(e)), True
        whole_steps[0] = False
        if bound.mode == "psnr" and e > 0.5 or not (integer_step_as_fine(e) and data_integers()):
            return e, False
        return float(math.floor(e)), True

    learned = []  # the model's latents and prediction, computed once

    def code(e: float, post: bool = options.psnr_filter):
        e, integer = snap(e)
        coarse = options.psnr_coarse if bound.mode == "psnr" and not integer and min(d, x.ndim) >= 2 else ()
        model_too = models is not None and not integer and bound.mode != "pw_rel"
        if model_too:
            scale = Normalization.fit(x).scale
            model_too = e > 8 * DRIFT * scale and (_model_may_pay(models.summary(d), e, scale)
                                                   if options.try_model is None else options.try_model)
        res, f_hat = bounded.encode(field, e, dtype=out_dtype, integer=integer, exact_where=exact_where,
                                    bits=model_too, coarse=coarse, ndim=d, band=options.band)
        hybrid = _with_model(x, d, models, name, field, e, out_dtype, res, learned, coarse, options) \
            if model_too else None
        if hybrid is None and bound.mode == "psnr" and post:
            return _filtered(x, field, e, integer, res, f_hat)
        return hybrid or ({}, res, f_hat)

    e, integer = snap(e)
    extra, res, f_hat = code(e)
    if bound.mode == "psnr":  # the bound, and whether it codes integers, as found
        found = _search(code, snap, e, (extra, res, f_hat), bound.value, lambda f: _valid_psnr(x, f, valid, vrange))
        if found is None:  # no bound reached the target (the data's own rounding, say): kept exactly
            return _raw(x) + (_exact_bound(bound),)
        extra, res, f_hat, e, integer = found
    x_hat = bounded.pw_inverse(f_hat, np.signbit(xd), xd == 0) if bound.mode == "pw_rel" else f_hat
    fields = dict(bound=e)  # with the model: its bound less the drift allowed (extra's fields)
    fields.update(extra.get("fields", {}))
    if "model" in extra:
        fields["model_id"] = extra["model"].id
    fields.update(ndim=d, planes=d < x.ndim)  # the interpolation's axes (bounded.planes_shape)
    codec = CodecParams(storage="bounded", mode=bound.mode, levels=res.levels, radii=res.radii,
                        predictors=res.predictors, residual_escapes=res.escapes, integer=integer,
                        interpolation=res.order, weights=res.weights, coarse=list(res.coarse), **fields)
    streams["residuals"] = np.frombuffer(res.stream, dtype=np.uint8)
    if res.exact.size:
        streams["exact"] = res.exact
    streams.update(extra.get("streams", {}))
    figure_bound = bound.value if bound.mode == "pw_rel" else e + (postfilter.clip(e, integer) if codec.filter else 0)
    if sum(s.nbytes for s in streams.values()) >= x.nbytes:  # never worse than raw (exact)
        return _raw(x) + (_exact_bound(bound),)
    return codec, streams, x_hat, figure_bound


def _valid_psnr(x: np.ndarray, f_hat: np.ndarray, valid: np.ndarray, vrange: float) -> float | None:
    """The PSNR of f_hat, cast to x's dtype, over the valid values of x (the others are
    restored exactly from the mask)."""
    x_hat = _cast(f_hat, x.dtype)
    if not valid.all():
        x_hat[~valid] = x[~valid]
    return Quality.measure(x, x_hat, valid, vrange).psnr


def _filtered(x: np.ndarray, field: np.ndarray, e: float, integer: bool, res: bounded.Residual, f_hat: np.ndarray):
    """(extra, res, x_hat) of the coding within e, with the post-filter (codec.postfilter)
    fitted to the array when it raises the PSNR and keeps every value within e + its clip."""
    c = postfilter.clip(e, integer)
    w = postfilter.fit(field, f_hat) if c > 0 and postfilter.supports(x.shape) else None
    if w is not None:
        g = postfilter.apply(f_hat, w, c)
        before, after = (Quality.measure(x, _cast(v, x.dtype)) for v in (f_hat, g))
        if after.mse < before.mse and after.max_abs_error <= e + c:
            return {"fields": {"filter": w}}, res, g
    return {}, res, f_hat


def _exact_bound(bound: bounded.Bound | None) -> float | None:
    """The bound figure of an array stored exactly: 0, or the relative bound in pw_rel mode."""
    return None if bound is None else (bound.value if bound.mode == "pw_rel" else 0.0)


SPATIAL_STORAGES = ("latent", "bounded", "transform")  # those whose coding has spatial axes


def encode_array(x: np.ndarray, name: str, models: Models | None, ndim: int | None, *,
                 bound: bounded.Bound | None = None, order: str = "C", byteorder: str = "<",
                 fill_values: tuple[float, ...] = (), vrange: float | None = None,
                 full_shape: tuple[int, ...] | None = None,
                 slab: tuple[int, int] | None = None, quality: float | None = None,
                 halo: tuple[np.ndarray, np.ndarray] | None = None,
                 spatial: SpatialAxes | None = None,
                 options: EncoderOptions = DEFAULT_OPTIONS) -> tuple[ArrayEntry, np.ndarray]:
    """Code one array, or one slab of it; returns its container entry and exactly what the
    decoder will return.

    ``fill_values`` (declared by the source) are kept exactly like NaN and Inf and left out
    of the value range and every error figure. For a slab, ``x`` holds rows ``slab`` of an
    array of shape ``full_shape`` whose valid values span ``vrange`` (bounds and PSNR are
    relative to the whole array). ``quality``: the plain learned mode's PSNR target
    (default DEFAULT_QUALITY) for the transform coder, which it uses unless a model was
    chosen (``models.spec``) or fitted; ``halo``: the rows before and after a slab, which
    the transform coder codes with it (see :func:`_transformed`); ``spatial``: the spatial
    axes chosen for the whole array (:func:`spatial_axes`), which a slab must be given
    (else they are chosen here, from ``x`` and ``ndim``); ``options``: the encoder's
    settings (aezip.options)."""
    t0 = time.perf_counter()
    check_dtype(x, name)
    if spatial is None:
        spatial = spatial_axes(x, ndim, fill_values) if full_shape is None else \
            SpatialAxes(ndim=spatial_ndim(tuple(full_shape), ndim), given=ndim is not None)
    d = spatial.ndim
    if x.dtype.kind in "iu" and bound is None:
        bound = bounded.Bound(mode="abs", value=0)  # integers: lossless unless a bound is given
    valid = valid_mask(x, fill_values)
    x_f = bounded.fill_invalid(x, valid)
    own_range = value_range(x, valid)
    vrange = own_range if vrange is None else vrange
    figure_bound = None
    if own_range == 0:  # the first valid value: x_f's fill, a mean, may differ from it in the last bit
        value = float(x.reshape(-1)[np.argmax(valid.reshape(-1))])
        codec, streams, x_hat = CodecParams(storage="constant", offset=value), {}, np.full(x.shape, value)
        figure_bound = _exact_bound(bound)
    elif not math.isfinite(vrange * vrange):  # squared errors would overflow float64: kept exactly
        if bound is not None and bound.mode != "pw_rel":
            bounded.absolute_bound(bound, vrange, x.dtype.kind in "iu")  # the same refusals as coded arrays
        codec, streams, x_hat = _raw(x_f)
        figure_bound = _exact_bound(bound)
    elif bound is None and (models is None or models.spec is None and models.embedded is None):
        codec, streams, x_hat = _transformed(x_f, d, DEFAULT_QUALITY if quality is None else quality, vrange, valid,
                                             halo, fill_values)
    elif bound is None:
        codec, streams, x_hat = _learned(x_f, d, models, name)
    else:
        codec, streams, x_hat, figure_bound = _bounded(x_f, d, models, name, bound, vrange, valid, options)
    x_hat = _cast(x_hat, x.dtype)
    if not valid.all():
        streams["nodata"] = np.frombuffer(mask.encode(x, valid), np.uint8)
        x_hat[~valid] = x[~valid]
    if fill_values:
        codec = dataclasses.replace(codec, fill_values=list(fill_values))
    if codec.storage in SPATIAL_STORAGES:
        codec = dataclasses.replace(codec, ndim=d, ndim_given=spatial.given)
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
        psnr=q.psnr, max_abs_error=q.max_abs_error, value_range=min(vrange, FLOAT_MAX), seconds=round(time.perf_counter() - t0, 6),
        bound=figure_bound, bound_kind=kind,
        max_error_ratio=ratio,
        invalid_values=int(x.size - np.count_nonzero(valid)),
    )
    entry = ArrayEntry(name=name, shape=tuple(x.shape if full_shape is None else full_shape), dtype=x.dtype.name,
                       order=order, byteorder=byteorder, codec=codec, figures=figures, streams=streams, slab=slab)
    return entry, x_hat


def decode_array(entry: ArrayEntry, models: Models, refs, *, band: int = interp.BAND) -> np.ndarray:
    """Reconstruct one array from its entry (native byte order, C order); ``band``: the
    interpolation's targets at once (the values do not depend on it)."""
    c, dtype = entry.codec, np.dtype(entry.dtype)
    if c.storage == "constant":  # one value seen at every index: no memory until written somewhere
        value = _cast(np.array([c.offset]), dtype)
        invalid, values = _invalid(entry)
        if invalid is None:
            return np.broadcast_to(value.reshape((1,) * len(entry.part_shape)), entry.part_shape)
        x_hat = np.full(entry.part_shape, value[0], dtype)
        x_hat[invalid] = values
        return x_hat
    elif c.storage == "raw":
        v = entry.streams.get("values")
        if v is None or v.size != entry.size:
            raise ContainerError(f"array {entry.name!r}: raw stream missing or of the wrong length; the container is corrupted")
        x_hat = v.reshape(entry.part_shape)
    elif c.storage == "latent":
        x_hat = _latents_back(entry, models, refs)
    elif c.storage == "transform":
        x_hat = _transform_back(entry)
    else:
        x_hat = _bounded_back(entry, models, refs, band)
    x_hat = _cast(x_hat, dtype)
    invalid, values = _invalid(entry)
    if invalid is not None:
        x_hat[invalid] = values
    return x_hat


def _invalid(entry: ArrayEntry) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Where an entry's values that are not data are, and those values (None, None: nowhere):
    stream "nodata" (format version 5) or "mask" and "masked_values" (earlier)."""
    if "nodata" in entry.streams:
        try:
            return mask.decode(entry.streams["nodata"].tobytes(), entry.part_shape, entry.dtype)
        except ContainerError as err:
            raise ContainerError(f"array {entry.name!r}: {err}") from None
    if "mask" not in entry.streams:
        return None, None
    bits = entry.streams["mask"]
    if bits.dtype != np.uint8 or bits.size != (entry.size + 7) // 8:
        raise ContainerError(f"array {entry.name!r}: its mask has the wrong length; the container is corrupted")
    invalid = np.unpackbits(bits, count=entry.size).astype(bool).reshape(entry.part_shape)
    values = entry.streams.get("masked_values", np.zeros(0))
    if values.size != int(invalid.sum()):
        raise ContainerError(f"array {entry.name!r}: masked values do not match their mask; the container is corrupted")
    return invalid, values


def _required(entry: ArrayEntry, key: str, dtype=np.uint8) -> np.ndarray:
    """Stream ``key`` of an entry whose storage needs it: a missing one is an error, never
    an empty stream."""
    s = entry.streams.get(key)
    if s is None or s.dtype != dtype:
        raise ContainerError(f"array {entry.name!r}: its {key!r} stream is missing or of the wrong type; "
                             "the container is corrupted")
    return s


def _tile_flags(entry: ArrayEntry) -> np.ndarray:
    """The "tiles" stream of an entry with base "tiles": one flag per model tile."""
    flags, n = entry.streams.get("tiles"), entry.tiles
    if flags is None or flags.dtype != np.uint8 or flags.size != (n + 7) // 8:
        raise ContainerError(f"array {entry.name!r}: its tile flags are missing or of the wrong length; "
                             "the container is corrupted")
    return np.unpackbits(flags, count=n).astype(bool)


def _bounded_back(entry: ArrayEntry, models: Models, refs, band: int = interp.BAND) -> np.ndarray:
    c = entry.codec
    base = None
    if c.base != "none":
        base = _latents_back(entry, models, refs, _tile_flags(entry) if c.base == "tiles" else None)
        check = [float(np.sum(base)), float(np.sum(base * base))]
        if c.base_check and not np.allclose(check, c.base_check, rtol=1e-5, atol=c.margin * base.size):
            warnings.warn(f"array {entry.name!r}: the model's prediction differs from the encoder's by more than "
                          "aezip allows; the error bound may not hold on this machine", PredictionDriftWarning)
    res = bounded.Residual(stream=_required(entry, "residuals").tobytes(),
                           escapes=c.residual_escapes, radii=list(c.radii), levels=c.levels, predictors=list(c.predictors),
                           order=c.interpolation, weights=list(c.weights), coarse=tuple(c.coarse),
                           exact=entry.streams.get("exact", np.zeros(0)).astype(np.float64))
    integer = entry.integer_coded
    f_hat = bounded.decode(res, entry.part_shape, c.bound, integer=integer, base=base,
                           ndim=c.ndim if c.planes else None, band=band)
    if c.filter:
        try:
            f_hat = postfilter.apply(f_hat, c.filter, postfilter.clip(c.bound, integer))
        except ValueError as err:
            raise ContainerError(f"array {entry.name!r}: {err}; the container is corrupted") from None
    if c.mode != "pw_rel":
        return f_hat
    n = entry.size

    def bits(key):
        s = entry.streams.get(key)
        if s is not None and (s.dtype != np.uint8 or s.size != (n + 7) // 8):
            raise ContainerError(f"array {entry.name!r}: its {key} stream has the wrong type or length; "
                                 "the container is corrupted")
        return np.zeros(entry.part_shape, bool) if s is None else np.unpackbits(s, count=n).astype(bool).reshape(entry.part_shape)

    return bounded.pw_inverse(f_hat, bits("signs"), bits("zeros"))
