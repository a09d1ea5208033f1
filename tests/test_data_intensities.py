"""Edge intensities of FEFF site spectra: integration window, k-factors from standards, environment amounts."""

import numpy as np
import pytest

from gnnspec.channels import CHANNELS
from gnnspec.data.intensities import INTEGRATION_WINDOW_EV, environment_amounts, fit_k_factors, integrated_intensity


def _edge(channel: str, height: float) -> dict:
    """A raw site spectrum: a step of ``height`` at the edge on FEFF's absolute energies, 0.25 eV apart."""
    ch = CHANNELS[channel]
    energy = np.arange(ch.edge_energy - 10.0, ch.edge_energy + 70.0, 0.25)
    return {"energy": energy, "intensity": height * (energy >= ch.edge_energy)}


def test_integral_covers_the_window_from_the_channel_start():
    r = _edge("O-K-eels", 2.0)
    start = CHANNELS["O-K-eels"].edge_energy + CHANNELS["O-K-eels"].start
    expected = 2.0 * (start + INTEGRATION_WINDOW_EV - CHANNELS["O-K-eels"].edge_energy)
    assert integrated_intensity(r["energy"], r["intensity"], "O-K-eels") == pytest.approx(expected, abs=0.5)
    with pytest.raises(ValueError, match="misses the integration window"):
        integrated_intensity(np.array([1.0, 2.0]), np.array([1.0, 1.0]), "O-K-eels")


def test_amounts_of_an_environment_are_atom_counts_when_each_atom_gives_its_k_factor():
    # standards: O atoms give 3 units per atom, Ni atoms 5 (each element its own absolute scale)
    standards = [
        {(0, "O-K-eels"): 3.0, (1, "O-K-eels"): 3.0, (2, "Ni-L3-eels"): 5.0, (2, "Ni-K-xas"): 40.0},
        {(0, "O-K-eels"): 3.3, (1, "Ni-L3-eels"): 5.0, (1, "Ni-K-xas"): 44.0},
    ]
    k = fit_k_factors(standards)
    assert k["O-K-eels"]["k"] == pytest.approx(3.1) and k["O-K-eels"]["sites"] == 3
    assert k["Ni-K-xas"]["cv"] == pytest.approx(2.0 / 42.0)
    # an environment of 4 O and 2 Ni atoms (and a Li atom whose spectra are not asked for)
    integrals = {(i, "O-K-eels"): 3.1 for i in range(4)} | {(i, "Ni-L3-eels"): 5.0 for i in (4, 5)}
    integrals |= {(i, "Ni-K-xas"): 42.0 for i in (4, 5)} | {(6, "Li-K-xas"): 1.0}
    amounts = environment_amounts(integrals, range(7), ["O-K-eels", "Ni-L3-eels", "Ni-K-xas"], k)
    assert amounts == pytest.approx({"O": 4.0, "Ni": 2.0})
    with pytest.raises(KeyError, match="no k-factor for channel Li-K-xas"):
        environment_amounts(integrals, range(7), ["Li-K-xas"], k)
