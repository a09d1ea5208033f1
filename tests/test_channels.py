import numpy as np
import pytest

from gnnspec.channels import (
    CHANNEL_NAMES,
    CHANNELS,
    DEFAULT_CHANNELS,
    LEGACY_CHANNELS,
    RUN_NAMES,
    assemble,
    channels_for_element,
    get_channel,
    normalise,
    to_channel_grid,
)

DEFAULT = {
    "Li-K-xas", "O-K-xas", "O-K-eels", "Mn-K-xas", "Co-K-xas", "Ni-K-xas",
    "Mn-L23-xas", "Co-L23-xas", "Ni-L23-xas", "Mn-L23-eels", "Co-L23-eels", "Ni-L23-eels",
}
LEGACY = {"Mn-L3-xas", "Co-L3-xas", "Ni-L3-xas", "Mn-L3-eels", "Co-L3-eels", "Ni-L3-eels"}
EXPECTED = DEFAULT | LEGACY


def test_channels_are_named_element_edge_modality_and_l23_is_the_default():
    assert set(CHANNEL_NAMES) == EXPECTED
    assert set(DEFAULT_CHANNELS) == DEFAULT and set(LEGACY_CHANNELS) == LEGACY
    for name, ch in CHANNELS.items():
        assert name == f"{ch.element}-{ch.edge}-{ch.modality}"
    assert CHANNELS["Ni-L23-eels"].runs == ("Ni-L3-eels", "Ni-L2-eels")
    assert set(RUN_NAMES) == (EXPECTED - DEFAULT | LEGACY | {n.replace("L23", "L2") for n in DEFAULT if "L23" in n}) | (DEFAULT - {n for n in DEFAULT if "L23" in n})


@pytest.mark.parametrize("tm, splitting", [("Mn", 11.2), ("Co", 15.1), ("Ni", 17.3)])
def test_l23_grid_holds_both_white_lines_and_the_continuum_after_l2(tm, splitting):
    ch = CHANNELS[f"{tm}-L23-eels"]
    l3 = ch.edge_energy
    assert ch.grid[0] <= l3 - 5 and ch.grid[-1] >= l3 + 55
    assert ch.grid[-1] - (l3 + splitting) > 35  # continuum after the L2 white line


def test_l23_channel_is_the_raw_sum_of_an_l3_and_an_l2_run_each_on_its_own_axis():
    ch = CHANNELS["Ni-L23-xas"]
    def line(e, e0, h):
        return h * np.exp(-0.5 * ((e - e0) / 0.8) ** 2) + 0.1 * h / (1 + np.exp(-(e - e0) / 0.5))
    e3 = np.arange(848.0, 915.0, 0.37)  # FEFF-like axes: different starts and steps
    e2 = np.arange(866.0, 933.0, 0.41)
    y3, y2 = line(e3, 853.5, 2.0), line(e2, 870.8, 1.0)
    raw = assemble(ch, {"Ni-L3-xas": (e3, y3), "Ni-L2-xas": (e2, y2)})
    grid = ch.grid
    # positions kept: the two white lines sit where each run put them, 17.3 eV apart
    assert grid[np.argmax(raw)] == pytest.approx(853.5, abs=0.5)
    upper = grid > 862
    assert grid[upper][np.argmax(raw[upper])] == pytest.approx(870.8, abs=0.5)
    # intensities kept: the raw sum, no rescaling of either run; L2 adds nothing below its axis
    assert np.allclose(raw, np.interp(grid, e3, y3) + np.interp(grid, e2, y2, left=0.0))
    assert np.allclose(raw[grid < 866.0], np.interp(grid[grid < 866.0], e3, y3))
    assert (raw - np.interp(grid, e3, y3))[upper].max() == pytest.approx(y2.max(), rel=0.05)
    assert raw.max() == pytest.approx(y3.max(), rel=0.05)
    assert assemble(ch, {"Ni-L3-xas": (e3, y3)}) is None  # an L2,3 channel needs both runs


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
    assert ch.edge_energy == pytest.approx({"K": 0, "L3": 0, "L23": 0}[ch.edge] + ch.grid[0] - ch.start)


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
    assert [c.name for c in channels_for_element("Ni")] == ["Ni-K-xas", "Ni-L23-xas", "Ni-L23-eels", "Ni-L3-xas", "Ni-L3-eels"]
    assert channels_for_element("Fe") == []
