"""Exponential moving average of a model's weights, matched by parameter name.

``EMA(model, decay)`` keeps a copy whose parameters follow ``p_ema <- d * p_ema + (1 - d) * p``
after every optimizer step, with the warm-up ``d = min(decay, (1 + n) / (10 + n))`` after ``n``
updates (the first update copies), so early, poor weights fade quickly. Parameters are paired by name, not by
position, so modules whose buffers or submodules reorder when copied (e3nn's generated
tensor-product code) are handled. Buffers are constants here and are not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """The averaged copy (``module``) and the number of updates (``n_averaged``)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError("EMA decay must lie in (0, 1)")
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.n_averaged = torch.zeros((), dtype=torch.long)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = dict(model.named_parameters())
        n = int(self.n_averaged)
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        for name, p in self.module.named_parameters():
            if n == 0:
                p.copy_(source[name])
            else:
                p.lerp_(source[name], 1.0 - d)
        self.n_averaged += 1
