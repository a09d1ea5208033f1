"""Spectral channels: the physics of every spectrum gnnspec handles, in one place.

A channel is named ``"{element}-{edge}-{modality}"`` (for example ``"Ni-L3-eels"``) and fixes

* the absorbing element and the core edge: ``K``, ``L23`` (the L3 and L2 edges together, as
  every measured L2,3 spectrum holds them) or ``L3`` (the L3 run alone: readable for datasets
  and models made before the L2,3 channels, not a default),
* the modality: ``xas`` (X-ray absorption) or ``eels`` (electron energy-loss),
* the energy grid: absolute energies in eV, ``edge_energy + arange(start, stop + step/2, step)``,
  where ``edge_energy`` is the tabulated edge energy (eV) and ``start``/``stop``/``step`` are
  relative to it. FEFF10's absolute energies sit a few eV away from the tabulated edges
  (its Fermi level and core-hole shifts); the windows are wide enough to hold the FEFF spectrum
  and an aligned measured one.
* the normalisation rule applied after regridding (see :func:`normalise`).

A channel is assembled from one or more FEFF runs (:attr:`Channel.runs`): the raw spectrum of a
K or L3 channel is the spectrum of one run; an L2,3 channel is the raw (absolute-unit) L3 run
plus the raw L2 run of the same site, each on its own absolute FEFF energy axis, summed on the
channel grid (:func:`assemble`). Raw runs are named like channels, ``"{element}-{edge}-{modality}"``
with edge ``K``, ``L3`` or ``L2`` (:data:`RUN_NAMES`); datasets store raw runs, never assembled
channels.

Adding a channel (another element, edge or modality) means adding one entry to ``CHANNELS``.
Energies are in eV throughout; positions in Angstrom.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Tabulated core-level binding energies (eV), Williams' table of electron binding energies
#: (X-ray Data Booklet, section 1.1).
EDGE_ENERGIES_EV: dict[tuple[str, str], float] = {
    ("Li", "K"): 54.7,
    ("O", "K"): 543.1,
    ("Mn", "K"): 6539.0,
    ("Co", "K"): 7709.0,
    ("Ni", "K"): 8333.0,
    ("Mn", "L3"): 638.7,
    ("Co", "L3"): 778.1,
    ("Ni", "L3"): 852.7,
    ("Mn", "L2"): 649.9,
    ("Co", "L2"): 793.2,
    ("Ni", "L2"): 870.0,
}

MODALITIES = ("xas", "eels")
#: Channel edges and the FEFF runs (edges) each is assembled from, lowest energy first.
EDGE_RUNS: dict[str, tuple[str, ...]] = {"K": ("K",), "L3": ("L3",), "L23": ("L3", "L2")}
EDGES = tuple(EDGE_RUNS)

#: Normalisation rules. ``area``: divide by the mean intensity over the whole grid, so every
#: normalised spectrum has unit mean (robust for spectra that FEFF computes only up to a few
#: tens of eV above the edge, where no flat post-edge region exists).
NORMALISATIONS = ("area",)


@dataclass(frozen=True)
class Channel:
    """One spectral channel: absorber element, edge, modality, energy grid and normalisation."""

    element: str
    edge: str
    modality: str
    start: float  # eV relative to the tabulated edge energy
    stop: float  # eV relative to the tabulated edge energy (inclusive)
    step: float  # eV
    normalisation: str = "area"

    def __post_init__(self) -> None:
        if self.edge not in EDGES:
            raise ValueError(f"unknown edge {self.edge!r}; known: {EDGES}")
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; known: {MODALITIES}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}")
        for run_edge in EDGE_RUNS[self.edge]:
            if (self.element, run_edge) not in EDGE_ENERGIES_EV:
                raise ValueError(f"no tabulated edge energy for {self.element} {run_edge}")

    @property
    def name(self) -> str:
        return f"{self.element}-{self.edge}-{self.modality}"

    @property
    def edge_energy(self) -> float:
        """Tabulated energy (eV) of the channel's lowest edge (L3 for an L2,3 channel): the grid's origin."""
        return EDGE_ENERGIES_EV[(self.element, EDGE_RUNS[self.edge][0])]

    @property
    def runs(self) -> tuple[str, ...]:
        """Names of the raw FEFF run spectra the channel is assembled from, lowest edge first."""
        return tuple(f"{self.element}-{e}-{self.modality}" for e in EDGE_RUNS[self.edge])

    @property
    def n_energy(self) -> int:
        return int(round((self.stop - self.start) / self.step)) + 1

    @property
    def grid(self) -> np.ndarray:
        """Absolute energies (eV) of the channel grid."""
        return self.edge_energy + self.start + self.step * np.arange(self.n_energy)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "element": self.element,
            "edge": self.edge,
            "modality": self.modality,
            "start": self.start,
            "stop": self.stop,
            "step": self.step,
            "edge_energy": self.edge_energy,
            "normalisation": self.normalisation,
        }


def _ch(element: str, edge: str, modality: str, start: float, stop: float, step: float) -> Channel:
    return Channel(element, edge, modality, start, stop, step)


#: Every channel gnnspec knows, in a fixed order. Every grid has 121 points, 0.5 eV apart.
#: K and L3 windows (relative to the tabulated edge) lie inside the energy range FEFF10 "fast"
#: XANES/ELNES runs cover for NMC (measured: Li K -1.8..+64.9 eV, O K -15.9..+50.8 eV,
#: TM K -2.6..+65.5 eV, TM L3 -4.0..+64.1 eV). L2,3 windows run from 5 eV below to 55 eV above
#: the tabulated L3 edge: both white lines (the L3-L2 spin-orbit splitting is 11.2 eV for Mn,
#: 15.1 eV for Co and 17.3 eV for Ni) and 38-44 eV of continuum after L2.
CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        _ch("Li", "K", "xas", -1.0, 59.0, 0.5),
        _ch("O", "K", "xas", -15.0, 45.0, 0.5),
        _ch("O", "K", "eels", -15.0, 45.0, 0.5),
        _ch("Mn", "K", "xas", -2.0, 58.0, 0.5),
        _ch("Co", "K", "xas", -2.0, 58.0, 0.5),
        _ch("Ni", "K", "xas", -2.0, 58.0, 0.5),
        _ch("Mn", "L23", "xas", -5.0, 55.0, 0.5),
        _ch("Co", "L23", "xas", -5.0, 55.0, 0.5),
        _ch("Ni", "L23", "xas", -5.0, 55.0, 0.5),
        _ch("Mn", "L23", "eels", -5.0, 55.0, 0.5),
        _ch("Co", "L23", "eels", -5.0, 55.0, 0.5),
        _ch("Ni", "L23", "eels", -5.0, 55.0, 0.5),
        _ch("Mn", "L3", "xas", -3.0, 57.0, 0.5),
        _ch("Co", "L3", "xas", -3.0, 57.0, 0.5),
        _ch("Ni", "L3", "xas", -3.0, 57.0, 0.5),
        _ch("Mn", "L3", "eels", -3.0, 57.0, 0.5),
        _ch("Co", "L3", "eels", -3.0, 57.0, 0.5),
        _ch("Ni", "L3", "eels", -3.0, 57.0, 0.5),
    )
}

CHANNEL_NAMES: tuple[str, ...] = tuple(CHANNELS)
#: The L3-only channels of datasets and models made before the L2,3 channels: still readable.
LEGACY_CHANNELS: tuple[str, ...] = tuple(n for n, c in CHANNELS.items() if c.edge == "L3")
#: The channels new datasets and models use: every channel but the legacy L3-only ones.
DEFAULT_CHANNELS: tuple[str, ...] = tuple(n for n in CHANNEL_NAMES if n not in LEGACY_CHANNELS)
#: Every raw FEFF run spectrum a dataset may store, named ``"{element}-{edge}-{modality}"``.
RUN_NAMES: tuple[str, ...] = tuple(dict.fromkeys(r for c in CHANNELS.values() for r in c.runs))


def get_channel(name: str) -> Channel:
    """The channel called ``name``; a ``KeyError`` lists the known names."""
    try:
        return CHANNELS[name]
    except KeyError:
        raise KeyError(f"unknown channel {name!r}; known channels: {', '.join(CHANNEL_NAMES)}") from None


def run_edge(run: str) -> tuple[str, str, str]:
    """``"Mn-L2-eels"`` -> ``("Mn", "L2", "eels")``; a ``KeyError`` for an unknown run name."""
    if run not in RUN_NAMES:
        raise KeyError(f"unknown FEFF run spectrum {run!r}; known: {', '.join(RUN_NAMES)}")
    element, edge, modality = run.split("-")
    return element, edge, modality


def channels_for_element(element: str) -> list[Channel]:
    """Channels whose absorber is ``element`` (empty for elements without a channel)."""
    return [c for c in CHANNELS.values() if c.element == element]


def absorber_elements() -> list[str]:
    """Elements that absorb in at least one channel, in channel order."""
    return list(dict.fromkeys(c.element for c in CHANNELS.values()))


def normalise(channel: Channel, intensity: np.ndarray) -> np.ndarray:
    """Apply the channel's normalisation rule to an intensity on its grid."""
    intensity = np.asarray(intensity, dtype=np.float64)
    if channel.normalisation == "area":
        scale = float(np.mean(intensity))
        if not np.isfinite(scale) or scale <= 0.0:
            raise ValueError(f"{channel.name}: spectrum has non-positive mean intensity; cannot normalise")
        return intensity / scale
    raise ValueError(f"unknown normalisation {channel.normalisation!r}")


