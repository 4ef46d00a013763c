"""One array in, bytes out, and back: the frame (formats/aezip-frame-v1.md) of a Zarr
chunk, a Dask block or a network message, without a file.

    b = aezip.encode_chunk(x, abs=1e-3)        # every value within 1e-3
    x_hat = aezip.decode_chunk(b)

A chunk sees only itself: ``rel`` and ``psnr`` are relative to ``value_range`` when it
is given (the whole array's), else to the chunk's own range. Bounded chunks are coded
without the model (no torch) unless ``model`` names one; the plain learned mode (no
bound) runs the model.
"""

from __future__ import annotations

import numpy as np

from .api import _bound
from .coding import Models, decode_array, encode_array
from .container import ModelRef
from .container.frame import pack_entry, unpack_entry
from .errors import UsageError
from .options import DEFAULT as DEFAULT_OPTIONS
from .options import EncoderOptions


def encode_chunk(x: np.ndarray, *, abs: float | None = None, rel: float | None = None, psnr: float | None = None,
                 pw_rel: float | None = None, value_range: float | None = None, fill_values=(),
                 model: str | None = None, ndim: int | None = None, models: Models | None = None,
                 options: EncoderOptions = DEFAULT_OPTIONS) -> bytes:
    """The frame of array ``x`` coded within the bound given (one of ``abs``, ``rel``,
    ``psnr``, ``pw_rel``; none: the plain learned mode for floats, lossless for integers).
    ``fill_values`` are kept exactly like NaN and Inf. ``models``: a :class:`Models` to
    reuse across calls (a codec keeps one); ``options``: the encoder's settings."""
    x = np.asarray(x)
    bound = _bound(abs=abs, rel=rel, psnr=psnr, pw_rel=pw_rel)
    if value_range is not None and not (np.isfinite(value_range) and value_range > 0):
        raise UsageError(f"value_range must be a positive finite number, got {value_range!r}")
    if models is None and (model is not None or (bound is None and x.dtype.kind == "f")):
        models = Models(model, "auto")
    use = models if (bound is None or model is not None) else None
    native = np.ascontiguousarray(x).astype(x.dtype.newbyteorder("="), copy=False)
    entry, _ = encode_array(native, "", use, ndim, bound=bound, fill_values=tuple(float(v) for v in fill_values),
                            vrange=value_range, options=options)
    return pack_entry(entry, entry.codec.model_id or None)


def decode_chunk(data: bytes, out: np.ndarray | None = None, *, model: str | None = None,
                 models: Models | None = None) -> np.ndarray:
    """The array a frame holds (into ``out`` when given: same size and dtype, any shape).
    A frame whose model is not installed raises ModelError naming its id."""
    entry, model_id = unpack_entry(data)
    models = models if models is not None else Models(model, "auto")
    refs = [ModelRef(id=model_id, name="", config={})] if model_id else []
    x_hat = decode_array(entry, models, refs)
    if out is None:
        return x_hat
    if out.size != x_hat.size or out.dtype != x_hat.dtype:
        raise UsageError(f"out is {out.dtype} of {out.size} values; the frame holds {x_hat.dtype} of {x_hat.size}")
    np.copyto(out, x_hat.reshape(out.shape))
    return out
