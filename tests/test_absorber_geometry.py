"""The absorber's geometry read off the graph's edges, against pymatgen's neighbour lists."""

import numpy as np
import pytest
import torch

from gnnspec.graphs import periodic_graph
from gnnspec.models.absorber_geometry import BOND_FEATURES, N_BONDS, N_RDF, RDF_CENTRES, RDF_SMEAR_A, absorber_geometry


def _reference(structure, site, cutoff=5.0):
    """The bond block by pymatgen, as the module's docstring states it."""
    el = structure[site].specie.symbol
    nb = [n for n in structure.get_neighbors(structure[site], cutoff) if n.nn_distance > 1e-6]
    other = [n.nn_distance for n in nb if (n.specie.symbol != "O") == (el == "O")]
    shell = [d for d in other if d < 2.4] or [min(other)]
    count = len([d for d in other if d < 2.4])
    r0 = {"Li": 1.466, "Mn": 1.753, "Co": 1.70, "Ni": 1.654}.get(el)
    bvs = sum(np.exp((r0 - n.nn_distance) / 0.37) for n in nb if n.specie.symbol == "O" and n.nn_distance < 2.6) if r0 else 0.0
    return [
        np.mean(shell),
        min(shell),
        max(shell),
        np.std(shell) if count else 0.0,
        count,
        len([n for n in nb if n.specie.symbol in ("Mn", "Co", "Ni") and n.nn_distance < 3.2]),
        len([n for n in nb if n.specie.symbol == "Li" and n.nn_distance < 3.2]),
        len([n for n in nb if n.specie.symbol == "O" and n.nn_distance < 3.6]),
        bvs,
    ]


def test_bond_block_matches_pymatgen_on_layered_licoo2_with_a_moved_atom(licoo2):
    s = licoo2.copy()
    s.translate_sites([0], [0.013, -0.02, 0.007], frac_coords=False)  # break the symmetry a little
    graph = periodic_graph(s, 5.0)
    sites = torch.arange(len(s))
    geo = absorber_geometry(graph, sites, 5.0).numpy()
    assert geo.shape == (len(s), N_BONDS + N_RDF) and N_BONDS == len(BOND_FEATURES)
    for i in range(len(s)):
        np.testing.assert_allclose(geo[i, :N_BONDS], _reference(s, i), rtol=1e-5, atol=1e-5)
    co = [i for i, site in enumerate(s) if site.specie.symbol == "Co"][0]
    assert geo[co, 4] == 6 and geo[co, 0] == pytest.approx(1.92, abs=0.05)  # CoO6, about 1.92 A
    assert geo[co, 8] == pytest.approx(3.0, abs=0.3)  # bond-valence sum: Co3+


def test_radial_block_counts_each_neighbour_element_and_is_invariant(licoo2):
    graph = periodic_graph(licoo2, 5.0)
    sites = torch.arange(len(licoo2))
    geo = absorber_geometry(graph, sites, 5.0)
    n_bins = len(RDF_CENTRES)
    # each neighbour adds a Gaussian of unit height at its distance: the O block of a Co site, by hand
    co = [i for i, site in enumerate(licoo2) if site.specie.symbol == "Co"][0]
    o_block = geo[co, N_BONDS + 1 * n_bins : N_BONDS + 2 * n_bins].numpy()
    d = np.array([n.nn_distance for n in licoo2.get_neighbors(licoo2[co], 5.0) if n.specie.symbol == "O"])
    want = np.exp(-0.5 * ((d[:, None] - RDF_CENTRES.numpy()[None, :]) / RDF_SMEAR_A) ** 2).sum(0)
    np.testing.assert_allclose(o_block, want, rtol=1e-5)
    assert o_block[0] > 5.0  # six O at about 1.92 A
    # the same numbers for a rotated copy and for the absorbers asked for in another order
    rotated = licoo2.copy()
    rotated.apply_operation(__import__("pymatgen.core.operations", fromlist=["SymmOp"]).SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0))
    geo_rot = absorber_geometry(periodic_graph(rotated, 5.0), sites, 5.0)
    torch.testing.assert_close(geo_rot, geo, rtol=1e-5, atol=1e-5)
    flipped = absorber_geometry(graph, sites.flip(0), 5.0)
    torch.testing.assert_close(flipped, geo.flip(0))
    assert absorber_geometry(graph, sites[:0], 5.0).shape == (0, N_BONDS + N_RDF)
