"""The training objective as one module, so DistributedDataParallel wraps a single forward.

``Objective(model, cfg)(batch, generated=None)`` returns ``(loss, logs)``:

* ``spectra``: forward site spectra of labelled absorbers against FEFF (MSE + derivative, per
  channel divided by the channel's variance over the training set: about 1 - R^2);
* ``contrastive``: symmetric InfoNCE between the structure embedding of an environment and
  the spectrum embedding of its (augmented, channel-dropped) FEFF environment spectra;
* ``content``/``defects``: property heads on both embeddings;
* with a ``generated`` batch (no FEFF spectra): the forward model, without gradients, gives
  the environment spectra; the encoder learns from them (contrastive against the detached
  structure embedding, and the property losses), weighted by ``generated.weight``.

An encoder that takes an elemental quantification (:mod:`gnnspec.quantification`) gets one
made from the environment's content, with the augmentation's relative error and dropout in
training mode and exact in evaluation mode. Augmentation and channel dropout apply in training
mode only; evaluation mode uses every
environment and every channel, unaugmented.
"""

from __future__ import annotations

import torch
from torch import nn

from gnnspec.data import keys as K
from gnnspec.quantification import channel_element_index, training_input
from gnnspec.train.augment import augment_with_coverage, channel_dropout, eels_channels, grid_steps
from gnnspec.train.config import TrainConfig
from gnnspec.train.losses import content_loss, defect_loss, info_nce, spectra_loss


class Objective(nn.Module):
    """Wraps the joint model; ``forward`` computes every weighted loss term of one step."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, channel_scale: torch.Tensor | None = None, tier_channel_scale: torch.Tensor | None = None):
        """``channel_scale [C]``: per-channel weights of the base tier's spectra loss;
        ``tier_channel_scale [T - 1, C]``: those of each further tier (default: the base tier's)."""
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.register_buffer("step_ev", grid_steps(model.cfg.channels), persistent=False)
        self.eels = eels_channels(model.cfg.channels)  # plain attribute (CPU): no buffer for DDP to broadcast
        scale = torch.ones(len(model.cfg.channels)) if channel_scale is None else channel_scale.float()
        self.register_buffer("channel_scale", scale, persistent=False)
        n_extra = len(model.cfg.tiers) - 1
        tier_scale = scale.expand(n_extra, -1).clone() if tier_channel_scale is None else tier_channel_scale.float()
        self.register_buffer("tier_channel_scale", tier_scale, persistent=False)
        self.register_buffer("element_index", channel_element_index(model.cfg.channels), persistent=False)

    def forward(self, batch, generated=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.cfg.loss
        labelled = batch[K.SITE_Y_MASK].any(dim=1).nonzero(as_tuple=True)[0]
        out = self.model.forward_structure(batch, absorbers=labelled, embed=True)
        logs: dict[str, torch.Tensor] = {}
        target = batch[K.SITE_Y][labelled].to(out["spectra"].dtype)
        mask = batch[K.SITE_Y_MASK][labelled] & out["spectra_mask"]
        l_spec, mse_c, counts = spectra_loss(out["spectra"].float(), target.float(), mask, w.derivative, self.channel_scale)
        logs["spectra"] = l_spec.detach()
        logs["channel_mse"] = mse_c
        logs["channel_count"] = counts
        loss = w.spectra * l_spec
        # further FEFF tiers (multi-fidelity): the same head with the tier's embedding, on the sites
        # that tier computed, from the same backbone pass
        for t, tier in enumerate(self.model.cfg.tiers[1:], start=1):
            if K.SITE_Y_TIERS_MASK not in batch:
                break
            tier_mask = batch[K.SITE_Y_TIERS_MASK][:, t - 1]
            sites = tier_mask.any(dim=1).nonzero(as_tuple=True)[0]
            if sites.numel() == 0:
                continue
            tout = self.model.tier_spectra(out, batch, sites, t)
            l_tier, _, _ = spectra_loss(
                tout["spectra"].float(),
                batch[K.SITE_Y_TIERS][sites, t - 1].float(),
                tier_mask[sites] & tout["spectra_mask"],
                w.derivative,
                self.tier_channel_scale[t - 1],
            )
            logs[f"spectra_{tier}"] = l_tier.detach()
            loss = loss + w.spectra * w.tier_weight * l_tier

        env_ok = batch[K.ENV_Y_MASK].any(dim=1).nonzero(as_tuple=True)[0]
        env_ok = self._subsample(env_ok)
        terms = self._embedding_terms(
            out["structure_embedding"][env_ok],
            batch[K.ENV_Y][env_ok],
            batch[K.ENV_Y_MASK][env_ok],
            batch[K.ENV_CONTENT][env_ok],
            batch[K.ENV_DEFECTS][env_ok],
            structure_side=True,
        )
        for name, value in terms.items():
            logs[name] = value.detach()
            loss = loss + getattr(w, name.split("_")[0]) * value

        if generated is not None and self.cfg.generated.weight > 0:
            with torch.no_grad():
                gout = self.model.forward_structure(generated, embed=True)
                env_y, env_mask = self.model.environment_spectra(gout, generated)
            sel = self._subsample(env_mask.any(dim=1).nonzero(as_tuple=True)[0])
            gterms = self._embedding_terms(
                gout["structure_embedding"][sel].detach(),
                env_y[sel].detach(),
                env_mask[sel],
                generated[K.ENV_CONTENT][sel],
                generated[K.ENV_DEFECTS][sel],
                structure_side=False,
            )
            for name, value in gterms.items():
                logs[f"generated_{name}"] = value.detach()
                loss = loss + self.cfg.generated.weight * getattr(w, name.split("_")[0]) * value
        logs["loss"] = loss.detach()
        logs["temperature"] = self.model.temperature.detach()
        return loss, logs

    def _subsample(self, idx: torch.Tensor) -> torch.Tensor:
        n = self.cfg.loss.max_envs
        if not self.training or idx.numel() <= n:
            return idx
        return idx[torch.randperm(idx.numel())[:n].to(idx.device)]

    def _embedding_terms(self, z_struct, env_y, env_mask, content, defects, structure_side: bool) -> dict[str, torch.Tensor]:
        """Contrastive and property losses for one set of environments."""
        w = self.cfg.loss
        terms: dict[str, torch.Tensor] = {}
        if env_y.shape[0] == 0:
            return terms
        need_spec = w.contrastive > 0 or w.content > 0 or w.defects > 0
        if not need_spec:
            return terms
        x, mask, coverage = env_y.float(), env_mask, None
        if self.training and self.cfg.augment.enabled:
            mask = channel_dropout(mask, self.cfg.augment.channel_dropout)
            x, coverage = augment_with_coverage(x, mask, self.step_ev, self.cfg.augment, eels=self.eels, channels=self.model.cfg.channels)
        quant = None
        if self.model.encoder.takes_quantification:
            quant = training_input(content, mask, self.element_index, self.cfg.augment, self.training)
        z_spec = self.model.encode_spectra(x.to(z_struct.dtype), mask, quant, coverage)
        if w.contrastive > 0 and z_spec.shape[0] > 1:
            terms["contrastive"] = info_nce(z_struct.float(), z_spec.float(), self.model.temperature)
        sides = [z_spec, z_struct] if structure_side else [z_spec]
        props = [self.model.predict_properties(z) for z in sides]
        if w.content > 0:
            terms["content"] = sum(content_loss(p["content_logits"].float(), content) for p in props) / len(props)
        if w.defects > 0:
            terms["defects"] = sum(defect_loss(p["defect_logits"].float(), defects) for p in props) / len(props)
        return terms
