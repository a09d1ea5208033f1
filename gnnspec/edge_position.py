"""The edge position of a spectrum: the half-step energy, defined once.

An absorption edge's energy moves with the absorber's oxidation state (Mn K rises by 5-9 eV
from MnO to the Mn(IV) oxides; the Ni K edge of NMC rises by 3.3-3.6 eV on charging), so its
position is a measured quantity of its own, beside the spectrum's shape. gnnspec takes it as
the **half-step energy**: the energy where the absorption, counted from its value at the
channel window's first point, first reaches half of its mean 30-55 eV above the tabulated edge
energy, interpolated linearly between grid points (:func:`half_step_energy`). The same rule
serves FEFF spectra, the forward model's and measured ones, so their differences are
differences of spectra, not of definitions.

The rule fits a step-like edge: the K edges of the transition metals (:data:`STEP_EDGE_CHANNELS`),
whose pre-edge peaks are a few per cent of the step. It is not used for O K (its pre-edge peaks
from O 2p-TM 3d hybridisation reach the height of the step), Li K (a weak edge on a sloping
background) or L2,3 (two white lines over a small step: their peak energies, not a half step,
carry the chemistry).

Energies are absolute eV on the scale of the spectrum given: a prediction's edge lies on FEFF's
scale of the model's tier, a few eV from a calibrated measurement (:mod:`gnnspec.edge_offsets`).
"""

from __future__ import annotations

import numpy as np

#: Channels whose half-step energy gnnspec reports: the K edges of the transition metals.
STEP_EDGE_CHANNELS: tuple[str, ...] = ("Mn-K-xas", "Co-K-xas", "Ni-K-xas")
#: The window (eV above the tabulated edge) whose mean absorption is the step's top.
STEP_TOP_WINDOW_EV: tuple[float, float] = (30.0, 55.0)
DEFINITION = (
    "half-step energy: where the absorption, from its value at the window's first point, first reaches half of its "
    "mean 30-55 eV above the tabulated edge (gnnspec.edge_position)"
)


def half_step_energy(grid: np.ndarray, y: np.ndarray, edge_energy: float) -> float:
    """Energy (eV) where ``y`` on ``grid`` first reaches half way from its first value to its mean
    30-55 eV above ``edge_energy`` (linear interpolation); ``grid[0]`` when it starts above half way,
    NaN when it never gets there or does not rise at all."""
    lo, hi = STEP_TOP_WINDOW_EV
    post = (grid >= edge_energy + lo) & (grid <= edge_energy + hi)
    if not post.any():
        raise ValueError(f"the grid ({grid[0]:.1f}-{grid[-1]:.1f} eV) does not reach {lo:.0f}-{hi:.0f} eV above the edge at {edge_energy:.1f} eV")
    rise = y[post].mean() - y[0]
    if not rise > 0:  # no rising step (or not a number): no edge to place
        return float("nan")
    z = (y - y[0]) / rise
    reached = z >= 0.5
    if not reached.any():
        return float("nan")
    i = int(np.argmax(reached))
    if i == 0:
        return float(grid[0])
    return float(grid[i - 1] + (0.5 - z[i - 1]) * (grid[i] - grid[i - 1]) / (z[i] - z[i - 1]))
