"""The measured benchmark's parts: the edge-position rule, the comparison, and the measured side
on the shared reference files (the FEFF runs themselves are exercised by make bench)."""

import numpy as np
import pytest

from gnnspec.bench.measured import MEASURED, REFERENCE_DIR, compare, edge_position, inequivalent_sites, measured_on_grid
from gnnspec.channels import CHANNELS


def _step(grid, at):
    return 0.1 + 1.0 / (1.0 + np.exp(-(grid - at) / 1.5)) + 0.3 * np.exp(-0.5 * ((grid - at - 8) / 3) ** 2)


def test_edge_position_and_comparison_recover_a_known_shift():
    ch = CHANNELS["Mn-K-xas"]
    grid = ch.grid
    measured, simulated = _step(grid, 6550.0), _step(grid, 6546.0)
    assert edge_position(grid, measured, ch.edge_energy) == pytest.approx(6550.0, abs=0.3)
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
    assert edge_position(CHANNELS["Mn-K-xas"].grid, y, 6539.0) == pytest.approx(6543.6, abs=0.3)
    y2, _ = measured_on_grid("Mn-K-xas", MEASURED["beta-MnO2"][0][2])
    assert edge_position(CHANNELS["Mn-K-xas"].grid, y2, 6539.0) - 6543.6 == pytest.approx(8.0, abs=0.5)


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
