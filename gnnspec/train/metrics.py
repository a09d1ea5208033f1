"""Evaluation of a joint model on structure graphs with FEFF spectra and environment labels.

Metrics (returned as a nested dict, writable as JSON with :func:`write_metrics`):

* ``channels/<name>``: forward site spectra per channel: ``mse`` (normalised intensity^2),
  ``r2`` = 1 - SS_res / SS_tot with SS_tot taken around the channel's mean spectrum over the
  evaluated sites (a model that predicts the mean spectrum scores 0), ``cosine`` (mean cosine
  similarity of predicted and FEFF spectra) and ``n`` (spectra);
* ``spectra``: the means of those over channels (channels where a metric is NaN, e.g. R^2 of a
  single spectrum, are left out of its mean);
* ``tiers/<tier>``: for a multi-fidelity model, ``channels`` and ``spectra`` as above on the
  sites each further FEFF tier computed, predicted in that tier;
* ``content_mae``: element-content MAE (fraction, mean over the 5 elements), from the
  structure embedding and from the spectrum embedding (all available channels);
* ``defect_auroc``: AUROC per defect from either side (NaN when only one class is present);
  the spectrum side reads the spectra its encoder learned (``spectrum_side_inputs``): FEFF's
  environment spectra, or the forward model's in the tier the encoder was aligned on;
* ``alignment_cosine``: mean cosine between paired structure and spectrum embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gnnspec.data import keys as K
from gnnspec.jsonio import write_json
from gnnspec.models.environment_table import encoder_learned_tier
from gnnspec.quantification import channel_element_index, channel_fractions
from gnnspec.scoring import auroc, spectrum_metrics


@torch.no_grad()
def evaluate(model, dataset, batch_size: int = 4, device: str | torch.device | None = None) -> dict:
    """Metrics of ``model`` (a :class:`JointModel`) on ``dataset`` (structure graphs); see module docstring."""
    from torch_geometric.loader import DataLoader

    was_training = model.training
    model.eval()
    p = next(model.parameters())
    device = p.device if device is None else torch.device(device)
    channels = list(model.cfg.channels)
    preds: dict[int, list] = {c: [] for c in range(len(channels))}
    targets: dict[int, list] = {c: [] for c in range(len(channels))}
    extra = list(model.cfg.tiers[1:])
    tier_preds: dict[str, dict[int, list]] = {t: {c: [] for c in range(len(channels))} for t in extra}
    tier_targets: dict[str, dict[int, list]] = {t: {c: [] for c in range(len(channels))} for t in extra}
    env: dict[str, list] = {k: [] for k in ("zs", "zp", "content", "defects", "cs", "cp", "ds", "dp", "cq", "dq")}
    quantified = model.encoder.takes_quantification
    element_index = channel_element_index(channels)
    aligned = encoder_learned_tier(model)
    encoder_tier = None if aligned is None else model.cfg.tier_index(aligned)
    n_structures = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator()):
        batch = batch.to(device)
        batch.pos, batch.edge_shift = batch.pos.to(p.dtype), batch.edge_shift.to(p.dtype)
        n_structures += int(batch.num_graphs)
        labelled = batch[K.SITE_Y_MASK].any(dim=1).nonzero(as_tuple=True)[0]
        out = model.forward_structure(batch, absorbers=labelled, embed=True)
        mask = (batch[K.SITE_Y_MASK][labelled] & out["spectra_mask"]).cpu().numpy()
        pr = out["spectra"].double().cpu().numpy()
        tg = batch[K.SITE_Y][labelled].double().cpu().numpy()
        for c in range(len(channels)):
            preds[c].append(pr[mask[:, c], c])
            targets[c].append(tg[mask[:, c], c])
        for t, tier in enumerate(extra, start=1):
            if K.SITE_Y_TIERS_MASK not in batch:
                break
            sites = batch[K.SITE_Y_TIERS_MASK][:, t - 1].any(dim=1).nonzero(as_tuple=True)[0]
            if sites.numel() == 0:
                continue
            tout = model.tier_spectra(out, batch, sites, t)
            tmask = (batch[K.SITE_Y_TIERS_MASK][sites, t - 1] & tout["spectra_mask"]).cpu().numpy()
            tpr, ttg = tout["spectra"].double().cpu().numpy(), batch[K.SITE_Y_TIERS][sites, t - 1].double().cpu().numpy()
            for c in range(len(channels)):
                tier_preds[tier][c].append(tpr[tmask[:, c], c])
                tier_targets[tier][c].append(ttg[tmask[:, c], c])
        env_y, env_mask = batch[K.ENV_Y], batch[K.ENV_Y_MASK]
        if encoder_tier is not None:  # the spectra the encoder learned: the forward model's in that tier
            env_y, env_mask = model.environment_spectra(model.forward_structure(batch, embed=False, tier=encoder_tier), batch)
        ok = env_mask.any(dim=1)
        if bool(ok.any()):
            zs = out["structure_embedding"][ok]
            zp = model.encode_spectra(env_y[ok].to(p.dtype), env_mask[ok])
            (cs, ds), (cp, dp) = model.property_answers(zs), model.property_answers(zp)
            env["zs"].append(zs.double().cpu().numpy())
            env["zp"].append(zp.double().cpu().numpy())
            env["content"].append(batch[K.ENV_CONTENT][ok].double().cpu().numpy())
            env["defects"].append(batch[K.ENV_DEFECTS][ok].double().cpu().numpy())
            env["cs"].append(cs)
            env["cp"].append(cp)
            env["ds"].append(ds)
            env["dp"].append(dp)
            if quantified:  # the same spectra with the exact elemental quantification
                quant = channel_fractions(batch[K.ENV_CONTENT][ok].to(p.dtype), env_mask[ok], element_index)
                cq, dq = model.property_answers(model.encode_spectra(env_y[ok].to(p.dtype), env_mask[ok], quant))
                env["cq"].append(cq)
                env["dq"].append(dq)
    model.train(was_training)

    per_channel, summary = _channel_table(channels, preds, targets, model.cfg.n_energy)
    metrics: dict = {
        "n_structures": n_structures,
        "n_site_spectra": int(sum(m["n"] for m in per_channel.values())),
        "channels": per_channel,
        "spectra": summary,
    }
    if extra:
        metrics["tiers"] = {}
        for tier in extra:
            table, tier_summary = _channel_table(channels, tier_preds[tier], tier_targets[tier], model.cfg.n_energy)
            metrics["tiers"][tier] = {"channels": table, "spectra": tier_summary, "n_site_spectra": int(sum(m["n"] for m in table.values()))}
    if env["zs"]:
        e = {key: np.concatenate(v) for key, v in env.items() if v}
        metrics["n_environments"] = int(len(e["zs"]))
        metrics["content_mae"] = {
            "structure": float(np.abs(e["cs"] - e["content"]).mean()),
            "spectra": float(np.abs(e["cp"] - e["content"]).mean()),
        }
        sides = (("structure", "ds"), ("spectra", "dp")) + ((("spectra_quantified", "dq"),) if quantified else ())
        if quantified:
            metrics["content_mae"]["spectra_quantified"] = float(np.abs(e["cq"] - e["content"]).mean())
        metrics["defect_auroc"] = {
            side: {name: auroc(e[key][:, j], e["defects"][:, j]) for j, name in enumerate(model.cfg.defects)} for side, key in sides
        }
        metrics["alignment_cosine"] = float((e["zs"] * e["zp"]).sum(1).mean())
        metrics["spectrum_side_inputs"] = "FEFF environment spectra" if aligned is None else f"forward model's environment spectra, tier {aligned}"
    return metrics


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def flat_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    """``{"channels/Ni-K-xas/r2": 0.9, ...}``: nested metrics as one level of scalars."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_metrics(value, name + "/"))
        elif isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def write_metrics(metrics: dict, path: str | Path) -> None:
    """Write ``metrics`` as JSON (NaN written as null)."""
    write_json(path, metrics, indent=2)


def _channel_table(channels: list[str], preds: dict[int, list], targets: dict[int, list], k: int) -> tuple[dict, dict]:
    """Per-channel :func:`spectrum_metrics` of gathered predictions and their mean over channels with spectra."""
    per_channel = {}
    for c, name in enumerate(channels):
        pr = np.concatenate(preds[c]) if preds[c] else np.zeros((0, k))
        tg = np.concatenate(targets[c]) if targets[c] else np.zeros((0, k))
        per_channel[name] = spectrum_metrics(pr, tg)
    have = [m for m in per_channel.values() if m["n"] > 0]
    return per_channel, {key: _nanmean([m[key] for m in have]) for key in ("mse", "r2", "r2_median", "cosine")}
