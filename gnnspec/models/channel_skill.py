"""How well each predicted channel matches FEFF on sites the model never learned from.

A prediction's ``meta.spread`` says how much its forward models disagree at one site and energy;
it cannot say that a whole channel is weak. The channel skill does: per tier and channel, the
prediction scored against FEFF's own spectra on the held-out sites of the model's dataset (the
test split, which no training, head fit or calibration sees) where FEFF computed that tier:

* ``r2``: R^2 around the mean FEFF spectrum of those sites, on the channel grid with the
  channel's normalisation (:mod:`gnnspec.channels`): 1 is FEFF exactly, 0 is no better than
  predicting the channel's mean spectrum for every site;
* ``r2_low`` / ``r2_high``: its 95 % percentile-bootstrap interval over the sites
  (:func:`gnnspec.scoring.paired_r2_bootstrap`);
* ``cosine``: the mean cosine similarity of predicted and FEFF spectra (near 1 even for a weak
  channel: every spectrum of a channel shares its gross shape);
* ``n_sites``.

Two scores are stored, for the two ways a checkpoint predicts: ``forward_ensemble`` (the member
mean, ``gnnspec predict``'s default) and ``own_forward`` (``--own-forward``). They are computed
whenever the forward-ensemble record is written (:func:`gnnspec.models.forward_ensemble.attach_members`,
``attach_linear_heads``, the end of ``gnnspec train``) or alone by ``gnnspec ensemble MODEL
--skill``, and kept in that record under :data:`KEY` with the dataset's fingerprint.

``gnnspec predict`` writes the skill of every channel it predicts into each record
(``meta.channel_skill``) and names on stderr, once, every channel below :data:`WEAK_R2`: its
spectra are then a qualitative guide to the FEFF tier, not a stand-in for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

KEY = "channel_skill"
SPLIT = "test"
#: Below this R^2 a channel's predicted spectra explain less than half of FEFF's site-to-site
#: variation: ``predict`` warns that their shape is qualitative.
WEAK_R2 = 0.5
MEANING = (
    "meta.channel_skill: per channel, the prediction (as made here) against FEFF on the held-out test sites of the "
    "model's dataset where FEFF computed the tier: r2 around FEFF's mean spectrum of those sites (1: FEFF exactly, "
    "0: no better than the mean spectrum), r2_low/r2_high its 95 % bootstrap interval over sites, mean cosine, "
    f"n_sites; below r2 {WEAK_R2} the shape is a qualitative guide only"
)
MODES = ("forward_ensemble", "own_forward")


@torch.no_grad()
def score_channels(model: nn.Module, data: str, split: str = SPLIT) -> dict[str, dict[str, dict]]:
    """``{tier: {channel: {"r2", "r2_low", "r2_high", "cosine", "n_sites"}}}`` of ``model`` as it
    predicts now (with or without its forward members) on ``split``'s sites where FEFF computed
    the tier; tiers and channels without such a site (or with fewer than 3) are left out."""
    from gnnspec.models.forward_ensemble import feff_site_passes
    from gnnspec.scoring import paired_r2_bootstrap, spectrum_metrics

    tiers, channels = list(model.cfg.tiers), list(model.cfg.channels)
    rows: dict[tuple[str, str], tuple[list, list]] = {}
    for t, out, target, ok in feff_site_passes(model, data, split):
        pred = out["spectra"].double().cpu().numpy()
        feff = target.double().cpu().numpy()
        for c, name in enumerate(channels):
            keep = ok[:, c]
            if keep.any():
                got = rows.setdefault((tiers[t], name), ([], []))
                got[0].append(pred[keep, c])
                got[1].append(feff[keep, c])
    result: dict[str, dict[str, dict]] = {}
    for (tier, name), (preds, feffs) in rows.items():
        pred, feff = np.concatenate(preds), np.concatenate(feffs)
        if len(pred) < 3:
            continue
        boot = paired_r2_bootstrap({"model": pred}, feff, "model")["model"]
        result.setdefault(tier, {})[name] = {
            "r2": round(boot["r2"], 4),
            "r2_low": round(boot["r2_low"], 4),
            "r2_high": round(boot["r2_high"], 4),
            "cosine": round(spectrum_metrics(pred, feff)["cosine"], 5),
            "n_sites": int(len(pred)),
        }
    return result


def score_both(model: nn.Module, data: str, split: str = SPLIT) -> dict:
    """The record stored under :data:`KEY`: the scores of the forward ensemble (when the model
    has members or linear heads beyond its own) and of the own forward side, with the split and
    the dataset's fingerprint. ``model`` carries its members and full forward-ensemble record;
    both are restored after the own forward side is scored."""
    from gnnspec.data.store import SpectraStore
    from gnnspec.models.forward_ensemble import member_count, own_forward_record

    store = SpectraStore(data)
    name = ((store.metadata() or {}).get("build_config") or {}).get("name") or Path(data).name
    record: dict = {"split": split, "dataset": name, "data_sha256": store.fingerprint()}
    members = list(getattr(model, "forward_members", None) or [])
    full = getattr(model, "forward_ensemble_record", None)
    if member_count(model) > 1:
        record["forward_ensemble"] = score_channels(model, data, split)
    try:
        model.forward_members = []
        model.forward_ensemble_record = own_forward_record(full or {})
        record["own_forward"] = score_channels(model, data, split)
    finally:
        model.forward_members, model.forward_ensemble_record = members, full
    return record


def channel_skill(model: nn.Module, tier: str | None = None) -> dict[str, dict]:
    """The stored skill of every channel in ``tier`` (default: the model's highest fidelity) for
    the way ``model`` predicts (its forward ensemble when members are attached, else its own
    forward side): ``{channel: {...}}``, empty where the checkpoint holds none."""
    from gnnspec.models.forward_ensemble import member_count

    record = (getattr(model, "forward_ensemble_record", None) or {}).get(KEY) or {}
    tier = model.cfg.tiers[model.cfg.tier_index(tier)]
    mode = MODES[0] if member_count(model) > 1 else MODES[1]
    return dict((record.get(mode) or {}).get(tier) or {})


def weak_channel_lines(skill: dict[str, dict], tier: str, channels) -> list[str]:
    """One stderr line per channel of ``channels`` whose skill is below :data:`WEAK_R2`."""
    lines = []
    for name in channels:
        entry = skill.get(name)
        if entry and entry["r2"] < WEAK_R2:
            lines.append(
                f"{name} ({tier} tier): R^2 {entry['r2']:.2f} [{entry['r2_low']:.2f}, {entry['r2_high']:.2f}] against FEFF "
                f"on {entry['n_sites']} held-out sites; its predicted shape is a qualitative guide, not a stand-in for FEFF"
            )
    return lines
