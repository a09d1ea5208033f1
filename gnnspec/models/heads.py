"""Heads on the backbone's scalars and on the shared embedding.

* :class:`SpectraHead`: site spectra of absorbers as sums of per-atom contributions
  (:mod:`gnnspec.nn.readout`); only channels of the absorber's element are predicted.
* :class:`EnvironmentEmbedding`: backbone scalars pooled (mean) over an environment's members,
  joined with the centre's scalars, projected to a unit vector.
* :class:`PropertyHeads`: element content (softmax over 5 fractions) and defect logits
  (2 independent sigmoids) from a unit embedding, structure side or spectrum side alike.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers
from torch import nn
from torch_geometric.utils import scatter

from gnnspec.channels import CHANNELS
from gnnspec.models.backbone import MAX_Z
from gnnspec.models.config import ModelConfig, estimated_neighbors
from gnnspec.nn.readout import ContributionReadout, readout_pairs


def channel_table(channels: list[str]) -> torch.Tensor:
    """``[MAX_Z + 1, C]`` bool: which channels an atom of atomic number Z absorbs in."""
    table = torch.zeros(MAX_Z + 1, len(channels), dtype=torch.bool)
    for c, name in enumerate(channels):
        table[atomic_numbers[CHANNELS[name].element], c] = True
    return table


class SpectraHead(nn.Module):
    """Per-atom contribution readout for the absorbers of a graph."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.spectra
        norm = h.readout_norm or 1.0 + estimated_neighbors(h.r_readout)
        self.r_readout = h.r_readout
        self.register_buffer("table", channel_table(cfg.channels), persistent=False)
        self.readout = ContributionReadout(
            cfg.backbone.scalar_dim,
            len(cfg.channels),
            cfg.n_energy,
            h.r_readout,
            hidden=h.hidden,
            channel_dim=h.channel_dim,
            n_distance_basis=h.n_distance_basis,
            positive=h.positive,
            norm=norm,
            n_tiers=len(cfg.tiers),
            tier_per_channel=h.tier_per_channel,
        )

    def absorbers_of(self, z: torch.Tensor) -> torch.Tensor:
        """Node indices of every atom that absorbs in at least one channel."""
        return self.table[z].any(dim=1).nonzero(as_tuple=True)[0]

    def forward(
        self,
        scalars: torch.Tensor,
        z: torch.Tensor,
        edge_index: torch.Tensor,
        edge_length: torch.Tensor,
        absorbers: torch.Tensor,
        tier: int = 0,
    ) -> dict[str, torch.Tensor]:
        pair_absorber, pair_atom, pair_distance = readout_pairs(absorbers, edge_index, edge_length, self.r_readout, z.numel())
        out = self.readout(scalars, absorbers, self.table[z[absorbers]], pair_absorber, pair_atom, pair_distance, tier)
        out["absorber_index"] = absorbers
        return out


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, d_out))


class EnvironmentEmbedding(nn.Module):
    """Unit vectors ``[n_env, dim]`` from the scalars of each environment's members and centre."""

    def __init__(self, scalar_dim: int, hidden: int, dim: int):
        super().__init__()
        self.project = mlp(2 * scalar_dim, hidden, dim)

    @staticmethod
    def features(
        scalars: torch.Tensor, member_index: torch.Tensor, member_env: torch.Tensor, centre_index: torch.Tensor
    ) -> torch.Tensor:
        """``[n_env, 2 * scalar_dim]``: mean scalars of the members joined with the centre's."""
        pooled = scatter(scalars[member_index], member_env, dim=0, dim_size=centre_index.numel(), reduce="mean")
        return torch.cat([pooled, scalars[centre_index]], dim=-1)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Unit embeddings from :meth:`features`."""
        return nn.functional.normalize(self.project(features), dim=-1)

    def forward(
        self, scalars: torch.Tensor, member_index: torch.Tensor, member_env: torch.Tensor, centre_index: torch.Tensor
    ) -> torch.Tensor:
        return self.embed(self.features(scalars, member_index, member_env, centre_index))


class PropertyHeads(nn.Module):
    """Element-content logits (softmax gives fractions) and defect logits from a unit embedding."""

    def __init__(self, dim: int, hidden: int, n_content: int, n_defects: int):
        super().__init__()
        self.content = mlp(dim, hidden, n_content)
        self.defects = mlp(dim, hidden, n_defects)

    def forward(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"content_logits": self.content(embedding), "defect_logits": self.defects(embedding)}


def property_probabilities(logits: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Element-content fractions (softmax, rows sum to 1) and defect probabilities (independent
    sigmoids) of :class:`PropertyHeads` logits, as float64 numpy ``[B, n_content]``, ``[B, n_defects]``:
    the one place the heads' outputs become the answers every caller reports and scores."""
    content = torch.softmax(logits["content_logits"].double(), dim=-1).cpu().numpy()
    defects = torch.sigmoid(logits["defect_logits"].double()).cpu().numpy()
    return content, defects
