from pathlib import Path

import numpy as np
import pytest
from fixtures.synthetic import edge_shape, eels_survey

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.measured.alignment import expected_onset, fit_zero_loss
from gnnspec.measured.edges import cut_survey, process_edge, survey_channels
from gnnspec.measured.readers import read_measured
from gnnspec.spectra import spectra_on_grids

EXPERIMENTAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_eels_nmc"
needs_experimental = pytest.mark.skipif(not EXPERIMENTAL.is_dir(), reason="shared experimental EELS data absent")
EELS = ("O-K-eels", "Mn-L23-eels", "Co-L23-eels", "Ni-L23-eels")
ENERGY = np.arange(440.0, 1000.0, 0.3)


def _survey(shift: float) -> np.ndarray:
    return eels_survey(ENERGY, {name: expected_onset(name) + shift for name in EELS}, seed=4)


def test_synthetic_survey_is_cut_into_every_eels_channel_with_its_own_background():
    base, _ = cut_survey(ENERGY, _survey(0.0))
    moved, skipped = cut_survey(ENERGY, _survey(-7.5))
    assert list(moved) == list(EELS) and skipped == {}
    for name in EELS:
        edge = moved[name]
        assert edge.alignment.shift - base[name].alignment.shift == pytest.approx(7.5, abs=0.1)
        assert edge.background is not None and 1.0 < edge.background.r < 7.0
        assert edge.background.window[1] == pytest.approx(edge.edge_found - 5.0)
        grid = CHANNELS[name].grid
        assert edge.energy[0] <= grid[0] + 0.3 and edge.energy[-1] >= grid[-1] - 0.3
    windows = [moved[name].background.window for name in EELS]
    assert windows[1][0] >= moved["O-K-eels"].edge_found + 25.0 - 1e-9  # never reaches back into the O K edge
    grids, mask = spectra_on_grids({name: edge.spectrum() for name, edge in moved.items()})
    assert mask.sum() == 4 and np.all(np.abs(grids[mask].mean(axis=1) - 1.0) < 1e-3)


def test_legacy_l3_windows_say_that_they_hold_l2_and_l23_windows_keep_it():
    edges, _ = cut_survey(ENERGY, _survey(0.0), channels=["Ni-L3-eels", "Ni-L23-eels"])
    assert any("L2" in note for note in edges["Ni-L3-eels"].notes)
    assert not any("lack" in note for note in edges["Ni-L23-eels"].notes)
    l23 = edges["Ni-L23-eels"]
    assert l23.energy[-1] >= 852.7 + 55 - 0.5  # the window runs 38 eV past the Ni L2 edge: nothing cut away


def test_survey_channels_follow_the_energy_range():
    assert [c.name for c in survey_channels(ENERGY, _survey(0.0))] == list(EELS)
    low = ENERGY < 700
    assert [c.name for c in survey_channels(ENERGY[low], _survey(0.0)[low])] == ["O-K-eels", "Mn-L23-eels"]


def test_blanked_background_subtracted_export_is_used_as_is():
    channel = CHANNELS["Mn-L23-eels"]
    energy = np.arange(450.0, 1000.0, 0.3)
    counts = 1000.0 * edge_shape(energy, expected_onset(channel) - 4.0)
    counts[energy < 600.0] = 0.0  # Gatan blanks everything before its fit window
    edge = process_edge(energy, counts, channel, source="Mn.msa")
    assert edge.background is None
    assert any("zero outside" in note for note in edge.notes)
    unshifted = process_edge(energy, 1000.0 * edge_shape(energy, expected_onset(channel)), channel, background="none")
    assert edge.alignment.shift - unshifted.alignment.shift == pytest.approx(4.0, abs=0.1)


def test_edge_outside_the_file_is_refused_with_the_reason():
    energy = np.arange(803.0, 1055.0, 0.3)
    with pytest.raises(InputError, match=r"Co.msa \(Co-L23-eels\): data span 803.0..1054.7 eV .* the edge is not in this file"):
        process_edge(energy, np.ones_like(energy), "Co-L23-eels", source="Co.msa")
    with pytest.raises(InputError, match="unknown channel 'Co-L2-eels'"):
        process_edge(energy, np.ones_like(energy), "Co-L2-eels", source="Co.msa")


@needs_experimental
def test_measured_survey_is_cut_into_four_channels_consistent_with_the_single_edge_files():
    zlp = read_measured(EXPERIMENTAL / "zero_loss.msa")
    centre = fit_zero_loss(zlp.energy, zlp.intensity).centre
    assert -4.0 < centre < -2.5
    survey = read_measured(EXPERIMENTAL / "tm_o_survey.msa")
    edges, skipped = cut_survey(survey.energy - centre, survey.intensity, source="tm_o_survey.msa")
    assert list(edges) == list(EELS) and skipped == {}
    for edge in edges.values():
        assert edge.background is not None and 1.0 < edge.background.r < 7.0  # a real power law
        assert 5.0 < edge.alignment.shift < 25.0  # this spectrometer reads 10-20 eV low
    spectra_on_grids({name: edge.spectrum() for name, edge in edges.items()})
    # the single-edge exports are background-subtracted already and must align the same way
    for file, name in (("oxygen_edge.msa", "O-K-eels"), ("Mn_edge.msa", "Mn-L23-eels"), ("Ni_edge.msa", "Ni-L23-eels")):
        single = read_measured(EXPERIMENTAL / file)
        edge = process_edge(single.energy - centre, single.intensity, name, source=file)
        assert edge.background is None
        assert edge.alignment.shift == pytest.approx(edges[name].alignment.shift, abs=0.3)


@needs_experimental
def test_measured_co_file_lacks_the_co_l3_edge():
    co = read_measured(EXPERIMENTAL / "Co_edge.msa")
    with pytest.raises(InputError, match="the edge is not in this file"):
        process_edge(co.energy, co.intensity, "Co-L23-eels", source="Co_edge.msa")
