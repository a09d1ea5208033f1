import numpy as np
import pytest
from fixtures.synthetic import edge_shape, zero_loss

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.measured.alignment import (
    ONSET_OFFSETS_EV,
    align_to_onset,
    align_to_reference,
    calibrate_onsets,
    expected_onset,
    fit_zero_loss,
    leading_edge,
    locate_edge,
)


@pytest.mark.parametrize("centre", [-3.3, 0.0, 1.234])
def test_zero_loss_centre_recovered_within_0p1_ev(centre):
    energy = np.arange(-60.0, 100.0, 0.3)  # coarse 0.3 eV channels, as in the measured data
    counts = zero_loss(energy, centre, fwhm=1.5)
    counts = counts + np.random.default_rng(0).normal(0.0, 200.0, energy.size)
    fit = fit_zero_loss(energy, counts)
    assert abs(fit.centre - centre) < 0.1
    assert fit.fwhm == pytest.approx(1.5, abs=0.2)


def test_zero_loss_missing_is_an_input_error():
    energy = np.arange(400.0, 600.0, 0.5)
    with pytest.raises(InputError, match="no zero-loss peak within 20 eV of 0 eV"):
        fit_zero_loss(energy, np.ones_like(energy), source="core.msa")


def test_every_channel_has_an_expected_onset_near_its_edge():
    assert set(ONSET_OFFSETS_EV) == set(CHANNELS)
    for name, channel in CHANNELS.items():
        onset = expected_onset(name)
        assert channel.grid[0] < onset < channel.grid[0] + 20  # on the grid's leading part


def test_leading_edge_is_the_half_height_of_the_first_peak():
    energy = np.arange(800.0, 900.0, 0.05)
    peak = 1.0 / (1.0 + ((energy - 850.0) / 1.0) ** 2)  # Lorentzian, HWHM 1 eV
    assert leading_edge(energy, peak, smooth=0.0) == pytest.approx(849.0, abs=0.05)


@pytest.mark.parametrize("name, shift", [("Ni-L3-eels", -17.3), ("O-K-eels", 6.8), ("Co-K-xas", -2.25)])
def test_onset_alignment_recovers_a_known_shift(name, shift):
    channel = CHANNELS[name]
    energy = np.arange(channel.grid[0] - 60, channel.grid[-1] + 40, 0.3)
    onset = expected_onset(channel)
    true = edge_shape(energy, onset)
    moved = edge_shape(energy, onset + shift)
    a_true = align_to_onset(energy, true, channel, locate_edge(energy, true, onset))
    a_moved = align_to_onset(energy, moved, channel, locate_edge(energy, moved, onset))
    assert a_moved.shift - a_true.shift == pytest.approx(-shift, abs=0.1)
    assert a_moved.method == "onset" and a_moved.target == pytest.approx(onset)


@pytest.mark.parametrize("shift", [-4.37, 2.9])
def test_reference_alignment_recovers_a_known_shift(shift):
    channel = CHANNELS["Mn-L3-eels"]
    energy = np.arange(580.0, 720.0, 0.3)
    onset = expected_onset(channel)
    reference = edge_shape(energy, onset) + 0.3 * edge_shape(energy, onset + 11.0)  # L3 and L2
    measured = edge_shape(energy, onset - shift) + 0.3 * edge_shape(energy, onset - shift + 11.0)
    noisy = measured + np.random.default_rng(1).normal(0.0, 0.02, energy.size)
    result = align_to_reference(energy, noisy, channel, energy, reference, initial=0.0, max_shift=8.0)
    assert result.shift == pytest.approx(shift, abs=0.1)
    assert result.method == "reference" and result.score > 0.95


def test_locate_edge_outside_the_data_is_an_input_error():
    energy = np.arange(400.0, 600.0, 0.3)
    with pytest.raises(InputError, match="the edge expected near 855.9 eV"):
        locate_edge(energy, np.ones_like(energy), expected_onset("Ni-L3-eels"), source="O.msa")


def test_calibrate_onsets_reproduces_a_known_onset():
    channel = CHANNELS["Ni-K-xas"]
    energy = np.arange(8320.0, 8400.0, 0.2)
    peak = 1.0 / (1.0 + ((energy - (channel.edge_energy + 10.0)) / 4.0) ** 2)  # half height 4 eV below
    offsets = calibrate_onsets([("Ni-K-xas", energy, peak), ("Ni-K-xas", energy + 1.0, peak)])
    assert offsets == {"Ni-K-xas": pytest.approx(6.5, abs=0.1)}  # median of +6 and +7 eV
