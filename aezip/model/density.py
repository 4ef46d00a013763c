"""Learned densities of the latents: the bits a training step pays, and the integer
tables a frozen model codes with.

:class:`FactorizedDensity` is the non-parametric factorized prior of Ballé et al. (2018,
"Variational image compression with a scale hyperprior", appendix 6.1): per latent
channel, a cumulative distribution c(v) = sigmoid(f(v)) where f is a small monotonic
network (positive matrices through softplus, tanh nonlinearities with factors through
tanh, so that f increases). The probability of the unit bin around y is
c(y + 1/2) - c(y - 1/2). During training y carries additive uniform noise (the
quantization proxy); when the model is frozen the density is evaluated on the integers
and becomes the integer tables of the entropy coder, so decoding never evaluates it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..codec.entropy import Tables

MAX_TABLE = 256  # entries per channel before the escape
TAIL = 1e-6  # probability mass a table may leave to the escape


class FactorizedDensity(nn.Module):
    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits(self, v: torch.Tensor) -> torch.Tensor:
        """f(v) for v of shape (C, 1, N)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(unit bin around y), y of shape (N, C, ...)."""
        c = y.shape[1]
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower, upper = self._logits(v - 0.5), self._logits(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid is accurate
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.reshape((c, y.shape[0]) + tuple(y.shape[2:])).transpose(0, 1)

    def forward(self, y_tilde: torch.Tensor) -> torch.Tensor:
        """Total bits of y_tilde."""
        return -torch.log2(self.likelihood(y_tilde).clamp_min(1e-9)).sum()

    @torch.no_grad()
    def tables(self, reach: int = 4 * MAX_TABLE) -> Tables:
        """Integer tables: per channel, the narrowest window of integers (at most MAX_TABLE)
        holding all but TAIL of the mass; the rest goes to the escape."""
        k = torch.arange(-reach, reach + 1, dtype=torch.float32)
        c = self.matrices[0].shape[0]
        pmf = self.likelihood(k.view(-1, 1).expand(-1, c).contiguous()).double().numpy().T  # (C, 2 reach + 1)
        pmf = pmf / pmf.sum(axis=1, keepdims=True)
        lo, counts, escapes = [], [], []
        for row in pmf:
            cum = np.cumsum(row)
            first = int(np.searchsorted(cum, TAIL / 2))
            last = int(np.searchsorted(cum, 1 - TAIL / 2))
            width = min(MAX_TABLE, last - first + 1)
            centre = (first + last) // 2
            first = max(0, min(centre - width // 2, len(row) - width))
            lo.append(first - reach)
            counts.append(row[first:first + width])
            escapes.append(max(1.0 - row[first:first + width].sum(), TAIL))
        width = max(len(r) for r in counts)
        table = np.zeros((c, width))
        for i, r in enumerate(counts):
            table[i, : len(r)] = r
        scale = 2.0**40  # weights in units of 2^-40 before from_counts normalizes them
        return Tables.from_counts(np.floor(table * scale), np.array(lo), np.floor(np.array(escapes) * scale))