def to_channel_grid(channel: Channel, energy: np.ndarray, intensity: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Interpolate a spectrum (absolute eV) onto the channel grid and normalise it.

    ``shift`` (eV) is added to ``energy`` first (energy alignment). Grid points outside the
    spectrum's range take the nearest end value's intensity (flat extrapolation).
    """
    energy = np.asarray(energy, dtype=np.float64) + shift
    intensity = np.asarray(intensity, dtype=np.float64)
    on_grid = np.interp(channel.grid, energy, intensity)
    return normalise(channel, on_grid)


def assemble(channel: Channel, runs: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """The raw (unnormalised) intensity of ``channel`` on its grid from its runs' raw spectra.

    ``runs`` maps run names (:attr:`Channel.runs`) to ``(energy, intensity)`` on FEFF's absolute
    energy axis (eV). Each run is interpolated onto the grid and the runs are summed. The lowest
    run (K or L3) is extended flat beyond its ends, as a single-run channel is; a higher run
    (L2) contributes nothing below its first energy (no L2 absorption below the L2 edge) and
    is extended flat above its last. Returns None when a run is missing.
    """
    if not all(r in runs for r in channel.runs):
        return None
    grid = channel.grid
    total = np.zeros_like(grid)
    for k, name in enumerate(channel.runs):
        energy, intensity = (np.asarray(a, dtype=np.float64) for a in runs[name])
        total += np.interp(grid, energy, intensity, left=intensity[0] if k == 0 else 0.0)
    return total


def normalised_channels(runs: dict[str, tuple[np.ndarray, np.ndarray]], channels: Iterable[str]) -> dict[str, np.ndarray]:
    """The spectra a model learns: each channel of ``channels`` that ``runs`` make, assembled
    (:func:`assemble`) and normalised (:func:`normalise`) on its grid."""
    out = {}
    for name in channels:
        raw = assemble(CHANNELS[name], runs)
        if raw is not None:
            out[name] = normalise(CHANNELS[name], raw)
    return out


def assemble_channels(
    runs: dict[str, tuple[np.ndarray, np.ndarray]], channels: Iterable[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The raw spectra ``(energy eV, intensity)`` of every channel (of ``channels``, default all) that
    the run spectra ``runs`` make: a one-run channel is its run on FEFF's own axis, an L2,3 channel
    the sum of its runs on its grid (:func:`assemble`)."""
    out = {}
    for name in CHANNEL_NAMES if channels is None else channels:
        ch = get_channel(name)
        if not all(r in runs for r in ch.runs):
            continue
        out[name] = runs[ch.runs[0]] if len(ch.runs) == 1 else (ch.grid, assemble(ch, runs))
    return out
