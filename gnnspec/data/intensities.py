"""Edge intensities of FEFF spectra: the elemental quantification a measurement of an environment holds.

gnnspec's environment spectra are means of site spectra normalised to unit mean
(:mod:`gnnspec.structures.environments`, :mod:`gnnspec.channels`): their shapes, without their
intensities. A measurement of the same atoms records the **sum** of their spectra, so the
integrated intensity under each edge grows with the number of absorbers, and the elemental
quantification (:mod:`gnnspec.quantification`) can be read from it.

This module does that for FEFF spectra as the dataset stores them (raw intensities: ``eels.dat``
and ``xmu10.dat`` in absolute units for ELNES runs, ``xmu.dat`` edge-step normalised for K-edge
XANES runs; see the dataset README):

* the **integrated intensity** of a site spectrum in a channel is the trapezoid integral of its
  raw intensity over ``INTEGRATION_WINDOW_EV`` from the start of the channel window
  (``edge_energy + start``, :mod:`gnnspec.channels`);
* **k-factors**, as in EELS and EDX practice, come from standards of known composition: a
  channel's k-factor is the mean integrated intensity per absorbing atom over the site spectra
  of a standards dataset (:func:`fit_k_factors`). Their spread over the sites (the coefficient
  of variation, 1-3 % in the shipped dataset for every channel) is how much the per-atom
  intensity depends on the environment, the error floor of the method;
* an environment's **amount** of an element is the sum of its member atoms' integrated
  intensities divided by the k-factor, averaged over the element's channels present
  (:func:`environment_amounts`).

No label enters: the amounts come from the spectra alone, intensities included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from gnnspec.channels import CHANNELS

#: Integration window (eV) from the start of each channel's window.
INTEGRATION_WINDOW_EV = 50.0


def integrated_intensity(energy: np.ndarray, intensity: np.ndarray, channel: str) -> float:
    """Trapezoid integral of a raw site spectrum over the channel's integration window (intensity x eV)."""
    ch = CHANNELS[channel]
    lo = ch.edge_energy + ch.start
    energy, intensity = np.asarray(energy, dtype=np.float64), np.asarray(intensity, dtype=np.float64)
    keep = (energy >= lo) & (energy <= lo + INTEGRATION_WINDOW_EV)
    if keep.sum() < 2:
        raise ValueError(f"{channel}: the spectrum ({energy[0]:.1f}..{energy[-1]:.1f} eV) misses the integration window from {lo:.1f} eV")
    return float(np.trapezoid(intensity[keep], energy[keep]))


def site_integrals(raw: Mapping[tuple[int, str], Mapping]) -> dict[tuple[int, str], float]:
    """``{(site, channel): integrated intensity}`` of a structure's raw site spectra
    (:meth:`gnnspec.data.store.SpectraStore.spectra_of`: ``{(site, channel): {"energy", "intensity"}}``)."""
    return {key: integrated_intensity(r["energy"], r["intensity"], key[1]) for key, r in raw.items()}


def fit_k_factors(integrals: Iterable[Mapping[tuple[int, str], float]]) -> dict[str, dict[str, float]]:
    """Per channel: ``{"k": mean integrated intensity per absorbing atom, "cv": its relative spread, "sites": n}``
    over the site integrals of every standards structure given."""
    values: dict[str, list[float]] = {}
    for per_structure in integrals:
        for (_, channel), value in per_structure.items():
            values.setdefault(channel, []).append(value)
    out = {}
    for channel, v in values.items():
        arr = np.asarray(v)
        out[channel] = {"k": float(arr.mean()), "cv": float(arr.std() / arr.mean()), "sites": int(arr.size)}
    return out


def environment_amounts(
    integrals: Mapping[tuple[int, str], float], members: Iterable[int], channels: Iterable[str], k_factors: Mapping[str, Mapping]
) -> dict[str, float]:
    """``{element: amount}`` of one environment from its member atoms' integrated intensities.

    ``channels``: the environment's channels with spectra; each gives its element's amount as
    (sum over members of the integral) / k-factor, and an element's channels are averaged.
    """
    members = [int(m) for m in members]
    estimates: dict[str, list[float]] = {}
    for channel in channels:
        if channel not in k_factors:
            raise KeyError(f"no k-factor for channel {channel}: the standards hold none of its spectra")
        total = sum(integrals.get((m, channel), 0.0) for m in members)
        estimates.setdefault(CHANNELS[channel].element, []).append(total / k_factors[channel]["k"])
    return {element: float(np.mean(v)) for element, v in estimates.items()}
