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
at that resolution. Plural scattering is recorded, not removed (no Fourier-ratio deconvolution
yet): below t/lambda of about 0.5 it changes edge shapes little; above, the training side's
instrument model (:mod:`gnnspec.instrument`) is what covers it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from gnnspec.errors import InputError

THRESHOLD_WINDOW_EV = 10.0


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


def measure_low_loss(path: str | Path) -> dict:
    """``{"file", "zero_loss_centre_eV", "zero_loss_fwhm_eV", "elastic_threshold_eV", "thickness_t_over_lambda", "method"}``."""
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
    s = low_loss_signal(energy, m.intensity)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # hyperspy's progress bars
        warnings.simplefilter("ignore")
        threshold = s.estimate_elastic_scattering_threshold(window=THRESHOLD_WINDOW_EV)
        t = float(np.squeeze(s.estimate_thickness(threshold=threshold).data))
    if not np.isfinite(t) or t < 0:
        raise InputError(f"{path}: log-ratio thickness came out {t}; is this a low-loss spectrum with its zero-loss peak?")
    return {
        "file": str(path),
        "zero_loss_centre_eV": fit.centre,
        "zero_loss_fwhm_eV": fit.fwhm,
        "elastic_threshold_eV": float(np.squeeze(threshold.data)),
        "thickness_t_over_lambda": t,
        "method": "log-ratio (exspy estimate_thickness), zero-loss peak centred by a Gaussian fit",
    }
