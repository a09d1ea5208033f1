"""Reference structures checked by chemistry: composition, cell contents and the published
metal-oxygen bond lengths around the absorber (Angstrom)."""

import dataclasses

import numpy as np
import pytest

from gnnspec.structures.references import REFERENCE_COMPOUNDS, reference_structure

SITES_IN_CELL = {"MnO": 8, "NiO": 8, "beta-MnO2": 6, "Mn2O3": 80, "Mn3O4": 28, "Li2MnO3": 24}


def _o_shells(structure, element, r=2.5):
    """Sorted M-O distances within ``r`` of every ``element`` site, one list per site."""
    return [
        sorted(n.nn_distance for n in structure.get_neighbors(site, r) if n.specie.symbol == "O")
        for site in structure
        if site.specie.symbol == element
    ]


def test_table_lists_the_measured_compounds():
    assert set(REFERENCE_COMPOUNDS) == set(SITES_IN_CELL)
    for name, c in REFERENCE_COMPOUNDS.items():
        assert c.name == name and c.source and c.valences and len(c.lattice) == 6


@pytest.mark.parametrize("name", sorted(SITES_IN_CELL))
def test_composition_cell_contents_order_and_no_clashes(name):
    s = reference_structure(name)
    assert s.composition.reduced_formula == REFERENCE_COMPOUNDS[name].formula
    assert len(s) == SITES_IN_CELL[name]
    assert s.is_ordered
    d = s.distance_matrix + np.eye(len(s)) * 100.0
    assert d.min() > 1.7


@pytest.mark.parametrize(("name", "element", "length"), [("MnO", "Mn", 2.22), ("NiO", "Ni", 2.09)])
def test_rock_salt_octahedra(name, element, length):
    shells = _o_shells(reference_structure(name), element)
    assert all(len(sh) == 6 for sh in shells)
    assert np.allclose(shells, length, atol=0.01)


def test_pyrolusite_octahedron_four_short_two_long():
    for sh in _o_shells(reference_structure("beta-MnO2"), "Mn"):
        assert len(sh) == 6
        assert np.allclose(sh[:4], 1.88, atol=0.01)
        assert np.allclose(sh[4:], 1.89, atol=0.015)
        assert 1.87 <= min(sh) and max(sh) <= 1.91


def test_bixbyite_octahedra():
    shells = _o_shells(reference_structure("Mn2O3"), "Mn", r=2.4)
    assert len(shells) == 32
    for sh in shells:
        assert len(sh) == 6
        assert 1.88 <= min(sh) and max(sh) <= 2.25


def test_hausmannite_tetrahedral_mn2_and_jahn_teller_octahedral_mn3():
    shells = _o_shells(reference_structure("Mn3O4"), "Mn")
    tetra = [sh for sh in shells if len(sh) == 4]
    octa = [sh for sh in shells if len(sh) == 6]
    assert (len(tetra), len(octa)) == (4, 8)  # Mn2+ : Mn3+ = 1 : 2
    assert np.allclose(tetra, 2.04, atol=0.02)
    for sh in octa:
        assert np.allclose(sh[:4], 1.93, atol=0.02)
        assert np.allclose(sh[4:], 2.28, atol=0.02)
    assert REFERENCE_COMPOUNDS["Mn3O4"].valences == (2, 3)


def test_li2mno3_mn_octahedra():
    shells = _o_shells(reference_structure("Li2MnO3"), "Mn")
    assert len(shells) == 4
    for sh in shells:
        assert len(sh) == 6
        assert 1.89 <= min(sh) and max(sh) <= 1.93


@pytest.mark.parametrize(
    ("name", "valences"),
    [("MnO", (2,)), ("NiO", (2,)), ("beta-MnO2", (4,)), ("Mn2O3", (3,)), ("Mn3O4", (2, 3)), ("Li2MnO3", (4,))],
)
def test_absorber_valences(name, valences):
    assert REFERENCE_COMPOUNDS[name].valences == valences


def test_unknown_compound_names_the_valid_ones():
    with pytest.raises(KeyError) as err:
        reference_structure("Fe2O3")
    assert "Fe2O3" in str(err.value)
    for name in REFERENCE_COMPOUNDS:
        assert name in str(err.value)


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        REFERENCE_COMPOUNDS["MnO"].lattice = (1.0,) * 6
