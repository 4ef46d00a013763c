"""The decoded latent codes of a container, as features for downstream learning.

A transform-coded entry gives one integer array per subband (planes first, then the
band's shape) with its quantization step: the codes times the step approximate the
wavelet coefficients. A latent entry of the tiled autoencoder gives one array per latent
channel (tiles first), with step 1: its codes are the rounded latents. Other storages
hold no latent codes. Keys are ``<array>/<band or channel>`` and ``<...>/step``; an
array coded in slabs gives one set per slab, ``<array>@<start>:<stop>/...``.

Examples
--------
>>> import numpy as np, aezip
>>> x = np.cumsum(np.random.default_rng(0).standard_normal((64, 64)), axis=1)
>>> _ = aezip.compress(x, "/tmp/l.aez", force=True)
>>> z = aezip.latents("/tmp/l.aez")
>>> sorted(z)[:2]
['array/level1_HH', 'array/level1_HH/step']
"""

from __future__ import annotations

import numpy as np

from .container import ArrayEntry, read_container
from .errors import ContainerError, UsageError


def _prefix(e: ArrayEntry) -> str:
    name = e.name or "array"
    return name if e.slab is None else f"{name}@{e.slab[0]}:{e.slab[1]}"


def _transform_latents(e: ArrayEntry) -> dict[str, np.ndarray]:
    from .coding import transform_latents

    model, latents = transform_latents(e)
    try:
        codes = model.latent_codes(latents)
    except ContainerError as err:
        raise ContainerError(f"array {e.name!r}: {err}") from None
    out = {}
    for name, (q, step) in codes.items():
        out[f"{_prefix(e)}/{name}"] = q
        out[f"{_prefix(e)}/{name}/step"] = np.float64(step)
    return out


def _channel_latents(e: ArrayEntry, models, refs) -> dict[str, np.ndarray]:
    from .coding import latent_codes

    y_hat = latent_codes(e, models, refs)
    out = {}
    for ch in range(y_hat.shape[1]):
        key = f"{_prefix(e)}/channel{ch}"
        out[key] = np.ascontiguousarray(y_hat[:, ch])
        out[key + "/step"] = np.float64(1.0)
    return out


def latents(path: str, *, model: str | None = None, device: str = "auto") -> dict[str, np.ndarray]:
    """The latent codes of every array of the container at ``path`` with their steps (see
    the module's text). UsageError if no array of it holds latent codes."""
    from .coding import Models

    c = read_container(path)
    out: dict[str, np.ndarray] = {}
    models = None
    for e in c.arrays:
        if e.codec.storage == "transform":
            out.update(_transform_latents(e))
        elif e.codec.storage == "latent":
            if models is None:
                models = Models(model, device)
                models.embedded = c.embedded_model
            out.update(_channel_latents(e, models, c.models))
    if not out:
        storages = ", ".join(sorted({e.codec.storage for e in c.arrays}))
        raise UsageError(f"{path} holds no latent codes (storage {storages}): only the plain learned mode "
                         "(storage transform or latent) makes them")
    return out
