"""Hydrogenic partial ionisation cross-sections for EELS K and L2,3 edges (Egerton's model).

The physics, in one place. In the first Born approximation the energy-differential
cross-section per atom for a fast electron of kinetic energy ``E0`` losing ``E`` is
(Egerton, *Electron Energy-Loss Spectroscopy in the Electron Microscope*, 3rd ed., sec. 3.6)

    dsigma/dE = 4 pi a0^2 (R / E) (R / T) * integral of df/dE(E, Q) d(ln Q^2)

where ``R`` = 13.606 eV is the Rydberg energy, ``T = m0 v^2 / 2`` (rest mass, relativistic
speed), ``Q = q a0`` the dimensionless momentum transfer and ``df/dE`` the generalised
oscillator strength (GOS) per eV. ``Q^2`` runs from its value at zero scattering angle to its
value at the largest angle collected. With a convergent probe (semi-angle ``alpha``) every
scattering angle ``theta`` is weighted by the part of the incident cone that the collection
aperture (semi-angle ``beta``) still accepts: the overlap of two discs of radii ``alpha`` and
``beta`` whose centres are ``theta`` apart, divided by the smaller disc (Kohl,
Ultramicroscopy 16 (1985) 265). The kinematics are exact: ``Q^2 = K0^2 [phi^2 + 4 (1 - phi)
sin^2(theta / 2)]`` with ``K0 = k0 a0 = gamma beta_v / alpha_fs`` and ``phi = 1 - k1 / k0``.

The GOS is Egerton's hydrogenic model (his programs SIGMAK3 and SIGMAL3):

* **K shell**: a hydrogen-like 1s shell of two electrons with screened charge ``Z - 0.5``; its
  continuum oscillator strength at ``Q -> 0`` is the hydrogen value, 0.4350 per electron.
* **L2,3 shells**: hydrogen-like 2p with screened charge ``Z - 0.35 * 7 - 1.7``, multiplied by
  Egerton's empirical factor ``((E - E_L3 + 0.1) / (1.8 Z^2)) ** u`` (``u`` tabulated per
  element, :data:`L_SHELL_EXPONENT`), which delays the edge maximum as observed.

Below the model's hydrogenic threshold (``Zs^2 R`` for K, ``Zs^2 R / 4`` for L), where real
edges of Z > 2 lie, Egerton continues the GOS analytically (the bound-state form); so does this
module. Accuracy of these partial cross-sections: about 5-10 % for K edges, 10-20 % for L2,3
edges; the white lines of 3d transition-metal L2,3 edges are not in the hydrogenic model, so an
integration window of 50 eV or more, which dilutes them, is advised.

Units: energies in eV, angles in radians, cross-sections in barn (1e-24 cm^2) per atom.
"""

from __future__ import annotations

import math

import numpy as np

#: Rydberg energy (eV).
RYDBERG_EV = 13.605693
#: Electron rest energy (eV).
ELECTRON_REST_EV = 510998.95
#: Fine-structure constant.
FINE_STRUCTURE = 1 / 137.035999
#: 4 pi a0^2 in barn (a0 = 0.529177e-8 cm).
FOUR_PI_A0_SQ_BARN = 4 * math.pi * (0.529177211e-8) ** 2 * 1e24
#: Egerton's exponent ``u`` of the empirical L2,3 factor (SIGMAL3), by atomic number.
L_SHELL_EXPONENT = {
    13: 0.52, 14: 0.42, 15: 0.30, 16: 0.29, 17: 0.22, 18: 0.30, 19: 0.22, 20: 0.16, 21: 0.12,
    22: 0.13, 23: 0.13, 24: 0.14, 25: 0.16, 26: 0.18, 27: 0.19, 28: 0.22, 29: 0.14, 30: 0.11,
    31: 0.12, 32: 0.12, 33: 0.12, 34: 0.10, 35: 0.10, 36: 0.10,
}  # fmt: skip
SHELLS = ("K", "L23")


