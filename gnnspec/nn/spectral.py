"""Parts of the spectrum encoder: a 1D convolution per channel and masked attention pooling.

Spectra arrive as ``[B, C, K]`` (C channels in :data:`gnnspec.channels.CHANNEL_NAMES` order,
K energies on the channel grid) with a mask ``[B, C]`` of the channels that are present. Each
present channel becomes one token: a shared 1D CNN over its K intensities (strided, then
flattened, so peak positions are kept) plus a learned channel embedding. Tokens of one sample
exchange information in a small Transformer and are pooled by attention with a learned query;
missing channels are masked out everywhere, so any subset of channels can be encoded.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelTokenizer(nn.Module):
    """``[T, K]`` intensities of T (sample, channel) pairs -> ``[T, token_dim]`` tokens.

    ``planes``: input planes per energy; 2 when the intensity comes with a coverage plane (1 where
    the energy was measured, 0 where it was not: :func:`tokens_from_spectra`'s ``coverage``).
    """

    def __init__(self, n_energy: int, n_channels: int, conv_channels: list[int], kernel: int, token_dim: int, planes: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        self.planes = planes
        c_in, length = planes, n_energy
        for i, c_out in enumerate(conv_channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2), nn.SiLU()]
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
            c_in = c_out
        self.conv = nn.Sequential(*layers)
        self.flat_dim = c_in * length
        self.project = nn.Linear(self.flat_dim, token_dim)
        self.channel_embedding = nn.Embedding(n_channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, intensity: torch.Tensor, channel: torch.Tensor) -> torch.Tensor:
        """``intensity [T, K]`` (one plane) or ``[T, planes, K]``; ``channel [T]`` channel indices."""
        h = self.conv(intensity.unsqueeze(1) if intensity.dim() == 2 else intensity).flatten(1)
        return self.norm(self.project(h) + self.channel_embedding(channel))


class MaskedAttentionPool(nn.Module):
    """Set pooling: self-attention over present tokens, then attention with a learned query."""

    def __init__(self, dim: int, heads: int = 4, layers: int = 1):
        super().__init__()
        self.encoder = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True),
                layers,
                enable_nested_tensor=False,
            )
            if layers > 0
            else None
        )
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``tokens [B, C, D]``, ``mask [B, C]`` (True = present; every row needs one) -> ``[B, D]``."""
        padding = ~mask
        if self.encoder is not None:
            tokens = self.encoder(tokens, src_key_padding_mask=padding)
        query = self.query.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.attention(query, tokens, tokens, key_padding_mask=padding, need_weights=False)
        return self.norm(pooled.squeeze(1))


def tokens_from_spectra(
    tokenizer: ChannelTokenizer, spectra: torch.Tensor, mask: torch.Tensor, coverage: torch.Tensor | None = None
) -> torch.Tensor:
    """Tokens ``[B, C, D]`` for the present channels only (zeros where ``mask`` is false).

    For a tokenizer with a coverage plane, ``coverage [B, C, K]`` (bool; None: every energy
    measured) is the second plane and the intensity is set to 0 where it is false, so an energy
    that was not measured carries no value, only the fact that it is missing.
    """
    b, c = mask.nonzero(as_tuple=True)
    rows = spectra[b, c]
    if tokenizer.planes == 2:
        cov = torch.ones_like(rows, dtype=torch.bool) if coverage is None else coverage[b, c].to(rows.device)
        rows = torch.stack([torch.where(cov, rows, torch.zeros_like(rows)), cov.to(rows.dtype)], dim=1)
    tok = tokenizer(rows, c)
    out = tok.new_zeros(mask.shape[0], mask.shape[1], tok.shape[-1])
    return out.index_put((b, c), tok)
