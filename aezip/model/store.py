"""Model files: HDF5, no pickle. Weights, configuration, entropy tables, summary, identity.

Layout (all attributes fixed-length strings or numbers)::

    /                 attrs: format="aezip-model", format_version=1, name, id,
                             config (JSON), summary (JSON), aezip_version
    /weights/<param>  float32 datasets, one per state_dict entry ('.' kept in names)
    /tables/lo        int64 (C,)
    /tables/weights   int64 (C, K)

The identity is sha256 over the canonical JSON of the configuration, every tensor
(sorted by name: name, dtype, shape, little-endian bytes) and the tables, so the same
model has the same id whatever file it sits in.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import h5py
import numpy as np

from ..codec.entropy import Tables
from ..errors import ModelError
from .config import check_config, check_tables, check_tensors

MODEL_FORMAT = "aezip-model"
MODEL_FORMAT_VERSION = 1


def canonical_json(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def model_id(config: dict, tensors: dict[str, np.ndarray], tables: Tables) -> str:
    h = hashlib.sha256()
    h.update(canonical_json(config).encode())
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name], dtype="<f4")
        h.update(f"{name}|{t.dtype.str}|{t.shape}".encode())
        h.update(t.tobytes())
    for t in (tables.lo, tables.weights):
        a = np.ascontiguousarray(t, dtype="<i8")
        h.update(f"{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_model(target: str | io.BytesIO, *, name: str, config: dict, tensors: dict[str, np.ndarray],
                tables: Tables, summary: dict, version: str) -> str:
    """Write a model file (path or BytesIO); returns the model id."""
    mid = model_id(config, tensors, tables)
    with h5py.File(target, "w", libver=("earliest", "v110"), locking=False) as f:  # an atomic_output, flocked
        f.attrs["format"] = np.bytes_(MODEL_FORMAT)
        f.attrs["format_version"] = np.int32(MODEL_FORMAT_VERSION)
        f.attrs["name"] = np.bytes_(name)
        f.attrs["id"] = np.bytes_(mid)
        f.attrs["config"] = np.bytes_(canonical_json(config))
        f.attrs["summary"] = np.bytes_(canonical_json(summary))
        f.attrs["aezip_version"] = np.bytes_(version)
        w = f.create_group("weights")
        for k in sorted(tensors):
            w.create_dataset(k, data=np.asarray(tensors[k], dtype="<f4"))
        t = f.create_group("tables")
        t.create_dataset("lo", data=tables.lo.astype("<i8"))
        t.create_dataset("weights", data=tables.weights.astype("<i8"))
    return mid


def _text(attrs, key: str, where: str) -> str:
    if key not in attrs:
        raise ModelError(f"{where} is not an aezip model (attribute {key!r} missing)")
    v = attrs[key]
    return v.decode() if isinstance(v, bytes) else str(v)


def read_model(source: str | bytes) -> tuple[dict, dict[str, np.ndarray], Tables, dict]:
    """Read a model file (path or the bytes of one) and check its identity.

    Returns (header, tensors, tables, config) where header has name, id, summary, aezip_version.
    """
    where = source if isinstance(source, str) else "embedded model"
    try:
        f = h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r")
    except FileNotFoundError:
        raise ModelError(f"model file {where} does not exist") from None
    except (OSError, OverflowError, ValueError) as e:  # OverflowError: damaged bytes of an embedded model
        raise ModelError(f"cannot read model file {where}: not an HDF5 file or damaged ({e})") from None
    try:
        return _read_open(f, where)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:  # HDF5 structures damaged
        raise ModelError(f"{where} is damaged ({' '.join(str(e).split())[:120]}); it cannot be read") from None


def _read_open(f: h5py.File, where: str) -> tuple[dict, dict[str, np.ndarray], Tables, dict]:
    with f:
        if _text(f.attrs, "format", where) != MODEL_FORMAT:
            raise ModelError(f"{where} is not an aezip model file")
        version = int(f.attrs.get("format_version", -1))
        if version != MODEL_FORMAT_VERSION:
            raise ModelError(f"{where} has model format version {version}; this aezip reads version {MODEL_FORMAT_VERSION}")
        header = {
            "name": _text(f.attrs, "name", where),
            "id": _text(f.attrs, "id", where),
            "summary": _json(f.attrs, "summary", where),
            "aezip_version": _text(f.attrs, "aezip_version", where),
        }
        config = _json(f.attrs, "config", where)
        check_config(config, where)
        try:
            weights = {k: _plain(v, where) for k, v in f["weights"].items()}
            lo, table = _plain(f["tables/lo"], where), _plain(f["tables/weights"], where)
        except KeyError as e:
            raise ModelError(f"{where} is incomplete ({e}); it is damaged") from None
        check_tensors(config, {k: v.shape for k, v in weights.items()}, where)
        check_tables(config["latent_channels"], lo.shape, table.shape, where)
        tensors = {k: np.asarray(v[()], dtype=np.float32) for k, v in weights.items()}
        tables = Tables(lo=lo[()], weights=table[()])
    actual = model_id(config, tensors, tables)
    if actual != header["id"]:
        raise ModelError(f"{where} is damaged: its content hashes to {actual[:12]}, not its stored id {header['id'][:12]}")
    return header, tensors, tables, config


def _json(attrs, key: str, where: str):
    try:
        return json.loads(_text(attrs, key, where))
    except ValueError:
        raise ModelError(f"{where}: its {key} is not valid JSON; the model is damaged") from None


def _plain(obj, where: str) -> h5py.Dataset:
    """A numeric dataset stored plainly in the file (compact or contiguous, no filters, no
    external files): the only kind a model file holds, checked before it is read."""
    if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "fiu":
        raise ModelError(f"{where}: {getattr(obj, 'name', None) or 'a tensor'} is not a numeric dataset; "
                         "the model is damaged")
    dcpl = obj.id.get_create_plist()
    if dcpl.get_layout() not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS) or dcpl.get_external_count() \
            or dcpl.get_nfilters():
        raise ModelError(f"{where}: {obj.name} is chunked, filtered or stored outside the file, which aezip never "
                         "writes; the model is damaged or forged")
    return obj


def read_header(path: str) -> dict:
    """Name, id, summary and config of a model file without loading its tensors."""
    try:
        with h5py.File(path, "r") as f:
            return {
                "name": _text(f.attrs, "name", path),
                "id": _text(f.attrs, "id", path),
                "summary": json.loads(_text(f.attrs, "summary", path)),
                "config": json.loads(_text(f.attrs, "config", path)),
                "path": os.path.abspath(path),
            }
    except OSError as e:
        raise ModelError(f"cannot read model file {path} ({e})") from None
