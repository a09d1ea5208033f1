"""Intensity of measured spectra: pre-edge background removal and normalisation.

* EELS: the background before a core-loss edge falls as a power law ``A * E**-r`` (Egerton,
  *Electron Energy-Loss Spectroscopy in the Electron Microscope*, 3rd ed., section 4.4.2).
  :func:`fit_power_law` fits it by least squares on ``log I`` against ``log E`` in a pre-edge
  window (default 50 to 5 eV before the edge); :func:`remove_background` extrapolates and
  subtracts it.
* XAS: a straight line fitted in the pre-edge window is subtracted instead (``"linear"``).
* Spectra exported already background-subtracted (Gatan's "signal" output, zero before the
  fit window and near zero after it) are recognised by ``"auto"`` and left as they are: their
  pre-edge counts are not mostly positive, or a power law fits them only with an implausible
  exponent (outside ``R_RANGE``).
* :func:`normalise_intensity`: ``"area"`` scales to unit mean on the channel grid (the rule that
  :func:`gnnspec.channels.normalise` applies to simulations), ``"edge-step"`` subtracts the mean
  just before the onset and divides by the step up to the last 10 eV of the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gnnspec.channels import Channel
from gnnspec.errors import InputError

BACKGROUNDS = ("auto", "power-law", "linear", "none")
NORMALISATIONS = ("area", "edge-step", "none")
#: Default pre-edge fit window, eV relative to the edge.
PRE_EDGE_WINDOW = (-50.0, -5.0)
_MIN_POINTS = 5
#: Plausible power-law exponents r of a pre-edge EELS background (Egerton: typically 2 to 6).
R_RANGE = (1.0, 7.0)


@dataclass(frozen=True)
class BackgroundFit:
    """A fitted pre-edge background: ``kind`` "power-law" (``a * E**-r``) or "linear" (``a + r * E``).

    ``window`` is the absolute fit range (eV); ``n_points`` the points used.
    """

    kind: str
    a: float
    r: float
    window: tuple[float, float]
    n_points: int

    def __call__(self, energy: np.ndarray) -> np.ndarray:
        energy = np.asarray(energy, dtype=np.float64)
        if self.kind == "power-law":
            return self.a * np.power(np.clip(energy, 1e-6, None), -self.r)
        return self.a + self.r * energy

    def as_dict(self) -> dict:
        if self.kind == "power-law":
            params = {"A": self.a, "r": self.r}
        else:
            params = {"intercept": self.a, "slope_per_eV": self.r}
        return {"kind": self.kind, **params, "window_eV": list(self.window), "n_points": self.n_points}


def _window(energy: np.ndarray, window: tuple[float, float], source: str) -> np.ndarray:
    lo, hi = window
    inside = np.flatnonzero((energy >= lo) & (energy <= hi))
    if inside.size < _MIN_POINTS:
        raise InputError(
            f"{source}: pre-edge window {lo:.1f}..{hi:.1f} eV holds {inside.size} points "
            f"(data span {energy[0]:.1f}..{energy[-1]:.1f} eV); at least {_MIN_POINTS} are needed"
        )
    return inside


def fit_power_law(
    energy: np.ndarray, intensity: np.ndarray, window: tuple[float, float], source: str = "<spectrum>"
) -> BackgroundFit:
    """Fit ``A * E**-r`` to the intensity in the absolute energy ``window`` (eV, energies > 0).

    Refuses a window where more than 10% of the counts are zero or negative (a background-
    subtracted spectrum, or a window outside the data).
    """
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    idx = _window(energy, window, source)
    e, y = energy[idx], intensity[idx]
    positive = (y > 0) & (e > 0)
    if positive.mean() < 0.9:
        raise InputError(
            f"{source}: {100 * (1 - positive.mean()):.0f}% of the counts in the pre-edge window "
            f"{window[0]:.1f}..{window[1]:.1f} eV are zero or negative; a power law cannot be fitted "
            "(already background-subtracted? use background 'none')"
        )
    slope, intercept = np.polyfit(np.log(e[positive]), np.log(y[positive]), 1)
    return BackgroundFit(
        "power-law", float(np.exp(intercept)), float(-slope), (float(window[0]), float(window[1])), int(positive.sum())
    )


def fit_linear(
    energy: np.ndarray, intensity: np.ndarray, window: tuple[float, float], source: str = "<spectrum>"
) -> BackgroundFit:
    """Fit a straight line to the intensity in the absolute energy ``window`` (eV)."""
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    idx = _window(energy, window, source)
    slope, intercept = np.polyfit(energy[idx], intensity[idx], 1)
    return BackgroundFit("linear", float(intercept), float(slope), (float(window[0]), float(window[1])), int(idx.size))


def looks_subtracted(energy: np.ndarray, intensity: np.ndarray, window: tuple[float, float]) -> bool:
    """True if the pre-edge window's counts are not mostly positive (data already background-subtracted)."""
    inside = (energy >= window[0]) & (energy <= window[1])
    if inside.sum() < _MIN_POINTS:
        return True
    return bool(np.mean(intensity[inside] > 0) < 0.9)


