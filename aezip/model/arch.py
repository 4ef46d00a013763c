"""Convolutional autoencoders, one family for 1-, 2- and 3-D tiles.

    x ──g_a──▶ y ──round──▶ y_hat ──g_s──▶ x_hat
    (N,1,t^d)   (N,L,(t/2^k)^d)           (N,1,t^d)

``g_a`` halves every spatial axis ``levels`` times with stride-2 3-wide kernels,
``g_s`` doubles it back with stride-2 transposed convolutions. The architecture is
fully described by :class:`ArchConfig`, which the model file stores as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ModelError
from .config import ARCH_NAME, check_config


@dataclass(frozen=True, kw_only=True)
class ArchConfig:
    arch: str = ARCH_NAME
    ndim: int
    tile: int
    channels: int
    latent_channels: int
    levels: int

    def __post_init__(self) -> None:  # before any layer is built: a forged size must not allocate
        check_config(asdict(self), "model configuration")

    @classmethod
    def from_dict(cls, d: dict) -> ArchConfig:
        try:
            cfg = cls(**d)
        except TypeError as e:
            raise ModelError(f"model configuration is not understood ({e}); is this model from a newer aezip?") from None
        if cfg.arch != ARCH_NAME:
            raise ModelError(f"unknown model architecture {cfg.arch!r}; upgrade aezip to read this model")
        if cfg.ndim not in (1, 2, 3) or cfg.tile % (1 << cfg.levels):
            raise ModelError(f"model configuration is invalid: {d}")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def latent_tile(self) -> int:
        return self.tile >> self.levels


def _layers(ndim: int):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
    deconv = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[ndim]
    return conv, deconv


class ConvAutoencoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        conv, deconv = _layers(cfg.ndim)
        c, latent = cfg.channels, cfg.latent_channels
        enc: list[nn.Module] = []
        cin = 1
        for _ in range(cfg.levels):
            enc += [conv(cin, c, 3, stride=2, padding=1), nn.GELU()]
            cin = c
        enc += [conv(c, latent, 3, padding=1)]
        self.g_a = nn.Sequential(*enc)
        dec: list[nn.Module] = [conv(latent, c, 3, padding=1), nn.GELU()]
        for _ in range(cfg.levels):
            dec += [deconv(c, c, 4, stride=2, padding=1), nn.GELU()]
        dec += [conv(c, 1, 3, padding=1)]
        self.g_s = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.g_a(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)  # quantization proxy
        return y, self.g_s(y_tilde)
