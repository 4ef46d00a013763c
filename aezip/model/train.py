"""Fit an autoencoder to arrays: distortion + lambda * rate, then freeze it into a model file.

The rate during training is the bit cost of the noisy latents ``y_tilde`` under a
per-channel Laplace density (a learned location and scale per latent channel).
When the model is frozen, the latents of the training tiles are rounded and their
per-channel histograms become the integer tables the coder uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..codec.entropy import Tables, ideal_bits
from ..codec.normalize import Normalization
from ..errors import UsageError
from .arch import ArchConfig, ConvAutoencoder
from .store import model_id, write_model

MAX_TABLE = 256  # table entries per channel before the escape


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    ndim: int
    tile: int = 0  # 0: the default for ndim
    channels: int = 32
    latent_channels: int = 0  # 0: the default for ndim
    levels: int = 0  # 0: the default for ndim
    lmbda: float = 2e-4
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    val_tiles: int = 64


DEFAULTS = {1: dict(tile=1024, latent_channels=4, levels=3), 2: dict(tile=64, latent_channels=8, levels=2),
            3: dict(tile=32, latent_channels=16, levels=2)}


def arch_config(o: TrainOptions) -> ArchConfig:
    d = DEFAULTS[o.ndim]
    return ArchConfig(ndim=o.ndim, tile=o.tile or d["tile"], channels=o.channels,
                      latent_channels=o.latent_channels or d["latent_channels"], levels=o.levels or d["levels"])


class TileSampler:
    """Random crops of tile size from normalized fields, with random flips."""

    def __init__(self, fields: Sequence[np.ndarray], ndim: int, tile: int, rng: np.random.Generator):
        self.fields, self.rng, self.ndim, self.tile = [], rng, ndim, tile
        for x in fields:
            if x.ndim < ndim:
                raise UsageError(f"an array of shape {x.shape} has fewer than {ndim} axes")
            x = x.reshape((-1,) + x.shape[x.ndim - ndim:])
            norm = Normalization.fit(x)
            if norm.scale == 0:
                continue
            x_n = norm.forward(x)
            pad = [(0, 0)] + [(0, max(0, tile - n)) for n in x_n.shape[1:]]
            self.fields.append(np.pad(x_n, pad, mode="symmetric"))
        if not self.fields:
            raise UsageError("no training array has more than one distinct value")
        sizes = np.array([f.size for f in self.fields], dtype=np.float64)
        self.p = sizes / sizes.sum()

    def sample(self, n: int) -> np.ndarray:
        out = np.empty((n, 1) + (self.tile,) * self.ndim, dtype=np.float32)
        for i in range(n):
            f = self.fields[self.rng.choice(len(self.fields), p=self.p)]
            b = self.rng.integers(f.shape[0])
            idx = tuple(slice(s, s + self.tile) for s in (self.rng.integers(m - self.tile + 1) for m in f.shape[1:]))
            t = f[b][idx]
            for ax in range(self.ndim):
                if self.rng.random() < 0.5:
                    t = np.flip(t, ax)
            out[i, 0] = t
        return out


class LaplaceRate(nn.Module):
    """Bits of y_tilde under a per-channel Laplace density integrated over unit bins."""

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_b = nn.Parameter(torch.zeros(channels))

    def forward(self, y_tilde: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (y_tilde.dim() - 2)
        b = self.log_b.exp().view(shape)
        z = y_tilde - self.loc.view(shape)

        def cdf(v):
            return 0.5 + 0.5 * torch.sign(v) * (1 - torch.exp(-v.abs() / b))

        p = (cdf(z + 0.5) - cdf(z - 0.5)).clamp_min(1e-9)
        return -torch.log2(p).sum()


def psnr_normalized(mse: float) -> float:
    """PSNR of fields normalized to [-1, 1] (value range 2)."""
    return 20 * math.log10(2.0) - 10 * math.log10(max(mse, 1e-30))


def train(fields: Sequence[np.ndarray], options: TrainOptions,
          report: Callable[[int, dict], None] | None = None) -> tuple[ArchConfig, dict, Tables, dict]:
    """Train on ``fields`` (arrays whose trailing ``ndim`` axes are spatial).

    Returns the architecture, the tensors, the frozen tables and a training summary.
    """
    cfg = arch_config(options)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    sampler = TileSampler(fields, cfg.ndim, cfg.tile, rng)
    val = torch.from_numpy(sampler.sample(options.val_tiles))
    net, rate = ConvAutoencoder(cfg), LaplaceRate(cfg.latent_channels)
    opt = torch.optim.Adam(list(net.parameters()) + list(rate.parameters()), lr=options.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, options.steps))
    t0 = time.time()
    for step in range(1, options.steps + 1):
        x = torch.from_numpy(sampler.sample(options.batch_size))
        y, x_hat = net(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        mse = torch.mean((x_hat - x) ** 2)
        bpv = rate(y_tilde) / x.numel()
        loss = mse + options.lmbda * bpv
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if report:
            report(step, {"loss": loss.item(), "bpv": bpv.item(), "psnr": psnr_normalized(mse.item())})
    net.eval()
    with torch.inference_mode():
        y_hat_val = torch.round(net.g_a(val))
        val_mse = float(torch.mean((net.g_s(y_hat_val) - val) ** 2))
        y_hat = torch.cat([torch.round(net.g_a(torch.from_numpy(sampler.sample(32)))) for _ in range(16)])
    tables = freeze_tables(y_hat.numpy().astype(np.int64))
    tensors = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    summary = {
        "steps": options.steps, "batch_size": options.batch_size, "lambda": options.lmbda, "seed": options.seed,
        "seconds": round(time.time() - t0, 1), "data_shapes": [list(f.shape) for f in fields],
        "val_psnr_normalized": round(psnr_normalized(val_mse), 2),
        "val_bits_per_value": round(ideal_bits(y_hat_val.numpy().astype(np.int64), tables) / val.numel(), 4),
    }
    return cfg, tensors, tables, summary


def freeze_tables(y_hat: np.ndarray) -> Tables:
    """Per-channel histograms of rounded latents -> integer tables with an escape entry."""
    c = y_hat.shape[1]
    per_channel = y_hat.swapaxes(0, 1).reshape(c, -1)
    lo = np.percentile(per_channel, 0.01, axis=1).astype(np.int64) - 1
    hi = np.percentile(per_channel, 99.99, axis=1).astype(np.int64) + 1
    width = int(min(MAX_TABLE, (hi - lo).max() + 1))
    counts = np.zeros((c, width))
    for ch in range(c):
        v = per_channel[ch] - lo[ch]
        v = v[(v >= 0) & (v < width)]
        counts[ch] = np.bincount(v, minlength=width)[:width]
    return Tables.from_counts(counts + 0.5, lo)


def save(path, cfg: ArchConfig, tensors: dict, tables: Tables, summary: dict, version: str) -> tuple[str, str]:
    """Write the model file; returns (name, id). The name carries the id's first 12 digits."""
    mid = model_id(cfg.to_dict(), tensors, tables)
    name = f"conv{cfg.ndim}d-{mid[:12]}"
    write_model(path, name=name, config=cfg.to_dict(), tensors=tensors, tables=tables, summary=summary, version=version)
    return name, mid
