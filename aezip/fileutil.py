"""Atomic output: write to a temporary file beside the target, rename when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from .errors import OutputExistsError, UsageError


def check_writable(path: str, force: bool) -> None:
    """Refuse an existing output unless ``force``; refuse a missing target folder."""
    if os.path.exists(path) and not force:
        raise OutputExistsError(
            f"{path} exists; choose another name with -o or overwrite it with --force"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder {folder} does not exist; create it or choose another -o")


@contextlib.contextmanager
def atomic_output(path: str, force: bool) -> Iterator[str]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    check_writable(path, force)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".aezip-", suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
