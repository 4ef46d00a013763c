"""One exception hierarchy for every error a user can cause.

Each class also subclasses the matching builtin so that callers who catch
``ValueError`` or ``FileNotFoundError`` keep working. The CLI turns any
``AezipError`` into one line on stderr and exit status 2; anything else is a bug
(exit status 1).
"""

from __future__ import annotations


class AezipError(Exception):
    """Base of every error aezip raises on purpose; the message says what to do."""


class UsageError(AezipError, ValueError):
    """Options that contradict each other or are out of range."""


class InputError(AezipError, ValueError):
    """An input file or array that aezip cannot read or compress."""


class InputNotFoundError(InputError, FileNotFoundError):
    """The input file does not exist."""


class UnsupportedDataError(InputError, TypeError):
    """Data aezip does not handle (yet): non-numeric, integer, NaN/Inf, empty."""


class OutputExistsError(AezipError, FileExistsError):
    """The output file exists and ``force`` was not given."""


class OutputError(AezipError, OSError):
    """An output that cannot be written: a full disk, a read-only or forbidden folder."""


class ContainerError(AezipError, ValueError):
    """A container that cannot be read: not aezip, truncated, or corrupted."""


class FormatVersionError(ContainerError):
    """A container written in a format version this aezip does not read."""


class ChecksumError(ContainerError):
    """A stored checksum does not match: the container is corrupted."""


class ModelError(AezipError, LookupError):
    """A model that cannot be found, loaded, or does not fit the data."""


class ModelMismatchError(ModelError):
    """The model given is not the model the container was written with."""


class ModelNotFoundError(ModelError):
    """The model named by content id ``model_id`` is not installed."""

    def __init__(self, message: str, model_id: str):
        super().__init__(message)
        self.model_id = model_id


class WorkerError(AezipError, RuntimeError):
    """A worker process ended without its result (killed, out of memory)."""


class BoundExceededError(AezipError, ArithmeticError):
    """A measured error exceeds the bound stored in the container (exit status 3)."""
