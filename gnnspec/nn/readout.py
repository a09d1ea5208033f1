"""Spectra as explicit sums of per-atom contributions, read out from scalar features only.

For an absorber ``a`` and a channel ``c`` of its element, the readout set is ``a`` itself plus
every atom ``j`` of an edge ``j -> a`` shorter than ``r_readout`` (periodic images are separate
atoms). Each pair gets a contribution spectrum

    contribution(a, j, c) = u(d_aj / r_readout) * act(MLP([s_j, s_a, B(d_aj), self_aj], film_c)) / norm

with ``s`` the invariant (0e) node features, ``B`` a Gaussian basis of the distance, ``film_c`` a
FiLM modulation from a learned channel embedding (plus a learned fidelity embedding of the FEFF
tier asked for, when the readout serves several tiers, one per tier or, ``tier_per_channel``, one
per tier and channel: zero at first, so every tier starts from the base tier's spectra and learns
its correction), ``u`` the smooth polynomial envelope (so a
contribution fades out at ``r_readout``), ``act`` softplus (positive spectra) or identity, and
``norm`` a fixed constant (the mean number of pairs per absorber). The spectrum is the plain
sum of its contributions: ``spectrum(a, c) = sum_j contribution(a, j, c)``, so the
contributions are the exact per-atom decomposition.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.utils import scatter

from gnnspec.nn.radial import PolynomialCutoff


def readout_pairs(
    absorbers: torch.Tensor, edge_index: torch.Tensor, edge_length: torch.Tensor, r_readout: float, n_nodes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (absorber row, contributing atom, distance): the absorber itself first, then its edges.

    ``absorbers`` are node indices (unique). Returns ``pair_absorber [P]`` (row into
    ``absorbers``), ``pair_atom [P]`` (node index) and ``pair_distance [P]`` (Angstrom).
    """
    device = absorbers.device
    row_of = torch.full((n_nodes,), -1, dtype=torch.long, device=device)
    row_of[absorbers] = torch.arange(absorbers.numel(), device=device)
    target_row = row_of[edge_index[1]]
    keep = (target_row >= 0) & (edge_length < r_readout)
    n_abs = absorbers.numel()
    pair_absorber = torch.cat([torch.arange(n_abs, device=device), target_row[keep]])
    pair_atom = torch.cat([absorbers, edge_index[0][keep]])
    pair_distance = torch.cat([edge_length.new_zeros(n_abs), edge_length[keep]])
    return pair_absorber, pair_atom, pair_distance


class GaussianBasis(nn.Module):
    """``exp(-((d - mu_k) / width)^2)`` on ``n`` centres from 0 to ``r_max``."""

    def __init__(self, r_max: float, n: int = 8):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, float(r_max), n))
        self.width = float(r_max) / max(n - 1, 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(((d.unsqueeze(-1) - self.centres) / self.width) ** 2))


