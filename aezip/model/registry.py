"""Where models are found: built-in files, the user's model folder, or a path.

Built-in models live in ``aezip/model/builtin/`` as ``<name>.h5``, named after their
content (``conv2d-<first 12 hex digits of the id>``) and never removed, so every
container ever written finds its model. ``defaults.json`` there names the default
model per dimensionality. The user's folder is ``$AEZIP_MODELS`` or
``~/.cache/aezip/models``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, ModelMismatchError, ModelNotFoundError
from .store import read_header, read_model

if TYPE_CHECKING:
    from .runtime import Model

BUILTIN_DIR = Path(__file__).parent / "builtin"


def user_model_dir() -> Path:
    return Path(os.environ.get("AEZIP_MODELS") or Path.home() / ".cache" / "aezip" / "models")


def _defaults() -> dict[str, str]:
    try:
        return json.loads((BUILTIN_DIR / "defaults.json").read_text())
    except FileNotFoundError:
        return {}


def _candidates() -> list[tuple[str, Path]]:
    found = [("builtin", p) for p in sorted(BUILTIN_DIR.glob("*.h5"))]
    user = user_model_dir()
    if user.is_dir():
        found += [("user", p) for p in sorted(user.glob("*.h5"))]
    return found


@functools.lru_cache(maxsize=None)
def _header(path: str, mtime: float) -> dict:
    return read_header(path)


def list_models() -> list[dict]:
    """Headers of every findable model, with ``where`` and ``default`` added."""
    defaults = set(_defaults().values())
    out = []
    for where, p in _candidates():
        try:
            h = dict(_header(str(p), p.stat().st_mtime))
        except ModelError:
            continue
        h["where"] = where
        h["default"] = where == "builtin" and h["name"] in defaults
        out.append(h)
    return out


CONV_DEFAULT = "conv-ae-v1"  # --model name of the built-in tiled conv autoencoder for the array's dimensionality


def looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or os.path.isfile(spec)


def find_model(spec: str | None = None, *, ndim: int | None = None, model_id: str | None = None) -> str:
    """Path of the model named by ``spec`` (name, id prefix or path, or CONV_DEFAULT: the
    built-in default for ``ndim``), by ``model_id``, or the default."""
    if spec == CONV_DEFAULT:
        spec = None
    if spec is not None and looks_like_path(spec):
        if not os.path.isfile(spec):
            raise ModelError(f"model file {spec} does not exist")
        return spec
    models = list_models()
    if spec is not None:
        hits = [m for m in models if m["name"] == spec or (len(spec) >= 8 and m["id"].startswith(spec))]
        if not hits:
            names = ", ".join(m["name"] for m in models) or "none"
            raise ModelError(f"no model named {spec!r}; available: {names} (see `aezip models`)")
        return hits[0]["path"]
    if model_id is not None:
        hits = [m for m in models if m["id"] == model_id]
        if not hits:
            raise ModelNotFoundError(
                f"the model this container needs (id {model_id[:12]}) is neither built in nor in {user_model_dir()}; "
                "pass its file with --model PATH or copy it into that folder", model_id
            )
        return hits[0]["path"]
    name = _defaults().get(str(ndim))
    if name is None:
        raise ModelError(f"no built-in default model for {ndim}-D data; pass --model or --ndim 1, 2 or 3")
    return str(BUILTIN_DIR / f"{name}.h5")


def model_header(spec: str | None = None, *, ndim: int | None = None) -> dict:
    """The header (name, id, summary, config) of the model :func:`find_model` finds,
    without its tensors and without torch."""
    p = Path(find_model(spec, ndim=ndim))
    return _header(str(p.resolve()), p.stat().st_mtime)


def _load(path_or_bytes: str | bytes, device: str) -> Model:
    """A model from a file or bytes; a file is read again when it changed on disk."""
    if isinstance(path_or_bytes, bytes):
        return _read(path_or_bytes, device, None)
    st = os.stat(path_or_bytes)
    return _read(path_or_bytes, device, (st.st_mtime_ns, st.st_size, st.st_ino))


@functools.lru_cache(maxsize=8)
def _read(path_or_bytes: str | bytes, device: str, version: tuple | None) -> Model:
    from .arch import ArchConfig  # torch: only when a network is to run
    from .runtime import Model

    header, tensors, tables, config = read_model(path_or_bytes)
    return Model(
        name=header["name"], id=header["id"], config=ArchConfig.from_dict(config), tensors=tensors,
        tables=tables, summary=header["summary"],
        path=path_or_bytes if isinstance(path_or_bytes, str) else None, device=device,
    )


def load_model(spec: str | None = None, *, ndim: int | None = None, model_id: str | None = None,
               embedded: bytes | None = None, device: str = "cpu") -> Model:
    """Load a model; with ``model_id``, refuse any model whose identity differs.

    ``embedded`` is the bytes of a model file carried by a container: used when no
    ``spec`` is given and its identity is the one asked for.
    """
    model = _load(embedded, device) if embedded is not None and spec is None else None
    if model is None or (model_id is not None and model.id != model_id):
        model = _load(os.path.abspath(find_model(spec, ndim=ndim, model_id=model_id)), device)
    if model_id is not None and model.id != model_id:
        raise ModelMismatchError(
            f"model {model.name} (id {model.id[:12]}) is not the model this container was written with "
            f"(id {model_id[:12]}); omit --model to use the built-in one, or pass the right file with --model PATH"
        )
    if ndim is not None and model.ndim != ndim:
        raise ModelError(
            f"model {model.name} takes {model.ndim}-D tiles but the data has {ndim} spatial axes; "
            f"pass --ndim {model.ndim} or a {ndim}-D model"
        )
    return model
