"""The low-loss spectrum of an EELS measurement: zero-loss width and relative thickness t/lambda.

The low-loss spectrum recorded with a core-loss spectrum says how the specimen and microscope
blur it: the zero-loss peak's FWHM (eV) is the energy resolution, and the relative thickness
t/lambda (specimen thickness over the inelastic mean free path) says how much plural (plasmon)
scattering the core-loss edges carry. t/lambda comes from exspy's log-ratio method,
``t/lambda = ln(I_total / I_0)``, with ``I_0`` the zero-loss intensity integrated up to the
elastic-scattering threshold that exspy finds (the first inflexion after the zero-loss peak,
searched within 10 eV). It assumes the whole low-loss spectrum (plasmons included) was
recorded and that the zero-loss peak sits at 0 eV: the peak is centred first by the Gaussian fit
of :func:`gnnspec.measured.alignment.fit_zero_loss`.

``gnnspec convert --low-loss`` records both for every EELS channel; ``gnnspec infer`` compares
at that resolution. Plural scattering is recorded and left in by default: the training side's
instrument model (:mod:`gnnspec.instrument`, t/lambda up to 1) covers it. ``convert --low-loss LL
--deconvolve`` removes it instead by Fourier-ratio deconvolution (Egerton, *Electron Energy-Loss
Spectroscopy in the Electron Microscope*, 3rd ed., section 4.3; exspy's
``fourier_ratio_deconvolution``) of each edge after its background is subtracted:
``S = I0 * FT^-1[Z(f) * FT(J_core) / FT(J_low)]``, with ``Z`` a unit Gaussian of the zero-loss
FWHM, so the result keeps the measured resolution (infer still compares at that FWHM) and only
the plasmon replicas go. The low loss is resampled onto the core-loss step and continued by a
power law (exspy), the core loss by a cosine fall to zero over ``TAIL_EV``; both are Hann-tapered
before the FFT (exspy). The edge's elemental
quantification (``convert --quantify``) integrates the recorded spectra, not deconvolved ones.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gnnspec.errors import InputError

THRESHOLD_WINDOW_EV = 10.0
#: eV over which the core loss is continued by a cosine fall to zero before the Fourier transforms.
TAIL_EV = 30.0


def low_loss_signal(energy: np.ndarray, intensity: np.ndarray):
    """An exspy ``EELSSpectrum`` on a uniform energy axis (eV)."""
    logging.disable(logging.WARNING)  # hyperspy's import-time notes (no numba) are not the user's business
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import exspy
    finally:
        logging.disable(logging.NOTSET)
    logging.getLogger("hyperspy").setLevel(logging.ERROR)

    s = exspy.signals.EELSSpectrum(np.asarray(intensity, dtype=float))
    axis = s.axes_manager.signal_axes[0]
    axis.scale, axis.offset, axis.units, axis.name = float(energy[1] - energy[0]), float(energy[0]), "eV", "Energy loss"
    return s


@dataclass(frozen=True)
class LowLoss:
    """A low-loss spectrum with its zero-loss peak centred at 0 eV, on a uniform axis (eV)."""

    energy: np.ndarray
    intensity: np.ndarray
    source: str
    centre_ev: float = 0.0  # where the zero-loss peak was in the file
    fwhm_ev: float = float("nan")  # the zero-loss peak's FWHM


def read_low_loss(path: str | Path) -> LowLoss:
    """The low-loss spectrum of ``path``, its zero-loss peak centred by a Gaussian fit; refused
    (InputError naming the file) when it is not EELS, has no zero-loss peak, a non-uniform axis
    or stops before the plasmon region."""
    from gnnspec.measured.alignment import fit_zero_loss
    from gnnspec.measured.readers import read_measured

    m = read_measured(path)
    if m.modality != "eels":
        raise InputError(f"{path}: --low-loss needs an EELS low-loss spectrum, this file holds {m.modality}")
    fit = fit_zero_loss(m.energy, m.intensity, source=str(path))
    energy = m.energy - fit.centre
    steps = np.diff(energy)
    if not np.allclose(steps, steps[0], rtol=1e-3):
        raise InputError(f"{path}: the low-loss energy axis is not uniform; log-ratio thickness needs a uniform axis")
    if energy[-1] < 3 * THRESHOLD_WINDOW_EV:
        raise InputError(f"{path}: the spectrum ends at {energy[-1]:.1f} eV loss; the log-ratio thickness needs the plasmon region (to at least {3 * THRESHOLD_WINDOW_EV:.0f} eV)")
    return LowLoss(energy, np.asarray(m.intensity, dtype=float), str(path), fit.centre, fit.fwhm)


def measure_low_loss(path: str | Path) -> dict:
    """``{"file", "zero_loss_centre_eV", "zero_loss_fwhm_eV", "elastic_threshold_eV", "thickness_t_over_lambda", "method"}``."""
    ll = read_low_loss(path)
    s = low_loss_signal(ll.energy, ll.intensity)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # hyperspy's progress bars
        warnings.simplefilter("ignore")
        threshold = s.estimate_elastic_scattering_threshold(window=THRESHOLD_WINDOW_EV)
        t = float(np.squeeze(s.estimate_thickness(threshold=threshold).data))
    if not np.isfinite(t) or t < 0:
        raise InputError(f"{path}: log-ratio thickness came out {t}; is this a low-loss spectrum with its zero-loss peak?")
    return {
        "file": str(path),
        "zero_loss_centre_eV": ll.centre_ev,
        "zero_loss_fwhm_eV": ll.fwhm_ev,
        "elastic_threshold_eV": float(np.squeeze(threshold.data)),
        "thickness_t_over_lambda": t,
        "method": "log-ratio (exspy estimate_thickness), zero-loss peak centred by a Gaussian fit",
    }


def fourier_ratio_deconvolve(energy: np.ndarray, signal: np.ndarray, low_loss: LowLoss, fwhm_ev: float, source: str = "<spectrum>") -> np.ndarray:
    """The single-scattering edge of the background-subtracted core-loss ``signal`` on ``energy``
    (eV, uniform), at the resolution of a Gaussian of ``fwhm_ev`` (the zero-loss FWHM); see the
    module docstring. Same length as ``signal``; InputError naming ``source`` when it fails."""
    energy, signal = np.asarray(energy, dtype=float), np.asarray(signal, dtype=float)
    step = float(energy[1] - energy[0])
    if not np.allclose(np.diff(energy), step, rtol=1e-3):
        raise InputError(f"{source}: Fourier-ratio deconvolution needs a uniform energy axis")
    grid = np.arange(low_loss.energy[0], low_loss.energy[-1], step)  # the low-loss on the core-loss dispersion
    ll = low_loss_signal(grid, np.interp(grid, low_loss.energy, low_loss.intensity))
    # the core loss continued by a cosine fall to zero over TAIL_EV (exspy's power-law continuation
    # needs a falling positive tail, which a background-subtracted edge window rarely has), cut back after
    n_tail = int(round(TAIL_EV / step))
    level = float(np.mean(signal[-max(5, n_tail // 10) :]))
    tail = level * 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n_tail + 1) / n_tail))
    core = low_loss_signal(np.arange(len(signal) + n_tail) * step + energy[0], np.concatenate([signal, tail]))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            threshold = ll.estimate_elastic_scattering_threshold(window=THRESHOLD_WINDOW_EV)
            out = core.fourier_ratio_deconvolution(ll, fwhm=float(fwhm_ev), threshold=threshold, extrapolate_coreloss=False).data
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{source}: Fourier-ratio deconvolution with {low_loss.source} failed ({exc})") from None
    out = np.asarray(out, dtype=float).reshape(-1)[: len(signal)]
    if out.shape != signal.shape or not np.all(np.isfinite(out)):
        raise InputError(f"{source}: Fourier-ratio deconvolution with {low_loss.source} gave non-finite values")
    return out
