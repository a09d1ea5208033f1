"""The geometry of an absorbing site, read off a structure graph's edges, for the linear tier heads.

FEFF's ``scf`` tier moves the K edge with the absorber's bonds (-18 to -30 eV per Angstrom of
mean M-O distance, ``benchmarks/edge_shifts.md``), while its ``fast`` tier hardly does (-0.1 to
-1.4 eV/A). A forward model trained mostly on ``fast`` spectra need not carry the bond lengths in
its final node features, so the linear heads (:mod:`gnnspec.models.linear_tier_heads`) read
them explicitly. Two blocks per absorber, both invariant to rotation, translation and atom
order, computed from the edges of the graph the model reads (neighbours within its cutoff,
periodic images included):

* **bonds** (:data:`BOND_FEATURES`): the first shell, that is the neighbours of the other kind
  (O around a cation; Li, Mn, Co, Ni around O) within :data:`FIRST_SHELL_A`: their mean,
  smallest and largest distance, the standard deviation and the count; the number of transition
  metals and of Li within :data:`SECOND_SHELL_A`; the number of O within :data:`O_SHELL_A`; and,
  for a cation, the bond-valence sum over O within :data:`BVS_SHELL_A`,
  ``sum exp((r0 - d) / 0.37)`` with Brown's ``r0`` (:data:`BVS_R0`), 0 for O. A site without a
  first shell takes its nearest neighbour of the other kind (or the cutoff) as the shell's
  distances and a count of 0.
* **radial distribution** (:data:`RDF_CENTRES`): per neighbour element of
  :data:`NEIGHBOUR_ELEMENTS`, neighbour distances smeared by a Gaussian of
  :data:`RDF_SMEAR_A` onto four centres: the first shell (2.0 A), the in-plane metal and Li shell
  of the layered oxide (2.9 A), the second O shell (3.6 A) and beyond (4.5 A; the model's 5 A
  cutoff ends it). Coarse on purpose: every feature adds a row of 121 weights to each linear head
  of every forward model, and a 0.1 A grid made the shipped checkpoint 14.5 MB larger.

Distances in Angstrom throughout.
"""

from __future__ import annotations

import torch
from torch_geometric.utils import scatter

from gnnspec.graphs import edge_vectors

#: Atomic numbers of the neighbour elements of the radial distribution, in order.
NEIGHBOUR_ELEMENTS = {"Li": 3, "O": 8, "Mn": 25, "Co": 27, "Ni": 28}
TRANSITION_METALS = (25, 27, 28)
FIRST_SHELL_A = 2.4
SECOND_SHELL_A = 3.2
O_SHELL_A = 3.6
BVS_SHELL_A = 2.6
BVS_B_A = 0.37
#: Bond-valence parameters r0 (A) for a bond to O (Brown and Altermatt; Li+, Mn4+, Co3+, Ni2+).
BVS_R0 = {3: 1.466, 25: 1.753, 27: 1.70, 28: 1.654}
RDF_CENTRES = torch.tensor([2.0, 2.9, 3.6, 4.5], dtype=torch.float64)
RDF_SMEAR_A = 0.3
BOND_FEATURES = (
    "first-shell mean distance",
    "first-shell smallest distance",
    "first-shell largest distance",
    "first-shell distance standard deviation",
    "first-shell count",
    "transition metals within 3.2 A",
    "Li within 3.2 A",
    "O within 3.6 A",
    "bond-valence sum with O",
)
N_BONDS = len(BOND_FEATURES)
N_RDF = len(NEIGHBOUR_ELEMENTS) * len(RDF_CENTRES)


def absorber_geometry(data, absorbers: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``[len(absorbers), N_BONDS + N_RDF]`` (float64): the bond block then the radial-distribution
    block of each absorber (node index into ``data``) of a graph or batch with ``pos``, ``z``,
    ``edge_index`` and ``edge_shift``; ``cutoff``: the graph's edge cutoff (A), the distance given
    to a site without any neighbour of the other kind. Computed on the graph's device, so a
    prediction on a GPU copies nothing to the host."""
    device = data.pos.device
    n = int(absorbers.numel())
    out = torch.zeros(n, N_BONDS + N_RDF, dtype=torch.float64, device=device)
    if n == 0:
        return out
    z = data.z
    absorbers = absorbers.to(device)
    slot = torch.full((int(z.shape[0]),), -1, dtype=torch.long, device=device)
    slot[absorbers] = torch.arange(n, device=device)
    src, dst = data.edge_index
    keep = slot[src] >= 0
    shift = None if getattr(data, "edge_shift", None) is None else data.edge_shift[keep]
    vec = edge_vectors(data.pos.double(), torch.stack([src[keep], dst[keep]]), None if shift is None else shift.double())
    row, dist, zn = slot[src[keep]], vec.norm(dim=1), z[dst[keep]]
    za = z[absorbers]
    is_o_abs = za == 8
    other_kind = torch.where(is_o_abs[row], zn != 8, zn == 8)

    def count(mask: torch.Tensor) -> torch.Tensor:
        return scatter(mask.double(), row, dim=0, dim_size=n, reduce="sum")

    shell = other_kind & (dist < FIRST_SHELL_A)
    k = count(shell)
    d = dist.where(shell, torch.zeros_like(dist))
    mean = scatter(d, row, dim=0, dim_size=n, reduce="sum") / k.clamp_min(1.0)
    var = scatter((dist - mean[row]) ** 2 * shell, row, dim=0, dim_size=n, reduce="sum") / k.clamp_min(1.0)
    big = torch.full_like(dist, float("inf"))
    lo = scatter(dist.where(shell, big), row, dim=0, dim_size=n, reduce="min")
    hi = scatter(dist.where(shell, -big), row, dim=0, dim_size=n, reduce="max")
    nearest = scatter(dist.where(other_kind, big), row, dim=0, dim_size=n, reduce="min")
    nearest = torch.where(torch.isfinite(nearest), nearest, torch.full_like(nearest, float(cutoff)))
    empty = k == 0
    mean, lo, hi = (torch.where(empty, nearest, x) for x in (mean, lo, hi))
    out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4] = mean, lo, hi, var.sqrt(), k
    tm = torch.zeros_like(zn, dtype=torch.bool)
    for t in TRANSITION_METALS:
        tm |= zn == t
    out[:, 5] = count(tm & (dist < SECOND_SHELL_A))
    out[:, 6] = count((zn == 3) & (dist < SECOND_SHELL_A))
    out[:, 7] = count((zn == 8) & (dist < O_SHELL_A))
    r0 = torch.zeros(n, dtype=torch.float64, device=device)
    for element, value in BVS_R0.items():
        r0[za == element] = value
    bond = (zn == 8) & (dist < BVS_SHELL_A) & (r0[row] > 0)
    out[:, 8] = scatter(torch.exp((r0[row] - dist) / BVS_B_A) * bond, row, dim=0, dim_size=n, reduce="sum")
    gauss = torch.exp(-0.5 * ((dist[:, None] - RDF_CENTRES.to(device)[None, :]) / RDF_SMEAR_A) ** 2)
    for e, element in enumerate(NEIGHBOUR_ELEMENTS.values()):
        sel = zn == element
        block = scatter(gauss * sel[:, None], row, dim=0, dim_size=n, reduce="sum")
        out[:, N_BONDS + e * len(RDF_CENTRES) : N_BONDS + (e + 1) * len(RDF_CENTRES)] = block
    return out
