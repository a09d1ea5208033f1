"""Structure encoder (backbone): an E(3)-equivariant message-passing network over a graph.

Input: positions (Angstrom), atomic numbers and the graph's directed edges with periodic shifts
(``vec = pos[target] - pos[source] + shift``; zero shifts for a non-periodic cluster). Output:
equivariant node features (``hidden_irreps``) and invariant node scalars (``scalar_dim`` x 0e),
the only features the heads read. Built once per model; ``o3.SphericalHarmonics`` is a
submodule, so the backbone works under ``torch.compile``.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from gnnspec.graphs import edge_vectors
from gnnspec.models.config import BackboneConfig, estimated_neighbors
from gnnspec.nn.interaction import InteractionBlock
from gnnspec.nn.radial import RadialEmbedding

MAX_Z = 118


class StructureEncoder(nn.Module):
    """Element embedding -> ``n_layers`` interaction blocks -> scalar readout."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        avg = cfg.avg_num_neighbors or estimated_neighbors(cfg.cutoff)
        self.element_embedding = nn.Embedding(MAX_Z + 1, cfg.element_dim)
        self.irreps_sh = o3.Irreps.spherical_harmonics(cfg.lmax)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(cfg.cutoff, cfg.n_basis, cfg.cutoff_p)
        irreps = o3.Irreps(f"{cfg.element_dim}x0e")
        hidden = o3.Irreps(cfg.hidden_irreps).simplify()
        blocks = []
        for _ in range(cfg.n_layers):
            block = InteractionBlock(irreps, hidden, self.irreps_sh, cfg.n_basis, cfg.radial_hidden, cfg.radial_layers, avg)
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = nn.ModuleList(blocks)
        self.irreps_out = irreps
        # o3.Linear joins only equal irreps, so the readout (every head's input) is 0e by
        # construction and invariant under E(3); what can go wrong is a last block without 0e
        # features (say only 0o pseudoscalars and l > 0), whose readout would be all zeros
        if o3.Irrep("0e") not in irreps:
            raise ValueError(f"hidden_irreps {cfg.hidden_irreps!r} hold no 0e scalars to read out")
        self.scalar_readout = o3.Linear(irreps, o3.Irreps(f"{cfg.scalar_dim}x0e"))

    def forward(self, pos: torch.Tensor, z: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor | None) -> dict:
        """``node_features [N, irreps_out]``, ``node_scalars [N, scalar_dim]``, ``edge_length [E]``."""
        vec = edge_vectors(pos, edge_index, edge_shift)
        length = vec.norm(dim=-1)
        sh = self.spherical_harmonics(vec)
        radial = self.radial(length)
        h = self.element_embedding(z)
        src, dst = edge_index[0], edge_index[1]
        for block in self.blocks:
            h = block(h, src, dst, sh, radial)
        return {"node_features": h, "node_scalars": self.scalar_readout(h), "edge_length": length}
