"""Atomic output: write to a temporary file beside the target, move it into place when complete.

The temporary file is ``.aezip-<random>.tmp`` in the target's folder, created with
``O_EXCL | O_NOFOLLOW`` (never someone else's file, never through a link), and its writer
holds an ``flock`` on it until the file is in place or removed. A run killed with SIGKILL
cannot remove its file; the next run into the same folder does: it removes every
``.aezip-*.tmp`` that no live writer holds (a non-blocking ``flock`` succeeds), so PID
reuse and writers on other hosts of a shared file system do no harm.

The final step never replaces a file without ``force``: ``renameat2(RENAME_NOREPLACE)``
on Linux, else a hard link then unlink, else (a file system with neither) a check then a
rename, which a file created in between would lose to. With ``force`` the last run to
finish wins. A full disk, a read-only folder or a folder without write permission ends
as one :class:`~aezip.errors.OutputError` and leaves no partial output.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator

from .errors import OutputError, OutputExistsError, UsageError

TMP_PREFIX, TMP_SUFFIX = ".aezip-", ".tmp"
# what a write may fail of that the user can mend: the message names the cause and the remedy
OUTPUT_ERRNOS = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than the file system allows",
    errno.EROFS: "the folder is on a read-only file system", errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one existing file (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: str, force: bool, inputs: Iterable[str] = ()) -> None:
    """Refuse an output that is one of ``inputs`` (even with ``force``), an existing output
    unless ``force``, and a missing target folder."""
    for source in inputs:
        if source and same_file(path, source):
            raise UsageError(f"the output {path} is the input {source}: writing it would destroy the input; "
                             "choose another -o")
    if os.path.exists(path) and not force:
        raise OutputExistsError(
            f"{path} exists; choose another name with -o or overwrite it with --force"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"output folder {folder} does not exist; create it or choose another -o")


def check_space(path: str, nbytes: int) -> None:
    """Refuse before writing when the target's file system has less than ``nbytes`` free."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise OutputError(f"cannot write {path}: it needs {nbytes:,} B and its file system has {free:,} B free; "
                          "free space or choose another -o")


def output_error(path: str, e: OSError) -> OutputError | None:
    """The one-line error for a failed write of ``path`` the user can mend, else None."""
    cause = OUTPUT_ERRNOS.get(e.errno)  # type: ignore[arg-type]
    if cause is None:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    return OutputError(f"cannot write {path}: {cause} ({folder}); free space or choose another -o")


def sweep_stale(folder: str) -> None:
    """Remove the temporary files in ``folder`` that no live writer holds (left by killed runs)."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TMP_PREFIX) and n.endswith(TMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        p = os.path.join(folder, name)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and os.path.samestat(st, os.lstat(p)):
                os.unlink(p)
        except OSError:
            pass
        finally:
            os.close(fd)


def _create_locked(folder: str) -> tuple[int, str]:
    """A new temporary file in ``folder``, opened and flocked: its descriptor and path."""
    while True:
        tmp = os.path.join(folder, f"{TMP_PREFIX}{secrets.token_hex(8)}{TMP_SUFFIX}")
        try:  # 0666 less the umask: outputs get the usual permissions
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:  # the name is taken (a link planted there fails too): take another
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only on a sweeper that opened it in between
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(tmp)):
                return fd, tmp
        except FileNotFoundError:  # that sweeper removed it: take another name
            pass
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str, force: bool) -> Iterator[str]:
    """Yield a temporary path in the target's folder; move it to ``path`` on success.

    On any exception, and on SIGINT, SIGTERM or SIGHUP in the command, the temporary file
    is removed and ``path`` is left as it was. Writers that open the path themselves
    (h5py) must not lock it: pass ``locking=False``, as the flock held here would fail theirs.
    """
    check_writable(path, force)
    folder = os.path.dirname(os.path.abspath(path))
    sweep_stale(folder)
    try:
        fd, tmp = _create_locked(folder)
    except OSError as e:
        raise output_error(path, e) or e from None
    try:
        try:
            yield tmp
            _move(tmp, path, force)
        except OSError as e:
            error = output_error(path, e)
            if error is None:
                raise
            raise error from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # releases the lock, once the file is in place or gone


def _move(tmp: str, path: str, force: bool) -> None:
    if force:
        os.replace(tmp, path)
        return
    try:
        _rename_noreplace(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} appeared while aezip was writing it; it is left as it was: "
                                "choose another name with -o or overwrite it with --force") from None


RENAME_NOREPLACE, AT_FDCWD = 1, -100
# errors of a file system or kernel that lacks the call: try the next way
UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EMLINK, errno.EXDEV}


def _renameat2():
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(None, use_errno=True).renameat2
    return None


def _rename_noreplace(tmp: str, path: str) -> None:
    """Rename ``tmp`` to ``path``, raising FileExistsError rather than replace a file."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(AT_FDCWD, os.fsencode(tmp), AT_FDCWD, os.fsencode(path), RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in UNSUPPORTED:
            raise OSError(code, os.strerror(code), path)
    try:
        os.link(tmp, path)  # fails if path exists
    except OSError as e:
        if e.errno not in UNSUPPORTED:
            raise
        if os.path.lexists(path):  # neither call exists here: a check, then a rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)
