"""Spectrum encoder (inverse model): any subset of channels -> the shared embedding space.

Input: environment-averaged spectra ``[B, C, K]`` on the channel grids (normalised as in the
data, unit mean) and a mask ``[B, C]`` of the present channels (at least one per row). Output:
unit vectors ``[B, dim]`` comparable (cosine) with the structure embeddings of environments.
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
        self.tokenizer = ChannelTokenizer(cfg.n_energy, len(cfg.channels), e.conv_channels, e.kernel, e.token_dim)
        self.pool = MaskedAttentionPool(e.token_dim, e.heads, e.layers)
        self.project = mlp(e.token_dim, e.hidden, cfg.embedding.dim)

    def forward(self, spectra: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every spectrum set needs at least one channel")
        tokens = tokens_from_spectra(self.tokenizer, spectra, mask)
        return nn.functional.normalize(self.project(self.pool(tokens, mask)), dim=-1)
