"""Fit a model to the array being compressed (``aezip compress --fit``).

The chosen model is fine-tuned on the input's own tiles for a few hundred steps; its
integer tables come from the histograms of the input's own latents. The result travels
inside the container (the root ``model`` stream), so the file stays self-contained: the
weights cost about 0.1-0.8 MB, which pays only on large arrays.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np

from . import train as tr
from .runtime import Model
from .store import model_id, write_model


def fit(model: Model, fields: Sequence[np.ndarray], *, steps: int, version: str, seed: int = 0,
        report: Callable[[int, dict], None] | None = None) -> bytes:
    """The bytes of a model file: ``model`` fine-tuned on ``fields``."""
    cfg = model.config
    options = tr.TrainOptions(ndim=cfg.ndim, tile=cfg.tile, channels=cfg.channels,
                              latent_channels=cfg.latent_channels, levels=cfg.levels,
                              lmbda=float(model.summary.get("lambda", 1e-4)), steps=steps, lr=5e-4, seed=seed,
                              val_fraction=0.0, val_every=0, density="laplace")
    tensors = {k: v.detach().cpu().numpy() for k, v in model.net.state_dict().items()}
    cfg_out, tensors, tables, summary = tr.train(fields, options, report, init=tensors, version=version)
    summary = dict(summary, fitted_from=model.id)
    name = f"conv{cfg.ndim}d-fit-{model_id(cfg_out.to_dict(), tensors, tables)[:12]}"
    buf = io.BytesIO()
    write_model(buf, name=name, config=cfg_out.to_dict(), tensors=tensors, tables=tables, summary=summary,
                version=version)
    return buf.getvalue()
