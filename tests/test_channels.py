import numpy as np
import pytest

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, channels_for_element, get_channel, normalise, to_channel_grid

EXPECTED = {
    "Li-K-xas", "O-K-xas", "O-K-eels", "Mn-K-xas", "Co-K-xas", "Ni-K-xas",
    "Mn-L3-xas", "Co-L3-xas", "Ni-L3-xas", "Mn-L3-eels", "Co-L3-eels", "Ni-L3-eels",
}


def test_the_twelve_channels_are_named_element_edge_modality():
    assert set(CHANNEL_NAMES) == EXPECTED
    for name, ch in CHANNELS.items():
        assert name == f"{ch.element}-{ch.edge}-{ch.modality}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_grid_is_absolute_and_brackets_the_edge(name):
    ch = CHANNELS[name]
    grid = ch.grid
    assert len(grid) == ch.n_energy == 121
    assert np.allclose(np.diff(grid), ch.step)
    assert grid[0] == pytest.approx(ch.edge_energy + ch.start)
    assert grid[-1] == pytest.approx(ch.edge_energy + ch.stop)
    # absolute energies: the tabulated edge lies inside the window (within a few eV of its start)
    assert grid[0] - 16 < ch.edge_energy < grid[-1]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_normalised_spectrum_has_unit_mean(name):
    ch = CHANNELS[name]
    energy = np.linspace(ch.grid[0] - 20, ch.grid[-1] + 20, 300)
    intensity = 5.0 + 0.05 * (energy - ch.edge_energy)
    y = to_channel_grid(ch, energy, intensity)
    assert y.shape == (121,)
    assert np.mean(y) == pytest.approx(1.0)
    # shape preserved: ratio to the direct evaluation is constant
    direct = 5.0 + 0.05 * (ch.grid - ch.edge_energy)
    assert np.allclose(y / direct, y[0] / direct[0])


def test_shift_moves_spectrum_on_grid():
    ch = get_channel("Ni-K-xas")
    energy = ch.grid.copy()
    peak = np.exp(-0.5 * ((energy - (ch.edge_energy + 10)) / 1.0) ** 2) + 0.1
    shifted = to_channel_grid(ch, energy, peak, shift=5.0)
    assert ch.grid[np.argmax(shifted)] == pytest.approx(ch.edge_energy + 15, abs=0.6)


def test_unknown_channel_lists_known_names():
    with pytest.raises(KeyError, match="Ni-K-xas"):
        get_channel("Fe-K-xas")


def test_non_positive_spectrum_cannot_be_normalised():
    with pytest.raises(ValueError, match="Ni-K-xas"):
        normalise(get_channel("Ni-K-xas"), np.zeros(121))


def test_channels_for_element():
    assert [c.name for c in channels_for_element("O")] == ["O-K-xas", "O-K-eels"]
    assert [c.name for c in channels_for_element("Ni")] == ["Ni-K-xas", "Ni-L3-xas", "Ni-L3-eels"]
    assert channels_for_element("Fe") == []
