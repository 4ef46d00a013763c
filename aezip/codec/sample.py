"""Synthetic sample fields for the demo, the golden files and tests (numpy only)."""

from __future__ import annotations

import numpy as np


def sample_field(shape: tuple[int, ...], *, slope: float = -3.0, seed: int = 0) -> np.ndarray:
    """A Gaussian random field whose shell-integrated energy spectrum falls as k**slope,
    zero mean, unit standard deviation, float32: smooth, turbulence-like."""
    rng = np.random.default_rng(seed)
    d = len(shape)
    spectrum = np.fft.rfftn(rng.standard_normal(shape))
    axes = [np.fft.fftfreq(n) * n for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1]) * shape[-1]]
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*axes, indexing="ij")))
    amplitude = np.where(k > 0, np.maximum(k, 1e-12) ** ((slope - d + 1) / 2.0), 0.0)
    f = np.fft.irfftn(spectrum * amplitude, s=shape, axes=tuple(range(d)))
    return ((f - f.mean()) / f.std()).astype(np.float32)
