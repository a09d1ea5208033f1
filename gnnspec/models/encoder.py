"""Spectrum encoder (inverse model): any subset of channels -> the shared embedding space.

Input: environment-averaged spectra ``[B, C, K]`` on the channel grids (normalised as in the
data, unit mean) and a mask ``[B, C]`` of the present channels (at least one per row). Output:
unit vectors ``[B, dim]`` comparable (cosine) with the structure embeddings of environments.

Spectra of one channel differ from each other by a few per cent of their common shape, so the
encoder first standardises every intensity with the training set's mean and standard deviation
per channel and energy (``input_mean``, ``input_std``: buffers saved with the weights, set once
by training through :meth:`SpectrumEncoder.set_input_statistics`).

With ``encoder.quantification`` on, a second optional input ``quantification [B, C]`` (the atom
fraction of each present channel's element among the present elements, NaN rows unknown; see
:mod:`gnnspec.quantification`) is embedded per channel and added to that channel's token; rows
without it get a learned "unknown" vector instead. Without the option the input is ignored.

With ``encoder.coverage`` on, a third optional input ``coverage [B, C, K]`` (bool) says which
grid energies of each channel were measured: a partial window (a 40 eV XANES scan on a 60 eV
grid) is read by :func:`gnnspec.channels.to_channel_grid` with flat extrapolation, and the
encoder then sees the standardised intensity set to 0 outside the window next to a coverage
plane (see :func:`gnnspec.nn.spectral.tokens_from_spectra`). Training draws the windows
(``augment.instrument.partial``). Without the option the input is ignored and the encoder reads
the flat-extended spectrum.
"""

from __future__ import annotations

import torch
from torch import nn

from gnnspec.models.config import ModelConfig
from gnnspec.models.heads import mlp
from gnnspec.nn.spectral import ChannelTokenizer, MaskedAttentionPool, tokens_from_spectra


class SpectrumEncoder(nn.Module):
    """Per-channel CNN tokens + channel embedding -> masked Transformer pooling -> unit vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e = cfg.encoder
        self.tokenizer = ChannelTokenizer(
            cfg.n_energy, len(cfg.channels), e.conv_channels, e.kernel, e.token_dim, planes=2 if e.coverage else 1
        )
        self.pool = MaskedAttentionPool(e.token_dim, e.heads, e.layers)
        self.project = mlp(e.token_dim, e.hidden, cfg.embedding.dim)
        self.quantity = (
            nn.Sequential(nn.Linear(2, e.token_dim), nn.SiLU(), nn.Linear(e.token_dim, e.token_dim)) if e.quantification else None
        )
        self.unknown_quantity = nn.Parameter(torch.zeros(e.token_dim)) if e.quantification else None
        self.register_buffer("input_mean", torch.zeros(len(cfg.channels), cfg.n_energy))
        self.register_buffer("input_std", torch.ones(len(cfg.channels), cfg.n_energy))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before input standardisation existed: identity statistics
        for name in ("input_mean", "input_std"):
            state_dict.setdefault(prefix + name, getattr(self, name).new_full(getattr(self, name).shape, float(name == "input_std")))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel, per-energy mean and standard deviation (``[C, K]``) of training spectra."""
        self.input_mean.copy_(mean)
        self.input_std.copy_(std.clamp(min=1e-4))

    @property
    def takes_quantification(self) -> bool:
        return self.quantity is not None

    @property
    def takes_coverage(self) -> bool:
        return self.tokenizer.planes == 2

    def _quantity_tokens(self, quantification: torch.Tensor | None, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``[B, C, D]`` added to the tokens: the embedded fraction, or the unknown vector."""
        unknown = self.unknown_quantity.to(like.dtype).expand_as(like)
        if quantification is None:
            return unknown
        q = quantification.to(like.dtype)
        known = (torch.isfinite(q).all(dim=1, keepdim=True) & mask).unsqueeze(-1)
        safe = torch.where(known.squeeze(-1), q, torch.ones_like(q)).clamp(min=1e-3, max=1.0)
        embedded = self.quantity(torch.stack([safe, safe.log()], dim=-1))
        return torch.where(known, embedded, unknown)

    def forward(
        self,
        spectra: torch.Tensor,
        mask: torch.Tensor,
        quantification: torch.Tensor | None = None,
        coverage: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unit embeddings ``[B, dim]``; ``quantification [B, C]`` and ``coverage [B, C, K]`` are
        optional (module docstring)."""
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every spectrum set needs at least one channel")
        if coverage is not None and coverage.shape != spectra.shape:
            raise ValueError(f"coverage has shape {tuple(coverage.shape)}, the spectra {tuple(spectra.shape)}")
        x = (spectra - self.input_mean) / self.input_std
        tokens = tokens_from_spectra(self.tokenizer, x, mask, coverage if self.takes_coverage else None)
        if self.quantity is not None:
            tokens = tokens + self._quantity_tokens(quantification, mask, tokens) * mask.unsqueeze(-1).to(tokens.dtype)
        return nn.functional.normalize(self.project(self.pool(tokens, mask)), dim=-1)
