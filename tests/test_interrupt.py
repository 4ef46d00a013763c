"""Killed runs (a subprocess test): SIGTERM, SIGHUP and SIGINT unwind (temporary file removed,
workers ended, exit 128 + N or 130); after SIGKILL the forked workers die with their parent and
the next run into the folder removes the temporary file the killed one left."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import aezip
from aezip import cli
from aezip.codec.sample import sample_field

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers and /proc: Linux only")

ENV = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__))))


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.split("/")[2]))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped
    except OSError:
        return False


def temporary_files(folder) -> list[str]:
    return glob.glob(os.path.join(folder, ".aezip-*.tmp"))


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A 32 MB array (two slabs, two workers) and its container."""
    folder = tmp_path_factory.mktemp("large")
    src, aez = folder / "x.npy", folder / "x.aez"
    np.save(src, sample_field((4096, 2048), seed=5))
    aezip.compress(str(src), str(aez), rel=1e-3, threads=2)
    return src, aez


def killed(argv, folder, sig):
    """Start ``aezip argv``; once it writes its temporary file and its workers run, send ``sig``.
    Returns the exit status, stderr and the workers' ids."""
    p = subprocess.Popen([sys.executable, "-m", "aezip", *map(str, argv), "--threads", "2", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        workers = children(p.pid)
        if len(workers) >= 2 and temporary_files(folder):
            break
        time.sleep(0.02)
    assert p.poll() is None and len(workers) >= 2, "the run ended before it could be killed: use a larger array"
    time.sleep(0.2)  # while slabs are coded
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)  # EOF: no worker holds our pipes any more
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "orphaned worker processes"
    return p.returncode, err.decode(), workers


def commands(large, tmp_path):
    src, aez = large
    return {"compress": ["compress", src, "-o", tmp_path / "y.aez", "--rel", "1e-3"],
            "decompress": ["decompress", aez, "-o", tmp_path / "y.npy"]}


@pytest.mark.parametrize("command,sig", [
    ("compress", signal.SIGTERM), ("decompress", signal.SIGTERM),
    pytest.param("compress", signal.SIGHUP, marks=pytest.mark.slow),
    pytest.param("decompress", signal.SIGINT, marks=pytest.mark.slow),
])
def test_a_terminated_run_cleans_up(large, tmp_path, command, sig):
    code, err, _ = killed(commands(large, tmp_path)[command], tmp_path, sig)
    assert code == (130 if sig == signal.SIGINT else 128 + sig), err
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []  # no temporary file, no partial output


@pytest.mark.parametrize("command", ["compress", pytest.param("decompress", marks=pytest.mark.slow)])
def test_a_killed_run_leaves_no_worker_and_the_next_run_sweeps_its_file(large, tmp_path, command):
    code, err, _ = killed(commands(large, tmp_path)[command], tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert len(temporary_files(tmp_path)) == 1  # a killed process cannot clean up
    aezip.compress(sample_field((16, 16), seed=1), str(tmp_path / "next.aez"), rel=1e-2)
    assert temporary_files(tmp_path) == [] and os.listdir(tmp_path) == ["next.aez"]
