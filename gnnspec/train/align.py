"""Alignment stage: after the joint epochs, train the shared embedding space on every environment.

Why a second stage: a joint step sees one or two supercells, whose environments share most of
their labels, and the forward loss dominates the backbone's gradients; the spectrum encoder then
learns little (measured on the shipped dataset: spectrum-side defect AUROC about 0.5). Here the
backbone and the forward head are frozen, so each environment's backbone features are computed
once, and i.i.d. batches of ``align.batch_size`` environments from all training supercells train

* the structure-embedding projection (:class:`gnnspec.models.heads.EnvironmentEmbedding`),
* the spectrum encoder (with the joint stage's augmentation and channel dropout; when it takes an
  elemental quantification, that input comes from the environment's content with the
  augmentation's relative error and dropout, :mod:`gnnspec.quantification`),
* the property heads, on both sides of the space,

The encoder's input spectra are the FEFF environment spectra of the dataset's base tier, or
(``align.spectra_tier``) the frozen forward model's environment spectra in a higher tier for
every environment: the forward model as the simulator of a tier whose FEFF runs cover only a
few sites (the model's own trained tier head here; :mod:`gnnspec.train.realign` continues the
stage on the forward ensemble's spectra once one is attached). The encoder's input standardisation is then refitted to those spectra (a higher tier
has white lines and pre-edges where the base tier's spread is small: standardised with the base
tier's statistics they would be tens of standard deviations off). Then the structures of the joint stage's generated pool (``align.generated``, drawn
across the composition triangle and Li orderings with ``generated.wide``) can join the training
environments: they have no FEFF spectra, but the forward model simulates them. Either way, with a label-aware contrastive loss (:func:`gnnspec.train.losses.label_contrastive`: a spectrum
embedding is pulled towards the structure embeddings of every environment with the same defect
labels and element content, the retrieval criterion) plus the content and defect losses. The
forward model's spectra and per-atom contributions are unchanged by this stage.

Per epoch the validation split is scored (spectrum-side defect AUROC, content MAE and label-match
hit@1 of spectrum queries against a library of training and validation structure embeddings;
for an encoder that takes a quantification, also ``quantified_hit@1`` with the exact one); the
weights of the epoch with the best validation hit@1 (the mean of both, when there are two) are
kept.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from gnnspec.models.environment_table import SIMULATED, EnvironmentTable
from gnnspec.quantification import channel_element_index, training_input
from gnnspec.scoring import hit_rates, property_metrics
from gnnspec.structures.environments import labels_match
from gnnspec.train.augment import augment_with_coverage, channel_dropout, eels_channels, grid_steps
from gnnspec.train.losses import content_loss, defect_loss, label_contrastive, same_labels

TRAINED = ("env_embedding", "encoder", "properties")


def _set_trainable(model, trainable: bool) -> list[torch.nn.Parameter]:
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(not trainable or name.split(".")[0] in TRAINED)
        if name.split(".")[0] in TRAINED:
            params.append(p)
    return params


@torch.no_grad()
def score(model, query: EnvironmentTable, library: list[EnvironmentTable], content_tol: float) -> dict[str, float]:
    """Spectrum-side metrics of ``query`` and label-match hit@1 against the library's structure embeddings."""
    model.eval()
    q = query.with_spectra
    lib = (
        torch.cat([t.structure_embeddings(model) for t in library]),
        torch.cat([t.content for t in library]),
        torch.cat([t.defects for t in library]),
    )
    out = _score_embeddings(model, query, q, query.spectrum_embeddings(model, q), lib, content_tol)
    if model.encoder.takes_quantification:
        quantified = _score_embeddings(model, query, q, query.spectrum_embeddings(model, q, quantified=True), lib, content_tol)
        out.update({f"quantified_{k}": v for k, v in quantified.items()})
    return out


def selection_score(scores: dict[str, float]) -> float:
    """What the best epoch maximises: hit@1, averaged with ``quantified_hit@1`` when scored."""
    return 0.5 * (scores["hit@1"] + scores["quantified_hit@1"]) if "quantified_hit@1" in scores else scores["hit@1"]


