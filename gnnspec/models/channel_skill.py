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
def score_channels(model: nn.Module, data: str, split: str = SPLIT) -> dict[str, dict[str, dict[str, dict]]]:
    """``{mode: {tier: {channel: {"r2", "r2_low", "r2_high", "cosine", "n_sites"}}}}`` on ``split``'s
    sites where FEFF computed the tier, from one pass of ``model`` with its forward members:
    ``forward_ensemble`` (the member mean; only with members) and ``own_forward`` (the model's own
    forward spectrum, ``forward_model_spectra[0]``: the mean of its trained and its own linear
    head, which is what it predicts loaded without its members). Tiers and channels with fewer
    than 3 such sites are left out."""
    from gnnspec.models.forward_ensemble import feff_site_passes, member_count
    from gnnspec.scoring import paired_r2_bootstrap, spectrum_metrics

    modes = MODES if member_count(model) > 1 else MODES[1:]
    tiers, channels = list(model.cfg.tiers), list(model.cfg.channels)
    rows: dict[tuple[str, str], dict[str, list]] = {}
    for t, out, target, ok in feff_site_passes(model, data, split):
        each = out.get("forward_model_spectra")
        arrays = {
            "feff": target,
            "forward_ensemble": out["spectra"],
            "own_forward": each[0] if each is not None else out["spectra"],
        }
        arrays = {k: v.double().cpu().numpy() for k, v in arrays.items() if k == "feff" or k in modes}
        for c, name in enumerate(channels):
            keep = ok[:, c]
            if keep.any():
                got = rows.setdefault((tiers[t], name), {k: [] for k in arrays})
                for k, v in arrays.items():
                    got[k].append(v[keep, c])
    result: dict[str, dict[str, dict[str, dict]]] = {}
    for (tier, name), got in rows.items():
        feff = np.concatenate(got["feff"])
        if len(feff) < 3:
            continue
        for mode in modes:
            pred = np.concatenate(got[mode])
            boot = paired_r2_bootstrap({"model": pred}, feff, "model")["model"]
            result.setdefault(mode, {}).setdefault(tier, {})[name] = {
                "r2": round(boot["r2"], 4),
                "r2_low": round(boot["r2_low"], 4),
                "r2_high": round(boot["r2_high"], 4),
                "cosine": round(spectrum_metrics(pred, feff)["cosine"], 5),
                "n_sites": int(len(pred)),
            }
    return result


def score_both(model: nn.Module, data: str, split: str = SPLIT) -> dict:
    """The record stored under :data:`KEY`: the scores of the forward ensemble (when the model
    has members) and of the own forward side (:func:`score_channels`), with the split and the
    dataset's name and fingerprint."""
    from gnnspec.data.store import SpectraStore

    store = SpectraStore(data)
    name = ((store.metadata() or {}).get("build_config") or {}).get("name") or Path(data).name
    return {"split": split, "dataset": name, "data_sha256": store.fingerprint(), **score_channels(model, data, split)}


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
