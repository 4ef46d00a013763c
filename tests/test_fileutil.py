"""Atomic outputs: locked temporary files, the stale-file sweep, no replacing without --force,
outputs that are inputs, full disks and read-only folders."""

import contextlib
import fcntl
import os
import subprocess
import threading

import numpy as np
import pytest

import aezip
from aezip import cli, fileutil
from aezip.codec.sample import sample_field


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def temporary_files(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".aezip-") and n.endswith(".tmp"))


@pytest.fixture
def npy(tmp_path):
    p = tmp_path / "field.npy"
    np.save(p, sample_field((96, 80), seed=4))
    return p


# -- outputs that are inputs: refused even with --force --------------------------------------------

def test_compress_into_its_own_input_is_refused(npy, capsys):
    before = npy.read_bytes()
    code, out, err = run(capsys, "compress", npy, "-o", npy, "--force")
    assert code == 2 and out == "" and "is the input" in err and len(err.strip().splitlines()) == 1
    assert npy.read_bytes() == before


def test_decompress_into_its_own_container_or_original_is_refused(npy, tmp_path, capsys):
    aez = tmp_path / "f.aez"
    assert run(capsys, "compress", npy, "-o", aez, "--quiet")[0] == 0
    container, original = aez.read_bytes(), npy.read_bytes()
    link = tmp_path / "link.aez"
    os.link(aez, link)  # another name of the same file
    for output, extra in ((aez, []), (link, []), (npy, ["--original", npy])):
        code, out, err = run(capsys, "decompress", aez, "-o", output, "--force", *extra)
        assert code == 2 and "is the input" in err, err
    assert aez.read_bytes() == container and npy.read_bytes() == original


# -- temporary files ----------------------------------------------------------------------------------

