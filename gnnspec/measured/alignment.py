"""The energy axis of measured spectra: zero-loss calibration, edge location and alignment to a channel.

Three steps put a measured spectrum on the energy scale of gnnspec's simulations:

1. **Zero-loss calibration** (EELS): :func:`fit_zero_loss` fits a Gaussian to the top of the
   zero-loss peak (ZLP) near 0 eV; subtracting its centre puts the ZLP at 0 eV. This only
   calibrates core-loss spectra recorded with the same energy offset as the ZLP (Dual EELS);
   otherwise a residual offset of several eV remains and step 3 removes it.
2. **Edge location**: :func:`locate_edge` finds an edge near its expected energy on the raw
   spectrum (steepest rise of the smoothed intensity) so that the background window can be
   placed before it; :func:`leading_edge` measures the onset precisely on the
   background-subtracted signal.
3. **Alignment** to a channel: the shift (eV, added to the energies) is either the difference
   between the channel's expected onset (:func:`expected_onset`) and the measured one
   (:func:`align_to_onset`), or the shift that maximises the correlation with a reference
   spectrum on the channel grid (:func:`align_to_reference`). FEFF's absolute energies differ
   from measured ones by a few eV (its Fermi level and core-hole treatment), so alignment is what
   makes measured and simulated spectra comparable.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import OptimizeWarning, curve_fit

from gnnspec.channels import CHANNELS, Channel
from gnnspec.errors import InputError

#: Onset of each channel in gnnspec's FEFF10 ``fast`` simulations of NMC, in eV relative to the
#: tabulated edge energy: the median :func:`leading_edge` of 17 to 106 simulated site spectra per
#: channel from the first structures of ``datasets/nmc_feff10_fast`` (10-90% range within
#: +-0.5 eV), as :func:`calibrate_onsets` computes it. Measured NMC onsets lie 1 to 6 eV lower
#: (the O K pre-peak near 529 eV against FEFF's 534.2 eV).
ONSET_OFFSETS_EV: dict[str, float] = {
    "Li-K-xas": 4.4,
    "O-K-xas": -8.9,
    "O-K-eels": -8.9,
    "Mn-K-xas": 7.4,
    "Co-K-xas": 8.4,
    "Ni-K-xas": 6.3,
    "Mn-L3-xas": 4.2,
    "Co-L3-xas": 3.8,
    "Ni-L3-xas": 3.2,
    "Mn-L3-eels": 4.2,
    "Co-L3-eels": 3.8,
    "Ni-L3-eels": 3.2,
}
# an L2,3 channel's leading edge is its L3 run's: the same onset above the same tabulated L3 edge
ONSET_OFFSETS_EV.update({f"{tm}-L23-{m}": ONSET_OFFSETS_EV[f"{tm}-L3-{m}"] for tm in ("Mn", "Co", "Ni") for m in ("xas", "eels")})
_DE = 0.1  # eV, step of the fine grid the edge finders work on


@dataclass(frozen=True)
class ZeroLossFit:
    """A Gaussian fitted to the top of the zero-loss peak: centre and FWHM in eV, height in counts."""

    centre: float
    fwhm: float
    height: float


@dataclass(frozen=True)
class Alignment:
    """An energy shift (eV, added to the energies) and how it was found."""

    shift: float
    method: str  # "onset", "reference" (cross-correlation) or "absolute" (energies kept)
    onset: float  # measured onset before the shift, eV
    target: float  # expected onset on the channel's scale, eV
    score: float | None = None  # correlation with the reference (method "reference")

    def as_dict(self) -> dict:
        return {f"{k}_eV" if k in ("shift", "onset", "target") else k: v for k, v in asdict(self).items()}


def expected_onset(channel: Channel | str) -> float:
    """Expected onset (eV, absolute) of ``channel`` in gnnspec's simulations (see ``ONSET_OFFSETS_EV``)."""
    ch = CHANNELS[channel] if isinstance(channel, str) else channel
    return ch.edge_energy + ONSET_OFFSETS_EV[ch.name]


