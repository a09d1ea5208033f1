"""Forward and inverse accuracy on the test split: gnnspec against baselines and the seed method.

Forward (per channel, site spectra of the test structures): R^2 around the channel's mean
test spectrum (``r2``; the mean spectrum scores about 0), the median per-spectrum R^2
(``r2_median``: 1 - SS_res/SS_tot around each spectrum's own mean), MSE and mean cosine.

Inverse (environments of the test structures, FEFF environment spectra as input): element
content MAE per element and defect AUROC, for every channel subset of :func:`subsets`. Only
environments that hold at least one channel of the subset count. For a model whose encoder reads
an elemental quantification (:mod:`gnnspec.quantification`), two more rows per subset: the
encoder given the exact quantification of the subset's elements, and the seed method with the
same numbers appended to its features, so both methods get the same extra information.
"""

from __future__ import annotations

import numpy as np
import torch

from gnnspec.bench import baselines
from gnnspec.bench.collect import SiteSet
from gnnspec.bench.spectral_features import seed_features
from gnnspec.channels import CHANNELS
from gnnspec.data.environment_set import EnvironmentSet
from gnnspec.labels import CONTENT_ELEMENTS, DEFECTS
from gnnspec.models.forward_ensemble import ensemble_pass
from gnnspec.quantification import channel_element_index, channel_fractions
from gnnspec.scoring import auroc, spectrum_metrics


