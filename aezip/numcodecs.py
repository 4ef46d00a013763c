"""aezip as a numcodecs codec, ``codec_id = "aezip"``: each chunk becomes one frame
(formats/aezip-frame-v1.md). Registered through the ``numcodecs.codecs`` entry point, so
``numcodecs.get_codec({"id": "aezip", ...})`` finds it once aezip is installed.

Modes (``bound`` is the mode's number):

========  ==================================================================
abs       every value within ``bound``
pw_rel    every value within ``bound`` × |value|
psnr      the loosest bound reaching ``bound`` dB, against the chunk's own value
          range (a chunk never sees the whole array)
rel       within ``bound`` × ``value_range``, which must be given: the whole
          array's range, which a chunk cannot know
learned   no bound: the plain learned mode (error measured, not guaranteed)
========  ==================================================================

NaN, ±Inf and ``fill_value`` are kept exactly. Bounded modes run no network (and import
no torch) unless ``model`` names one, whose content id the configuration then records
(``model_id``); a frame that needs a model which is not installed raises ModelError
naming its id. One codec may be used from many threads at once.

Examples
--------
>>> import numpy as np, numcodecs
>>> codec = numcodecs.get_codec({"id": "aezip", "mode": "abs", "bound": 1e-3})
>>> x = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64)
>>> bool(np.abs(codec.decode(codec.encode(x)) - x).max() <= 1e-3)
True
"""

from __future__ import annotations

import math

import numpy as np
from numcodecs.abc import Codec

from .chunk import decode_chunk, encode_chunk
from .errors import ModelError, ModelNotFoundError, UsageError

MODES = ("abs", "pw_rel", "psnr", "rel", "learned")


class AEZip(Codec):
    """Error-bounded or learned compression of one chunk per call (see the module text)."""

    codec_id = "aezip"

    def __init__(self, mode: str = "abs", bound: float | None = None, value_range: float | None = None,
                 fill_value: float | None = None, model: str | None = None, ndim: int | None = None,
                 model_id: str | None = None):
        if mode not in MODES:
            raise UsageError(f"aezip codec: unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if (mode == "learned") != (bound is None):
            raise UsageError(f"aezip codec: mode {mode!r} " + ("takes no bound" if mode == "learned" else
                                                              "needs a bound"))
        if mode == "rel" and value_range is None:
            raise UsageError("aezip codec: mode 'rel' needs value_range, the whole array's range (a chunk sees only "
                             "its own); or use mode 'abs'")
        if value_range is not None and mode != "rel":
            raise UsageError(f"aezip codec: value_range applies to mode 'rel' only, not {mode!r}")
        if ndim is not None and ndim not in (1, 2, 3):
            raise UsageError(f"aezip codec: ndim must be 1, 2 or 3, got {ndim}")
        self.mode, self.ndim = mode, ndim
        self.bound = None if bound is None else float(bound)
        self.value_range = None if value_range is None else float(value_range)
        # NaN and Inf are kept exactly whatever the fill value: a finite one is worth naming
        self.fill_value = None if fill_value is None or not math.isfinite(fill_value) else float(fill_value)
        self.model, self.model_id = model, model_id
        if model is not None and model_id is None:
            self.model_id = self._header()["id"]
        self._check_arguments()

    def _check_arguments(self) -> None:
        """The bound refused as compress would, before any chunk is coded."""
        if self.bound is not None:
            from .api import _bound

            _bound(**{self.mode: self.bound})

    def get_config(self) -> dict:
        return {"id": self.codec_id, "mode": self.mode, "bound": self.bound, "value_range": self.value_range,
                "fill_value": self.fill_value, "model": self.model, "ndim": self.ndim, "model_id": self.model_id}

    def __repr__(self) -> str:
        given = {k: v for k, v in self.get_config().items() if k != "id" and v is not None}
        return "AEZip(" + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ")"

    def _fill_values(self, extra=()) -> tuple[float, ...]:
        values = [self.fill_value] + [float(v) for v in extra]
        return tuple(sorted({v for v in values if v is not None and math.isfinite(v)}))

    def encode(self, buf, fill_values=()) -> bytes:
        """The frame of chunk ``buf`` (an array: a lossy codec needs its shape and dtype).
        ``fill_values``: more values to keep exactly (the Zarr array's fill value)."""
        x = np.asarray(buf)
        if x.dtype.kind not in "fiu":
            raise UsageError(f"aezip codec: chunks must be numeric arrays, got {x.dtype}")
        if self.model_id is not None and self.model is not None:
            self._check_model()
        bound = {} if self.mode == "learned" else {self.mode: self.bound}
        return encode_chunk(x, **bound, value_range=self.value_range, fill_values=self._fill_values(fill_values),
                            model=self.model, ndim=self.ndim)

    def _header(self) -> dict:
        """The named model's header (no torch); the built-in default by name needs ``ndim``."""
        from .model import model_header
        from .model.registry import CONV_DEFAULT

        if self.model == CONV_DEFAULT and self.ndim is None:
            raise UsageError(f"aezip codec: model {CONV_DEFAULT!r} is one model per dimensionality: give ndim")
        return model_header(self.model, ndim=self.ndim)

    def _check_model(self) -> None:
        found = self._header()["id"]
        if found != self.model_id:
            raise ModelError(f"aezip codec: model {self.model!r} has id {found[:12]}, not the configured "
                             f"{self.model_id[:12]}; install the model with that id or drop model_id")

    def decode(self, buf, out=None) -> np.ndarray:
        """The chunk a frame holds (into ``out`` when given)."""
        data = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
        try:
            return decode_chunk(data, None if out is None else np.asarray(out), model=self.model)
        except ModelNotFoundError as err:
            from .model import user_model_dir

            raise ModelNotFoundError(
                f"aezip codec: this chunk needs model {err.model_id}, which is not installed: copy its model file "
                f"into {user_model_dir()} (or the folder $AEZIP_MODELS names), or pass AEZip(model=PATH)",
                err.model_id) from None
