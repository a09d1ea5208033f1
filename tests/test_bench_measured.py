"""The measured benchmark's parts: the edge-position rule, the comparison, and the measured side
on the shared reference files (the FEFF runs themselves are exercised by make bench)."""

import numpy as np
import pytest

from gnnspec.bench.measured import MEASURED, REFERENCE_DIR, compare, inequivalent_sites, measured_on_grid
from gnnspec.channels import CHANNELS
from gnnspec.edge_position import half_step_energy


def _step(grid, at):
    return 0.1 + 1.0 / (1.0 + np.exp(-(grid - at) / 1.5)) + 0.3 * np.exp(-0.5 * ((grid - at - 8) / 3) ** 2)


def test_edge_position_and_comparison_recover_a_known_shift():
    ch = CHANNELS["Mn-K-xas"]
    grid = ch.grid
    measured, simulated = _step(grid, 6550.0), _step(grid, 6546.0)
    assert half_step_energy(grid, measured, ch.edge_energy) == pytest.approx(6550.0, abs=0.3)
    r = compare(grid, measured, simulated, ch.edge_energy)
    assert r["edge_error_eV"] == pytest.approx(-4.0, abs=0.05)
    assert r["spearman"] > 0.99 and r["cosine"] > 0.999  # the same shape once the edges are aligned


def test_inequivalent_sites_carry_their_multiplicities():
    from gnnspec.structures.references import reference_structure

    s = reference_structure("Mn3O4")
    sites = inequivalent_sites(s, "Mn")
    assert sorted(m for _, m in sites) == [4, 8] and all(s[i].specie.symbol == "Mn" for i, _ in sites)
    assert [m for _, m in inequivalent_sites(reference_structure("MnO"), "Mn")] == [4]


@pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="shared/data/experimental_reference is absent")
def test_measured_references_land_on_the_channel_grid_with_their_edges():
    y, info = measured_on_grid("Mn-K-xas", MEASURED["MnO"][0][2])
    assert info["scans"] == 3 and y.shape == CHANNELS["Mn-K-xas"].grid.shape
    assert half_step_energy(CHANNELS["Mn-K-xas"].grid, y, 6539.0) == pytest.approx(6543.6, abs=0.3)
    y2, _ = measured_on_grid("Mn-K-xas", MEASURED["beta-MnO2"][0][2])
    assert half_step_energy(CHANNELS["Mn-K-xas"].grid, y2, 6539.0) - 6543.6 == pytest.approx(8.0, abs=0.5)


@pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="shared/data/experimental_reference is absent")
def test_a_new_model_is_scored_beside_the_stored_feff_rows():
    """with_model_rows keeps every FEFF row of a stored result and replaces the forward model's."""
    from test_library_helpers import tiny_model

    from gnnspec.bench.measured import model_label, with_model_rows

    feff_row = {"compound": "MnO", "channel": "Mn-K-xas", "measured": "SSRL XDI", "method": "FEFF scf", "edge_simulated_eV": 6549.3, "edge_measured_eV": 6543.6}
    old_model = dict(feff_row, method="forward model")
    model = tiny_model()
    result = with_model_rows({"rows": [feff_row, old_model]}, model)
    methods = [r["method"] for r in result["rows"]]
    assert "forward model" not in methods or model_label(model) == "forward model"
    assert methods.count("FEFF scf") == 1 and methods.count(model_label(model)) == sum(len(v) for v in MEASURED.values())
    assert model_label(model) in result["valence_order"]
    # one forward model: no edge spread to state, and the page says none
    assert set(result["model_edge_spread_eV"][model_label(model)]) == set(MEASURED)
    assert all(v is None for v in result["model_edge_spread_eV"][model_label(model)].values())


def test_the_page_states_the_forward_models_edge_spread():
    from gnnspec.bench.measured import render

    order = {"forward model (scf)": {"edges_eV": {"MnO": 6552.94, "Mn2O3": 6552.5}, "pairs_in_valence_order": 1, "pairs": 1}}
    with_spread = {"rows": [], "valence_order": order, "measured_edges_eV": {}, "model_edge_spread_eV": {"forward model (scf)": {"MnO": 7.08, "Mn2O3": 0.4}}}
    page = render(with_spread, "test")
    assert "MnO 6552.9 ± 7.1, Mn2O3 6552.5 ± 0.4" in page and "calibrated edge spread" in page
    without = render({**with_spread, "model_edge_spread_eV": {"forward model (scf)": {"MnO": None, "Mn2O3": None}}}, "test")
    assert "±" not in without and "MnO 6552.9, Mn2O3 6552.5" in without


@pytest.mark.skipif(not (REFERENCE_DIR.parent / "experimental_eels_nmc").is_dir(), reason="shared/data/experimental_eels_nmc is absent")
def test_the_shared_eels_goes_through_convert_and_infer_into_the_measured_report():
    from gnnspec.bench.measured import render_eels, shared_eels_answer
    from gnnspec.models.factory import DEFAULT_MODEL

    answer = shared_eels_answer(DEFAULT_MODEL)
    s = answer["support"]
    assert set(s["channels"]) == {"O-K-eels", "Mn-L23-eels", "Ni-L23-eels"}
    assert s["in_distribution"] is False  # the white lines of a measurement still sit further than held-out simulations
    text = "\n".join(render_eels(answer))
    assert "**out of distribution**" in text and "| Mn-L23-eels |" in text and "| antisite |" in text
    assert render_eels(None) == []


