"""The only package that imports h5py for .aez containers: layout, writer, reader.

The normative description is formats/aezip-container-v1.md.
"""

from .layout import (FORMAT, FORMAT_VERSION, ArrayEntry, CodecParams, Container, Figures, ModelRef, SourceRef,
                     model_of)
from .reader import read_container, read_streams
from .writer import ContainerWriter, write_container

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ArrayEntry",
    "CodecParams",
    "Container",
    "ContainerWriter",
    "Figures",
    "ModelRef",
    "SourceRef",
    "read_container",
    "read_streams",
    "model_of",
    "write_container",
]