def calibrate_onsets(spectra: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Median onset (eV, relative to the tabulated edge) per channel of (channel, energy, intensity) spectra.

    Run on simulated spectra (for example a dataset's records) to refresh ``ONSET_OFFSETS_EV``.
    """
    onsets: dict[str, list[float]] = {}
    for name, energy, intensity in spectra:
        onsets.setdefault(name, []).append(leading_edge(energy, intensity) - CHANNELS[name].edge_energy)
    return {name: float(np.median(values)) for name, values in onsets.items()}


def fit_zero_loss(energy: np.ndarray, intensity: np.ndarray, search: float = 20.0, source: str = "<zero-loss>") -> ZeroLossFit:
    """Fit a Gaussian to the zero-loss peak, the highest point within ``search`` eV of 0 eV.

    Only the points above 30% of the peak height around the maximum enter the fit, so the
    asymmetric tails of a real ZLP hardly bias the centre.
    """
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    near = np.flatnonzero(np.abs(energy) <= search)
    if near.size < 5:
        raise InputError(f"{source}: spans {energy[0]:.1f}..{energy[-1]:.1f} eV; no zero-loss peak within {search:g} eV of 0 eV")
    peak = near[np.argmax(intensity[near])]
    height = intensity[peak]
    if height <= 0:
        raise InputError(f"{source}: no positive zero-loss peak near 0 eV")
    lo, hi = peak, peak
    while lo > 0 and intensity[lo - 1] >= 0.3 * height:
        lo -= 1
    while hi < energy.size - 1 and intensity[hi + 1] >= 0.3 * height:
        hi += 1
    if hi - lo < 2:
        raise InputError(
            f"{source}: zero-loss peak at {energy[peak]:.2f} eV is not resolved (fewer than 3 points above 30% of its height)"
        )
    e, y = energy[lo : hi + 1], intensity[lo : hi + 1]
    sigma0 = max((e[-1] - e[0]) / 3.1, 1e-3)  # top 70% of a Gaussian spans ~3.1 sigma

    def gaussian(x: np.ndarray, a: float, mu: float, s: float) -> np.ndarray:
        return a * np.exp(-0.5 * ((x - mu) / s) ** 2)

    try:
        with warnings.catch_warnings():  # the covariance is not used
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, mu, s), _ = curve_fit(gaussian, e, y, p0=(height, energy[peak], sigma0), maxfev=2000)
    except RuntimeError:
        raise InputError(f"{source}: the Gaussian fit of the zero-loss peak did not converge") from None
    if not (e[0] <= mu <= e[-1]):
        raise InputError(f"{source}: zero-loss fit centre {mu:.2f} eV lies outside the peak ({e[0]:.2f}..{e[-1]:.2f} eV)")
    return ZeroLossFit(centre=float(mu), fwhm=float(2.3548 * abs(s)), height=float(a))


def _fine(energy: np.ndarray, intensity: np.ndarray, lo: float, hi: float, smooth: float) -> tuple[np.ndarray, np.ndarray]:
    """Intensity on a 0.1 eV grid over [lo, hi] within the data, smoothed by a Gaussian of ``smooth`` eV."""
    lo, hi = max(lo, energy[0]), min(hi, energy[-1])
    grid = np.arange(lo, hi + _DE / 2, _DE)
    y = np.interp(grid, energy, intensity)
    if smooth > 0 and grid.size > 3:
        y = gaussian_filter1d(y, smooth / _DE, mode="nearest")
    return grid, y


def locate_edge(
    energy: np.ndarray,
    intensity: np.ndarray,
    expected: float,
    search: float = 30.0,
    smooth: float = 1.0,
    source: str = "<spectrum>",
) -> float:
    """Coarse edge position (eV): where the intensity first rises at half its steepest rate near ``expected``.

    Works on raw spectra (the power-law background only falls slowly) and on background-subtracted
    ones. Searches ``expected +- search`` eV; fails with an :class:`InputError` if the data do not
    cover at least 10 eV of that window.
    """
    grid, y = _fine(energy, intensity, expected - search, expected + search, smooth)
    if grid.size < int(10 / _DE):
        raise InputError(
            f"{source}: data span {energy[0]:.1f}..{energy[-1]:.1f} eV; the edge expected near {expected:.1f} eV "
            f"(+-{search:g} eV) is not covered"
        )
    slope = np.gradient(y, _DE)
    top = slope.max()
    if top <= 0:
        raise InputError(f"{source}: no rising edge within {expected:.1f} +- {search:g} eV")
    return float(grid[np.argmax(slope >= 0.5 * top)])


def leading_edge(
    energy: np.ndarray, intensity: np.ndarray, lo: float | None = None, hi: float | None = None, smooth: float = 0.5
) -> float:
    """Onset (eV): half height of the first peak on the leading edge, in ``[lo, hi]`` (default: all).

    The first peak is the maximum within 8 eV of the first point that reaches 30% of the window's
    maximum; the onset is where the intensity, walking down from that peak, falls below half of it
    (linear interpolation). The same definition calibrated ``ONSET_OFFSETS_EV`` on FEFF spectra.
    """
    energy, intensity = np.asarray(energy, float), np.asarray(intensity, float)
    grid, y = _fine(energy, intensity, energy[0] if lo is None else lo, energy[-1] if hi is None else hi, smooth)
    if grid.size < 5 or y.max() <= 0:
        raise InputError(f"no rising edge between {grid[0]:.1f} and {grid[-1]:.1f} eV")
    y = y - min(0.0, y.min())  # background-subtracted noise may dip below 0
    start = int(np.argmax(y >= 0.3 * y.max()))
    stop = min(y.size, start + int(round(8.0 / _DE)) + 1)
    peak = start + int(np.argmax(y[start:stop]))
    half = 0.5 * y[peak]
    i = peak
    while i > 0 and y[i - 1] >= half:
        i -= 1
    if i == 0:
        return float(grid[0])
    frac = (half - y[i - 1]) / (y[i] - y[i - 1])
    return float(grid[i - 1] + frac * _DE)


def keep_absolute(energy: np.ndarray, signal: np.ndarray, channel: Channel, near: float) -> Alignment:
    """No shift: the file's (calibrated) energies are kept, so an edge's chemical shift survives.
    The measured onset is still located and recorded, with the channel's expected one beside it."""
    onset = leading_edge(energy, signal, near - 10.0, near + 25.0)
    return Alignment(shift=0.0, method="absolute", onset=onset, target=expected_onset(channel))


def align_to_onset(energy: np.ndarray, signal: np.ndarray, channel: Channel, near: float) -> Alignment:
    """Shift that moves the measured onset (near ``near`` eV) onto the channel's expected onset."""
    onset = leading_edge(energy, signal, near - 10.0, near + 25.0)
    target = expected_onset(channel)
    return Alignment(shift=target - onset, method="onset", onset=onset, target=target)


def align_to_reference(
    energy: np.ndarray,
    signal: np.ndarray,
    channel: Channel,
    ref_energy: np.ndarray,
    ref_intensity: np.ndarray,
    initial: float = 0.0,
    max_shift: float = 10.0,
) -> Alignment:
    """Shift (eV) within ``initial +- max_shift`` that best correlates the spectrum with a reference.

    Both are compared on the channel grid (Pearson correlation), scanning shifts 0.1 eV apart and
    refining the best one by a parabola through its neighbours. ``initial`` is usually the onset
    alignment's shift.
    """
    grid = channel.grid
    ref = _zscore(np.interp(grid, ref_energy, ref_intensity))
    shifts = initial + np.arange(-max_shift, max_shift + _DE / 2, _DE)
    scores = np.array([np.mean(_zscore(np.interp(grid, energy + s, signal)) * ref) for s in shifts])
    k = int(np.argmax(scores))
    best = shifts[k]
    if 0 < k < shifts.size - 1:
        a, b, c = scores[k - 1], scores[k], scores[k + 1]
        denom = a - 2 * b + c
        if denom < 0:
            best += 0.5 * _DE * (a - c) / denom
    onset = leading_edge(energy, signal, grid[0] - best, grid[-1] - best)
    return Alignment(shift=float(best), method="reference", onset=onset, target=onset + float(best), score=float(scores[k]))


def _zscore(y: np.ndarray) -> np.ndarray:
    sd = y.std()
    return (y - y.mean()) / sd if sd > 0 else y * 0.0
