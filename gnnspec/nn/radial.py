"""Radial features of an edge: Bessel basis times a smooth polynomial cutoff (NequIP).

Lengths in Angstrom. ``RadialEmbedding(r)`` returns ``[E, n_basis]`` features that go to zero
smoothly (value, first and second derivative) at ``r_max``, so atoms crossing the cutoff
change the prediction continuously.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BesselBasis(nn.Module):
    """``sqrt(2 / r_max) * sin(n pi r / r_max) / r`` for ``n = 1..n_basis`` (frequencies trainable)."""

    def __init__(self, r_max: float, n_basis: int = 8, trainable: bool = True):
        super().__init__()
        self.r_max = float(r_max)
        self.prefactor = math.sqrt(2.0 / self.r_max)
        freq = torch.arange(1, n_basis + 1, dtype=torch.get_default_dtype()) * math.pi
        if trainable:
            self.freq = nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        safe = torch.where(r > 1e-9, r, torch.ones_like(r))
        out = self.prefactor * torch.sin(self.freq * safe / self.r_max) / safe
        # the r -> 0 limit of sin(a r)/r is a
        return torch.where(r > 1e-9, out, self.prefactor * self.freq / self.r_max * torch.ones_like(out))


class PolynomialCutoff(nn.Module):
    """Smooth envelope ``u(r/r_max)`` with ``u(1) = u'(1) = u''(1) = 0`` (Klicpera et al., p = 6)."""

    def __init__(self, r_max: float, p: float = 6.0):
        super().__init__()
        self.r_max = float(r_max)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.r_max
        out = 1.0 - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(p) + p * (p + 2.0) * x.pow(p + 1.0) - p * (p + 1.0) / 2.0 * x.pow(p + 2.0)
        return out * (x < 1.0).to(out.dtype)


class RadialEmbedding(nn.Module):
    """Bessel basis times polynomial cutoff: ``[E] -> [E, n_basis]``."""

    def __init__(self, r_max: float, n_basis: int = 8, cutoff_p: float = 6.0, trainable: bool = True):
        super().__init__()
        self.n_basis = n_basis
        self.basis = BesselBasis(r_max, n_basis, trainable)
        self.cutoff = PolynomialCutoff(r_max, cutoff_p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * self.cutoff(r).unsqueeze(-1)
