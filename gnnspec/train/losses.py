"""Loss terms: forward spectra, contrastive alignment, element content and defects.

All return scalar tensors; masked entries never contribute. Spectra are on the channel grids
with unit mean, so the MSE is in (normalised intensity)^2.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from gnnspec.structures.environments import labels_match


def spectra_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, derivative: float = 1.0, scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked per-channel MSE plus ``derivative`` x MSE of first differences along energy.

    ``pred``, ``target`` ``[A, C, K]``, ``mask [A, C]``; ``scale [C]`` multiplies each channel's
    term (training uses 1 / the channel's spectral variance, so the term reads as 1 - R^2 and is
    balanced against the embedding losses). Returns the loss (mean over channels that have at
    least one spectrum of per-channel means over spectra), the per-channel intensity MSE ``[C]``
    and the number of spectra per channel ``[C]``.
    """
    w = mask.to(pred.dtype)
    err = (pred - target).pow(2).mean(-1)  # [A, C]
    if derivative > 0:
        err_d = (pred.diff(dim=-1) - target.diff(dim=-1)).pow(2).mean(-1)
    else:
        err_d = torch.zeros_like(err)
    counts = w.sum(0)  # [C]
    denom = counts.clamp(min=1.0)
    mse_c = (err * w).sum(0) / denom
    loss_c = mse_c + derivative * (err_d * w).sum(0) / denom
    if scale is not None:
        loss_c = loss_c * scale.to(loss_c.dtype)
    present = counts > 0
    if not bool(present.any()):
        return pred.sum() * 0.0, mse_c.detach(), counts
    return loss_c[present].mean(), mse_c.detach(), counts


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE between paired unit embeddings ``a [B, D]`` and ``b [B, D]`` (row i with row i)."""
    logits = a @ b.t() / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def content_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL divergence from the target fractions ``[B, n]`` to ``softmax(logits)`` (0 when equal)."""
    t = target / target.sum(-1, keepdim=True).clamp(min=1e-12)
    logp = F.log_softmax(logits, dim=-1)
    return (t * (torch.log(t.clamp(min=1e-12)) - logp)).sum(-1).mean()


def defect_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of independent defect logits ``[B, n]`` against 0/1 targets."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def same_labels(content: torch.Tensor, defects: torch.Tensor, content_tol: float) -> torch.Tensor:
    """``[B, B]`` bool: environments i and j have the same defect labels and content MAE <= ``content_tol``.

    The label match of nearest-environment retrieval (a query is answered correctly when the
    retrieved environment matches it in this sense); the diagonal is always true.
    """
    return labels_match(content[:, None], defects[:, None], content[None], defects[None], content_tol)


def label_contrastive(a: torch.Tensor, b: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric cross-modal contrastive loss with label-defined positives (supervised InfoNCE).

    ``a [B, D]`` and ``b [B, D]`` are unit embeddings of the same B environments (two sides);
    ``positives [B, B]`` marks pairs that count as a match (:func:`same_labels`). Each row's
    target is uniform over its positives, so an embedding is pulled towards every environment
    with its labels and pushed from the others. With ``positives`` the identity this is
    :func:`info_nce`.
    """
    logits = a @ b.t() / temperature
    target = positives.to(logits.dtype)
    loss_ab = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_ba = -(target.t() / target.t().sum(1, keepdim=True) * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return 0.5 * (loss_ab + loss_ba)