def _sommerfeld(kh2: np.ndarray, q: np.ndarray, shift: float, twice: float) -> np.ndarray:
    """The factor ``exp(-2 beta'/k) / (1 - exp(-2 pi / k))`` above the hydrogenic threshold and its
    bound-state continuation below it (Egerton's ``C / D``), for the K (``shift`` 1, ``twice`` 2)
    or L (``shift`` 0.25, ``twice`` 1) shell."""
    akh = np.maximum(np.sqrt(np.abs(kh2)), 0.01)
    base = q - kh2 + shift
    free = kh2 >= 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.arctan2(twice * akh, base)  # in (0, pi): the branch Egerton picks by adding pi
        above = np.exp(-2 * bp / akh) / (1 - np.exp(-2 * np.pi / akh))
        below = np.exp(-np.log((base + twice * akh) / (base - twice * akh)) / akh)
    return np.where(free, above, below)


def gos_k(z: int, energy: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Hydrogenic K-shell GOS ``df/dE`` (1/eV per atom) at energy loss ``energy`` (eV) and ``Q^2``."""
    zs, electrons = (z - 0.5, 2) if z > 1 else (1.0, 1)
    q = q2 / zs**2
    kh2 = energy / (RYDBERG_EV * zs**2) - 1
    a = ((q - kh2 + 1) ** 2 + 4 * kh2) ** 3
    return 128 * electrons * energy / (RYDBERG_EV**2 * zs**4) * _sommerfeld(kh2, q, 1.0, 2.0) * (q + kh2 / 3 + 1 / 3) / a


def gos_l23(z: int, energy: np.ndarray, q2: np.ndarray, edge_l3: float) -> np.ndarray:
    """Hydrogenic L2,3 GOS ``df/dE`` (1/eV per atom), Egerton's empirical factor included.

    Valid below the element's L1 edge (2p excitations only), which covers windows of 50-100 eV
    above the L3 edge of the 3d metals.
    """
    if z not in L_SHELL_EXPONENT:
        raise ValueError(f"no L2,3 model for Z = {z} (tabulated: {min(L_SHELL_EXPONENT)}..{max(L_SHELL_EXPONENT)})")
    zs = z - 0.35 * 7 - 1.7
    q = q2 / zs**2
    kh2 = energy / (RYDBERG_EV * zs**2) - 0.25
    g = (
        2.25 * q**4
        - (0.75 + 3 * kh2) * q**3
        + (0.59375 - 0.75 * kh2 - 0.5 * kh2**2) * q**2
        + (0.11146 + 0.85417 * kh2 + 1.8833 * kh2**2 + kh2**3) * q
        + 0.0035807
        + kh2 / 21.333
        + kh2**2 / 4.5714
        + kh2**3 / 2.4
        + kh2**4 / 4
    )
    a = ((q - kh2 + 0.25) ** 2 + kh2) ** 5
    delay = (np.clip(energy - edge_l3 + 0.1, 1e-6, None) / (1.8 * z * z)) ** L_SHELL_EXPONENT[z]
    return delay * 32 * g * _sommerfeld(kh2, q, 0.25, 1.0) / a * energy / (RYDBERG_EV**2 * zs**4)


def collection_efficiency(theta: np.ndarray, convergence: float, collection: float) -> np.ndarray:
    """Part of the scattering at angle ``theta`` (rad) that the collection aperture accepts (0..1).

    The overlap area of discs of radii ``convergence`` and ``collection`` (rad) with centres
    ``theta`` apart, over the smaller disc's area; a parallel beam (``convergence`` 0) gives the
    step function ``theta <= collection``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    a, b = float(convergence), float(collection)
    if a <= 1e-3 * b:
        return (theta <= b).astype(np.float64)
    small = min(a, b)
    out = np.where(theta <= abs(a - b), 1.0, 0.0)
    lens = (theta > abs(a - b)) & (theta < a + b)
    t = theta[lens]
    area = (
        a * a * np.arccos(np.clip((t * t + a * a - b * b) / (2 * t * a), -1, 1))
        + b * b * np.arccos(np.clip((t * t + b * b - a * a) / (2 * t * b), -1, 1))
        - 0.5 * np.sqrt(np.clip((a + b - t) * (t + a - b) * (t - a + b) * (t + a + b), 0, None))
    )
    out[lens] = area / (math.pi * small * small)
    return out


def _kinematics(beam_energy_ev: float, energy: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(K0^2, phi per energy loss, T in eV) for a beam of kinetic energy ``beam_energy_ev``."""
    gamma = 1 + beam_energy_ev / ELECTRON_REST_EV
    beta2 = 1 - 1 / gamma**2
    eps = energy / ELECTRON_REST_EV
    phi = 1 - np.sqrt(((gamma - eps) ** 2 - 1) / (gamma**2 - 1))
    k0_sq = gamma**2 * beta2 / FINE_STRUCTURE**2
    return k0_sq, phi, ELECTRON_REST_EV * beta2 / 2


def differential_cross_section(
    z: int,
    shell: str,
    energy: np.ndarray,
    beam_energy_ev: float,
    collection_angle: float,
    convergence_angle: float = 0.0,
    edge_energy: float | None = None,
    n_angles: int = 400,
) -> np.ndarray:
    """``dsigma/dE`` (barn/eV per atom) at energy losses ``energy`` (eV) for the given optics.

    ``shell`` is ``"K"`` or ``"L23"`` (the latter needs ``edge_energy``, the L3 edge in eV);
    angles in radians. The angular integral runs over ``ln Q^2`` on ``n_angles`` points.
    """
    if shell not in SHELLS:
        raise ValueError(f"shell {shell!r}: one of {SHELLS}")
    if beam_energy_ev <= 0 or collection_angle <= 0 or convergence_angle < 0:
        raise ValueError("beam energy and collection angle must be > 0, convergence angle >= 0")
    energy = np.atleast_1d(np.asarray(energy, dtype=np.float64))
    k0_sq, phi, t_ev = _kinematics(beam_energy_ev, energy)
    theta_max = collection_angle + convergence_angle
    q2_min = k0_sq * phi**2
    q2_max = k0_sq * (phi**2 + 4 * (1 - phi) * math.sin(theta_max / 2) ** 2)
    x = np.linspace(0.0, 1.0, n_angles)[:, None]
    log_q2 = np.log(q2_min) + x * (np.log(q2_max) - np.log(q2_min))  # [n_angles, n_energy]
    q2 = np.exp(log_q2)
    sin_half_sq = np.clip((q2 / k0_sq - phi**2) / (4 * (1 - phi)), 0, 1)
    theta = 2 * np.arcsin(np.sqrt(sin_half_sq))
    weight = collection_efficiency(theta, convergence_angle, collection_angle)
    if shell == "K":
        gos = gos_k(z, energy, q2)
    else:
        if edge_energy is None:
            raise ValueError("the L2,3 model needs the L3 edge energy")
        gos = gos_l23(z, energy, q2, edge_energy)
    integral = np.trapezoid(gos * weight, log_q2, axis=0)
    return FOUR_PI_A0_SQ_BARN * (RYDBERG_EV / energy) * (RYDBERG_EV / t_ev) * integral


def partial_cross_section(
    z: int,
    shell: str,
    edge_energy: float,
    window: float,
    beam_energy_ev: float,
    collection_angle: float,
    convergence_angle: float = 0.0,
    step: float = 0.5,
) -> float:
    """``sigma(beta, Delta)`` (barn per atom): ``dsigma/dE`` integrated from ``edge_energy`` over ``window`` eV."""
    if window <= 0:
        raise ValueError("the integration window must be > 0 eV")
    energy = np.linspace(edge_energy, edge_energy + window, max(int(round(window / step)), 2) + 1)
    dsde = differential_cross_section(
        z, shell, energy, beam_energy_ev, collection_angle, convergence_angle, edge_energy=edge_energy
    )
    return float(np.trapezoid(dsde, energy))