def test_temporary_file_is_new_locked_and_gone_after(tmp_path):
    target = tmp_path / "out.bin"
    with fileutil.atomic_output(str(target), force=False) as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(".aezip-") and name.endswith(".tmp") and not os.path.islink(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        with pytest.raises(BlockingIOError):  # its writer holds the lock
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
        fileutil.sweep_stale(str(tmp_path))  # a concurrent run leaves it alone
        assert os.path.exists(tmp)
        with open(tmp, "wb") as f:
            f.write(b"done")
    assert target.read_bytes() == b"done" and temporary_files(tmp_path) == []


def test_the_next_run_removes_stale_temporary_files_only(tmp_path):
    stale = tmp_path / ".aezip-0123456789abcdef.tmp"  # left by a killed run: nobody holds it
    stale.write_bytes(b"x" * 100)
    held = tmp_path / ".aezip-fedcba9876543210.tmp"  # a live writer's, on another host say
    held.write_bytes(b"y")
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    other = tmp_path / "aezip-notes.tmp"  # not ours
    other.write_bytes(b"z")
    folder = tmp_path / ".aezip-0123456789abcdef.zarr.tmp"  # a Zarr store being written: a folder, never swept
    folder.mkdir()
    try:
        aezip.compress(sample_field((32, 32), seed=1), str(tmp_path / "a.aez"), rel=1e-3)
        assert not stale.exists() and held.exists() and other.exists() and folder.is_dir()
    finally:
        os.close(fd)


def test_a_temporary_file_is_never_created_through_a_link(tmp_path, monkeypatch):
    """O_EXCL | O_NOFOLLOW: a planted link at the chosen name fails the open, and another name is tried."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    names = iter(["planted", "planted", "fresh0000000000"])
    planted = tmp_path / ".aezip-planted.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(fileutil.secrets, "token_hex", lambda n: next(names))
    with fileutil.atomic_output(str(tmp_path / "out"), force=False) as tmp:
        assert os.path.basename(tmp) == ".aezip-fresh0000000000.tmp"
        write(tmp, b"new")
    assert victim.read_bytes() == b"keep" and planted.is_symlink() and (tmp_path / "out").read_bytes() == b"new"


# -- the final step -----------------------------------------------------------------------------------

def test_a_file_that_appears_during_the_run_is_not_replaced_without_force(tmp_path):
    target = tmp_path / "x.aez"
    with pytest.raises(aezip.OutputExistsError, match="appeared while"):
        with fileutil.atomic_output(str(target), force=False) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"ours")
            target.write_bytes(b"theirs")  # another run finished first
    assert target.read_bytes() == b"theirs" and temporary_files(tmp_path) == []


@pytest.mark.parametrize("missing", ["renameat2", "renameat2 and link"])
def test_the_final_step_falls_back_where_calls_are_missing(tmp_path, monkeypatch, missing):
    monkeypatch.setattr(fileutil, "_renameat2", lambda: None)
    if "link" in missing:
        def no_link(a, b):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(fileutil.os, "link", no_link)
    target = tmp_path / "x.bin"
    with fileutil.atomic_output(str(target), force=False) as tmp:
        write(tmp, b"1")
    assert target.read_bytes() == b"1"
    with pytest.raises(aezip.OutputExistsError):
        with fileutil.atomic_output(str(target.with_suffix(".two")), force=False) as tmp:
            write(tmp, b"2")
            target.with_suffix(".two").write_bytes(b"3")
    assert target.with_suffix(".two").read_bytes() == b"3" and temporary_files(tmp_path) == []


def test_two_runs_to_one_output_with_force_both_succeed_and_the_last_wins(tmp_path):
    target = tmp_path / "x.bin"
    first, second = threading.Event(), threading.Event()

    def slow_writer():
        with fileutil.atomic_output(str(target), force=True) as tmp:
            write(tmp, b"slow")
            first.set()
            second.wait(10)

    t = threading.Thread(target=slow_writer)
    t.start()
    first.wait(10)
    with fileutil.atomic_output(str(target), force=True) as tmp:  # its sweep leaves the other's file alone
        write(tmp, b"fast")
    assert target.read_bytes() == b"fast"
    second.set()
    t.join()
    assert target.read_bytes() == b"slow" and temporary_files(tmp_path) == []


# -- full disks and read-only folders ------------------------------------------------------------------

@contextlib.contextmanager
def mounted(folder, options: str):
    """A small tmpfs at ``folder`` (root only: skipped where mounting is not permitted)."""
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_compress_to_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys):
    src = tmp_path / "noise.npy"
    np.save(src, np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32))  # 4 MB of noise
    with mounted(tmp_path / "full", "size=1m") as full:
        code, out, err = run(capsys, "compress", src, "-o", full / "x.aez", "--abs", "1e-6")
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert "disk is full" in err and os.listdir(full) == []


def test_decompress_checks_free_space_before_decoding(tmp_path, capsys, monkeypatch):
    aez = tmp_path / "x.aez"
    monkeypatch.setattr(aezip.slabs, "slab_rows", lambda shape, memory: 256)  # streamed out slab by slab
    aezip.compress(sample_field((1024, 1024), seed=2), str(aez), rel=1e-2)  # 4 MB decoded, a few KB stored
    with mounted(tmp_path / "full", "size=2m") as full:
        for name in ("x.npy", "x.h5", "x.f32"):
            code, out, err = run(capsys, "decompress", aez, "-o", full / name)
            assert code == 2 and "needs 4,194,304 B" in err and len(err.strip().splitlines()) == 1, err
        assert os.listdir(full) == []
        # the space goes while it runs: preallocation turns the SIGBUS of a memory-mapped .npy into an error
        monkeypatch.setattr(aezip.api, "check_space", lambda path, n: None)
        code, out, err = run(capsys, "decompress", aez, "-o", full / "x.npy")
        assert code == 2 and "disk is full" in err, err
        assert os.listdir(full) == []


def test_a_read_only_folder_is_one_line(tmp_path, npy, capsys):
    with mounted(tmp_path / "ro", "size=1m,ro") as ro:
        code, out, err = run(capsys, "compress", npy, "-o", ro / "x.aez")
        assert code == 2 and "read-only" in err and len(err.strip().splitlines()) == 1, err
        assert os.listdir(ro) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_folder_without_write_permission_is_one_line(tmp_path, npy, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, out, err = run(capsys, "compress", npy, "-o", folder / "x.aez")
        assert code == 2 and "permission denied" in err, err
    finally:
        folder.chmod(0o700)


def test_train_into_one_of_its_inputs_is_refused(npy, capsys):
    before = npy.read_bytes()
    code, out, err = run(capsys, "train", npy, "-o", npy, "--force", "--max-steps", "1")
    assert code == 2 and "is the input" in err, err
    assert npy.read_bytes() == before
