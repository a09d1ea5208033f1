"""From a measured spectrum to one processed channel spectrum, and cutting a survey into channels.

:func:`process_edge` runs the chain for one edge of one channel, on energies already
zero-loss calibrated (eV):

1. drop leading/trailing runs of exact zeros (exports that blank everything before a fit window);
2. locate the edge near the channel's expected onset (:func:`~.alignment.locate_edge`);
3. remove the pre-edge background, fitted from 50 to 5 eV before the located edge
   (:func:`~.background.remove_background`); given a low-loss spectrum, remove plural scattering
   from what is left by Fourier-ratio deconvolution (:mod:`~.low_loss`; energies below the fit
   window, which belong to no edge, are set to zero first);
4. align: onset against the channel's expected onset, then, given a reference spectrum,
   cross-correlation against it (:mod:`~.alignment`);
5. cut the aligned signal to the channel grid's window (+-2 eV) and normalise it.

A TM L2,3 channel (edge -5 to +55 eV above L3) holds both white lines, as the simulated L2,3
spectra do (L3 and L2 runs summed). The legacy ``L3`` channels (edge -3 to +57 eV) also hold the
``L2`` edge of a measurement, which FEFF's ``L3`` runs lack; the processing notes say so.

:func:`cut_survey` applies the chain to every default channel whose edge a survey spectrum
holds (O K, Mn/Co/Ni L2,3 for EELS), each edge with its own background fit and window; the fit window of an
edge never reaches back into the previous edge's white lines (it starts 25 eV above it at the
earliest).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gnnspec.channels import CHANNELS, DEFAULT_CHANNELS, Channel
from gnnspec.errors import InputError
from gnnspec.measured.alignment import Alignment, align_to_onset, align_to_reference, expected_onset, keep_absolute, locate_edge
from gnnspec.measured.background import PRE_EDGE_WINDOW, BackgroundFit, normalise_intensity, remove_background
from gnnspec.measured.low_loss import LowLoss, fourier_ratio_deconvolve
from gnnspec.spectra import Spectrum

#: Extra energy (eV) kept on each side of the channel grid when cutting.
CUT_MARGIN = 2.0
#: Alignment shifts (eV) larger than this get a warning note.
LARGE_SHIFT = 8.0
#: Minimum part of the edge search window the data must cover.
MIN_SEARCH_COVERAGE = 0.5


@dataclass
class ProcessedEdge:
    """One channel cut from a measured spectrum: aligned energies (eV, channel scale), normalised intensity."""

    channel: str
    energy: np.ndarray
    intensity: np.ndarray
    alignment: Alignment
    edge_found: float  # coarse edge position in the input (calibrated) energies, eV
    background: BackgroundFit | None
    normalisation: str
    notes: list[str] = field(default_factory=list)

    def spectrum(self) -> Spectrum:
        return Spectrum(self.channel, self.energy, self.intensity)

    def meta(self) -> dict:
        """Processing record for the ``gnnspec.spectra/1`` meta (JSON-ready)."""
        return {
            "edge_found_eV": round(self.edge_found, 3),
            "background": self.background.as_dict() if self.background else None,
            "alignment": self.alignment.as_dict(),
            "normalisation": self.normalisation,
            "window_eV": [float(self.energy[0]), float(self.energy[-1])],
            "notes": list(self.notes),
        }


#: How energies are treated after calibration: ``onset`` aligns each edge's onset to the
#: channel's expected one (EELS default); ``absolute`` keeps them (XAS default: edge positions
#: carry the oxidation state).
ENERGY_MODES = ("onset", "absolute")

def _valid_region(energy: np.ndarray, intensity: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    nonzero = np.flatnonzero(intensity != 0)
    if nonzero.size < 2:
        raise InputError(f"{source}: all counts are zero")
    first, last = nonzero[0], nonzero[-1]
    note = None
    if first > 0 or last < intensity.size - 1:
        note = f"counts are exactly zero outside {energy[first]:.1f}..{energy[last]:.1f} eV; only that range is used"
    return energy[first : last + 1], intensity[first : last + 1], note


def search_coverage(energy: np.ndarray, expected: float, search: float) -> float:
    """Part (0..1) of the window ``expected +- search`` eV that the energies cover."""
    lo, hi = max(energy[0], expected - search), min(energy[-1], expected + search)
    return max(0.0, hi - lo) / (2 * search)


def process_edge(
    energy: np.ndarray,
    intensity: np.ndarray,
    channel: Channel | str,
    *,
    source: str = "<spectrum>",
    background: str = "auto",
    window: tuple[float, float] = PRE_EDGE_WINDOW,
    reference: Spectrum | None = None,
    normalisation: str = "area",
    search: float = 30.0,
    max_shift: float = 10.0,
    min_start: float | None = None,
    energy_mode: str = "onset",
    low_loss: LowLoss | None = None,
) -> ProcessedEdge:
    """Process one edge into a channel spectrum (steps in the module docstring).

    ``energy`` in eV (zero-loss calibrated where possible); ``window``: background fit range
    relative to the located edge (eV); ``search``: how far (eV) from the expected onset the edge
    may lie; ``reference``: a spectrum of this channel to align against by cross-correlation
    within ``max_shift`` eV of the onset alignment; ``min_start``: lowest absolute energy (eV) the
    background window may reach. ``energy_mode``: ``onset`` shifts the measured onset onto the
    channel's expected one (then, with a ``reference``, cross-correlates); ``absolute`` keeps the
    energies as calibrated (an edge's chemical shift survives; a ``reference`` is not used).
    ``low_loss``: the sample's low-loss spectrum; an EELS edge is Fourier-ratio deconvolved with it.
    """
    if energy_mode not in ENERGY_MODES:
        raise InputError(f"{source}: unknown energy mode {energy_mode!r}; valid: {', '.join(ENERGY_MODES)}")
    if isinstance(channel, str):
        if channel not in CHANNELS:
            raise InputError(f"{source}: unknown channel {channel!r}; valid channels: {', '.join(CHANNELS)}")
        channel = CHANNELS[channel]
    where = f"{source} ({channel.name})"
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    n_leading_zeros = int(np.argmax(intensity != 0)) if np.any(intensity != 0) else 0
    energy, intensity, zero_note = _valid_region(energy, intensity, where)
    notes = [zero_note] if zero_note else []
    expected = expected_onset(channel)
    coverage = search_coverage(energy, expected, search)
    if coverage < MIN_SEARCH_COVERAGE:
        raise InputError(
            f"{where}: data span {energy[0]:.1f}..{energy[-1]:.1f} eV but the edge is searched in "
            f"{expected - search:.1f}..{expected + search:.1f} eV ({100 * coverage:.0f}% covered): the edge is not in this file"
        )
    edge = locate_edge(energy, intensity, expected, search, source=where)
    if edge - energy[0] < 5.0:
        raise InputError(
            f"{where}: the steepest rise at {edge:.1f} eV is where the data start ({energy[0]:.1f} eV): no pre-edge, or the edge is missing"
        )
    fit_window = window
    if min_start is not None and edge + window[0] < min_start:
        fit_window = (min(min_start - edge, window[1] - 5.0), window[1])
    if background == "auto" and n_leading_zeros >= 5:
        signal, fit, bg_note = (
            intensity.copy(),
            None,
            f"counts are zero below {energy[0]:.1f} eV (a background-subtracted export): used as they are",
        )
    else:
        signal, fit, bg_note = remove_background(energy, intensity, edge, background, channel.modality, fit_window, where)
    notes.append(bg_note)
    if low_loss is not None and channel.modality == "eels":
        signal = fourier_ratio_deconvolve(energy, np.where(energy >= edge + fit_window[0], signal, 0.0), low_loss, low_loss.fwhm_ev, where)
        notes.append(
            f"plural scattering removed by Fourier-ratio deconvolution with {low_loss.source} (resolution kept: zero-loss FWHM {low_loss.fwhm_ev:.2f} eV)"
        )
    try:
        if energy_mode == "absolute":
            alignment = keep_absolute(energy, signal, channel, edge)
        else:
            alignment = align_to_onset(energy, signal, channel, edge)
        if reference is not None and energy_mode == "onset":
            alignment = align_to_reference(
                energy, signal, channel, reference.energy, reference.intensity, alignment.shift, max_shift
            )
    except InputError as exc:
        raise InputError(f"{where}: alignment failed: {exc}") from None
    if abs(alignment.shift) > LARGE_SHIFT:
        notes.append(
            f"alignment shift {alignment.shift:+.1f} eV exceeds the few eV by which FEFF and experiment differ: "
            "check the spectrometer's energy offset and dispersion"
        )
    aligned = energy + alignment.shift
    grid = channel.grid
    keep = (aligned >= grid[0] - CUT_MARGIN) & (aligned <= grid[-1] + CUT_MARGIN)
    if keep.sum() < 2 or (min(aligned[keep][-1], grid[-1]) - max(aligned[keep][0], grid[0])) < 0.5 * (grid[-1] - grid[0]):
        raise InputError(
            f"{where}: after a shift of {alignment.shift:+.2f} eV the data span {aligned[0]:.1f}..{aligned[-1]:.1f} eV, "
            f"less than half of the channel window {grid[0]:.1f}..{grid[-1]:.1f} eV"
        )
    cut_e, cut_y = aligned[keep], signal[keep]
    cut_y = normalise_intensity(cut_e, cut_y, channel, alignment.onset + alignment.shift, normalisation, where)
    if channel.edge == "L3":
        notes.append("the L3 window (edge -3..+57 eV) also holds the L2 edge, which FEFF L3 spectra lack")
    return ProcessedEdge(channel.name, cut_e, cut_y, alignment, edge, fit, normalisation, notes)


def survey_channels(energy: np.ndarray, intensity: np.ndarray, modality: str = "eels", search: float = 30.0) -> list[Channel]:
    """Channels of ``modality`` whose edge search window the spectrum covers, in order of energy."""
    energy, _, _ = _valid_region(np.asarray(energy, float), np.asarray(intensity, float), "<survey>")
    found = [
        CHANNELS[name]
        for name in DEFAULT_CHANNELS
        if CHANNELS[name].modality == modality and search_coverage(energy, expected_onset(name), search) >= MIN_SEARCH_COVERAGE
    ]
    return sorted(found, key=expected_onset)


def cut_survey(
    energy: np.ndarray,
    intensity: np.ndarray,
    *,
    source: str = "<survey>",
    modality: str = "eels",
    channels: list[str] | None = None,
    references: dict[str, Spectrum] | None = None,
    search: float = 30.0,
    **options,
) -> tuple[dict[str, ProcessedEdge], dict[str, str]]:
    """Cut a spectrum holding several edges into channel spectra; returns (processed, skipped reasons).

    ``channels`` defaults to every channel of ``modality`` the energy range covers; a requested
    channel that fails raises, a defaulted one is skipped with its reason. ``options`` go to
    :func:`process_edge` (``background``, ``window``, ``normalisation``, ``max_shift``, ``low_loss``).
    """
    wanted = [CHANNELS[c] for c in channels] if channels else survey_channels(energy, intensity, modality, search)
    wanted = sorted(wanted, key=expected_onset)
    processed: dict[str, ProcessedEdge] = {}
    skipped: dict[str, str] = {}
    previous_edge: float | None = None
    for channel in wanted:
        reference = (references or {}).get(channel.name)
        min_start = previous_edge + 25.0 if previous_edge is not None else None
        try:
            edge = process_edge(
                energy, intensity, channel, source=source, reference=reference, search=search, min_start=min_start, **options
            )
        except InputError as exc:
            if channels:
                raise
            skipped[channel.name] = str(exc)
            continue
        processed[channel.name] = edge
        previous_edge = edge.edge_found
    if not processed:
        detail = "; ".join(skipped.values()) or f"no {modality} channel edge lies in {energy[0]:.1f}..{energy[-1]:.1f} eV"
        raise InputError(f"{source}: no channel could be cut from the survey: {detail}")
    return processed, skipped