def test_measured_eels_bench_finds_a_known_shift_and_sums_l3_and_l2():
    from gnnspec.bench.measured_eels import SIM_STEP_EV, best_match, broadened

    grid = np.arange(630.0, 700.0, 0.5)
    peaks = lambda e, e0: np.exp(-((e - e0) ** 2) / 2.0) + 0.6 * np.exp(-((e - e0 - 11.0) ** 2) / 2.0) + 0.1 * (e > e0)  # noqa: E731
    measured = peaks(grid, 642.0)
    sim_e = np.arange(600.0, 720.0, SIM_STEP_EV)
    found = best_match(grid, measured, 641.0, sim_e, peaks(sim_e, 649.0))
    assert found["spearman"] > 0.99 and found["shift_eV"] == pytest.approx(-7.0, abs=0.15)
    assert found["window_eV"][0] >= 639.0 and found["window_eV"][1] <= 686.0
    # an L2,3 edge: L3 and L2 runs on their own axes, summed (no L2 below its first energy), then broadened
    e3, e2 = np.linspace(630.0, 700.0, 300), np.linspace(650.0, 710.0, 300)
    runs = {"Mn-L3-eels": {"energy": e3, "intensity": np.ones_like(e3)}, "Mn-L2-eels": {"energy": e2, "intensity": 2 * np.ones_like(e2)}}
    energy, y = broadened("Mn-L23-eels", runs, 0.0)
    assert y[energy < 645.0].max() == pytest.approx(1.0) and y[(energy > 655.0) & (energy < 700.0)].min() == pytest.approx(3.0)
    _, smooth = broadened("Mn-L23-eels", runs, 2.4)
    assert smooth[np.argmin(abs(energy - 650.0))] == pytest.approx(2.0, abs=0.05)  # half way up the L2 step


@pytest.mark.skipif(not (REFERENCE_DIR.parent / "experimental_eels_nmc").is_dir(), reason="shared/data/experimental_eels_nmc is absent")
def test_measured_eels_bench_reads_every_shared_edge_onset_aligned():
    from gnnspec.bench.measured_eels import EDGE_FILES, measured_edge

    for channel in EDGE_FILES:
        energy, y, onset, fwhm = measured_edge(channel)
        assert energy[0] < onset - 2.0 and onset + 45.0 < energy[-1] and np.mean(y) == pytest.approx(1.0, rel=0.05)
        assert 2.0 < fwhm < 3.0  # the measured zero-loss peak: 2.4 eV


def test_the_page_places_each_reference_edge():
    from gnnspec.bench.measured import render_reference_edges

    base = {"compound": "MnO", "measured": "SSRL XDI", "file": "x", "channel": "Mn-K-xas", "in_distribution": False, "edge_as_given_eV": 6543.6}
    rows = [
        base | {"edge_eV": 6546.9, "training_p01_eV": 6551.4, "training_p99_eV": 6555.8, "energy_scale_tolerance_eV": 1.6, "inside_training_range": False},
        base | {"compound": "Li2MnO3", "edge_eV": 6557.8, "training_p01_eV": 6551.4, "training_p99_eV": 6555.8, "energy_scale_tolerance_eV": 1.6, "inside_training_range": False},
        base | {"compound": "NiO", "edge_eV": 8345.2, "training_p01_eV": 8344.1, "training_p99_eV": 8349.1, "energy_scale_tolerance_eV": None, "inside_training_range": True},
        base | {"compound": "cut", "edge_eV": None, "training_p01_eV": None, "training_p99_eV": None, "energy_scale_tolerance_eV": None, "inside_training_range": None},
    ]
    lines = render_reference_edges(rows)
    assert "| 6551.4-6555.8 | 1.6 | 4.5 eV below | out of distribution |" in lines[-4]
    assert "2.0 eV above" in lines[-3] and "| - | inside |" in lines[-2] and lines[-1].count("| - |") >= 2
    assert render_reference_edges(None) == [] and render_reference_edges([]) == []


@pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="shared/data/experimental_reference is absent")
def test_measured_mno_goes_through_convert_and_infer_below_the_training_edges():
    """The real MnO measurements (SSRL XDI, APS Athena) as a user runs them with the shipped model:
    Mn(II)'s K edge lies below every Mn edge the model learned (NMC's Mn is Mn(IV)), beyond the
    energy scale's error, and the support check calls the spectra foreign too."""
    from gnnspec.bench.measured import reference_edge_answers
    from gnnspec.models.factory import DEFAULT_MODEL

    rows = reference_edge_answers(DEFAULT_MODEL, compounds=["MnO"])
    assert [r["measured"] for r in rows] == ["SSRL XDI", "APS Athena"]
    for r in rows:
        assert 6542.0 < r["edge_as_given_eV"] < 6547.0  # MnO's measured half step (6543.6 / 6545.0 eV)
        assert r["edge_eV"] - r["edge_as_given_eV"] == pytest.approx(-read_offset(), abs=1e-6)
        assert r["inside_training_range"] is False and r["edge_eV"] < r["training_p01_eV"] - r["energy_scale_tolerance_eV"]
        assert r["in_distribution"] is False


def read_offset() -> float:
    from gnnspec.edge_offsets import read_edge_offsets

    return read_edge_offsets()[("Mn-K-xas", "scf")].offset_eV
