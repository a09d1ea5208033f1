"""Local clusters and periodic structures as torch-geometric graphs.

One module builds every graph in gnnspec, for simulation (FEFF cluster) and models alike.

* :func:`extract_cluster`: all atoms within ``radius`` (Angstrom) of an absorbing site,
  periodic images included, positions relative to the absorber (absorber first, then by
  distance).
* :func:`cluster_graph`: that cluster as a ``Data`` with a radius graph.
* :func:`periodic_graph`: a whole periodic structure with periodic edges (edge vectors carry the
  lattice shift), used to run a model once over a supercell.
* :func:`radius_graph`: a pure-torch radius graph for batched non-periodic point clouds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from gnnspec.errors import InputError


@dataclass
class Cluster:
    """Atoms around an absorber. ``positions`` in Angstrom relative to the absorber (row 0)."""

    positions: np.ndarray  # [n, 3]
    numbers: np.ndarray  # [n] atomic numbers
    symbols: list[str]
    site_indices: np.ndarray  # [n] index of the site in the parent structure
    distances: np.ndarray  # [n] distance to the absorber

    def __len__(self) -> int:
        return len(self.numbers)


def extract_cluster(structure: Structure, site: int, radius: float) -> Cluster:
    """All atoms within ``radius`` Angstrom of ``structure[site]``, periodic images included."""
    if not 0 <= site < len(structure):
        raise InputError(f"site {site} is out of range: the structure has {len(structure)} sites (0-{len(structure) - 1})")
    centre = structure[site].coords
    neighbours = structure.get_sites_in_sphere(centre, radius, include_index=True, include_image=True)
    rows = []
    for nb in neighbours:
        d = float(np.linalg.norm(nb.coords - centre))
        is_self = nb.index == site and d < 1e-6
        rows.append((0 if is_self else 1, d, nb.index, nb.coords - centre, nb.specie.symbol, nb.specie.Z))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    if not rows or rows[0][0] != 0:
        raise InputError(f"site {site}: the absorber was not found in its own cluster")
    return Cluster(
        positions=np.array([r[3] for r in rows], dtype=np.float64),
        numbers=np.array([r[5] for r in rows], dtype=np.int64),
        symbols=[r[4] for r in rows],
        site_indices=np.array([r[2] for r in rows], dtype=np.int64),
        distances=np.array([r[1] for r in rows], dtype=np.float64),
    )


def radius_graph(pos: torch.Tensor, r: float, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Edges ``[2, E]`` (source, target) between distinct points closer than ``r`` within a graph.

    Pure torch (no torch-cluster): a ``cdist`` per graph of the batch.
    """
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    edges = []
    counts = torch.bincount(batch)
    offsets = torch.cumsum(counts, 0) - counts
    for g in range(counts.numel()):
        n, o = int(counts[g]), int(offsets[g])
        if n < 2:
            continue
        d = torch.cdist(pos[o : o + n], pos[o : o + n])
        mask = d < r
        mask.fill_diagonal_(False)
        src, dst = mask.nonzero(as_tuple=True)
        edges.append(torch.stack([src + o, dst + o]))
    if not edges:
        return torch.zeros((2, 0), dtype=torch.long, device=pos.device)
    return torch.cat(edges, dim=1)


def cluster_graph(structure: Structure, site: int, radius: float, edge_cutoff: float) -> Data:
    """The cluster of ``site`` as a graph: ``pos`` (relative, A), ``z``, ``absorber`` flag, edges."""
    cluster = extract_cluster(structure, site, radius)
    pos = torch.tensor(cluster.positions, dtype=torch.get_default_dtype())
    edge_index = radius_graph(pos, edge_cutoff)
    absorber = torch.zeros(len(cluster), dtype=torch.bool)
    absorber[0] = True
    return Data(
        pos=pos,
        z=torch.tensor(cluster.numbers, dtype=torch.long),
        absorber=absorber,
        edge_index=edge_index,
        edge_shift=torch.zeros((edge_index.shape[1], 3), dtype=pos.dtype),
        site_index=torch.tensor(cluster.site_indices, dtype=torch.long),
        num_nodes=len(cluster),
    )


def periodic_edges(structure: Structure, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Periodic radius graph: ``edge_index [2, E]`` (source, target) and Cartesian shifts ``[E, 3]``.

    The edge vector from source to target is ``pos[target] - pos[source] + shift`` (Angstrom).
    """
    centre, neighbour, images, dists = structure.get_neighbor_list(cutoff)
    keep = dists > 1e-8
    centre, neighbour, images = centre[keep], neighbour[keep], images[keep]
    shifts = images @ structure.lattice.matrix
    # message flows neighbour -> centre
    edge_index = np.stack([neighbour, centre]).astype(np.int64)
    return edge_index, -shifts


def periodic_graph(structure: Structure, cutoff: float) -> Data:
    """A periodic structure as one graph with periodic edges (``edge_shift`` in Angstrom)."""
    edge_index, shifts = periodic_edges(structure, cutoff)
    dtype = torch.get_default_dtype()
    return Data(
        pos=torch.tensor(structure.cart_coords, dtype=dtype),
        z=torch.tensor([s.specie.Z for s in structure], dtype=torch.long),
        edge_index=torch.from_numpy(edge_index),
        edge_shift=torch.tensor(shifts, dtype=dtype),
        num_nodes=len(structure),
    )


def edge_vectors(pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor | None) -> torch.Tensor:
    """Vectors from source to target atom of every edge (periodic shifts applied)."""
    vec = pos[edge_index[1]] - pos[edge_index[0]]
    if edge_shift is not None:
        vec = vec + edge_shift
    return vec
