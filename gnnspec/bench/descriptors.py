"""A rotation-invariant structural descriptor of an absorbing site, for classical baselines.

For every neighbour element of :data:`NEIGHBOUR_ELEMENTS`, a Gaussian-smeared radial
distribution histogram of the neighbours' distances to the absorber (0.8-6.0 Angstrom,
0.1 A bins, smearing 0.1 A, periodic images included). Invariant to rotation, translation,
reflection and atom order by construction.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

NEIGHBOUR_ELEMENTS = ("Li", "O", "Mn", "Co", "Ni")
R_MIN, R_MAX, BIN, SMEAR = 0.8, 6.0, 0.1, 0.1
CENTRES = np.arange(R_MIN, R_MAX + 1e-9, BIN)


def site_descriptors(structure: Structure, sites: list[int]) -> np.ndarray:
    """Descriptors ``[len(sites), 5 * n_bins]`` of the given absorbing sites."""
    centre, neighbour, _, dist = structure.get_neighbor_list(R_MAX + 3 * SMEAR, sites=[structure[i] for i in sites])
    symbols = np.array([s.specie.symbol for s in structure])
    out = np.zeros((len(sites), len(NEIGHBOUR_ELEMENTS), len(CENTRES)))
    keep = dist > 1e-6
    centre, neighbour, dist = centre[keep], neighbour[keep], dist[keep]
    gauss = np.exp(-0.5 * ((dist[:, None] - CENTRES[None, :]) / SMEAR) ** 2)
    for e, el in enumerate(NEIGHBOUR_ELEMENTS):
        sel = symbols[neighbour] == el
        np.add.at(out[:, e], centre[sel], gauss[sel])
    return out.reshape(len(sites), -1)
