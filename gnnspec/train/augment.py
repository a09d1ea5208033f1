"""Spectral augmentation and channel dropout for the spectrum encoder's input.

Spectra ``[B, C, K]`` on channel grids with spacing ``step_ev [C]`` (eV). Every draw comes from
the ``generator`` passed in or, without one, from torch's global generator (checkpointed, so a
resumed run repeats it exactly). Augmentations (each switchable by setting its size to 0): energy
shift (linear interpolation, flat extrapolation), extra Gaussian broadening (truncated at 3 sigma,
edge-padded), the instrument-and-sample model (``instrument``, off by default:
:func:`gnnspec.instrument.instrument_rows`: resolution, plural scattering on EELS channels,
background residual, counting noise, partial windows, unit-mean renormalisation), additive Gaussian
noise and an intensity scale, drawn independently per spectrum, in that order.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from gnnspec.channels import CHANNELS
from gnnspec.instrument import instrument_rows


def grid_steps(channels: list[str]) -> torch.Tensor:
    """Grid spacing (eV) of each channel."""
    return torch.tensor([CHANNELS[c].step for c in channels])


def eels_channels(channels: list[str]) -> torch.Tensor:
    """Whether each channel is an EELS channel (bool ``[C]``): the rows that get plural scattering."""
    return torch.tensor([CHANNELS[c].modality == "eels" for c in channels], dtype=torch.bool)


def shift_spectra(x: torch.Tensor, shift_points: torch.Tensor) -> torch.Tensor:
    """``y(k) = x(k - s)`` by linear interpolation; ``x [R, K]``, ``s [R]`` in grid points."""
    k = x.shape[-1]
    pos = (torch.arange(k, device=x.device, dtype=x.dtype) - shift_points.unsqueeze(-1)).clamp(0, k - 1)
    lo = pos.floor().long().clamp(max=k - 1)
    hi = (lo + 1).clamp(max=k - 1)
    frac = pos - lo.to(x.dtype)
    return torch.gather(x, 1, lo) * (1 - frac) + torch.gather(x, 1, hi) * frac


def broaden_spectra(x: torch.Tensor, sigma_points: torch.Tensor, max_sigma_points: float) -> torch.Tensor:
    """Gaussian convolution of each row ``x [R, K]`` with its own ``sigma [R]`` (grid points)."""
    radius = max(1, math.ceil(3 * max_sigma_points))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    sig = sigma_points.clamp(min=1e-3).unsqueeze(-1)
    kernel = torch.exp(-0.5 * (offsets / sig) ** 2)
    kernel = kernel / kernel.sum(-1, keepdim=True)  # [R, 2r+1]
    padded = F.pad(x.unsqueeze(1), (radius, radius), mode="replicate").squeeze(1)
    windows = padded.unfold(1, 2 * radius + 1, 1)  # [R, K, 2r+1]
    return (windows * kernel.unsqueeze(1)).sum(-1)


def augment_spectra(
    x: torch.Tensor,
    mask: torch.Tensor,
    step_ev: torch.Tensor,
    cfg,
    generator: torch.Generator | None = None,
    eels: torch.Tensor | None = None,
    channels: list[str] | None = None,
) -> torch.Tensor:
    """Augmented copy of ``x [B, C, K]`` (only rows where ``mask`` is true change). ``cfg``: AugmentConfig.

    ``generator`` (CPU): the source of every draw; None draws from torch's global generator (the
    instrument model then runs on a generator seeded by one draw from it). ``eels [C]`` (bool,
    :func:`eels_channels`): the EELS channels, needed when ``cfg.instrument.enabled``. ``channels``:
    the channel names of the ``C`` axis, needed when ``cfg.edge_shift_ev`` names channels (their
    shift amplitude replaces ``shift_ev``).
    """
    return augment_with_coverage(x, mask, step_ev, cfg, generator, eels, channels)[0]


def augment_with_coverage(
    x: torch.Tensor,
    mask: torch.Tensor,
    step_ev: torch.Tensor,
    cfg,
    generator: torch.Generator | None = None,
    eels: torch.Tensor | None = None,
    channels: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`augment_spectra` and the energies each row kept, ``coverage [B, C, K]`` (bool): False
    outside a partial window drawn by the instrument model (``cfg.instrument.partial``), True
    elsewhere; the encoder's coverage input (:mod:`gnnspec.models.encoder`). Same draws, same spectra."""
    coverage = torch.ones(x.shape, dtype=torch.bool, device=x.device)
    b, c = mask.nonzero(as_tuple=True)
    if b.numel() == 0:
        return x, coverage
    rows = x[b, c]
    step = step_ev.to(x.device, x.dtype)[c]
    n = rows.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (hi - lo) + lo).to(x.device, x.dtype)

    edge_shift = getattr(cfg, "edge_shift_ev", None) or {}
    if edge_shift and channels is None:
        raise ValueError("augment.edge_shift_ev needs channels= (the model's channel names) to know each row's channel")
    if edge_shift:
        amp = torch.tensor([float(edge_shift.get(name, cfg.shift_ev)) for name in channels], dtype=x.dtype)[c.cpu()].to(x.device)
        rows = shift_spectra(rows, (2 * uniform(0.0, 1.0) - 1) * amp / step)
    elif cfg.shift_ev > 0:
        rows = shift_spectra(rows, uniform(-cfg.shift_ev, cfg.shift_ev) / step)
    if cfg.broaden_ev > 0:
        sigma = uniform(0.0, cfg.broaden_ev) / step
        rows = broaden_spectra(rows, sigma, float(cfg.broaden_ev / step.min()))
    instrument = getattr(cfg, "instrument", None)
    if instrument is not None and instrument.enabled:
        if eels is None:
            raise ValueError("the instrument augmentation needs eels= (eels_channels(channels)) to know the EELS rows")
        gen = generator
        if gen is None:
            gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        rows, covered = instrument_rows(rows, step_ev.to(x.device)[c], eels.to(x.device)[c], instrument, gen)
        coverage[b, c] = covered
    if cfg.noise > 0:
        rows = rows + cfg.noise * torch.randn(rows.shape, generator=generator).to(x.device, x.dtype)
    if cfg.scale > 0:
        rows = rows * uniform(1.0 - cfg.scale, 1.0 + cfg.scale).unsqueeze(-1)
    out = x.clone()
    out[b, c] = rows
    return out, coverage


def channel_dropout(mask: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop each present channel with probability ``p``, keeping at least one per row; draws from
    ``generator`` (CPU), else torch's global generator."""
    if p <= 0:
        return mask
    drop = torch.rand(mask.shape, generator=generator).to(mask.device) < p
    kept = mask & ~drop
    empty = ~kept.any(dim=1)
    if bool(empty.any()):
        score = torch.rand(mask.shape, generator=generator).to(mask.device).masked_fill(~mask, -1.0)
        pick = score.argmax(dim=1)
        rescue = torch.zeros_like(mask)
        rescue[torch.arange(mask.shape[0], device=mask.device), pick] = True
        kept = kept | (rescue & empty.unsqueeze(1) & mask)
    return kept
