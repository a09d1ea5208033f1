"""One equivariant interaction block (NequIP/MACE style), built from e3nn parts.

A block maps node features ``h`` (irreps ``irreps_in``) to ``irreps_out``:

1. ``x = Linear(h)``;
2. a message per edge ``j -> i``: ``TensorProduct(x_j, Y(r_ij), w(|r_ij|))`` with
   ``shared_weights=False``: the path weights come from a radial MLP on the edge's Bessel
   features (which vanish smoothly at the cutoff);
3. messages summed over neighbours and divided by ``sqrt(avg_num_neighbors)``;
4. ``Linear`` to the gate's input, ``Gate`` nonlinearity (SiLU on even scalars, tanh on odd
   scalars, sigmoid gates on l > 0 irreps);
5. a residual self-connection ``Linear(h)`` added after the gate.

Every operation is equivariant under E(3); tests check it in float64.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn
from torch_geometric.utils import scatter


def make_gate(irreps_out: o3.Irreps) -> Gate:
    """A ``Gate`` whose output is ``irreps_out`` (scalars activated, l > 0 irreps gated)."""
    irreps_out = o3.Irreps(irreps_out).simplify()
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return Gate(scalars, acts, gates, [torch.sigmoid] if gated.num_irreps else [], gated)


def conv_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, target: o3.Irreps) -> tuple[o3.Irreps, list]:
    """``uvu`` paths from ``irreps_in x irreps_sh`` to every irrep present in ``target``."""
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in target:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    irreps_mid = o3.Irreps(mid)
    irreps_mid, perm, _ = irreps_mid.sort()
    instructions = [(i1, i2, perm[k], mode, train) for i1, i2, k, mode, train in instructions]
    return irreps_mid, instructions


class InteractionBlock(nn.Module):
    """Convolution + gate + residual self-connection; see the module docstring."""

    def __init__(
        self,
        irreps_in: str | o3.Irreps,
        irreps_out: str | o3.Irreps,
        irreps_sh: str | o3.Irreps,
        n_radial: int,
        radial_hidden: int = 32,
        radial_layers: int = 2,
        avg_num_neighbors: float = 1.0,
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.gate = make_gate(o3.Irreps(irreps_out))
        self.irreps_out = self.gate.irreps_out
        target = self.gate.irreps_in
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        irreps_mid, instructions = conv_instructions(self.irreps_in, self.irreps_sh, target)
        if len(instructions) == 0:
            raise ValueError(f"no tensor-product path from {self.irreps_in} x {self.irreps_sh} to {target}")
        self.tp = o3.TensorProduct(
            self.irreps_in, self.irreps_sh, irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial = FullyConnectedNet(
            [n_radial] + [radial_hidden] * radial_layers + [self.tp.weight_numel], torch.nn.functional.silu
        )
        self.linear_out = o3.Linear(irreps_mid, target)
        self.self_connection = o3.Linear(self.irreps_in, self.irreps_out)
        self.inv_sqrt_neighbors = 1.0 / math.sqrt(max(float(avg_num_neighbors), 1e-6))

    def forward(
        self,
        h: torch.Tensor,
        edge_src: torch.Tensor,
        edge_dst: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
    ) -> torch.Tensor:
        x = self.linear_in(h)
        weights = self.radial(edge_radial)
        messages = self.tp(x[edge_src], edge_sh, weights)
        agg = scatter(messages, edge_dst, dim=0, dim_size=h.shape[0], reduce="sum") * self.inv_sqrt_neighbors
        return self.gate(self.linear_out(agg)) + self.self_connection(h)
