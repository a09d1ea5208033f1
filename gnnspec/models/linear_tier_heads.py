"""Linear tier heads: a ridge map from a forward model's base-tier output to a higher FEFF tier.

The scf tier has about 90 training sites per channel; the base (``fast``) tier has every site.
A forward model's scf head, trained on those few sites, fits them (R^2 0.89-0.97) far better
than new ones. A linear map from what the model already predicts well to the scf spectrum,
fitted with a ridge penalty chosen on the validation sites, generalises better: on the test
split it beats the trained scf heads of the same seven models (``docs/2026-12-06-linear-tier-heads.md``).

For one forward model, one tier above the base and one channel ``c``, the head predicts

    y_tier = ym + ((s - mu_s) / sd_s) @ W_s + ((f - mu_f) / sd_f) @ W_f + ((g - mu_g) / sd_g) @ W_g

with ``s`` the absorber's invariant node features (``backbone.scalar_dim`` numbers), ``f``
the model's base-tier spectrum of ``c`` on the channel grid (``n_energy`` numbers, the
normalisation of :func:`gnnspec.channels.normalise`) and ``g`` the absorber's geometry
(:mod:`gnnspec.models.absorber_geometry`: a bond block and a radial-distribution block read off
the graph's edges); ``mu``, ``sd`` standardise each feature over the fitting sites, and each
geometry block is then weighted by a factor of :data:`GEOMETRY_WEIGHTS` (0 leaves it out; the
weight is folded into its ``sd``); ``W`` and ``ym`` are the ridge solution with penalty
``alpha``. ``alpha`` and the two block weights are chosen together, from :data:`ALPHAS` x
:data:`GEOMETRY_WEIGHTS`, for the highest R^2 (around the validation mean) on the validation
sites of a fit on the training sites. The geometry is there because FEFF's scf edge follows the
absorber's bonds and the fast tier's does not, so features learned on the fast tier need not hold
them: the shipped model's heads refitted with and without the geometry, scored on its scf test
sites on the same data, go from a mean R^2 of 0.747 to 0.752 over the channels, by 0.003-0.012
in O K, Mn K, Co K, Ni K and Mn L2,3 with paired intervals that exclude 0 and in no channel lower
by more than 0.001 (``docs/2026-12-07-geometry-in-the-linear-heads.md``).
Heads stored before the geometry (``W`` with ``scalar_dim + n_energy`` rows) still apply.

That training-only fit is what the forward ensemble's spread
is calibrated with (on validation, :func:`gnnspec.models.forward_ensemble.calibrate_spread`);
then :func:`refit_with_validation` fits each head again, same ``alpha``, on the training and
validation sites together (``fitted_on`` in the record), and the test split scores the result.
The validation sites are about a quarter of the fitting sites; measured on eleven forward
models' cached features (scf test split, mean of the members' heads), the refit raises the mean
R^2 over the channels from 0.718 to 0.726 (Co L2,3 +0.03, no channel below -0.002), and
choosing ``alpha`` by supercell-grouped cross-validation over both instead gives 0.728.

Per-atom contributions stay first class: the base-tier spectrum is a sum of contributions
``f = sum_j c_j``, so the head gives atom ``j`` the contribution

    (c_j / sd_f) @ W_f + b * c_j / f,    b = ym - (mu_f / sd_f) @ W_f + ((s - mu_s) / sd_s) @ W_s + ((g - mu_g) / sd_g) @ W_g

at every energy: the mapped contribution plus atom ``j``'s share of the base-tier spectrum at that
energy of the remaining (baseline) term ``b``, so the baseline is made by the same atoms in the same
proportions as the base-tier spectrum (where ``f`` is not positive the absorber takes it). The
contributions sum to ``y_tier`` exactly; they may be negative (the map mixes energies).

The heads live in the forward ensemble record (:mod:`gnnspec.models.forward_ensemble`) under
``linear_heads``: one set per forward model (the model's own first), so a prediction in that
tier averages the trained tier heads and the linear heads of every forward model. The record's
``mix`` (:func:`fit_mix`) weights the two kinds per channel: the linear heads share ``w`` of the
mean, the trained heads ``1 - w``, ``w`` from :data:`MIX` chosen on the validation sites with the
training-only heads (before the refit). Measured on the shipped model's eleven forward models,
heads refitted on 4,142 scf runs, scored on the scf test sites: mean R^2 over the 12 channels
0.762 with the even mix, 0.772 with the chosen one (Mn K +0.026, Co K +0.027, Ni K +0.008;
``w`` 0.6-1.0; ``benchmarks/mix_heads.md``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import scatter

KEY = "linear_heads"
ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
#: Shares of the linear heads in the ensemble mean tried by :func:`fit_mix` (the trained heads take the rest).
MIX = tuple(float(w) for w in np.round(np.linspace(0.0, 1.0, 11), 2))
#: Weights tried for the (bond, radial-distribution) geometry blocks after standardisation.
GEOMETRY_WEIGHTS = ((0.0, 0.0), (1.0, 0.0), (0.0, 0.1), (1.0, 0.1), (0.0, 0.3), (1.0, 0.3), (0.0, 1.0), (1.0, 1.0))
FEATURES = (
    "absorber node scalars, the model's base-tier spectrum of the channel and the absorber's geometry "
    "(gnnspec.models.absorber_geometry: bonds, radial distribution), each standardised over the training sites, "
    "the geometry blocks weighted as validation chose"
)


def r2_around_mean(y: np.ndarray, pred: np.ndarray) -> float:
    """R^2 of ``pred [n, K]`` against ``y [n, K]`` around the mean spectrum of ``y``."""
    total = float(((y - y.mean(0)) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else float("nan")


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Ridge regression of ``y [n, K]`` on standardised ``x [n, F]`` (intercept unpenalised).
    ``weights [F]``: each standardised column multiplied by its weight before the fit (folded into
    ``sd``); a column of weight 0 is left out (its ``W`` row 0, its ``sd`` 1)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    if weights is not None:
        weights = np.asarray(weights, np.float64)
        used = weights > 0
        mu, sd = np.where(used, mu, 0.0), np.where(used, sd / np.where(used, weights, 1.0), 1.0)
    else:
        used = np.ones(x.shape[1], bool)
    z = ((x - mu) / sd)[:, used]
    ym = y.mean(0)
    w = np.zeros((x.shape[1], y.shape[1]))
    w[used] = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - ym))
    return {"mu": mu, "sd": sd, "W": w, "ym": ym}


def column_weights(n_features: int, geometry: tuple[float, float]) -> np.ndarray:
    """Per-column weights of a feature row whose last columns are the geometry blocks (bonds, then
    radial distribution; :mod:`gnnspec.models.absorber_geometry`): 1 before them, ``geometry`` on them."""
    from gnnspec.models.absorber_geometry import N_BONDS, N_RDF

    w = np.ones(n_features)
    w[n_features - N_BONDS - N_RDF : n_features - N_RDF] = geometry[0]
    w[n_features - N_RDF :] = geometry[1]
    return w


def ridge_apply(fit: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.float64) - fit["mu"]) / fit["sd"]) @ fit["W"] + fit["ym"]


def ridge_by_validation(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], alphas=ALPHAS, weights: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], float, float]:
    """The ridge fit on ``train`` (``(x, y)``) whose alpha of ``alphas`` gives the best R^2 on
    ``val``: ``(fit, alpha, validation R^2)``; ``weights``: column weights of :func:`ridge_fit`."""
    scores = {a: r2_around_mean(val[1], ridge_apply(ridge_fit(*train, a, weights), val[0])) for a in alphas}
    alpha = max(scores, key=lambda a: -np.inf if np.isnan(scores[a]) else scores[a])
    return ridge_fit(*train, alpha, weights), float(alpha), float(scores[alpha])


def refit_channel(head: dict, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]) -> dict:
    """``head`` (of :func:`fit_channel`) fitted again with its alpha (and geometry weights) on
    ``train`` and ``val`` together."""
    x = np.concatenate([train[0], val[0]])
    weights = column_weights(x.shape[1], tuple(head["geometry_weights"])) if "geometry_weights" in head else None
    fit = ridge_fit(x, np.concatenate([train[1], val[1]]), head["alpha"], weights)
    return {**head, **{k: torch.from_numpy(v.astype(np.float32)) for k, v in fit.items()}}


def fit_channel(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], geometry: bool = False) -> dict:
    """The head of one channel: the alpha of :data:`ALPHAS` with the best validation R^2; with
    ``geometry`` (the features end with the geometry blocks), alpha and the blocks' weights of
    :data:`GEOMETRY_WEIGHTS` chosen together."""
    if geometry:
        by_weight = {gw: ridge_by_validation(train, val, weights=column_weights(train[0].shape[1], gw)) for gw in GEOMETRY_WEIGHTS}
        gw = max(by_weight, key=lambda g: -np.inf if np.isnan(by_weight[g][2]) else by_weight[g][2])
        fit, alpha, val_r2 = by_weight[gw]
        extra = {"geometry_weights": [float(gw[0]), float(gw[1])]}
    else:
        fit, alpha, val_r2 = ridge_by_validation(train, val)
        extra = {}
    return {
        **{k: torch.from_numpy(v.astype(np.float32)) for k, v in fit.items()},
        "alpha": float(alpha),
        "val_r2": float(val_r2),
        "n_train": int(len(train[0])),
        "n_val": int(len(val[0])),
        **extra,
    }


@torch.no_grad()
def site_features(
    models: list[nn.Module], data: str, split: str, tier: str, geometry: bool = True, supercells: dict | None = None
) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """For each forward model: ``{channel: (features [n, F], FEFF spectra [n, K])}`` over the sites
    of ``split`` that hold ``tier`` spectra (the same sites, in the same order, for every model);
    the features end with the absorber's geometry blocks unless ``geometry`` is False. A dict given
    as ``supercells`` receives ``{channel: supercell id of each row [n]}``."""
    from gnnspec.data import keys as K
    from gnnspec.data.dataset import tier_batches
    from gnnspec.models.absorber_geometry import absorber_geometry

    cfg = models[0].cfg
    tiers, channels = list(cfg.tiers), list(cfg.channels)
    row = tiers.index(tier)
    rows: list[dict[str, list]] = [{c: [] for c in channels} for _ in models]
    targets: dict[str, list] = {c: [] for c in channels}
    owners: dict[str, list] = {c: [] for c in channels}  # the supercell of each row
    dtype = next(models[0].parameters()).dtype
    batches = tier_batches(data, split, cfg.backbone.cutoff, channels, tiers, dtype, keep=lambda g: bool(g[K.SITE_Y_TIERS_MASK][:, row - 1].any()))
    for batch in batches if row > 0 else []:
        have = batch[K.SITE_Y_TIERS_MASK][:, row - 1]
        sites = have.any(dim=1).nonzero(as_tuple=True)[0]
        geo = absorber_geometry(batch, sites, cfg.backbone.cutoff) if geometry else None
        for i, m in enumerate(models):
            out = m.forward_structure(batch, embed=False, spectra=False)
            x = features(m.tier_spectra(out, batch, sites, 0), out["node_scalars"], geo)  # absorbers in the order of sites
            for c, name in enumerate(channels):
                ok = have[sites, c]
                rows[i][name].append(x[ok, c].double().numpy())
                if i == 0:
                    targets[name].append(batch[K.SITE_Y_TIERS][sites[ok], row - 1, c].double().numpy())
                    owners[name].append(batch[K.SID][batch.batch[sites[ok]]].numpy())
    if supercells is not None:
        supercells.update({c: np.concatenate(v) for c, v in owners.items() if v})
    return [
        {c: (np.concatenate(r[c]), np.concatenate(targets[c])) for c in channels if targets[c] and sum(len(t) for t in targets[c])}
        for r in rows
    ]


def features(base_out: dict[str, torch.Tensor], node_scalars: torch.Tensor, geometry: torch.Tensor | None = None) -> torch.Tensor:
    """``[A, C, F]``: each absorber's node scalars next to its base-tier spectrum of each channel,
    and its geometry ``[A, G]`` (:func:`gnnspec.models.absorber_geometry.absorber_geometry`) after them when given."""
    spectra = base_out["spectra"]
    scalars = node_scalars[base_out["absorber_index"]]
    parts = [scalars[:, None, :].expand(-1, spectra.shape[1], -1), spectra]
    if geometry is not None:
        parts.append(geometry.to(spectra.dtype)[:, None, :].expand(-1, spectra.shape[1], -1))
    return torch.cat(parts, dim=-1)


def head_sites(models: list[nn.Module], data: str, tiers: list[str] | None = None) -> dict[str, tuple[list, list]]:
    """``{tier: (train, val)}``: :func:`site_features` of both splits for every tier above the base
    (or ``tiers``), computed once for :func:`fit_linear_heads` and :func:`refit_with_validation`."""
    from gnnspec.errors import InputError

    cfg = models[0].cfg
    tiers = list(cfg.tiers[1:]) if tiers is None else tiers
    for tier in tiers:
        if tier not in cfg.tiers[1:]:
            raise InputError(f"tier {tier!r}: linear heads map the base tier {cfg.tiers[0]!r} to one of {list(cfg.tiers[1:])}")
    return {tier: (site_features(models, data, "train", tier), site_features(models, data, "val", tier)) for tier in tiers}


def fit_linear_heads(models: list[nn.Module], data: str, tiers: list[str] | None = None, sites: dict | None = None) -> dict:
    """Fit the heads of every forward model (the model's own first) for every tier above the base
    (or ``tiers``) on the training sites of ``data``, alpha by validation (``sites``: their
    :func:`head_sites`, when already computed). Returns the record stored under :data:`KEY`:
    ``{"features", "alphas", "fitted_on": "train", "tiers": {tier: [per model {channel: head}]}}``."""
    from gnnspec.errors import InputError

    sites = head_sites(models, data, tiers) if sites is None else sites
    record: dict = {"features": FEATURES, "alphas": list(ALPHAS), "fitted_on": "train", "tiers": {}}
    for tier, (train, val) in sites.items():
        heads = []
        for tr, va in zip(train, val):
            heads.append(
                {c: fit_channel(tr[c], va[c], geometry=True) for c in tr if c in va and len(tr[c][0]) >= 3 and len(va[c][0]) >= 2}
            )
        if not any(heads):
            raise InputError(f"{data}: no channel has {tier!r} spectra on both training and validation sites to fit a linear head on")
        record["tiers"][tier] = heads
    return record


def refit_with_validation(record: dict, sites: dict) -> dict:
    """The record of :func:`fit_linear_heads` with every head fitted again on the training and
    validation sites together (``sites``: the :func:`head_sites` it was fitted on), each with the
    alpha validation chose for it; ``val_r2`` stays that choice's score. ``fitted_on``:
    ``"train+val"``, so no later step calibrates on validation with these heads."""
    out = {**record, "fitted_on": "train+val", "tiers": {}}
    for tier, heads in record["tiers"].items():
        train, val = sites[tier]
        out["tiers"][tier] = [
            {c: refit_channel(head, train[i][c], val[i][c]) for c, head in by_channel.items()} for i, by_channel in enumerate(heads)
        ]
    return out


def mix_weights(ensemble_record: dict | None, tier: str) -> dict[str, float] | None:
    """``{channel: w}``: the linear heads' share of the ensemble mean in ``tier`` (the trained heads
    take ``1 - w``), or None where no mix was chosen (records written before it: equal weights)."""
    record = (ensemble_record or {}).get(KEY) or {}
    return (record.get("mix") or {}).get(tier)


@torch.no_grad()
def fit_mix(model: nn.Module, data: str, split: str = "val") -> dict[str, dict[str, float]]:
    """``{tier: {channel: w}}``: for every tier with linear heads, the share ``w`` of :data:`MIX`
    whose mean ``(1 - w) * trained heads + w * linear heads`` scores the best R^2 (around the
    channel mean) on ``split``'s sites where FEFF computed the tier; ties go to the even mix.
    ``model.forward_ensemble_record`` must hold the linear heads, fitted without ``split``."""
    from gnnspec.models.forward_ensemble import feff_site_passes

    record = model.forward_ensemble_record
    linear = record[KEY]
    if split in str(linear.get("fitted_on", "train")).split("+"):
        raise ValueError(f"the linear heads were fitted on {split!r}: a mix chosen there would favour them")
    channels = list(model.cfg.channels)
    tiers = list(model.cfg.tiers)
    wanted = [t for t in linear["tiers"] if t in tiers[1:]]
    got: dict = {t: {c: ([], [], []) for c in channels} for t in wanted}  # trained mean, linear mean, FEFF
    for row, out, target, ok in feff_site_passes(model, data, split, {tiers.index(t) for t in wanted}):
        kinds = out["head_kind_spectra"]
        for c, name in enumerate(channels):
            rows = got[tiers[row]][name]
            rows[0].append(kinds[0][ok[:, c], c].double().cpu().numpy())
            rows[1].append(kinds[1][ok[:, c], c].double().cpu().numpy())
            rows[2].append(target[ok[:, c], c].double().cpu().numpy())
    mix: dict[str, dict[str, float]] = {}
    for t in wanted:
        for name in channels:
            trained_rows, linear_rows, y_rows = got[t][name]
            if sum(len(y) for y in y_rows) < 2:
                continue
            trained, lin, y = (np.concatenate(r) for r in (trained_rows, linear_rows, y_rows))
            scores = {w: r2_around_mean(y, (1.0 - w) * trained + w * lin) for w in MIX}
            best = max(scores, key=lambda w: (-np.inf if np.isnan(scores[w]) else round(scores[w], 12), -abs(w - 0.5)))
            mix.setdefault(t, {})[name] = float(best)
    return mix


def uses_geometry(heads: dict[str, dict]) -> bool:
    """Whether any head of one model's set reads the absorber's geometry."""
    return any("geometry_weights" in h for h in heads.values())


def head_output(
    heads: dict[str, dict],
    channels: list[str],
    base_out: dict[str, torch.Tensor],
    node_scalars: torch.Tensor,
    fallback: dict,
    geometry: torch.Tensor | None = None,
) -> dict:
    """One model's linear-head prediction in a tier, shaped as the readout's output.

    ``base_out``: the model's base-tier readout of the absorbers (its contributions are mapped);
    ``fallback``: the model's trained head in that tier, whose spectra and contributions a channel
    without a linear head keeps; ``geometry``: the absorbers' geometry, in ``base_out``'s absorber
    order (:func:`gnnspec.models.absorber_geometry.absorber_geometry`), needed by heads that read it."""
    contrib = fallback["contributions"].clone()
    channel = base_out["contribution_channel"]
    absorber = base_out["contribution_absorber"]
    is_self = base_out["contribution_distance"] == 0
    scalars = node_scalars[base_out["absorber_index"]]
    n_s = scalars.shape[1]
    dtype = contrib.dtype
    for c, name in enumerate(channels):
        head = heads.get(name)
        rows = (channel == c).nonzero(as_tuple=True)[0]
        if head is None or rows.numel() == 0:
            continue
        mu, sd, w, ym = (head[k].to(contrib.device, dtype) for k in ("mu", "sd", "W", "ym"))
        n_f = n_s + base_out["spectra"].shape[-1]
        w_s, w_f = w[:n_s], w[n_s:n_f]
        part = base_out["contributions"][rows]
        baseline = ym - (mu[n_s:n_f] / sd[n_s:n_f]) @ w_f + ((scalars - mu[:n_s]) / sd[:n_s]) @ w_s  # [A, K]
        if w.shape[0] > n_f:  # the head reads the absorber's geometry
            if geometry is None:
                raise ValueError(f"{name}: this linear head reads the absorber's geometry; none was given")
            baseline = baseline + ((geometry.to(contrib.device, dtype) - mu[n_f:]) / sd[n_f:]) @ w[n_f:]
        total = base_out["spectra"][:, c]  # [A, K], the sum of the base-tier contributions
        share = part / total[absorber[rows]].clamp_min(torch.finfo(dtype).tiny)
        # where an absorber's base-tier contributions are not all >= 0 with a positive sum (a readout
        # without positive contributions), the absorber alone takes the baseline at that energy
        negative = scatter((part < 0).to(dtype), absorber[rows], dim=0, dim_size=total.shape[0], reduce="sum")
        alone = ((total <= 0) | (negative > 0))[absorber[rows]]
        share = torch.where(alone, is_self[rows, None].to(dtype).expand_as(share), share)
        contrib[rows] = (part / sd[n_s:n_f]) @ w_f + baseline[absorber[rows]] * share
    n_abs, n_c = base_out["spectra_mask"].shape
    flat = scatter(contrib, absorber * n_c + channel, dim=0, dim_size=n_abs * n_c, reduce="sum")
    return {**base_out, "contributions": contrib, "spectra": flat.view(n_abs, n_c, contrib.shape[-1])}


def fitted_on(ensemble_record: dict | None) -> str | None:
    """The sites the linear heads of a forward-ensemble record were fitted on (``"train"`` or
    ``"train+val"``; records written before the refit hold none and were fitted on ``"train"``);
    None without heads."""
    record = (ensemble_record or {}).get(KEY)
    return str(record.get("fitted_on", "train")) if record else None


def head_count(model: nn.Module, tier: str) -> int:
    """How many linear heads join a prediction in ``tier`` (0 without them)."""
    record = (getattr(model, "forward_ensemble_record", None) or {}).get(KEY) or {}
    return len((record.get("tiers") or {}).get(tier, []))