def subsets(channels: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """The channel subsets the inverse table scores: each channel alone, each modality, all."""
    return {
        **{c: [c] for c in channels},
        "XAS only": [c for c in channels if CHANNELS[c].modality == "xas"],
        "EELS only": [c for c in channels if CHANNELS[c].modality == "eels"],
        "all channels": list(channels),
    }


@torch.no_grad()
def gnn_site_predictions(model, dataset, test: SiteSet) -> dict[str, np.ndarray]:
    """The model's predictions in the order of ``test.keys``."""
    dtype = next(model.parameters()).dtype
    by_key: dict[tuple[int, int, str], np.ndarray] = {}
    for i in range(len(dataset)):
        g = dataset[i].clone()
        g.pos, g.edge_shift = g.pos.to(dtype), g.edge_shift.to(dtype)
        absorbers = g.site_y_mask.any(1).nonzero(as_tuple=True)[0]
        if absorbers.numel() == 0:
            continue
        out = ensemble_pass(model, g, absorbers, 0)  # the base tier; the member mean with a forward ensemble
        spectra = out["spectra"].double().numpy()
        for r, site in enumerate(absorbers.tolist()):
            for c, name in enumerate(model.cfg.channels):
                by_key[(int(g.sid), site, name)] = spectra[r, c]
    return {ch: np.array([by_key[(sid, site, ch)] for sid, site in keys]) for ch, keys in test.keys.items()}


def forward_table(model, test_ds, train: SiteSet, test: SiteSet, quick: bool) -> dict[str, dict[str, dict]]:
    """``{channel: {method: metrics}}`` for gnnspec, mean, kNN and gradient-boosted trees."""
    gnn = gnn_site_predictions(model, test_ds, test) if model is not None else {}
    table: dict[str, dict[str, dict]] = {}
    for ch in test.Y:
        if ch not in train.Y:
            continue
        Xtr, Ytr, Xte, Yte = train.X[ch], train.Y[ch], test.X[ch], test.Y[ch]
        row = {"mean": spectrum_metrics(baselines.forward_mean(Ytr, len(Yte)), Yte)}
        row["knn"] = spectrum_metrics(baselines.forward_knn(Xtr, Ytr, Xte), Yte)
        row["gbt"] = spectrum_metrics(baselines.forward_gbt(Xtr, Ytr, Xte, n_estimators=60 if quick else 200), Yte)
        if ch in gnn:
            row["gnnspec"] = spectrum_metrics(gnn[ch], Yte)
        table[ch] = row
    return table


def inverse_metrics(content_pred, defects_pred, content, defects) -> dict:
    mae = np.abs(content_pred - content).mean(0)
    out = {f"mae_{el}": float(v) for el, v in zip(CONTENT_ELEMENTS, mae)}
    out["mae_mean"] = float(mae.mean())
    for j, d in enumerate(DEFECTS):
        out[f"auroc_{d}"] = auroc(defects_pred[:, j], defects[:, j])
    out["n"] = int(len(content))
    return out


def exact_quantification(envs: EnvironmentSet, rows: np.ndarray, channels: list[str]) -> np.ndarray:
    """``[len(rows), C]`` quantification of ``rows`` with only ``channels`` present (columns: ``envs.channels``)."""
    idx = [envs.channels.index(c) for c in channels]
    mask = torch.zeros(len(rows), len(envs.channels), dtype=torch.bool)
    mask[:, idx] = torch.tensor(envs.mask[rows][:, idx])
    q = channel_fractions(torch.tensor(envs.content[rows]), mask, channel_element_index(list(envs.channels)))
    return q.numpy()


@torch.no_grad()
def gnn_inverse(model, envs: EnvironmentSet, channels: list[str], rows: np.ndarray, quantified: bool = False) -> tuple[np.ndarray, np.ndarray]:
    dtype = next(model.parameters()).dtype
    idx = [model.cfg.channels.index(c) for c in channels]
    x = torch.tensor(envs.y[rows], dtype=dtype)
    mask = torch.zeros(len(rows), len(model.cfg.channels), dtype=torch.bool)
    mask[:, idx] = torch.tensor(envs.mask[rows][:, idx])
    quant = torch.tensor(exact_quantification(envs, rows, channels), dtype=dtype) if quantified else None
    return model.property_answers(model.encode_spectra(x, mask, quant))


def inverse_table(model, train: EnvironmentSet, test: EnvironmentSet, quick: bool) -> dict[str, dict[str, dict]]:
    """``{subset: {method: metrics}}`` for the gnnspec encoder and the seed method (XGBoost)."""
    table: dict[str, dict[str, dict]] = {}
    for name, chans in subsets(test.channels).items():
        idx = [test.channels.index(c) for c in chans]
        tr = np.nonzero(train.mask[:, idx].any(1))[0]
        te = np.nonzero(test.mask[:, idx].any(1))[0]
        if len(tr) < 10 or len(te) < 5:
            continue
        Ftr = seed_features(train.y[tr], train.mask[tr], chans, train.channels)
        Fte = seed_features(test.y[te], test.mask[te], chans, test.channels)
        c_pred, d_pred = baselines.inverse_gbt(Ftr, train.content[tr], train.defects[tr], Fte, n_estimators=60 if quick else 200)
        row = {"seed (XGBoost)": inverse_metrics(c_pred, d_pred, test.content[te], test.defects[te])}
        if model is not None:
            c_gnn, d_gnn = gnn_inverse(model, test, chans, te)
            row["gnnspec"] = inverse_metrics(c_gnn, d_gnn, test.content[te], test.defects[te])
        if model is not None and model.encoder.takes_quantification and len({CHANNELS[c].element for c in chans}) > 1:
            cols = sorted({test.channels.index(c) for c in chans})
            Qtr, Qte = (np.nan_to_num(exact_quantification(e, r, chans)[:, cols]) for e, r in ((train, tr), (test, te)))
            c_pred, d_pred = baselines.inverse_gbt(
                np.hstack([Ftr, Qtr]), train.content[tr], train.defects[tr], np.hstack([Fte, Qte]), n_estimators=60 if quick else 200
            )
            row["seed (XGBoost) + quantification"] = inverse_metrics(c_pred, d_pred, test.content[te], test.defects[te])
            c_gnn, d_gnn = gnn_inverse(model, test, chans, te, quantified=True)
            row["gnnspec + quantification"] = inverse_metrics(c_gnn, d_gnn, test.content[te], test.defects[te])
        table[name] = row
    return table