class ContributionReadout(nn.Module):
    """Per-(absorber, atom, channel) contribution spectra from scalar node features."""

    def __init__(
        self,
        scalar_dim: int,
        n_channels: int,
        n_energy: int,
        r_readout: float,
        hidden: int = 64,
        channel_dim: int = 16,
        n_distance_basis: int = 8,
        positive: bool = True,
        norm: float = 1.0,
        n_tiers: int = 1,
        tier_per_channel: bool = False,
    ):
        super().__init__()
        self.n_tiers = int(n_tiers)
        self.tier_per_channel = bool(tier_per_channel)
        self.r_readout = float(r_readout)
        self.n_channels = n_channels
        self.n_energy = n_energy
        self.positive = positive
        self.norm = float(norm)
        self.distance_basis = GaussianBasis(r_readout, n_distance_basis)
        self.envelope = PolynomialCutoff(r_readout)
        self.pair_mlp = nn.Sequential(
            nn.Linear(2 * scalar_dim + n_distance_basis + 1, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
        )
        self.channel_embedding = nn.Embedding(n_channels, channel_dim)
        if self.n_tiers > 1:
            self.tier_embedding = nn.Embedding(self.n_tiers * (n_channels if self.tier_per_channel else 1), channel_dim)
            nn.init.zeros_(self.tier_embedding.weight)
        self.film = nn.Linear(channel_dim, 2 * hidden)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_energy))
        if positive:  # start near softplus(x) = 1: each contribution about 1 / norm
            nn.init.constant_(self.out[-1].bias, math.log(math.e - 1.0))

    def forward(
        self,
        scalars: torch.Tensor,
        absorbers: torch.Tensor,
        channel_mask: torch.Tensor,
        pair_absorber: torch.Tensor,
        pair_atom: torch.Tensor,
        pair_distance: torch.Tensor,
        tier: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Contributions and their sums, for FEFF tier number ``tier`` (0: the base tier).

        ``scalars [N, F]`` invariant node features, ``absorbers [A]`` node indices,
        ``channel_mask [A, C]`` which channels apply to each absorber; the pairs come from
        :func:`readout_pairs` (its first ``A`` pairs are the absorbers themselves). Returns

        * ``contributions [R, K]`` one row per (pair, applicable channel),
        * ``contribution_absorber [R]`` row into ``absorbers``, ``contribution_atom [R]`` node
          index of the contributing atom, ``contribution_channel [R]``,
          ``contribution_distance [R]`` (Angstrom),
        * ``spectra [A, C, K]`` (zero where ``channel_mask`` is false) and ``spectra_mask``.
        """
        n_abs = absorbers.numel()
        is_self = (torch.arange(pair_atom.numel(), device=pair_atom.device) < n_abs).to(scalars.dtype).unsqueeze(-1)
        pair_in = torch.cat(
            [scalars[pair_atom], scalars[absorbers[pair_absorber]], self.distance_basis(pair_distance), is_self], dim=-1
        )
        hidden = self.pair_mlp(pair_in)  # [P, H]
        pair_row, channel = channel_mask[pair_absorber].nonzero(as_tuple=True)  # rows: (pair, channel)
        if not 0 <= tier < self.n_tiers:
            raise ValueError(f"tier {tier} is out of range: the readout serves {self.n_tiers} tier(s)")
        embedding = self.channel_embedding(channel)
        if self.n_tiers > 1:
            embedding = embedding + (self.tier_embedding(tier * self.n_channels + channel) if self.tier_per_channel else self.tier_embedding.weight[tier])
        gamma, beta = self.film(embedding).chunk(2, dim=-1)
        h = hidden[pair_row] * (1.0 + gamma) + beta
        contrib = self.out(h)
        if self.positive:
            contrib = torch.nn.functional.softplus(contrib)
        contrib = contrib * (self.envelope(pair_distance[pair_row]) / self.norm).unsqueeze(-1)
        row_absorber = pair_absorber[pair_row]
        flat = scatter(contrib, row_absorber * self.n_channels + channel, dim=0, dim_size=n_abs * self.n_channels, reduce="sum")
        return {
            "contributions": contrib,
            "contribution_absorber": row_absorber,
            "contribution_atom": pair_atom[pair_row],
            "contribution_channel": channel,
            "contribution_distance": pair_distance[pair_row],
            "spectra": flat.view(n_abs, self.n_channels, self.n_energy),
            "spectra_mask": channel_mask,
        }


def environment_spectra(
    spectra: torch.Tensor,
    use_mask: torch.Tensor,
    absorbers: torch.Tensor,
    member_index: torch.Tensor,
    member_env: torch.Tensor,
    n_env: int,
    n_nodes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Environment spectra as the data defines them: the mean over member absorbers.

    ``spectra [A, C, K]`` per absorber, ``use_mask [A, C]`` which of them count (the data uses
    the members that have a FEFF spectrum; a model uses every applicable member). Members that
    are not absorbers are skipped. Returns ``env_spectra [n_env, C, K]`` and ``env_mask [n_env, C]``.
    """
    row_of = torch.full((n_nodes,), -1, dtype=torch.long, device=absorbers.device)
    row_of[absorbers] = torch.arange(absorbers.numel(), device=absorbers.device)
    rows = row_of[member_index]
    valid = rows >= 0
    rows, envs = rows[valid], member_env[valid]
    w = use_mask[rows].to(spectra.dtype)  # [M, C]
    sums = scatter(spectra[rows] * w.unsqueeze(-1), envs, dim=0, dim_size=n_env, reduce="sum")
    counts = scatter(w, envs, dim=0, dim_size=n_env, reduce="sum")
    env = sums / counts.clamp(min=1.0).unsqueeze(-1)
    return env, counts > 0
