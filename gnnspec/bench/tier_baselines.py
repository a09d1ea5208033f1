"""Classical baselines in a higher FEFF tier, and how far a map from the base tier can go.

A higher tier (``scf``) is computed on a few sampled sites per supercell, so its training set is
small (about 130 sites per channel in the shipped dataset). Is a graph network the right tool
there? Per channel, on the sites of the test split where FEFF computed that tier, its spectra
(normalised, on the channel grid) are predicted by methods fitted on the training split's sites
of that tier, hyperparameters chosen on the validation split's:

* ``descriptor_ridge``: ridge regression on the radial-distribution descriptor of the site
  (:mod:`gnnspec.bench.descriptors`), alpha by validation R^2
  (:func:`gnnspec.models.linear_tier_heads.ridge_by_validation`);
* ``descriptor_knn`` and ``descriptor_gbt``: the base tier's classical baselines
  (:mod:`gnnspec.bench.baselines`) on the same descriptor;
* ``feff_base_ridge``: ridge regression from the site's own base-tier FEFF spectrum to its
  higher-tier spectrum. Not a method a user can run (a measured sample has no FEFF spectrum):
  it bounds what a head that reads only a base-tier spectrum can reach with these training
  sites, such as the model's linear tier heads (:mod:`gnnspec.models.linear_tier_heads`), which
  read the model's base-tier prediction together with the absorber's features.

Scored as everywhere (:func:`gnnspec.scoring.spectrum_metrics`: R^2 around the channel's mean
spectrum on the test sites), beside the model's own prediction in that tier (``gnnspec``: the
forward ensemble's mean where the model has one), computed on the very sites collected, so a
build that adds sites meanwhile cannot make the columns disagree.

Run: ``python -m gnnspec.bench.tier_baselines`` (the shipped model and dataset; writes
``benchmarks/tier_baselines.md`` and its JSON). ``make bench`` reports the same table in its
higher-tier section.
"""

from __future__ import annotations

import numpy as np
import torch

from gnnspec.bench.baselines import forward_gbt, forward_knn
from gnnspec.bench.collect import TierSiteSet, collect_tier_sites
from gnnspec.errors import InputError
from gnnspec.models.linear_tier_heads import ridge_apply, ridge_by_validation
from gnnspec.scoring import spectrum_metrics

#: The baselines, in the order the table shows them.
METHODS = ("descriptor_ridge", "descriptor_knn", "descriptor_gbt", "feff_base_ridge")
#: The model's own prediction, scored on the same sites when a model is given.
MODEL = "gnnspec"
#: Ridge penalties tried (wider than the linear heads': the descriptor has 265 columns).
ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def model_predictor(model, tier: str):
    """``predict(graph, sites)`` for :func:`gnnspec.bench.collect.collect_tier_sites`: the model's
    spectra of ``sites`` in ``tier`` (the forward ensemble's mean where it has one), ``[n, C, K]``."""
    from gnnspec.models.forward_ensemble import ensemble_pass

    row = list(model.cfg.tiers).index(tier)
    dtype = next(model.parameters()).dtype

    @torch.no_grad()
    def predict(graph, sites: list[int]) -> np.ndarray:
        g = graph.clone()
        g.pos, g.edge_shift = g.pos.to(dtype), g.edge_shift.to(dtype)
        return ensemble_pass(model, g, torch.as_tensor(sites, dtype=torch.long), row)["spectra"].double().numpy()

    return predict


def tier_site_sets(data: str, channels, tiers, cutoff: float, model=None) -> dict[str, TierSiteSet]:
    """The train, validation and test sites of ``data`` where FEFF computed ``tiers[1]``; with
    ``model``, its predictions of the test sites in that tier."""
    from gnnspec.data.dataset import LMDBStructureDataset

    tiers = list(tiers)
    if len(tiers) < 2:
        raise InputError(f"tier baselines need a higher tier than {tiers[0]}: the model predicts {tiers}")
    predict = None if model is None else model_predictor(model, tiers[1])
    return {
        split: collect_tier_sites(
            LMDBStructureDataset(data, split, cutoff=cutoff, channels=tuple(channels), tier=tiers[0], extra_tiers=(tiers[1],)),
            predict=predict if split == "test" else None,
        )
        for split in ("train", "val", "test")
    }