def embedding_outcomes(model, query: EnvironmentTable, q, emb, lib, content_tol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of the spectrum embeddings ``emb`` of ``query``'s rows ``q``: whether the nearest
    library structure embedding shares its labels (``[n]`` bool), and the predicted content
    ``[n, 5]`` and defect probabilities ``[n, 2]``; ``lib``: the library's (structure embeddings,
    content, defects)."""
    lib_emb, lib_content, lib_defects = lib
    content, prob = model.property_answers(emb)
    best = (emb @ lib_emb.t()).argmax(dim=1)
    hit = labels_match(lib_content[best], lib_defects[best], query.content[q], query.defects[q], content_tol)
    return hit.cpu().numpy(), content, prob


def _score_embeddings(model, query: EnvironmentTable, q, emb, lib, content_tol) -> dict[str, float]:
    """Metrics of the spectrum embeddings ``emb`` of ``query``'s rows ``q`` (:func:`embedding_outcomes`)."""
    hit, content, prob = embedding_outcomes(model, query, q, emb, lib, content_tol)
    out = {"hit@1": hit_rates(hit[:, None], 1)["hit@1"]}
    return {**out, **property_metrics(content, query.content[q].cpu().numpy(), prob, query.defects[q].cpu().numpy(), model.cfg.defects)}


