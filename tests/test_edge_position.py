"""The half-step edge position: a known step, a step never reached, a grid too short."""

import numpy as np
import pytest

from gnnspec.channels import CHANNELS
from gnnspec.edge_position import STEP_EDGE_CHANNELS, half_step_energy


def test_half_step_of_a_known_step_and_its_pre_edge_peak():
    ch = CHANNELS["Mn-K-xas"]
    grid = ch.grid
    step = 1.0 / (1.0 + np.exp(-(grid - 6548.0) / 0.8))
    assert half_step_energy(grid, step, ch.edge_energy) == pytest.approx(6548.0, abs=0.05)
    # a pre-edge peak of a tenth of the step, 8 eV below, does not move it
    peaked = step + 0.1 * np.exp(-0.5 * ((grid - 6540.0) / 0.7) ** 2)
    assert half_step_energy(grid, peaked, ch.edge_energy) == pytest.approx(6548.0, abs=0.05)
    # the same step 3.5 eV higher is found 3.5 eV higher
    assert half_step_energy(grid, 1.0 / (1.0 + np.exp(-(grid - 6551.5) / 0.8)), ch.edge_energy) == pytest.approx(6551.5, abs=0.05)


def test_a_step_never_reached_is_nan_and_a_short_grid_is_refused():
    ch = CHANNELS["Ni-K-xas"]
    falling = np.linspace(2.0, 1.0, len(ch.grid))
    assert np.isnan(half_step_energy(ch.grid, falling, ch.edge_energy))
    with pytest.raises(ValueError, match="does not reach"):
        half_step_energy(ch.grid[:40], np.ones(40), ch.edge_energy)
    assert all(CHANNELS[c].edge == "K" for c in STEP_EDGE_CHANNELS)
