"""aezip: compress numerical arrays with trained autoencoders into self-describing HDF5 containers."""

from ._version import __version__
from .api import compress, decompress, info, verify
from .chunk import decode_chunk, encode_chunk
from .latents import latents
from .errors import (AezipError, BoundExceededError, ChecksumError, ContainerError, FormatVersionError, InputError,
                     InputNotFoundError, ModelError, ModelMismatchError, OutputError, OutputExistsError, UnsupportedDataError,
                     UsageError, WorkerError)
from .metrics import Quality, Report
from .options import EncoderOptions

__all__ = [
    "AezipError", "BoundExceededError", "ChecksumError", "ContainerError", "EncoderOptions", "FormatVersionError",
    "InputError",
    "InputNotFoundError", "ModelError", "ModelMismatchError", "OutputError", "OutputExistsError", "Quality", "Report",
    "UnsupportedDataError", "UsageError", "WorkerError", "__version__", "compress", "decode_chunk", "decompress",
    "encode_chunk", "info", "latents", "verify",
]
