"""Map an array to [-1, 1] and back: x_n = (x - offset) / scale, all in float64."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Normalization:
    """``offset`` is the midpoint of the value range, ``scale`` half its width (0 for a constant)."""

    offset: float
    scale: float

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalization:
        lo, hi = float(np.min(x)), float(np.max(x))
        return cls(offset=(hi + lo) / 2.0, scale=(hi - lo) / 2.0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x -> x_n in float32, the network's input."""
        return ((x.astype(np.float64) - self.offset) / self.scale).astype(np.float32)

    def inverse(self, x_n: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """x_n -> x_hat in ``dtype``, computed in float64."""
        return (x_n.astype(np.float64) * self.scale + self.offset).astype(dtype)
