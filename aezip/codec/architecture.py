"""The CompressionModel interface, and the registry of architectures by name.

Every architecture of the plain learned mode implements :class:`CompressionModel`::

    training:  forward(x, step)   -> Forward(x_hat, bits)
    coding:    compress(x, step)  -> Latents(streams, fields, shape)
               decompress(latents) -> x_hat
    rate:      compress_to(x, target_mse, ...) -> (Latents, x_hat), the loosest step whose
               x_hat reaches the target (a bisection on compress/decompress unless the
               architecture searches faster)

and registers under the name a container stores (``@register_model("cdf97")``, as
CompressAI's ``register_model`` and numcodecs' ``codec_id``). A decoder looks the name up
with :func:`get_model`; an unknown name is a typed error that carries it. Adding an
architecture is one module with one registered class: nothing in the coding pipeline, the
container layout or the CLI names one.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import ContainerError

DEFAULT = "cdf97"  # the plain learned mode's architecture unless a model file names another
# where each architecture registers itself: imported on first look-up, so that loading
# aezip imports no architecture's dependencies (torch) until one is used
MODULES = {"cdf97": "aezip.codec.transform"}

_REGISTRY: dict[str, type[CompressionModel]] = {}


@dataclass(frozen=True)
class Latents:
    """What :meth:`CompressionModel.compress` makes: its streams, the record's fields the
    decoder needs (JSON numbers, strings and booleans), and the shape of the array coded."""

    streams: dict[str, bytes]
    fields: dict = field(default_factory=dict)
    shape: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(len(s) for s in self.streams.values())


@dataclass(frozen=True)
class Forward:
    """x_hat of a coding and the bits its latents cost."""

    x_hat: np.ndarray
    bits: float


class CompressionModel(ABC):
    """One architecture of the plain learned mode, configured for ``ndim`` spatial axes
    (the trailing ones; leading axes are planes coded one by one)."""

    name: ClassVar[str]

    def __init__(self, ndim: int, **config):
        self.ndim, self.config = ndim, config

    @abstractmethod
    def compress(self, x: np.ndarray, step: float) -> Latents:
        """Code x (float64) with quantization step ``step``."""

    @abstractmethod
    def decompress(self, latents: Latents) -> np.ndarray:
        """x_hat (float64) of a coding; ContainerError where its streams or fields are damaged."""

    @abstractmethod
    def latent_codes(self, latents: Latents) -> dict[str, tuple[np.ndarray, float]]:
        """The decoded latent codes by name (a subband, a channel) with their quantization
        steps: features for downstream learning (``aezip latents``)."""

    def forward(self, x: np.ndarray, step: float) -> Forward:
        latents = self.compress(x, step)
        return Forward(self.decompress(latents), 8.0 * latents.nbytes)

    def compress_to(self, x: np.ndarray, target_mse: float, vrange: float, integer: bool = False
                    ) -> tuple[Latents, np.ndarray]:
        """The coding with the loosest step found whose x_hat has an MSE of at most
        ``target_mse`` (a bisection on log(step) between 1e-9 and 4 times ``vrange``)."""
        lo, hi = math.log(vrange * 1e-9), math.log(vrange * 4.0)
        best = None
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            latents = self.compress(x, math.exp(mid))
            x_hat = self.decompress(latents)
            if float(np.mean((x - x_hat) ** 2)) <= target_mse:
                lo, best = mid, (latents, x_hat)
            else:
                hi = mid
            if hi - lo < 0.01 and best is not None:
                break
        if best is None:
            latents = self.compress(x, math.exp(lo))
            best = (latents, self.decompress(latents))
        return best


def register_model(name: str) -> Callable[[type[CompressionModel]], type[CompressionModel]]:
    """Class decorator: register an architecture under ``name``."""

    def add(cls: type[CompressionModel]) -> type[CompressionModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"two architectures are called {name!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def get_model(name: str, ndim: int, **config) -> CompressionModel:
    """The architecture called ``name``, configured; ContainerError naming it if this aezip
    does not know it (a container written by a later aezip)."""
    if name not in _REGISTRY and name in MODULES:
        importlib.import_module(MODULES[name])
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ContainerError(f"an array is coded with the architecture {name!r}, which this aezip does not know "
                             f"(it knows {', '.join(sorted(set(MODULES) | set(_REGISTRY)))}): upgrade aezip to read it")
    return cls(ndim, **config)


def architectures() -> list[str]:
    return sorted(set(MODULES) | set(_REGISTRY))