def remove_background(
    energy: np.ndarray,
    intensity: np.ndarray,
    edge: float,
    kind: str = "auto",
    modality: str = "eels",
    window: tuple[float, float] = PRE_EDGE_WINDOW,
    source: str = "<spectrum>",
) -> tuple[np.ndarray, BackgroundFit | None, str]:
    """Subtract the pre-edge background of the edge at ``edge`` eV; returns (signal, fit or None, note).

    ``window`` is relative to ``edge`` (eV). ``kind``: ``"power-law"`` (EELS), ``"linear"`` (XAS),
    ``"none"``, or ``"auto"``: power law for EELS and a line for XAS, unless the window holds fewer
    than 5 points or EELS counts look already background-subtracted (then nothing is removed).
    """
    if kind not in BACKGROUNDS:
        raise InputError(f"{source}: unknown background {kind!r}; known: {', '.join(BACKGROUNDS)}")
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    absolute = (edge + window[0], edge + window[1])
    auto = kind == "auto"
    if auto:
        n_window = int(np.count_nonzero((energy >= absolute[0]) & (energy <= absolute[1])))
        if n_window < _MIN_POINTS:
            return intensity.copy(), None, f"only {n_window} points in the pre-edge window: no background removed"
        # an XAS absorption has an arbitrary offset (ln(i0/itrans) carries the detectors' gains, often below 0):
        # only EELS counts tell a background-subtracted export by their sign
        if modality == "eels" and looks_subtracted(energy, intensity, absolute):
            return intensity.copy(), None, "pre-edge counts not mostly positive: taken as already background-subtracted"
        kind = "power-law" if modality == "eels" else "linear"
    if kind == "none":
        return intensity.copy(), None, "no background removed"
    fit = (
        fit_power_law(energy, intensity, absolute, source)
        if kind == "power-law"
        else fit_linear(energy, intensity, absolute, source)
    )
    note = f"{kind} background fitted in {absolute[0]:.1f}..{absolute[1]:.1f} eV and subtracted"
    if kind == "power-law" and not (R_RANGE[0] <= fit.r <= R_RANGE[1]):
        if auto:
            return (
                intensity.copy(),
                None,
                f"power-law exponent r = {fit.r:.2f} outside {R_RANGE[0]:g}..{R_RANGE[1]:g}: taken as already background-subtracted",
            )
        note += f" (warning: exponent r = {fit.r:.2f} outside the usual {R_RANGE[0]:g}..{R_RANGE[1]:g})"
    return intensity - fit(energy), fit, note


def normalise_intensity(
    energy: np.ndarray, signal: np.ndarray, channel: Channel, onset: float, kind: str = "area", source: str = "<spectrum>"
) -> np.ndarray:
    """Normalise an aligned signal (energies on the channel's scale, eV) for the channel.

    ``"area"``: unit mean over the channel grid. ``"edge-step"``: subtract the mean from the grid
    start to 1 eV before ``onset`` (or the first grid point alone), divide by the mean over the last
    10 eV of the grid minus that. ``"none"``: unchanged.
    """
    if kind not in NORMALISATIONS:
        raise InputError(f"{source}: unknown normalisation {kind!r}; known: {', '.join(NORMALISATIONS)}")
    energy, signal = np.asarray(energy, float), np.asarray(signal, float)
    if kind == "none":
        return signal.copy()
    grid = channel.grid
    on_grid = np.interp(grid, energy, signal)
    if kind == "area":
        scale = float(on_grid.mean())
        if scale <= 0:
            raise InputError(
                f"{source}: {channel.name}: mean intensity on the channel grid is {scale:.3g} (not positive); cannot normalise"
            )
        return signal / scale
    pre_mask = grid <= onset - 1.0
    pre = float(on_grid[pre_mask].mean()) if pre_mask.any() else float(on_grid[0])
    post = float(on_grid[grid >= grid[-1] - 10.0].mean())
    if post - pre <= 0:
        raise InputError(
            f"{source}: {channel.name}: edge step is {post - pre:.3g} (post-edge not above pre-edge); cannot normalise"
        )
    return (signal - pre) / (post - pre)
