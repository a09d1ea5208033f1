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

The same holds for a user's spectra with their intensities intact, such as the raw spectra of
every absorbing atom of a region from ``gnnspec simulate``: :func:`quantify_spectra` sums them
per channel and divides by the k-factors (:func:`quantify_region` also gives the summed
spectra). k-factors are files (:mod:`gnnspec.quantification.k_factors`; ``gnnspec data k-factors``
fits them on a dataset). The shipped ones, ``gnnspec/assets/k_factors.json``, come from the
shipped dataset's train split: they hold for FEFF10 spectra made with gnnspec's presets (raw FEFF
units), not for measured counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, assemble_channels
from gnnspec.errors import InputError

#: k-factors of FEFF10 spectra from the shipped dataset's train split.

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
    """``{(site, channel): integrated intensity}`` of every channel a structure's raw run spectra make
    (:meth:`gnnspec.data.store.SpectraStore.spectra_of`: ``{(site, run): {"energy", "intensity"}}``).

    A one-run channel is integrated on its run's own axis; an L2,3 channel on its grid, after
    its L3 and L2 runs are summed (:func:`gnnspec.channels.assemble`)."""
    by_site: dict[int, dict[str, tuple]] = {}
    for (site, run), r in raw.items():
        by_site.setdefault(site, {})[run] = (r["energy"], r["intensity"])
    return {
        (site, name): integrated_intensity(energy, intensity, name)
        for site, runs in by_site.items()
        for name, (energy, intensity) in assemble_channels(runs).items()
    }


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


def quantify_spectra(
    spectra_sets: Sequence[Mapping[str, object]], k_factors: Mapping[str, Mapping], where: str = "<spectra>"
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Elemental quantification of the atoms whose raw spectra are given, one set per atom (or per group).

    ``spectra_sets``: ``{channel: Spectrum}`` mappings with intensities in the k-factors' units
    (raw FEFF output for the shipped k-factors). Each channel's integrals are summed over the
    sets and divided by its k-factor; an element's channels are averaged. Returns
    (``{element: amount}``, per channel ``{"integral", "spectra", "amount"}``).
    """
    totals: dict[str, list[float]] = {}
    for number, spectra in enumerate(spectra_sets):
        for name, spectrum in spectra.items():
            if name not in k_factors:
                raise InputError(f"{where}: no k-factor for channel {name}; the k-factors cover {', '.join(sorted(k_factors))}")
            try:
                value = integrated_intensity(spectrum.energy, spectrum.intensity, name)
            except ValueError as exc:
                raise InputError(f"{where}: spectra set {number + 1}: {exc}") from None
            totals.setdefault(name, []).append(value)
    if not totals:
        raise InputError(f"{where}: no spectra to quantify")
    per_channel = {
        name: {"integral": float(sum(v)), "spectra": len(v), "amount": float(sum(v)) / k_factors[name]["k"]}
        for name, v in sorted(totals.items(), key=lambda item: CHANNEL_NAMES.index(item[0]))
    }
    estimates: dict[str, list[float]] = {}
    for name, record in per_channel.items():
        estimates.setdefault(CHANNELS[name].element, []).append(record["amount"])
    return {element: float(np.mean(v)) for element, v in estimates.items()}, per_channel


def quantify_region(
    spectra_sets: Sequence[Mapping[str, object]], k_factors: Mapping[str, Mapping], where: str = "<spectra>"
) -> tuple[list, dict[str, float], dict[str, dict[str, float]]]:
    """:func:`quantify_spectra` of a region's raw spectra plus their sum per channel on the channel
    grid (raw units, linear interpolation): ``(summed Spectrum list, amounts, per channel)``, what
    ``gnnspec quantify`` writes for ``infer`` and ``query``."""
    from gnnspec.spectra import Spectrum

    amounts, per_channel = quantify_spectra(spectra_sets, k_factors, where)
    summed = []
    for name in per_channel:
        grid = CHANNELS[name].grid
        total = sum(np.interp(grid, s[name].energy, s[name].intensity) for s in spectra_sets if name in s)
        summed.append(Spectrum(name, grid, total))
    return summed, amounts, per_channel
