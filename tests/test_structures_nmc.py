import numpy as np
import pytest
from pymatgen.core import Structure

from gnnspec.graphs import extract_cluster
from gnnspec.structures.environments import R_ENV, element_content, environment_spectrum, environments
from gnnspec.structures.nmc import TM_RATIOS, NMCParams, generate_nmc, ideal_cell


def _first(structure, symbol):
    return next(i for i, s in enumerate(structure) if s.specie.symbol == symbol)


def test_ideal_cell_distances_tm_o_and_li_o():
    """The origin choice decides which layer gets the short bonds: TM-O 1.97 A, Li-O 2.11 A."""
    s = ideal_cell()
    tm = extract_cluster(s, _first(s, "Co"), 2.5)
    li = extract_cluster(s, _first(s, "Li"), 2.5)
    assert [x for x in tm.symbols[1:]] == ["O"] * 6
    assert np.allclose(tm.distances[1:], 1.97, atol=0.01)
    assert [x for x in li.symbols[1:]] == ["O"] * 6
    assert np.allclose(li.distances[1:], 2.11, atol=0.01)


def test_supercell_counts_ratios_and_site_types():
    smp = generate_nmc(NMCParams(seed=7, tm_ratio=TM_RATIOS["NMC532"], li_content=1.0))
    s = smp.structure
    assert len(s) == 108
    comp = s.composition
    assert (comp["Ni"], comp["Mn"], comp["Co"]) == (14, 8, 5)  # 0.5/0.3/0.2 of 27, largest remainder
    types = s.site_properties["site_type"]
    assert types.count("tm_layer") == 27 and types.count("li_layer") == 27 and types.count("o") == 54
    assert smp.vacancies == []


def test_delithiation_vacancies_and_antisites_are_recorded():
    smp = generate_nmc(NMCParams(seed=3, li_content=0.7, n_o_vacancies=2, n_antisites=1))
    s = smp.structure
    assert s.composition["Li"] == round(0.7 * 27)
    assert s.composition["O"] == 52
    o_vac = [v for v in smp.vacancies if v["site_type"] == "o"]
    assert len(o_vac) == 2
    kinds = list(zip([x.specie.symbol for x in s], s.site_properties["site_type"]))
    assert kinds.count(("Ni", "li_layer")) == 1 and kinds.count(("Li", "tm_layer")) == 1


def test_same_seed_same_structure():
    a = generate_nmc(NMCParams(seed=11, li_content=0.8, n_antisites=2)).structure
    b = generate_nmc(NMCParams(seed=11, li_content=0.8, n_antisites=2)).structure
    assert a == b


def test_labels_of_hand_placed_vacancy_and_antisite():
    s = ideal_cell(tm="Ni")
    s.make_supercell([3, 3, 1])
    # hand-made O vacancy: remove one O, remember its ideal position
    o = _first(s, "O")
    vac = {"site_type": "o", "element": "O", "frac_coords": list(s[o].frac_coords), "coords": list(s[o].coords)}
    near_vac = [i for i in range(len(s)) if i != o and s.get_distance(i, o) < R_ENV]
    far_vac = [i for i in range(len(s)) if i != o and s.get_distance(i, o) > R_ENV + 0.5]
    # hand-made antisite: a Li and a Ni exchange
    li = _first(s, "Li")
    ni = next(i for i in near_vac if s[i].specie.symbol == "Ni")
    s.replace(li, "Ni", properties=s[li].properties)
    s.replace(ni, "Li", properties=s[ni].properties)
    near_li_site = {i for i in range(len(s)) if s.get_distance(i, li) < R_ENV} | {i for i in range(len(s)) if s.get_distance(i, ni) < R_ENV}
    mapping = [i for i in range(len(s)) if i != o]
    s.remove_sites([o])
    envs = {e.centre: e for e in environments(s, [vac])}
    for old in near_vac:
        assert envs[mapping.index(old)].defects[0] == 1.0
    for old in far_vac:
        assert envs[mapping.index(old)].defects[0] == 0.0
    for new, old in enumerate(mapping):
        assert envs[new].defects[1] == float(old in near_li_site)
    bulk = envs[-1]
    assert list(bulk.defects) == [1.0, 1.0]


def test_tm_environment_of_pristine_nmc_and_content():
    s = ideal_cell(tm="Mn")
    s.make_supercell([3, 3, 1])
    env = next(e for e in environments(s, []) if e.centre >= 0 and s[e.centre].specie.symbol == "Mn")
    symbols = [s[m].specie.symbol for m in env.members]
    assert symbols.count("O") == 6 and symbols.count("Li") == 6 and symbols.count("Mn") == 7  # 6 TM + centre
    assert env.content == pytest.approx(element_content(symbols))
    assert env.content == pytest.approx([6 / 19, 0, 7 / 19, 0, 6 / 19])


