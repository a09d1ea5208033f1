import numpy as np
import pytest
from fixtures.synthetic import edge_shape, power_law

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.measured.background import fit_linear, fit_power_law, normalise_intensity, remove_background


def test_power_law_background_removed_before_a_step():
    energy = np.arange(700.0, 960.0, 0.3)
    edge = 855.0
    background = power_law(energy, amplitude=4e12, r=3.2)
    step = 0.1 * power_law(np.array([edge]), 4e12, 3.2)[0]
    signal = step * (energy > edge)  # a sharp step, 10% of the background at the edge
    counts = background + signal
    noisy = counts + np.random.default_rng(2).normal(0.0, 1e-3 * counts.mean(), energy.size)

    result, fit, note = remove_background(energy, noisy, edge)
    assert fit is not None and fit.kind == "power-law"
    assert fit.r == pytest.approx(3.2, abs=0.05)
    assert fit.window == (805.0, 850.0)
    assert "power-law background fitted in 805.0..850.0 eV" in note
    pre = (energy > 810) & (energy < 850)
    post = (energy > 860) & (energy < 900)
    assert np.abs(result[pre]).mean() < 0.02 * step  # background gone before the edge
    assert result[post].mean() == pytest.approx(step, rel=0.05)  # the step survives


def test_auto_leaves_background_subtracted_data_alone():
    energy = np.arange(600.0, 700.0, 0.3)
    subtracted = np.random.default_rng(3).normal(0.0, 1.0, energy.size) + 50 * (energy > 640)
    result, fit, note = remove_background(energy, subtracted, 640.0)
    assert fit is None and "already background-subtracted" in note
    np.testing.assert_array_equal(result, subtracted)
    with pytest.raises(InputError, match="cannot be fitted"):
        remove_background(energy, subtracted, 640.0, kind="power-law", source="Mn.msa")


def test_auto_refuses_an_implausible_exponent():
    energy = np.arange(700.0, 900.0, 0.3)
    steep = power_law(energy, amplitude=1e60, r=20.0)
    _, fit, note = remove_background(energy, steep, 850.0)
    assert fit is None and "r = 20.00" in note


def test_linear_pre_edge_for_xas():
    energy = np.arange(8300.0, 8400.0, 0.5)
    counts = 0.2 + 1e-3 * (energy - 8300) + (energy > 8340.0)
    fit = fit_linear(energy, counts, (8300.0, 8330.0))
    assert fit.r == pytest.approx(1e-3, rel=0.05)
    result, fit2, _ = remove_background(energy, counts, 8340.0, modality="xas", window=(-40.0, -10.0))
    assert fit2.kind == "linear"
    assert np.abs(result[energy < 8340]).max() < 1e-9
    assert result[energy > 8340] == pytest.approx(1.0)


def test_power_law_window_outside_data():
    energy = np.arange(800.0, 900.0, 0.3)
    with pytest.raises(InputError, match="pre-edge window 700.0..750.0 eV holds 0 points"):
        fit_power_law(energy, np.ones_like(energy), (700.0, 750.0))


def test_normalisations():
    channel = CHANNELS["Ni-L3-eels"]
    energy = channel.grid
    signal = 3.0 * edge_shape(energy, 856.0) + 0.5
    area = normalise_intensity(energy, signal, channel, 856.0, "area")
    assert area.mean() == pytest.approx(1.0)
    step = normalise_intensity(energy, signal, channel, 856.0, "edge-step")
    assert step[energy < 854].mean() == pytest.approx(0.0, abs=0.05)
    assert step[energy >= energy[-1] - 10].mean() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="not positive"):
        normalise_intensity(energy, -signal, channel, 856.0, "area")