def table_statistics(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel and energy, the mean and standard deviation ``[C, K]`` of the rows ``x [n, C, K]``
    where ``mask [n, C]`` holds (channels with fewer than two rows: mean 0, std 1), as
    :func:`gnnspec.train.data.spectra_statistics` gives them for FEFF spectra."""
    w = mask.to(x.dtype).unsqueeze(-1)  # [n, C, 1]
    counts = w.sum(0)  # [C, 1]
    mean = (x * w).sum(0) / counts.clamp(min=1.0)
    var = (((x - mean) ** 2) * w).sum(0) / counts.clamp(min=1.0)  # population variance, as masked_moments
    have = counts > 1
    mean = torch.where(have, mean, torch.zeros_like(mean))
    var = torch.where(have, var, torch.ones_like(var))
    return mean.float(), var.clamp(min=1e-8).sqrt().float()


def alignment_tables(model, splits: dict, cfg, generated=None, simulator: str | None = None) -> tuple[EnvironmentTable, EnvironmentTable | None]:
    """The training and validation tables of the alignment stage: the training environments (with
    the generated pool's when ``cfg.generated``) and the validation ones, holding FEFF's base-tier
    spectra or (``cfg.spectra_tier``) the forward model's in that tier, made by ``simulator``
    (:class:`gnnspec.models.environment_table.EnvironmentTable`)."""
    device = next(model.parameters()).device
    tier = None if cfg.spectra_tier is None else model.cfg.tier_index(cfg.spectra_tier)
    extra = list(generated) if cfg.generated and generated is not None else []
    train = EnvironmentTable(model, list(splits["train"]) + extra, device, spectra_tier=tier, simulator=simulator)
    val = EnvironmentTable(model, splits["val"], device, spectra_tier=tier, simulator=simulator) if len(splits.get("val") or []) else None
    return train, val


def recorded_alignment(ckpt: dict, where: str):
    """The alignment stage a checkpoint records: ``(train config dict, AlignConfig,
    AugmentConfig)``; an InputError naming ``where`` when it records none."""
    from gnnspec.config import from_dict
    from gnnspec.errors import InputError
    from gnnspec.models.factory import trained_config
    from gnnspec.train.config import AlignConfig, AugmentConfig

    trained = trained_config(ckpt)
    if not trained.get("align"):
        raise InputError(f"{where}: the checkpoint records no alignment stage to repeat (trained.train_config.align)")
    return trained, from_dict(AlignConfig, trained["align"], f"{where}: align"), from_dict(AugmentConfig, trained["augment"], f"{where}: augment")


def recorded_alignment_data(model, trained: dict, cfg, data: str, where: str) -> tuple[dict, list | None]:
    """What a repeat of a checkpoint's alignment stage trains on: the splits of ``data`` as ``model``
    reads them and, when ``cfg.generated``, the same generated pool its training drew
    (``trained["generated"]``, the recorded training config); ``where`` names the checkpoint in errors."""
    from gnnspec.config import from_dict
    from gnnspec.train.config import GeneratedConfig
    from gnnspec.train.data import generated_pool, load_splits

    splits = load_splits(data, model.cfg.backbone.cutoff, model.cfg.channels, tier=model.cfg.tiers[0])
    pool = None
    if cfg.generated:
        pool = generated_pool(from_dict(GeneratedConfig, trained.get("generated"), f"{where}: generated"), model.cfg.backbone.cutoff, model.cfg.channels)
    return splits, pool


def align_embeddings(
    model, splits: dict, cfg, augment, seed: int = 0, log=None, should_stop=None, generated=None, tables=None
) -> dict | None:
    """Run the alignment stage on ``model`` in place; returns a report, or None when stopped.

    ``generated``: structure graphs without spectra whose environments join the training ones
    when ``cfg.generated`` (needs ``cfg.spectra_tier``). ``tables``: the (train, val) tables of
    :func:`alignment_tables`, made once for several runs of the stage on the same backbone and
    forward model (default: made here).
    ``cfg``: :class:`gnnspec.train.config.AlignConfig`; ``augment``: the joint stage's
    :class:`~gnnspec.train.config.AugmentConfig`. ``log(scalars, epoch)`` receives the losses and
    validation scores per epoch; ``should_stop()`` is asked between steps (Ctrl-C): the stage
    then returns None and leaves the model as it found it.
    """
    device = next(model.parameters()).device
    initial = copy.deepcopy(model.state_dict())
    tier = None if cfg.spectra_tier is None else model.cfg.tier_index(cfg.spectra_tier)
    extra = list(generated) if cfg.generated and generated is not None else []
    train, val = tables if tables is not None else alignment_tables(model, splits, cfg, generated)
    if tier is not None:  # the encoder standardises its inputs: with the statistics of the spectra it now learns
        model.encoder.set_input_statistics(*table_statistics(train.x, train.mask))
    params = _set_trainable(model, True)
    gen = torch.Generator().manual_seed(seed)  # batch order
    draws = torch.Generator().manual_seed(seed + 1)  # augmentation, channel dropout, quantification: never the global RNG
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows = train.with_spectra
    steps_per_epoch = (len(rows) + cfg.batch_size - 1) // cfg.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=max(2, cfg.epochs * steps_per_epoch))
    step_ev = grid_steps(model.cfg.channels).to(device)
    eels = eels_channels(model.cfg.channels).to(device)
    quantified = model.encoder.takes_quantification
    element_index = channel_element_index(model.cfg.channels)
    best, best_state = None, None
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            sums = {"contrastive": 0.0, "content": 0.0, "defects": 0.0}
            order = rows[torch.randperm(len(rows), generator=gen)]
            for start in range(0, len(rows), cfg.batch_size):
                if should_stop is not None and should_stop():
                    model.load_state_dict(initial)
                    return None
                idx = order[start : start + cfg.batch_size]
                mask = channel_dropout(train.mask[idx], augment.channel_dropout, draws) if augment.enabled else train.mask[idx]
                x, coverage = train.x[idx], None
                if augment.enabled:
                    x, coverage = augment_with_coverage(x, mask, step_ev, augment, draws, eels=eels, channels=model.cfg.channels)
                quant = training_input(train.content[idx], mask, element_index, augment, generator=draws) if quantified else None
                spec = model.encode_spectra(x, mask, quant, coverage)
                struct = train.structure_embeddings(model, idx)
                pos = same_labels(train.content[idx], train.defects[idx], cfg.content_tol)
                terms = {"contrastive": label_contrastive(spec, struct, pos, cfg.temperature), "content": 0.0, "defects": 0.0}
                for side in (spec, struct):
                    props = model.predict_properties(side)
                    terms["content"] = terms["content"] + content_loss(props["content_logits"], train.content[idx])
                    terms["defects"] = terms["defects"] + defect_loss(props["defect_logits"], train.defects[idx])
                loss = sum(getattr(cfg, k) * v for k, v in terms.items())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                for k, v in terms.items():
                    sums[k] += float(v.detach() if torch.is_tensor(v) else v) / steps_per_epoch
            scalars = {f"align/{k}": v for k, v in sums.items()}
            if val is not None:
                val_scores = score(model, val, [train, val], cfg.content_tol)
                scalars.update({f"align/val_{k}": v for k, v in val_scores.items()})
                if best is None or selection_score(val_scores) >= selection_score(best):
                    best, best_state = dict(val_scores, epoch=epoch), copy.deepcopy(model.state_dict())
            if log is not None:
                log(scalars, epoch)
    finally:
        _set_trainable(model, False)
        model.eval()
    if best_state is not None:
        model.load_state_dict(best_state)
    return {
        "epochs": cfg.epochs,
        "best_epoch": None if best is None else best["epoch"],
        "val": best,
        "environments": len(rows),
        "generated_structures": len(extra),
        "spectra": "FEFF, base tier" if tier is None else f"{SIMULATED[train.simulator]}, tier {cfg.spectra_tier}",
    }

