"""Which training sites should get the next scf runs? Query by committee against a random choice.

``python -m gnnspec.bench.site_choice [--model M] [--data D]`` simulates the choice on the scf
sites already computed, with a model's linear tier head (:mod:`gnnspec.models.linear_tier_heads`)
as the learner, so no FEFF run and no training is needed:

* the pool is the training split's sites with a higher-tier spectrum in a channel; each draw
  starts from a random 40 % of the pool and adds 30 % more, ``step`` sites at a time, either at
  random or by committee (the sites where ``committee`` bootstrap refits of the head disagree
  most: the variance of their predictions, averaged over energies);
* the head (ridge, alpha fitted on validation with every training site) is then refitted on the
  chosen sites and scored on the test split (R^2 around the test mean); ``draws`` draws per
  channel, the same starting sites for both rules in each draw.

How much more scf sites help at all (random whole supercells, every forward model's head, the
sites the goal would need) is :mod:`gnnspec.bench.learning_curve`'s question.

Writes ``benchmarks/site_choice.md`` and ``.json``: per channel the mean R^2 of both rules and the
2.5-97.5 % range of their difference over the draws. A linear head on fixed features is a
stand-in for retraining the forward model; features from a model trained on these very sites
(the shipped one) know a little about them, which helps both rules alike.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def simulate(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    draws: int = 40,
    step: int = 5,
    committee: int = 8,
    start: float = 0.4,
    add: float = 0.3,
    seed: int = 0,
) -> dict:
    """Random against committee choice for one channel's (features, spectra) of the three splits."""
    from gnnspec.models.linear_tier_heads import fit_channel, r2_around_mean, ridge_apply, ridge_fit

    alpha = fit_channel(train, val)["alpha"]
    x, y = train
    n = len(x)
    n0, budget = max(3, int(start * n)), int(add * n)
    scores: dict[str, list[float]] = {"random": [], "committee": []}
    for d in range(draws):
        first = list(np.random.default_rng([seed, d]).permutation(n)[:n0])
        for rule in scores:
            rng = np.random.default_rng([seed, d, 1])
            chosen = list(first)
            while len(chosen) < n0 + budget:
                left = np.setdiff1d(np.arange(n), chosen)
                k = min(step, n0 + budget - len(chosen))
                if rule == "random":
                    pick = rng.choice(left, k, replace=False)
                else:
                    boot = [rng.choice(chosen, len(chosen), replace=True) for _ in range(committee)]
                    preds = np.stack([ridge_apply(ridge_fit(x[b], y[b], alpha), x[left]) for b in boot])
                    pick = left[np.argsort(-preds.var(0).mean(1), kind="stable")[:k]]
                chosen += [int(i) for i in pick]
            scores[rule].append(r2_around_mean(test[1], ridge_apply(ridge_fit(x[chosen], y[chosen], alpha), test[0])))
    diff = np.array(scores["committee"]) - np.array(scores["random"])
    return {
        "n_pool": n,
        "n_start": n0,
        "n_added": budget,
        "n_test": len(test[0]),
        "alpha": alpha,
        "r2_all": r2_around_mean(test[1], ridge_apply(ridge_fit(x, y, alpha), test[0])),
        "r2_random": float(np.mean(scores["random"])),
        "r2_committee": float(np.mean(scores["committee"])),
        "diff": float(diff.mean()),
        "diff_low": float(np.percentile(diff, 2.5)),
        "diff_high": float(np.percentile(diff, 97.5)),
    }


def render(results: dict, source: str, tier: str, draws: int) -> str:
    lines = [
        f"# Choosing the next {tier} sites: query by committee against random",
        "",
        f"*`python -m gnnspec.bench.site_choice` ({source}). Method: module docstring of `gnnspec.bench.site_choice`; "
        f"{draws} draws per channel.*",
        "",
        "| channel | pool | start + added | test sites | R^2, every pool site | random | committee | committee - random [2.5-97.5 %] |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['n_pool']} | {r['n_start']} + {r['n_added']} | {r['n_test']} | {r['r2_all']:.3f} | "
            f"{r['r2_random']:.3f} | {r['r2_committee']:.3f} | {r['diff']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}] |"
        )
    mean = {k: np.mean([r[k] for r in results.values()]) for k in ("r2_all", "r2_random", "r2_committee", "diff")}
    lines.append(f"| mean | | | | {mean['r2_all']:.3f} | {mean['r2_random']:.3f} | {mean['r2_committee']:.3f} | {mean['diff']:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from gnnspec.models.factory import load_model, model_path, read_checkpoint, trained_config
    from gnnspec.models.linear_tier_heads import site_features

    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.site_choice", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint whose own features the head uses (default: the shipped model)")
    p.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    p.add_argument("--tier", default="scf")
    p.add_argument("--draws", type=int, default=40)
    p.add_argument("--out", default="benchmarks/site_choice.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    path = model_path(args.model)
    data = args.data or trained_config(read_checkpoint(path)).get("data")
    model = load_model(path, forward_ensemble=False)
    splits = {s: site_features([model], data, s, args.tier, geometry=False)[0] for s in ("train", "val", "test")}
    results = {}
    for c in model.cfg.channels:
        if all(c in splits[s] and len(splits[s][c][0]) >= 3 for s in splits):
            parts = (splits["train"][c], splits["val"][c], splits["test"][c])
            results[c] = simulate(*parts, draws=args.draws)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, f"model {path.name}, data {data}", args.tier, args.draws))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
