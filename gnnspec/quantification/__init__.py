"""Elemental quantification: the relative amounts of the elements whose edges were measured.

The physics. After background removal, the intensity under a core-loss edge divided by the
element's partial ionisation cross-section is proportional to the number of atoms of that
element in the probed volume (EELS: Egerton, *Electron Energy-Loss Spectroscopy in the Electron
Microscope*, section 4.5; XAS: the edge jump). Only ratios are measurable (absolute numbers
depend on thickness, dose and flux), so a quantification is a set of atom fractions of the
elements whose edges were recorded. Typical accuracy is 5-10 % relative for K edges and
10-20 % for L2,3 edges.

gnnspec normalises every spectrum to unit mean (:mod:`gnnspec.channels`), so the spectra alone
carry no amounts. The spectrum encoder (:class:`gnnspec.models.encoder.SpectrumEncoder`, when
its config has ``quantification: true``) takes the quantification as an optional second input.

Representation, one place for the whole project: for spectra ``[B, C, K]`` with channel mask
``[B, C]``, ``quantification [B, C]`` holds, for every present channel, the atom fraction of its
absorbing element among the distinct absorbing elements of the row's present channels (two
channels of one element, such as Ni K and Ni L3, hold the same value; the distinct elements'
fractions sum to 1). Absent channels hold 0. A row of NaN means "not known"; the encoder then
uses its learned "unknown" input, so every spectrum set can be encoded with or without it.

For simulated environments the amounts are the element content of the environment
(:mod:`gnnspec.labels`: atom fractions of Li, Ni, Mn, Co, O among its members);
training perturbs them by a log-normal relative error and drops them at random
(:func:`perturb_amounts`), so the encoder neither trusts them beyond a measurement's accuracy
nor depends on them.

The package: this module (the encoder's input representation and its training perturbation);
:mod:`~gnnspec.quantification.intensities` (amounts from the integrated raw intensities of FEFF
spectra and per-atom k-factors); :mod:`~gnnspec.quantification.k_factors` (the one reader and
writer of both k-factor files); :mod:`~gnnspec.quantification.commands` (``gnnspec quantify``).
Quantifying a *measured* EELS survey (background fits, hydrogenic cross-sections, optics) is
:mod:`gnnspec.measured.quantify`: it needs the measured-edge processing of
:mod:`gnnspec.measured`, which sits above this package, and it reads and writes its k-factors
here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.labels import CONTENT_ELEMENTS

#: Elements whose amounts are tracked: the element content's (:data:`gnnspec.labels.CONTENT_ELEMENTS`).
ELEMENTS = CONTENT_ELEMENTS


def channel_element_index(channels: Sequence[str]) -> torch.Tensor:
    """Index into :data:`ELEMENTS` of each channel's absorbing element, ``[C]``."""
    missing = [c for c in channels if CHANNELS[c].element not in ELEMENTS]
    if missing:
        raise ValueError(f"channels {missing} absorb in an element outside {ELEMENTS}")
    return torch.tensor([ELEMENTS.index(CHANNELS[c].element) for c in channels], dtype=torch.long)


def channel_fractions(amounts: torch.Tensor, mask: torch.Tensor, element_index: torch.Tensor) -> torch.Tensor:
    """Quantification ``[B, C]`` from element amounts ``[B, 5]`` (any scale) and the channel mask.

    A row whose amounts are NaN, or whose present elements have no positive total, comes out NaN.
    """
    element_index = element_index.to(amounts.device)
    present = torch.zeros_like(amounts, dtype=torch.bool)
    b, c = mask.nonzero(as_tuple=True)
    present[b, element_index[c]] = True
    total = torch.where(present, amounts, torch.zeros_like(amounts)).sum(dim=1, keepdim=True)
    frac = amounts[:, element_index] / total
    unknown = ~(total > 0)  # also NaN amounts
    out = torch.where(mask, frac, torch.zeros_like(frac))
    return torch.where(unknown.expand_as(out), torch.full_like(out, math.nan), out)


def perturb_amounts(
    amounts: torch.Tensor, relative_error: float, dropout: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A measurement's draw: amounts times ``exp(N(0, relative_error))`` per element; rows NaN with
    probability ``dropout``.

    Draws come from ``generator`` (a CPU generator), else torch's global one (in training: a
    resumed run repeats them).
    """
    out = amounts
    if relative_error > 0:
        noise = torch.randn(amounts.shape, generator=generator)  # float32 draws, as the shipped model was trained with
        out = out * torch.exp(relative_error * noise).to(amounts.device, amounts.dtype)
    if dropout > 0:
        drop = (torch.rand(amounts.shape[0], generator=generator) < dropout).to(amounts.device)
        out = torch.where(drop.unsqueeze(1), torch.full_like(out, math.nan), out)
    return out


def training_input(
    content: torch.Tensor, mask: torch.Tensor, element_index: torch.Tensor, augment, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The encoder's quantification ``[B, C]`` for environments of known ``content`` ``[B, 5]``.

    While training with augmentation on (``augment``: :class:`gnnspec.train.config.AugmentConfig`),
    drawn by :func:`perturb_amounts` with ``augment.quantification_error`` and
    ``augment.quantification_dropout`` (from ``generator``, else torch's global one); otherwise exact.
    """
    if training and augment.enabled:
        content = perturb_amounts(content, augment.quantification_error, augment.quantification_dropout, generator)
    return channel_fractions(content, mask, element_index)


def from_mapping(mapping: Mapping[str, float], channels: Sequence[str], present: Sequence[str], where: str) -> torch.Tensor:
    """Quantification ``[C]`` of one spectrum set from a user's ``{element: amount}``.

    ``present``: the channel names the set holds. Amounts are atom fractions, percentages or
    counts (only ratios matter); every present channel's element needs a positive finite amount.
    Elements without a present channel are ignored. ``where`` names the file or record in errors.
    """
    from gnnspec.spectra import check_quantification  # the one validation of a quantification mapping

    amounts = torch.zeros(len(ELEMENTS), dtype=torch.float64)
    for element, value in check_quantification(mapping, where).items():
        amounts[ELEMENTS.index(element)] = value
    mask = torch.tensor([[c in present for c in channels]])
    needed = sorted({CHANNELS[c].element for c in channels if c in present})
    lacking = [el for el in needed if not amounts[ELEMENTS.index(el)] > 0]
    if lacking:
        raise InputError(
            f"{where}: the quantification gives no positive amount for {', '.join(lacking)}, "
            f"whose edges are present (it needs one for each of: {', '.join(needed)})"
        )
    return channel_fractions(amounts[None], mask, channel_element_index(channels))[0]
