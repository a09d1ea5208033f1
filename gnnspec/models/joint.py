"""The joint model: one backbone, several heads, one shared embedding space (fairchem's split).

``JointModel`` holds

* ``backbone`` (:class:`StructureEncoder`), run once over a whole periodic supercell (or a
  non-periodic cluster with zero shifts);
* ``spectra_head``: site spectra of absorbers as sums of per-atom contributions;
* ``env_embedding``: unit structure embeddings of local environments;
* ``encoder``: the inverse model, spectra (any channel subset) -> the same unit embeddings;
* ``properties``: element content and defect heads, applied to either embedding;
* ``log_temperature`` of the contrastive alignment.

User-facing methods (prediction from structures and spectra) live in :class:`ModelAPI`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gnnspec.data import keys as K
from gnnspec.models.api import ModelAPI
from gnnspec.models.backbone import StructureEncoder
from gnnspec.models.config import ModelConfig
from gnnspec.models.encoder import SpectrumEncoder
from gnnspec.models.heads import EnvironmentEmbedding, PropertyHeads, SpectraHead, property_probabilities
from gnnspec.nn.readout import environment_spectra


class JointModel(ModelAPI, nn.Module):
    """Forward model, structure and spectrum embeddings and property heads; see module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = StructureEncoder(cfg.backbone)
        self.spectra_head = SpectraHead(cfg)
        self.env_embedding = EnvironmentEmbedding(cfg.backbone.scalar_dim, cfg.embedding.hidden, cfg.embedding.dim)
        self.encoder = SpectrumEncoder(cfg)
        self.properties = PropertyHeads(cfg.embedding.dim, cfg.property_hidden, len(cfg.content_elements), len(cfg.defects))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.temperature)), requires_grad=cfg.learn_temperature)
        self._compiled_backbone = None

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=1e-3)

    def run_backbone(self, data) -> dict[str, torch.Tensor]:
        """Backbone outputs for a graph or batch (``torch.compile``d when the config says so)."""
        fn = self.backbone
        if self.cfg.compile:
            if self._compiled_backbone is None:
                self._compiled_backbone = torch.compile(self.backbone.forward, dynamic=True)
            fn = self._compiled_backbone
        shift = data[K.EDGE_SHIFT] if K.EDGE_SHIFT in data else None
        return fn(data[K.POS], data[K.Z], data[K.EDGE_INDEX], shift)

    def forward_structure(
        self, data, absorbers: torch.Tensor | None = None, embed: bool = True, spectra: bool = True, tier: int = 0
    ) -> dict[str, torch.Tensor]:
        """One pass over ``data``: site spectra with contributions, node scalars, env embeddings.

        ``absorbers``: node indices to predict (default: every atom with a channel). The dict
        holds the keys of :meth:`ContributionReadout.forward` plus ``absorber_index``,
        ``node_scalars`` and, when ``embed`` and the data has environments,
        ``structure_embedding [n_env, dim]``. ``spectra=False`` skips the forward head; ``tier``
        is the row of the FEFF tier in ``cfg.tiers`` the spectra are predicted for (0: the base
        tier). ``edge_length`` is kept so :meth:`tier_spectra` can reuse the pass.
        """
        z = data[K.Z]
        bb = self.run_backbone(data)
        out: dict[str, torch.Tensor] = {}
        if spectra:
            if absorbers is None:
                absorbers = self.spectra_head.absorbers_of(z)
            out = self.spectra_head(bb["node_scalars"], z, data[K.EDGE_INDEX], bb["edge_length"], absorbers, tier)
        out["node_scalars"] = bb["node_scalars"]
        out["edge_length"] = bb["edge_length"]
        if embed and K.ENV_CENTRE_INDEX in data:
            out["structure_embedding"] = self.env_embedding(
                bb["node_scalars"], data[K.ENV_MEMBER_INDEX], data[K.ENV_MEMBER_ENV], data[K.ENV_CENTRE_INDEX]
            )
        return out

    def tier_spectra(self, out: dict, data, absorbers: torch.Tensor, tier: int) -> dict[str, torch.Tensor]:
        """The forward head's spectra (and contributions) of ``absorbers`` in tier row ``tier``, from
        the backbone pass of a :meth:`forward_structure` result ``out`` (no second backbone pass)."""
        return self.spectra_head(out["node_scalars"], data[K.Z], data[K.EDGE_INDEX], out["edge_length"], absorbers, tier)

    def environment_spectra(self, out: dict, data, use_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Environment spectra ``[n_env, C, K]`` and mask: the mean of member absorbers' predictions.

        ``use_mask [A, C]`` selects which member predictions count (default: all applicable).
        """
        mask = out["spectra_mask"] if use_mask is None else use_mask
        return environment_spectra(
            out["spectra"],
            mask,
            out["absorber_index"],
            data[K.ENV_MEMBER_INDEX],
            data[K.ENV_MEMBER_ENV],
            int(data[K.ENV_CENTRE_INDEX].numel()),
            int(data[K.Z].numel()),
        )

    def encode_spectra(
        self,
        spectra: torch.Tensor,
        mask: torch.Tensor,
        quantification: torch.Tensor | None = None,
        coverage: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unit embeddings ``[B, dim]`` of spectra ``[B, C, K]`` with channel mask ``[B, C]``.

        ``quantification [B, C]``: optional elemental quantification (:mod:`gnnspec.quantification`),
        used when the encoder takes it (``cfg.encoder.quantification``), ignored otherwise.
        ``coverage [B, C, K]`` (bool): which energies were measured (None: all), used when the
        encoder takes it (``cfg.encoder.coverage``), ignored otherwise.
        """
        return self.encoder(spectra, mask, quantification, coverage)

    def predict_properties(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        """``content_logits [B, 5]`` and ``defect_logits [B, 2]`` from unit embeddings."""
        return self.properties(embedding)

    def property_answers(self, embedding: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Element-content fractions ``[B, 5]`` and defect probabilities ``[B, 2]`` (float64 numpy) of unit
        embeddings, structure or spectrum side (:func:`gnnspec.models.heads.property_probabilities`)."""
        return property_probabilities(self.properties(embedding))

    def forward(self, data) -> dict[str, torch.Tensor]:
        return self.forward_structure(data)
