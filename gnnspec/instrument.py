"""One instrument-and-sample model: what turns a FEFF spectrum into a measured-looking one.

Units, once for the whole module: energies and energy widths in eV; every width is a full width
at half maximum (FWHM), with ``sigma = FWHM / (2 sqrt(2 ln 2))`` for a Gaussian; ``step`` is the
spacing (eV) of a uniform energy grid; ``thickness`` is t/lambda, the specimen thickness in units
of the plasmon (inelastic) mean free path; ``counts`` is the expected total number of counts of
the whole spectrum on its grid.

Operators act on rows ``x [R, K]`` (torch, computed in their own float dtype) on uniform grids, each row with its
own parameters (a float or a tensor ``[R]``), so one call serves a training batch:

* :func:`gaussian_resolution`: the instrument resolution (the zero-loss FWHM for EELS, the stated
  monochromator/beamline resolution for XAS). The kernel is the discrete Gaussian
  ``T(n; s) = exp(-s) I_n(s)`` (Lindeberg 1990, IEEE TPAMI 12, 234) with ``s = (sigma/step)^2``: it
  is non-negative, has variance exactly ``sigma^2`` on the grid for every width (a sampled Gaussian
  narrower than the grid does not) and two of them make one of the summed variance, so widths add
  in quadrature. Edges: each row is mirrored about both ends of its grid (half-sample symmetric
  extension), so intensity blurred past an end comes back in and the area on the grid is
  conserved exactly; a flat end stays flat.
* :func:`plural_scattering` (EELS only): the single-scattering core-loss ``S`` convolved with the
  low-loss distribution ``L = sum_n P_n p^{*n}``, ``P_n = exp(-t) t^n / n!``, ``p^{*0}`` the
  zero-loss delta (the unscattered spectrum), ``p`` the plasmon loss function of unit area
  (:func:`plasmon_loss`). Energies beyond the grid: losses move intensity upwards, so the part
  scattered past the grid's top is lost, and the spectrum below the grid is taken flat at its first
  value (the grid's pre-edge), which scatters into the grid; by default the result is then
  rescaled to the input's area on the grid (``renormalise``), as the channel normalisation would
  anyway; ``renormalise=False`` gives the raw convolution.
* :func:`poisson_noise`: counting noise at ``counts``.
* :func:`background_residual`: what a mis-fitted power-law background leaves.
* :func:`partial_window`: a measurement narrower than the grid, read onto it.

Core-hole lifetime broadening is not applied here: FEFF10 already broadens its spectra by the
core-hole width. :func:`core_hole_width` returns that width (Krause & Oliver 1979 and
Keski-Rahkonen & Krause 1974, via xraydb) for the record (:meth:`Instrument.record`).

:class:`Instrument` applies one fixed instrument to one spectrum (numpy in, numpy out) for
inference and benchmarks; :class:`InstrumentRanges` draws an instrument per row for training, every
draw from an explicit ``torch.Generator`` (never torch's global generator).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from gnnspec.channels import CHANNELS, EDGE_RUNS

#: FWHM / sigma of a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Default plasmon peak (eV) and its FWHM (eV) for NMC (LiMO2) oxides. An assumption, from the
#: free-electron estimate ``Ep = hbar sqrt(n e^2 / (eps0 m))`` for LiCoO2 (32.2 A^3 per formula
#: unit): 25 eV counting the Li 2s, Co 4s and O 2s2p electrons (15 per formula unit), 31 eV with the
#: Co 3d electrons too; d-band damping of transition-metal oxides makes the peak broad, taken as
#: 8 eV FWHM.
PLASMON_EV = 25.0
PLASMON_FWHM_EV = 8.0
#: The Poisson series of plural scattering is summed until the left-out weight is below this.
POISSON_TAIL = 1e-15


def _per_row(value, x: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` (a number or a tensor ``[R]``) as a tensor ``[R]`` of ``x``'s dtype and device."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        v = v.expand(x.shape[0])
    if v.shape != (x.shape[0],):
        raise ValueError(f"{name}: expected one value or one per row ({x.shape[0]}), got shape {tuple(v.shape)}")
    return v


def _check_rows(x: torch.Tensor) -> None:
    if x.ndim != 2 or x.shape[1] < 2 or not x.is_floating_point():
        raise ValueError(f"expected floating-point rows [R, K] with K >= 2, got {x.dtype} {tuple(x.shape)}")


def sigma_from_fwhm(fwhm_ev):
    """Gaussian sigma (eV) of a FWHM (eV)."""
    return fwhm_ev / FWHM_PER_SIGMA


def gaussian_resolution(x: torch.Tensor, step, fwhm_ev) -> torch.Tensor:
    """Each row of ``x [R, K]`` convolved with a Gaussian of FWHM ``fwhm_ev`` (eV); grid spacing ``step`` (eV).

    Discrete Gaussian kernel of variance ``(fwhm/2.3548)^2`` exactly, mirrored edges, area on the
    grid conserved exactly (module docstring). A FWHM of 0 leaves the row unchanged.
    """
    _check_rows(x)
    k = x.shape[1]
    fwhm, dx = _per_row(fwhm_ev, x, "fwhm_ev"), _per_row(step, x, "step")
    if bool((fwhm < 0).any()) or bool((dx <= 0).any()):
        raise ValueError("gaussian_resolution needs fwhm_ev >= 0 and step > 0")
    s = (sigma_from_fwhm(fwhm) / dx) ** 2  # variance in grid points^2
    ext = torch.cat([x, x.flip(-1)], dim=-1)  # half-sample mirror, period 2K
    omega = 2.0 * math.pi * torch.arange(k + 1, dtype=x.dtype, device=x.device) / (2 * k)
    transfer = torch.exp(s.unsqueeze(-1) * (torch.cos(omega) - 1.0))  # DFT of exp(-s) I_n(s)
    out = torch.fft.irfft(torch.fft.rfft(ext, dim=-1) * transfer, n=2 * k, dim=-1)[:, :k]
    return torch.where((fwhm == 0).unsqueeze(-1), x, out)


def _drude_antiderivative(e: np.ndarray, ep: float, width: float) -> np.ndarray:
    """Integral from 0 to ``e`` (eV, >= 0) of the Drude loss function ``E w Ep^2 / ((E^2 - Ep^2)^2 + (E w)^2)``."""
    b = 2.0 * ep**2 - width**2
    q = width * math.sqrt(4.0 * ep**2 - width**2) / 2.0
    return width * ep**2 / (2.0 * q) * (np.arctan((e**2 - b / 2.0) / q) + math.atan(b / (2.0 * q)))


def plasmon_loss(n: int, step: float, plasmon_ev: float = PLASMON_EV, fwhm_ev: float = PLASMON_FWHM_EV) -> np.ndarray:
    """The single-plasmon loss function ``p`` on losses ``0, step, ..., (n-1) step`` (eV), unit total area.

    Drude energy-loss function ``Im(-1/eps) = E w Ep^2 / ((E^2 - Ep^2)^2 + (E w)^2)`` (Egerton,
    *Electron Energy-Loss Spectroscopy in the Electron Microscope*, 3rd ed., 2011, ch. 3, Drude model): zero at
    zero loss, a peak at ``Ep`` of FWHM ``w`` (for ``w << Ep``; 7.94 eV for the defaults), an ``E^-3``
    tail. The slow aperture factor ``ln(1 + (beta/theta_E)^2)`` is left out. Each value is the exact
    integral over its cell ``[(m - 1/2) step, (m + 1/2) step]`` divided by the integral over all
    losses, so the values over all cells sum to 1 and the first ``n`` sum to a little less.
    """
    if not 0 < fwhm_ev < 2 * plasmon_ev:
        raise ValueError(f"plasmon FWHM must lie in (0, 2 Ep) = (0, {2 * plasmon_ev}) eV, got {fwhm_ev}")
    edges = np.clip((np.arange(n + 1) - 0.5) * step, 0.0, None)
    cum = _drude_antiderivative(edges, plasmon_ev, fwhm_ev)
    total = _drude_antiderivative(np.array(np.inf), plasmon_ev, fwhm_ev)
    return np.diff(cum) / total


def poisson_terms(t_max: float) -> int:
    """Largest order ``n`` of the Poisson series needed at thicknesses up to ``t_max`` (left out < 1e-15)."""
    n, term, cum = 0, math.exp(-t_max), math.exp(-t_max)
    while 1.0 - cum > POISSON_TAIL and n < 200:
        n += 1
        term *= t_max / n
        cum += term
    return n


def poisson_weights(thickness: torch.Tensor, n_max: int) -> torch.Tensor:
    """``P_n(t) = exp(-t) t^n / n!`` for ``n = 0..n_max``: ``[R, n_max + 1]`` (t = 0 gives ``[1, 0, ...]``)."""
    n = torch.arange(n_max + 1, dtype=thickness.dtype, device=thickness.device)
    t = thickness.unsqueeze(-1)
    log_w = n * torch.log(t.clamp(min=torch.finfo(t.dtype).tiny)) - t - torch.lgamma(n + 1)
    w = torch.exp(log_w)
    return torch.where((t == 0) & (n > 0), torch.zeros_like(w), w)


@functools.lru_cache(maxsize=16)
def _multi_plasmon(k: int, step: float, plasmon_ev: float, fwhm_ev: float, n_max: int) -> torch.Tensor:
    """``p^{*n}`` on the first ``k`` losses for ``n = 0..n_max``: ``[n_max + 1, k]`` float64 (CPU).

    Losses are non-negative, so the first ``k`` values of an n-fold convolution depend only on the
    first ``k`` values of its factors: each product is a linear convolution (FFT zero-padded to
    ``2k``, no wrap-around) cut to ``k``, exact.
    """
    p = torch.from_numpy(plasmon_loss(k, step, plasmon_ev, fwhm_ev))
    p_hat = torch.fft.rfft(p, n=2 * k)
    terms = [torch.zeros(k, dtype=torch.float64)]
    terms[0][0] = 1.0
    for _ in range(n_max):
        terms.append(torch.fft.irfft(torch.fft.rfft(terms[-1], n=2 * k) * p_hat, n=2 * k)[:k])
    return torch.stack(terms)


def plural_scattering(
    x: torch.Tensor,
    step: float,
    thickness,
    plasmon_ev: float = PLASMON_EV,
    plasmon_fwhm_ev: float = PLASMON_FWHM_EV,
    renormalise: bool = True,
) -> torch.Tensor:
    """Plural (plasmon) scattering of EELS core-loss rows ``x [R, K]`` at ``thickness`` t/lambda.

    ``out = x0 + L * (x - x0)`` with ``L = sum_n P_n(t) p^{*n}`` (module docstring) and ``x0`` each
    row's first value, the flat extension below the grid (a constant convolved with ``L`` stays
    itself). The convolution is an FFT product zero-padded to ``2K`` (no wrap-around). Intensity lost
    past the grid's top is restored as an overall scale when ``renormalise`` (the area on the grid
    is then the input's); a thickness of 0 leaves a row unchanged. ``step``: one grid spacing (eV)
    for all rows.
    """
    _check_rows(x)
    k = x.shape[1]
    t = _per_row(thickness, x, "thickness")
    if bool((t < 0).any()):
        raise ValueError("thickness (t/lambda) must be >= 0")
    step = float(step)
    n_max = poisson_terms(float(t.max()))
    q = _multi_plasmon(k, step, float(plasmon_ev), float(plasmon_fwhm_ev), n_max).to(x.device, x.dtype)
    low_loss = poisson_weights(t, n_max) @ q  # [R, K]
    xf = x
    x0 = xf[:, :1]
    conv = torch.fft.irfft(torch.fft.rfft(xf - x0, n=2 * k) * torch.fft.rfft(low_loss, n=2 * k), n=2 * k)[:, :k]
    out = x0 + conv
    if renormalise:
        before, after = xf.sum(-1, keepdim=True), out.sum(-1, keepdim=True)
        out = torch.where(after != 0, out * before / torch.where(after != 0, after, 1.0), out)
    return torch.where((t == 0).unsqueeze(-1), xf, out)


def poisson_noise(x: torch.Tensor, counts, generator: torch.Generator) -> torch.Tensor:
    """Counting noise: each row scaled to ``counts`` expected counts in total, Poisson sampled, scaled back.

    The expectation is the row's positive part (a row's negative values, residuals of a background
    subtraction, count nothing and get no noise), so ``y = x + (N - lambda) / scale`` with
    ``lambda = max(x, 0) * scale``, ``scale = counts / sum(max(x, 0))``; for a non-negative row that is
    ``N / scale`` exactly. Variance of ``y_i``: ``x_i sum(x) / counts``. Draws come from ``generator``
    (on its device; the result is moved back).
    """
    _check_rows(x)
    n = _per_row(counts, x, "counts")
    if bool((n <= 0).any()):
        raise ValueError("counts must be > 0")
    xf = x
    pos = xf.clamp(min=0.0)
    total = pos.sum(-1, keepdim=True)
    scale = torch.where(total > 0, n.unsqueeze(-1) / torch.where(total > 0, total, 1.0), torch.zeros_like(total))
    lam = pos * scale
    drawn = torch.poisson(lam.to(generator.device), generator=generator).to(x.device)
    noise = torch.where(scale > 0, (drawn - lam) / torch.where(scale > 0, scale, 1.0), torch.zeros_like(lam))
    return xf + noise


def background_residual(x: torch.Tensor, step, amplitude, exponent, offset_ev) -> torch.Tensor:
    """``x`` plus the residual of a mis-fitted power-law background, per row.

    ``residual(E) = a * mean(x) * (1 + (E - E0) / offset)^(-r)``, ``E0`` the first grid energy: the
    shape of ``((E - E0 + offset) / range)^(-r)`` scaled to its value at ``E0``, so ``|a|`` (a signed
    fraction of the row's mean) is the residual's largest size on the grid. ``offset`` (eV) sets the
    curvature: ``offset`` = E0's absolute energy is exactly the amplitude error ``dA E^-r`` of a fitted
    background ``A E^-r``; smaller offsets curve more, like an error in the exponent ``r``; ``r = 0``
    is a constant offset. Applies to XAS rows too (a mis-fitted pre-edge line).
    """
    _check_rows(x)
    k = x.shape[1]
    a, r = _per_row(amplitude, x, "amplitude"), _per_row(exponent, x, "exponent")
    off, dx = _per_row(offset_ev, x, "offset_ev"), _per_row(step, x, "step")
    if bool((off <= 0).any()):
        raise ValueError("background residual offset_ev must be > 0")
    e_rel = dx.unsqueeze(-1) * torch.arange(k, dtype=x.dtype, device=x.device)  # E - E0 (eV)
    shape = (1.0 + e_rel / off.unsqueeze(-1)) ** (-r.unsqueeze(-1))
    return x + a.unsqueeze(-1) * x.mean(-1, keepdim=True) * shape


def partial_window(
    x: torch.Tensor, p: float, generator: torch.Generator, fraction: Sequence[float] = (0.5, 1.0)
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability ``p`` per row, keep a random contiguous window of the grid; return ``(rows, covered [R, K])``.

    The window spans a fraction of the grid's energy range drawn uniformly in ``fraction`` (its
    first and last energies are grid points), at a uniform position. Outside it each row takes the
    value at the window's nearer end: what :func:`gnnspec.channels.to_channel_grid` (and so
    :func:`gnnspec.spectra.spectra_on_grids` and ``gnnspec convert``) make of a measurement that
    covers only the window (flat extrapolation; they refuse coverage below 50 %), before
    normalising. ``covered`` is True on the window's energies (all of a row that keeps its grid).
    """
    _check_rows(x)
    lo, hi = float(fraction[0]), float(fraction[1])
    if not 0 < lo <= hi <= 1 or not 0 <= p <= 1:
        raise ValueError("partial_window needs 0 <= p <= 1 and 0 < fraction[0] <= fraction[1] <= 1")
    r, k = x.shape
    apply = torch.rand(r, generator=generator, dtype=torch.float64) < p
    frac = lo + (hi - lo) * torch.rand(r, generator=generator, dtype=torch.float64)
    n_keep = 1 + torch.round(frac * (k - 1)).long()
    start = torch.floor(torch.rand(r, generator=generator, dtype=torch.float64) * (k - n_keep + 1)).long()
    start = torch.minimum(start, k - n_keep)
    n_keep = torch.where(apply, n_keep, torch.full_like(n_keep, k)).to(x.device)
    start = torch.where(apply, start, torch.zeros_like(start)).to(x.device)
    idx = torch.arange(k, device=x.device).expand(r, k)
    end = (start + n_keep - 1).unsqueeze(-1)
    covered = (idx >= start.unsqueeze(-1)) & (idx <= end)
    out = torch.gather(x, 1, torch.minimum(torch.maximum(idx, start.unsqueeze(-1)), end))
    return out, covered


def core_hole_width(element: str, edge: str) -> float:
    """Core-hole lifetime width (FWHM, eV) of ``element``'s ``edge`` (K, L1, L2, L3, ...) from xraydb.

    FEFF10 applies this broadening itself; gnnspec records it and never applies it again.
    """
    import xraydb

    return float(xraydb.core_width(element, edge))


def channel_core_hole_widths(channel: str) -> dict[str, float]:
    """Core-hole widths (FWHM, eV) of the FEFF runs of a channel, by run edge (``{"L3": .., "L2": ..}``)."""
    ch = CHANNELS[channel]
    return {edge: core_hole_width(ch.element, edge) for edge in EDGE_RUNS[ch.edge]}


def _uniform_grid(energy: np.ndarray) -> float:
    d = np.diff(energy)
    if energy.ndim != 1 or len(energy) < 2 or not np.all(d > 0) or not np.allclose(d, d[0], rtol=1e-6, atol=0):
        raise ValueError("Instrument.apply needs a uniform, increasing energy grid (interpolate onto one first)")
    return float(d[0])


@dataclass(frozen=True)
class Instrument:
    """One instrument and sample: resolution, thickness, counts and background residual.

    ``fwhm_ev``: Gaussian resolution FWHM (eV; the zero-loss FWHM for EELS). ``thickness``: t/lambda
    (EELS only; 0 for none). ``counts``: expected total counts of the spectrum (None: noiseless).
    ``residual``: background-residual amplitude, a signed fraction of the spectrum's mean, with
    ``residual_exponent`` and ``residual_offset_ev`` (:func:`background_residual`). Plasmon peak
    ``plasmon_ev`` of FWHM ``plasmon_fwhm_ev`` (eV).
    """

    fwhm_ev: float = 0.0
    thickness: float = 0.0
    counts: float | None = None
    residual: float = 0.0
    residual_exponent: float = 3.0
    residual_offset_ev: float = 500.0
    plasmon_ev: float = PLASMON_EV
    plasmon_fwhm_ev: float = PLASMON_FWHM_EV

    def __post_init__(self) -> None:
        if self.fwhm_ev < 0 or self.thickness < 0 or (self.counts is not None and self.counts <= 0):
            raise ValueError("Instrument needs fwhm_ev >= 0, thickness >= 0 and counts > 0 (or None)")
        if self.residual_offset_ev <= 0:
            raise ValueError("Instrument needs residual_offset_ev > 0")

    def apply(
        self,
        energy: np.ndarray,
        intensity: np.ndarray,
        *,
        channel: str | None = None,
        generator: torch.Generator | int | None = None,
    ) -> np.ndarray:
        """The spectrum ``intensity`` on the uniform grid ``energy`` (eV) as this instrument measures it.

        In order: resolution, plural scattering, background residual, counting noise; no
        normalisation (map the result with :func:`gnnspec.channels.to_channel_grid`). ``channel``: its
        modality is checked (plural scattering on an XAS channel is an error). ``generator`` (a
        ``torch.Generator`` or an integer seed) is required when ``counts`` is set.
        """
        energy = np.asarray(energy, dtype=np.float64)
        y = np.asarray(intensity, dtype=np.float64)
        if y.shape != energy.shape:
            raise ValueError("energy and intensity must have the same shape")
        step = _uniform_grid(energy)
        if channel is not None and CHANNELS[channel].modality != "eels" and self.thickness > 0:
            raise ValueError(f"{channel}: plural scattering (thickness > 0) applies to EELS channels only")
        x = torch.from_numpy(y.copy()).unsqueeze(0)
        if self.fwhm_ev > 0:
            x = gaussian_resolution(x, step, self.fwhm_ev)
        if self.thickness > 0:
            x = plural_scattering(x, step, self.thickness, self.plasmon_ev, self.plasmon_fwhm_ev)
        if self.residual != 0:
            x = background_residual(x, step, self.residual, self.residual_exponent, self.residual_offset_ev)
        if self.counts is not None:
            if generator is None:
                raise ValueError("Instrument with counts needs a generator (torch.Generator or integer seed)")
            if isinstance(generator, int):
                generator = torch.Generator().manual_seed(generator)
            x = poisson_noise(x, self.counts, generator)
        return x.squeeze(0).numpy()

    def record(self, channel: str | None = None) -> dict:
        """The instrument as plain data; with ``channel``, also FEFF's core-hole widths (FWHM eV, not applied here)."""
        out = asdict(self)
        if channel is not None:
            out["channel"] = channel
            out["core_hole_fwhm_eV"] = channel_core_hole_widths(channel)
            out["core_hole_applied_by"] = "FEFF10"
        return out


@dataclass
class RowInstruments:
    """Per-row instrument draws ``[R]`` (float64): FWHM (eV), t/lambda, counts (None: no noise), residual."""

    fwhm_ev: torch.Tensor
    thickness: torch.Tensor
    counts: torch.Tensor | None
    residual: torch.Tensor
    residual_exponent: torch.Tensor
    residual_offset_ev: torch.Tensor


def _pair(name: str, v: Sequence[float], positive: bool = False) -> None:
    if len(v) != 2 or v[0] > v[1] or v[0] < 0 or (positive and v[0] <= 0):
        raise ValueError(f"{name} must be [low, high] with {'0 <' if positive else '0 <='} low <= high, got {list(v)}")


@dataclass
class InstrumentRanges:
    """Ranges from which training draws one instrument per spectrum (row), independently.

    ``fwhm_ev``: resolution FWHM (eV), uniform. ``thickness``: t/lambda, uniform, on EELS rows only
    (XAS rows get none). ``counts``: expected total counts, log-uniform (None: no counting noise).
    ``residual``: largest background-residual size, a fraction of the row's mean; the amplitude is
    uniform in ``[-residual, residual]``, its exponent uniform in ``residual_exponent`` and its
    offset (eV) log-uniform in ``residual_offset_ev``. ``partial``: probability that a row keeps only
    a window of its grid, a fraction of the range uniform in ``partial_fraction``. Plasmon peak
    ``plasmon_ev`` of FWHM ``plasmon_fwhm_ev`` (eV), fixed.
    """

    fwhm_ev: list[float] = field(default_factory=lambda: [0.3, 2.5])
    thickness: list[float] = field(default_factory=lambda: [0.0, 1.0])
    counts: list[float] | None = field(default_factory=lambda: [1.0e3, 1.0e5])
    residual: float = 0.05
    residual_exponent: list[float] = field(default_factory=lambda: [1.0, 4.0])
    residual_offset_ev: list[float] = field(default_factory=lambda: [30.0, 1000.0])
    partial: float = 0.0
    partial_fraction: list[float] = field(default_factory=lambda: [0.5, 1.0])
    plasmon_ev: float = PLASMON_EV
    plasmon_fwhm_ev: float = PLASMON_FWHM_EV

    def __post_init__(self) -> None:
        _pair("fwhm_ev", self.fwhm_ev)
        _pair("thickness", self.thickness)
        if self.counts is not None:
            _pair("counts", self.counts, positive=True)
        _pair("residual_exponent", self.residual_exponent)
        _pair("residual_offset_ev", self.residual_offset_ev, positive=True)
        _pair("partial_fraction", self.partial_fraction, positive=True)
        if self.residual < 0 or not 0 <= self.partial <= 1 or self.partial_fraction[1] > 1:
            raise ValueError("residual must be >= 0, partial in [0, 1] and partial_fraction within (0, 1]")
        if not 0 < self.plasmon_fwhm_ev < 2 * self.plasmon_ev:
            raise ValueError("plasmon_fwhm_ev must lie in (0, 2 plasmon_ev)")

    def draw(self, eels: torch.Tensor, generator: torch.Generator) -> RowInstruments:
        """One instrument per row; ``eels [R]`` bool marks EELS rows. Draws (CPU, float64) from ``generator``."""
        n = int(eels.shape[0])
        eels = eels.to("cpu", torch.bool)

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

        def log_uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.exp(uniform(math.log(lo), math.log(hi)))

        fwhm = uniform(*self.fwhm_ev)
        thickness = torch.where(eels, uniform(*self.thickness), torch.zeros(n, dtype=torch.float64))
        counts = None if self.counts is None else log_uniform(*self.counts)
        residual = uniform(-self.residual, self.residual)
        exponent = uniform(*self.residual_exponent)
        offset = log_uniform(*self.residual_offset_ev)
        return RowInstruments(fwhm, thickness, counts, residual, exponent, offset)


def instrument_rows(
    x: torch.Tensor, step: torch.Tensor, eels: torch.Tensor, ranges: InstrumentRanges, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``x [R, K]`` (grid spacing ``step [R]`` eV, EELS rows ``eels [R]``) through per-row instruments.

    Draws from ``ranges``; in order: resolution, plural scattering (EELS rows), background residual,
    counting noise, partial window, then each row divided by its mean (the channel normalisation:
    unit mean on the grid). Returns ``(rows, covered [R, K])``.
    """
    draw = ranges.draw(eels, generator)
    dev = x.device
    step = step.to(dev, torch.float64)
    y = gaussian_resolution(x, step, draw.fwhm_ev)
    rows = (eels.to(dev) & (draw.thickness.to(dev) > 0)).nonzero(as_tuple=True)[0]
    for dx in torch.unique(step[rows]).tolist():
        sel = rows[step[rows] == dx]
        y[sel] = plural_scattering(y[sel], dx, draw.thickness.to(dev)[sel], ranges.plasmon_ev, ranges.plasmon_fwhm_ev)
    y = background_residual(y, step, draw.residual, draw.residual_exponent, draw.residual_offset_ev)
    if draw.counts is not None:
        y = poisson_noise(y, draw.counts, generator)
    y, covered = partial_window(y, ranges.partial, generator, ranges.partial_fraction)
    mean = y.mean(-1, keepdim=True)
    return y / torch.where(mean > 0, mean, torch.ones_like(mean)), covered