def baseline_predictions(sets: dict[str, TierSiteSet], channel: str, n_trees: int = 200) -> dict[str, np.ndarray]:
    """``{method: predicted higher-tier spectra [n_test, K]}`` of ``channel`` on the test sites."""
    tr, va, te = sets["train"], sets["val"], sets["test"]
    descriptor, _, _ = ridge_by_validation((tr.X[channel], tr.Y[channel]), (va.X[channel], va.Y[channel]), ALPHAS)
    from_base, _, _ = ridge_by_validation((tr.F[channel], tr.Y[channel]), (va.F[channel], va.Y[channel]), ALPHAS)
    return {
        "descriptor_ridge": ridge_apply(descriptor, te.X[channel]),
        "descriptor_knn": forward_knn(tr.X[channel], tr.Y[channel], te.X[channel]),
        "descriptor_gbt": forward_gbt(tr.X[channel], tr.Y[channel], te.X[channel], n_estimators=n_trees),
        "feff_base_ridge": ridge_apply(from_base, te.F[channel]),
    }


def tier_baseline_table(data: str, channels, tiers, cutoff: float, n_trees: int = 200, model=None) -> dict[str, dict[str, dict]]:
    """``{channel: {method: spectrum_metrics}}`` on the test sites of ``tiers[1]`` (channels whose
    train, validation and test splits all hold such sites); with ``model``, also ``gnnspec``: its
    prediction in that tier on the same sites."""
    sets = tier_site_sets(data, channels, tiers, cutoff, model)
    table = {}
    for channel in channels:
        if not all(channel in sets[s].Y and len(sets[s].Y[channel]) > 1 for s in sets):
            continue
        target = sets["test"].Y[channel]
        preds = baseline_predictions(sets, channel, n_trees)
        if model is not None:
            preds = {MODEL: sets["test"].P[channel], **preds}
        table[channel] = {m: spectrum_metrics(p, target) for m, p in preds.items()}
    if not table:
        raise InputError(f"{data}: no channel has {tiers[1]}-tier spectra in all of train, validation and test")
    return table


def render(table: dict, tier: str, base: str) -> list[str]:
    """Markdown rows of :func:`tier_baseline_table`: R^2 of each method (the model's first, where scored)."""
    methods = [m for m in (MODEL, *METHODS) if m in next(iter(table.values()))]
    labels = {MODEL: f"gnnspec {tier}", "descriptor_ridge": "descriptor ridge", "descriptor_knn": "descriptor kNN"}
    labels |= {"descriptor_gbt": "descriptor GBT", "feff_base_ridge": f"FEFF {base} -> {tier} ridge (oracle)"}
    head = ["channel", "n"] + [labels[m] for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for ch, row in table.items():
        lines.append(f"| {ch} | {row[methods[0]]['n']} | " + " | ".join(f"{row[m]['r2']:.3f}" for m in methods) + " |")
    lines.append("| mean | | " + " | ".join(f"{np.mean([row[m]['r2'] for row in table.values()]):.3f}" for m in methods) + " |")
    return lines


def describe(model, table: dict) -> tuple[str, str, list[str]]:
    """The page's heading, method paragraph and rows."""
    base, tier = list(model.cfg.tiers)[:2]
    intro = (
        f"R^2 around the channel's mean {tier} spectrum on the test sites where FEFF computed it; every method fitted "
        f"on the training split's {tier} sites (hyperparameters on validation). See `gnnspec.bench.tier_baselines`."
    )
    return f"# Classical baselines in the {tier} tier", intro, render(table, tier, base)


def main(argv: list[str] | None = None) -> int:
    from gnnspec.bench import model_table_main

    def make_table(model, data):
        return tier_baseline_table(data, model.cfg.channels, list(model.cfg.tiers), model.cfg.backbone.cutoff, model=model)

    return model_table_main(argv, "gnnspec.bench.tier_baselines", __doc__, "benchmarks/tier_baselines.md", make_table, describe)


if __name__ == "__main__":
    raise SystemExit(main())
