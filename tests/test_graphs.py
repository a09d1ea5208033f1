import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from gnnspec.errors import InputError
from gnnspec.graphs import cluster_graph, edge_vectors, extract_cluster, periodic_graph, radius_graph


def test_licoo2_cluster_matches_hand_count(licoo2):
    co = next(i for i, s in enumerate(licoo2) if s.specie.symbol == "Co")
    c = extract_cluster(licoo2, co, 3.0)
    assert c.symbols[0] == "Co" and c.distances[0] == 0.0
    assert np.allclose(c.positions[0], 0.0)
    o = [d for s, d in zip(c.symbols, c.distances) if s == "O"]
    cobalt = [d for s, d in zip(c.symbols[1:], c.distances[1:]) if s == "Co"]
    assert len(o) == 6 and np.allclose(o, 1.92, atol=0.03)  # Co-O about 1.9 A
    assert len(cobalt) == 6 and np.allclose(cobalt, 2.816, atol=1e-6)  # Co-Co = a
    # sorted by distance from the absorber
    assert np.all(np.diff(c.distances) >= 0)


def test_cluster_includes_periodic_images_and_refuses_bad_site(licoo2):
    c = extract_cluster(licoo2, 0, 6.0)
    assert len(c) > len(licoo2)  # images of the 12-site cell
    with pytest.raises(InputError, match="out of range"):
        extract_cluster(licoo2, 12, 3.0)


def test_radius_graph_matches_brute_force():
    torch.manual_seed(0)
    pos = torch.rand(30, 3) * 6
    batch = torch.tensor([0] * 12 + [1] * 18)
    edges = radius_graph(pos, 2.0, batch)
    got = {tuple(e) for e in edges.t().tolist()}
    want = set()
    for i in range(30):
        for j in range(30):
            if i != j and batch[i] == batch[j] and torch.dist(pos[i], pos[j]) < 2.0:
                want.add((i, j))
    assert got == want


def test_periodic_graph_edges_have_the_right_lengths():
    s = Structure(Lattice.cubic(3.0), ["Ni"], [[0, 0, 0]])
    g = periodic_graph(s, 3.1)
    vec = edge_vectors(g.pos, g.edge_index, g.edge_shift)
    assert g.edge_index.shape[1] == 6  # simple cubic: 6 neighbours, all images of itself
    assert torch.allclose(vec.norm(dim=1), torch.full((6,), 3.0, dtype=vec.dtype))


def test_cluster_graph_flags_absorber(licoo2):
    g = cluster_graph(licoo2, 0, 4.0, edge_cutoff=3.0)
    assert bool(g.absorber[0]) and int(g.absorber.sum()) == 1
    assert g.edge_index.shape[0] == 2 and g.edge_index.shape[1] > 0
    assert torch.allclose(g.pos[0], torch.zeros(3, dtype=g.pos.dtype))
