"""aezip as a Zarr v3 codec: an ``ArrayBytesCodec`` (a serializer: a lossy float codec
needs the chunk's shape and dtype), named ``"aezip"`` in array metadata and registered
through the ``zarr.codecs`` entry point. Each chunk is one frame
(formats/aezip-frame-v1.md); the settings are those of :class:`aezip.numcodecs.AEZip`.

    import zarr
    from aezip.zarr import AEZip
    z = zarr.create_array(store, shape=(4096, 4096), chunks=(256, 256), dtype="float32",
                          serializer=AEZip(mode="abs", bound=1e-3), compressors=None)

Besides NaN, Inf and the codec's ``fill_value``, the array's own fill value is kept
exactly: Zarr pads edge chunks with it, and xarray writes it where values are missing.
A reader needs aezip installed (``pip install 'aezip[zarr]'``) to open such an array.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from . import numcodecs as aez_numcodecs

NAME = "aezip"


@dataclass(frozen=True)
class AEZip(ArrayBytesCodec):
    """Zarr v3 serializer coding each chunk with aezip (see :mod:`aezip.numcodecs`)."""

    is_fixed_size = False
    codec: aez_numcodecs.AEZip

    def __init__(self, *, mode: str = "abs", bound: float | None = None, value_range: float | None = None,
                 fill_value: float | None = None, model: str | None = None, ndim: int | None = None,
                 model_id: str | None = None):
        object.__setattr__(self, "codec", aez_numcodecs.AEZip(mode=mode, bound=bound, value_range=value_range,
                                                              fill_value=fill_value, model=model, ndim=ndim,
                                                              model_id=model_id))

    @classmethod
    def from_dict(cls, data: dict) -> AEZip:
        _, configuration = parse_named_configuration(data, NAME, require_configuration=False)
        return cls(**(configuration or {}))

    def to_dict(self) -> dict:
        config = {k: v for k, v in self.codec.get_config().items() if k != "id" and v is not None}
        return {"name": NAME, "configuration": config}

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        native = np.dtype(dtype.to_native_dtype())
        if native.kind not in "fiu" or native == np.float16 or native.itemsize > 8:
            raise ValueError(f"the aezip codec codes float32, float64 and integer arrays, not {native}")

    def _encode(self, chunk: np.ndarray, fill_value) -> bytes:
        fills = () if fill_value is None else (float(fill_value),)
        return self.codec.encode(chunk, fill_values=fills)

    async def _encode_single(self, chunk_array, chunk_spec):
        x = np.asarray(chunk_array.as_numpy_array())
        fill = chunk_spec.fill_value
        data = await asyncio.to_thread(self._encode, x, None if fill is None else np.asarray(fill).item())
        return chunk_spec.prototype.buffer.from_bytes(data)

    async def _decode_single(self, chunk_bytes, chunk_spec):
        x = await asyncio.to_thread(self.codec.decode, chunk_bytes.to_bytes())
        dtype = np.dtype(chunk_spec.dtype.to_native_dtype())
        if x.shape != tuple(chunk_spec.shape) or x.dtype != dtype:
            raise ValueError(f"an aezip chunk holds {x.dtype} of shape {x.shape}, the array's chunks are {dtype} "
                             f"of shape {tuple(chunk_spec.shape)}")
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(x)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec) -> int:
        raise NotImplementedError("aezip chunks vary in size")
