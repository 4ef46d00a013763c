"""Readers and writers of user files (not the .aez container).

``read_input`` turns a file spec into an :class:`Input` of :class:`Field` arrays;
``write_output`` writes arrays back in the source's format, layout and byte order.
Formats: ``.npy``, ``.npz``, HDF5 and NetCDF-4 (one dataset, or a whole file whose
non-float parts travel in a skeleton), and raw binaries with a given shape and dtype.
"""

from __future__ import annotations

from .base import Field, Input
from .dispatch import read_input, split_spec, write_output
from .formats import default_output_name, output_kind

__all__ = [
    "Field",
    "Input",
    "default_output_name",
    "output_kind",
    "read_input",
    "split_spec",
    "write_output",
]
