"""Readers and writers of user files (not the .aez container).

``read_input`` turns a file spec into an :class:`Input` of :class:`Field` arrays;
``write_output`` writes arrays back in the source's format, layout and byte order.
Formats: ``.npy``, ``.npz``, HDF5 and NetCDF-4 (one dataset, or a whole file whose
non-float parts travel in a skeleton), and raw binaries with a given shape and dtype.
"""

from __future__ import annotations

from .base import LAZY_BYTES, Field, Input, load
from .dispatch import read_input, split_spec, write_output
from .formats import default_output_name, output_kind
from .skeleton import LeftOutWarning, check_skeleton
from .stream import STREAMABLE, array_output, open_written

__all__ = [
    "Field",
    "LeftOutWarning",
    "check_skeleton",
    "STREAMABLE",
    "array_output",
    "open_written",
    "Input",
    "LAZY_BYTES",
    "load",
    "default_output_name",
    "output_kind",
    "read_input",
    "split_spec",
    "write_output",
]
