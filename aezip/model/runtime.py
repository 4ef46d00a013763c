"""A frozen model ready to run: numpy tiles in, integer latents out, and back."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..codec.entropy import Tables
from ..errors import ModelError, UsageError
from .arch import ArchConfig, ConvAutoencoder

BATCH = 32  # tiles per forward pass: fixed, so results do not depend on the array's size


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def configure_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise UsageError(f"--threads must be at least 1, got {n}")
        torch.set_num_threads(n)


class Model:
    """A frozen autoencoder plus its entropy tables, identified by ``id``."""

    def __init__(self, *, name: str, id: str, config: ArchConfig, tensors: dict[str, np.ndarray],
                 tables: Tables, summary: dict, path: str | None, device: str = "cpu"):
        self.name, self.id, self.config, self.tables, self.summary, self.path = name, id, config, tables, summary, path
        if tables.channels != config.latent_channels:
            raise ModelError(f"model {name}: {tables.channels} entropy tables for {config.latent_channels} latent channels")
        self.net = ConvAutoencoder(config)
        try:
            self.net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        except RuntimeError as e:
            raise ModelError(f"model {name}: weights do not fit its configuration ({str(e).splitlines()[0]})") from None
        self.device = device
        self.net.eval().to(device)

    @property
    def ndim(self) -> int:
        return self.config.ndim

    @property
    def tile(self) -> int:
        return self.config.tile

    def latent_shape(self, n_tiles: int) -> tuple[int, ...]:
        return (n_tiles, self.config.latent_channels) + (self.config.latent_tile,) * self.ndim

    def _run(self, f, a: np.ndarray, out_shape: tuple[int, ...], out_dtype, progress) -> np.ndarray:
        out = np.empty(out_shape, dtype=out_dtype)
        # cuDNN runs float32 convolutions in TF32 (a 10-bit mantissa) on recent GPUs by
        # default: errors far above the drift the bounded modes allow between machines.
        # Full float32 and deterministic algorithms instead.
        with torch.inference_mode(), torch.backends.cudnn.flags(
                enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True, allow_tf32=False):
            for i in range(0, a.shape[0], BATCH):
                batch = torch.from_numpy(a[i : i + BATCH]).to(self.device)
                out[i : i + BATCH] = f(batch).cpu().numpy()
                if progress:
                    progress(min(BATCH, a.shape[0] - i))
        return out

    def encode(self, x_tiles: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Tiles (N, 1, t, ...) float32 -> y_hat (N, L, t', ...) int32."""
        shape = self.latent_shape(x_tiles.shape[0])
        return self._run(lambda b: torch.round(self.net.g_a(b)).to(torch.int32), x_tiles, shape, np.int32, progress)

    def decode(self, y_hat: np.ndarray, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """y_hat (N, L, t', ...) int32 -> tiles (N, 1, t, ...) float32."""
        shape = (y_hat.shape[0], 1) + (self.tile,) * self.ndim
        return self._run(lambda b: self.net.g_s(b.to(torch.float32)), y_hat, shape, np.float32, progress)
