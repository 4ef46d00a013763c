"""Training checkpoints: HDF5, no pickle. Everything a run needs to continue exactly.

Layout::

    /                       attrs: format="aezip-checkpoint", format_version=1, aezip_version,
                                   step, options (JSON), state (JSON: lambda, best validation
                                   figures, patience count, seconds, data shapes, world size),
                                   scheduler (JSON), param_groups (JSON)
    /weights/<name>         float32, the network and the rate model ("net.*", "rate.*")
    /best/<name>            float32, the weights at the best validation (when there was one)
    /adam/<name>/exp_avg    Adam's moments and step count, per parameter
    /adam/<name>/exp_avg_sq
    /adam/<name>/step
    /rng/<rank>             attrs: numpy (JSON of the bit generator state, plain ints);
                            datasets: torch (uint8, torch.get_rng_state()), cuda (uint8, optional)

Checkpoints are written to a temporary file beside the target and renamed into place,
so an interrupted write never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from ..errors import UsageError
from ..fileutil import atomic_output

CHECKPOINT_FORMAT = "aezip-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


def _json(d) -> np.bytes_:
    return np.bytes_(json.dumps(d, sort_keys=True, allow_nan=False))


def write_checkpoint(path: str, ckpt: dict, version: str) -> None:
    """Write ``ckpt`` (see :func:`read_checkpoint` for its keys) atomically to ``path``."""
    with atomic_output(path, force=True) as tmp, h5py.File(tmp, "w", locking=False) as f:  # flocked
        f.attrs["format"] = np.bytes_(CHECKPOINT_FORMAT)
        f.attrs["format_version"] = np.int32(CHECKPOINT_FORMAT_VERSION)
        f.attrs["aezip_version"] = np.bytes_(version)
        f.attrs["step"] = np.int64(ckpt["step"])
        for key in ("options", "state", "scheduler", "param_groups"):
            f.attrs[key] = _json(ckpt[key])
        for group in ("weights", "best"):
            if ckpt.get(group) is not None:
                g = f.create_group(group)
                for k in sorted(ckpt[group]):
                    g.create_dataset(k, data=np.asarray(ckpt[group][k], dtype="<f4"))
        adam = f.create_group("adam")
        for name, st in ckpt["adam"].items():
            g = adam.create_group(name)
            for k, v in st.items():
                g.create_dataset(k, data=np.asarray(v))
        rng = f.create_group("rng")
        for rank, st in enumerate(ckpt["rng"]):
            g = rng.create_group(str(rank))
            g.attrs["numpy"] = _json(st["numpy"])
            g.create_dataset("torch", data=np.asarray(st["torch"], dtype=np.uint8))
            if st.get("cuda") is not None:
                g.create_dataset("cuda", data=np.asarray(st["cuda"], dtype=np.uint8))


def read_checkpoint(path: str) -> dict:
    """Read a checkpoint; anything that is not an aezip checkpoint is a UsageError naming ``path``.

    Returns a dict with: step, options, state, scheduler, param_groups (parsed JSON),
    weights and best (name -> float32 array; best may be None), adam (name -> dict of
    arrays), rng (one dict per rank: numpy, torch, cuda), aezip_version.
    """
    if not os.path.exists(path):
        raise UsageError(f"--resume {path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UsageError(f"--resume {path} is not an aezip checkpoint (not an HDF5 file)") from None
    with f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != CHECKPOINT_FORMAT:
            what = "an aezip model file, not a checkpoint" if fmt == "aezip-model" else "not an aezip checkpoint"
            raise UsageError(f"--resume {path} is {what}")
        version = int(f.attrs.get("format_version", -1))
        if version != CHECKPOINT_FORMAT_VERSION:
            raise UsageError(f"--resume {path} has checkpoint format version {version}; "
                             f"this aezip reads version {CHECKPOINT_FORMAT_VERSION}")
        try:
            out = {"step": int(f.attrs["step"]),
                   "aezip_version": f.attrs["aezip_version"].decode()}
            for key in ("options", "state", "scheduler", "param_groups"):
                out[key] = json.loads(f.attrs[key])
            size = os.path.getsize(path)
            out["weights"] = {k: _read(v, size, path) for k, v in f["weights"].items()}
            out["best"] = {k: _read(v, size, path) for k, v in f["best"].items()} if "best" in f else None
            out["adam"] = {name: {k: _read(v, size, path) for k, v in g.items()} for name, g in f["adam"].items()}
            out["rng"] = []
            for rank in range(len(f["rng"])):
                g = f["rng"][str(rank)]
                out["rng"].append({"numpy": json.loads(g.attrs["numpy"]), "torch": _read(g["torch"], size, path),
                                   "cuda": _read(g["cuda"], size, path) if "cuda" in g else None})
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise UsageError(f"--resume {path} is an incomplete or damaged aezip checkpoint ({e})") from None
    return out


def _read(ds, file_bytes: int, path: str) -> np.ndarray:
    """A tensor of the checkpoint, read only when it is a plain numeric dataset no larger than
    the file (a forged shape or a compressed bomb must not allocate)."""
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiub" or ds.shape is None:
        raise UsageError(f"--resume {path}: {getattr(ds, 'name', ds)} is not a numeric dataset; the checkpoint is damaged")
    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count() or ds.size * ds.dtype.itemsize > file_bytes:
        raise UsageError(f"--resume {path}: {ds.name} declares more data than the file holds; the checkpoint is damaged")
    return ds[()]
