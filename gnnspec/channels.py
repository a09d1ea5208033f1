"""Spectral channels: the physics of every spectrum gnnspec handles, in one place.

A channel is named ``"{element}-{edge}-{modality}"`` (for example ``"Ni-L3-eels"``) and fixes

* the absorbing element and the core edge (``K`` or ``L3``),
* the modality: ``xas`` (X-ray absorption) or ``eels`` (electron energy-loss),
* the energy grid: absolute energies in eV, ``edge_energy + arange(start, stop + step/2, step)``,
  where ``edge_energy`` is the tabulated edge energy (eV) and ``start``/``stop``/``step`` are
  relative to it. FEFF10's absolute energies sit a few eV away from the tabulated edges
  (its Fermi level and core-hole shifts); the windows are wide enough to hold the FEFF spectrum
  and an aligned measured one.
* the normalisation rule applied after regridding (see :func:`normalise`).

Adding a channel (another element, edge or modality) means adding one entry to ``CHANNELS``.
Energies are in eV throughout; positions in Angstrom.
"""

from __future__ import annotations

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
}

MODALITIES = ("xas", "eels")
EDGES = ("K", "L3")

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
        if (self.element, self.edge) not in EDGE_ENERGIES_EV:
            raise ValueError(f"no tabulated edge energy for {self.element} {self.edge}")

    @property
    def name(self) -> str:
        return f"{self.element}-{self.edge}-{self.modality}"

    @property
    def edge_energy(self) -> float:
        """Tabulated edge energy in eV."""
        return EDGE_ENERGIES_EV[(self.element, self.edge)]

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


#: Every channel gnnspec knows, in a fixed order (model output heads follow this order).
#: Every grid has 121 points, 0.5 eV apart. Windows (relative to the tabulated edge) were
#: chosen inside the energy range FEFF10 "fast" XANES/ELNES runs cover for NMC (measured:
#: Li K -1.8..+64.9 eV, O K -15.9..+50.8 eV, TM K -2.6..+65.5 eV, TM L3 -4.0..+64.1 eV).
CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        _ch("Li", "K", "xas", -1.0, 59.0, 0.5),
        _ch("O", "K", "xas", -15.0, 45.0, 0.5),
        _ch("O", "K", "eels", -15.0, 45.0, 0.5),
        _ch("Mn", "K", "xas", -2.0, 58.0, 0.5),
        _ch("Co", "K", "xas", -2.0, 58.0, 0.5),
        _ch("Ni", "K", "xas", -2.0, 58.0, 0.5),
        _ch("Mn", "L3", "xas", -3.0, 57.0, 0.5),
        _ch("Co", "L3", "xas", -3.0, 57.0, 0.5),
        _ch("Ni", "L3", "xas", -3.0, 57.0, 0.5),
        _ch("Mn", "L3", "eels", -3.0, 57.0, 0.5),
        _ch("Co", "L3", "eels", -3.0, 57.0, 0.5),
        _ch("Ni", "L3", "eels", -3.0, 57.0, 0.5),
    )
}

CHANNEL_NAMES: tuple[str, ...] = tuple(CHANNELS)


def get_channel(name: str) -> Channel:
    """The channel called ``name``; a ``KeyError`` lists the known names."""
    try:
        return CHANNELS[name]
    except KeyError:
        raise KeyError(f"unknown channel {name!r}; known channels: {', '.join(CHANNEL_NAMES)}") from None


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