def test_environment_spectrum_is_mean_of_member_sites():
    spectra = {2: np.ones(4), 5: 3 * np.ones(4), 9: 100 * np.ones(4)}
    assert np.allclose(environment_spectrum(spectra, np.array([1, 2, 5])), 2.0)
    assert environment_spectrum(spectra, np.array([0, 1])) is None


def test_generated_structure_roundtrips_through_dict():
    smp = generate_nmc(NMCParams(seed=5, n_o_vacancies=1))
    again = Structure.from_dict(smp.as_dict()["structure"])
    assert again.site_properties["site_type"] == smp.structure.site_properties["site_type"]


def _li_vacancies(ordering, li=0.5, seed=3):
    smp = generate_nmc(NMCParams(seed=seed, li_content=li, li_ordering=ordering, tm_ratio=TM_RATIOS["NMC532"]))
    return np.array([v["frac_coords"] for v in smp.vacancies if v["site_type"] == "li_layer"]), smp.structure


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_li_orderings_place_the_vacancies_as_they_say(seed):
    """13 Li vacancies of 27 (three layers of 9): ``layers`` empties one whole layer first,
    ``rows`` whole in-plane rows of 3, ``clustered`` the sites nearest to one of them."""
    from pymatgen.core import Lattice

    for ordering in ("random", "clustered", "layers", "rows"):
        vac, s = _li_vacancies(ordering, seed=seed)
        assert len(vac) == 27 - round(0.5 * 27) and s.composition["Li"] == round(0.5 * 27)
    layer_of = lambda f: np.round(f[:, 2] * 3).astype(int) % 3  # noqa: E731
    vac, _ = _li_vacancies("layers", seed=seed)
    assert sorted(np.bincount(layer_of(vac), minlength=3).tolist()) == [0, 4, 9]
    vac, _ = _li_vacancies("rows", seed=seed)
    counts = np.bincount(layer_of(vac), minlength=3)
    assert sum(c % 3 for c in counts) == 1  # four whole rows of three and one started row
    vac, s = _li_vacancies("clustered", seed=seed)
    lat = Lattice(s.lattice.matrix)
    span = max(lat.get_distance_and_image(a, b)[0] for a in vac for b in vac)
    rand, _ = _li_vacancies("random", seed=seed)
    span_random = max(lat.get_distance_and_image(a, b)[0] for a in rand for b in rand)
    assert span < span_random  # a domain, not spread over the cell


def test_the_random_ordering_draws_as_before():
    """Supercells of the shipped recipe keep their structure: the default ordering is the old draw."""
    a = generate_nmc(NMCParams(seed=5, li_content=0.6, n_o_vacancies=1))
    b = generate_nmc(NMCParams(seed=5, li_content=0.6, n_o_vacancies=1, li_ordering="random"))
    assert a.structure == b.structure and a.vacancies == b.vacancies
    assert np.isclose(a.structure.lattice.a, 3 * 2.87) and np.isclose(a.structure.lattice.c, 14.2)
    with pytest.raises(ValueError, match="unknown Li ordering"):
        NMCParams(seed=0, li_ordering="diagonal")


def test_wide_draws_cover_the_composition_triangle_and_keep_ni_for_antisites():
    from gnnspec.structures.nmc import _ratio_counts, draw_wide_params

    rng = np.random.default_rng(0)
    draws = [draw_wide_params(rng, seed=i, case=("antisite", "pristine")[i % 2], relax=False) for i in range(400)]
    ratios = np.array([p.tm_ratio for p in draws])
    assert np.allclose(ratios.sum(1), 1.0)
    assert (ratios.min(1) == 0).mean() > 0.2  # edges of the triangle
    assert ratios[:, 0].max() > 0.9 and ratios[:, 1].max() > 0.9 and ratios[:, 2].max() > 0.9  # near every corner
    assert {p.li_ordering for p in draws} == {"random", "clustered", "layers", "rows"}
    for p in draws:
        if p.n_antisites:
            assert _ratio_counts(p.tm_ratio, 27)[0] >= p.n_antisites  # Ni sites of the 27
        assert 2.81 <= p.a <= 2.90 and 0.5 <= p.li_content <= 1.0
    s = generate_nmc(draws[1]).structure
    assert np.isclose(s.lattice.a, 3 * draws[1].a) and np.isclose(s.lattice.c, draws[1].c)
