"""How the scf-tier accuracy of the linear heads grows with the number of scf training runs.

Issue 14 asks for R^2 >= 0.9 around the channel mean in every scf channel; the `scf` runs cost
about 20 times a `fast` run, so the question that decides the next data budget is whether more of
them would get there. Per channel, the linear scf heads (:mod:`gnnspec.models.linear_tier_heads`)
of every forward model of the checkpoint are fitted again on a random part of the training
supercells (whole supercells, so the sites of one cell never fall on both sides), at the
fractions :data:`FRACTIONS`, :data:`DRAWS` draws each below the whole; each head keeps the
geometry-block weights the whole training split chose for it and takes its ridge penalty by
validation R^2 at each size, as the shipped rule does. Beside the half of the supercells, half of
the sites of every supercell (same draws): whether more sites per supercell help as much as more
supercells, which decides how the next scf runs are placed. The heads' mean prediction (the forward
models averaged as the ensemble averages them; the trained tier heads, fitted once on the whole
split, do not enter) is scored on the test split's scf sites, R^2 around the channel's test mean.

From the last doubling (half the supercells to all of them) the table gives the gain per doubling
of the training sites and the sites the goal :data:`GOAL` would need if every further doubling
gained as much: a lower bound, since the gain per doubling shrinks as the sites grow on every
measured curve. (A power law ``R_inf - a n^-b`` fitted to five sizes was tried and left out: its
limit moved by up to 0.3 with the smallest size left in or out.)

Run: ``python -m gnnspec.bench.learning_curve`` (the shipped model and dataset; writes
``benchmarks/learning_curve.md`` and its JSON).
"""

from __future__ import annotations

import numpy as np

from gnnspec.errors import InputError
from gnnspec.models.linear_tier_heads import (
    ALPHAS,
    column_weights,
    fit_channel,
    r2_around_mean,
    ridge_apply,
    ridge_by_validation,
)

#: Parts of the training supercells the heads are fitted on.
FRACTIONS = (0.125, 0.25, 0.5, 0.75, 1.0)
#: Random draws of supercells per fraction below 1.
DRAWS = 4
#: The issue's goal, R^2 around the channel mean.
GOAL = 0.9
#: Beyond this many times today's training sites the table says "more than" instead of a number.
MANY = 1000


def supercell_subset(supercells: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The ids of a random ``fraction`` of the distinct ``supercells`` (at least two, all at 1)."""
    ids = np.unique(supercells)
    if fraction >= 1.0:
        return ids
    k = max(2, int(round(fraction * len(ids))))
    return np.sort(rng.choice(ids, size=min(k, len(ids)), replace=False))


def half_of_every_supercell(supercells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[n]`` bool: a random half of the rows of every supercell in ``supercells`` (an odd count's
    extra row kept on a coin flip), so the sites are halved without losing a supercell."""
    keep = np.zeros(len(supercells), bool)
    for sid in np.unique(supercells):
        rows = rng.permutation(np.nonzero(supercells == sid)[0])
        k = len(rows) // 2 + (len(rows) % 2 if rng.random() < 0.5 else 0)
        keep[rows[:k]] = True
    return keep


def sites_at_least(n_half: float, r2_half: float, n_full: float, r2_full: float, goal: float = GOAL) -> float | None:
    """The training sites needed for ``goal`` if every further doubling gained what the last one did
    (from ``n_half`` sites at ``r2_half`` to ``n_full`` at ``r2_full``); a lower bound wherever the
    gains shrink as the sites grow, as they do on every measured curve. ``n_full`` where the goal is
    reached already; None where the last doubling gained nothing."""
    if r2_full >= goal:
        return float(n_full)
    gain = (r2_full - r2_half) / np.log2(n_full / n_half) if n_full > n_half else 0.0
    if gain <= 0:
        return None
    return float(n_full * 2.0 ** ((goal - r2_full) / gain))


def curve_points(
    train: list[dict], val: list[dict], test: list[dict], supercells: dict[str, np.ndarray], channel: str,
    fractions=FRACTIONS, draws: int = DRAWS, seed: int = 0,
) -> list[dict]:
    """``[{"fraction", "mode", "draw", "n_sites", "n_supercells", "r2"}]`` for one channel: ``mode``
    ``"supercells"`` for the heads fitted on ``fraction`` of the training supercells (all their
    sites), and ``"sites"`` (fraction 0.5) for half the sites of every supercell
    (:func:`half_of_every_supercell`). ``train``, ``val``, ``test``: per forward model
    ``{channel: (features, FEFF spectra)}`` (:func:`gnnspec.models.linear_tier_heads.site_features`),
    ``supercells``: the training rows' supercell ids per channel."""
    rng = np.random.default_rng(seed)
    owners = supercells[channel]
    weights = []
    for tr, va in zip(train, val):  # the geometry weights the whole training split chooses
        head = fit_channel(tr[channel], va[channel], geometry=True)
        weights.append(column_weights(tr[channel][0].shape[1], tuple(head["geometry_weights"])))
    draws_of = [(f, "supercells", d) for f in fractions for d in range(1 if f >= 1.0 else draws)]
    draws_of += [(0.5, "sites", d) for d in range(draws)]
    points = []
    for fraction, mode, draw in draws_of:
        keep = half_of_every_supercell(owners, rng) if mode == "sites" else np.isin(owners, supercell_subset(owners, fraction, rng))
        if keep.sum() < 3:
            continue
        pred = 0.0
        for tr, va, te, w in zip(train, val, test, weights):
            x, y = tr[channel]
            fit, _, _ = ridge_by_validation((x[keep], y[keep]), va[channel], ALPHAS, w)
            pred = pred + ridge_apply(fit, te[channel][0]) / len(train)
        points.append(
            {
                "fraction": float(fraction),
                "mode": mode,
                "draw": draw,
                "n_sites": int(keep.sum()),
                "n_supercells": int(len(np.unique(owners[keep]))),
                "r2": r2_around_mean(test[0][channel][1], pred),
            }
        )
    return points


def learning_curve(model, data: str, tier: str | None = None, fractions=FRACTIONS, draws: int = DRAWS) -> dict[str, dict]:
    """Per channel of ``tier`` (the model's highest by default): the points of :func:`curve_points`,
    the R^2 at each fraction of the supercells and at half of every supercell's sites (means over
    the draws), the gain per doubling and the sites :data:`GOAL` needs at least (:func:`sites_at_least`)."""
    from gnnspec.models.linear_tier_heads import site_features

    tier = tier or list(model.cfg.tiers)[-1]
    if tier not in list(model.cfg.tiers)[1:]:
        raise InputError(f"tier {tier!r}: the model's linear heads map {model.cfg.tiers[0]!r} to one of {list(model.cfg.tiers[1:])}")
    models = [model, *(getattr(model, "forward_members", None) or [])]
    owners: dict = {}
    train = site_features(models, data, "train", tier, supercells=owners)
    val, test = (site_features(models, data, s, tier) for s in ("val", "test"))
    table: dict[str, dict] = {}
    for channel in model.cfg.channels:
        if not all(channel in part[0] and len(part[0][channel][0]) >= 3 for part in (train, val, test)):
            continue
        points = curve_points(train, val, test, owners, channel, fractions, draws)
        by_fraction, within = {}, []
        for p in points:
            if p["mode"] == "sites":
                within.append(p)
            else:
                by_fraction.setdefault(p["fraction"], []).append(p)
        mean = {f: (float(np.mean([p["n_sites"] for p in ps])), float(np.mean([p["r2"] for p in ps]))) for f, ps in by_fraction.items()}
        half, full = mean.get(0.5), mean.get(1.0)
        table[channel] = {
            "points": points,
            "mean": {str(f): {"n_sites": m[0], "r2": m[1]} for f, m in mean.items()},
            "half_of_every_supercell": None
            if not within
            else {"n_sites": float(np.mean([p["n_sites"] for p in within])), "r2": float(np.mean([p["r2"] for p in within]))},
            "gain_per_doubling": None if not (half and full) else float((full[1] - half[1]) / np.log2(full[0] / half[0])),
            "sites_for_goal_at_least": None if not (half and full) else sites_at_least(*half, *full),
            "n_test": int(len(test[0][channel][1])),
        }
    if not table:
        raise InputError(f"{data}: no channel has {tier!r} spectra on training, validation and test sites")
    return table


def render(table: dict[str, dict]) -> list[str]:
    fractions = list(next(iter(table.values()))["mean"])
    lines = [
        "| channel | test sites | "
        + " | ".join(f"R^2 at {float(f):g} of the supercells (sites)" for f in fractions)
        + " | R^2 at half of every supercell's sites (sites)"
        + f" | gain per doubling (last) | training sites for R^2 {GOAL}, at least |",
        "| --- | --- | " + " | ".join("---" for _ in fractions) + " | --- | --- | --- |",
    ]
    for name, r in table.items():
        m = r["mean"]
        cells = [f"{m[f]['r2']:.3f} ({m[f]['n_sites']:.0f})" for f in fractions]
        gain = "-" if r["gain_per_doubling"] is None else f"{r['gain_per_doubling']:+.3f}"
        need = r["sites_for_goal_at_least"]
        full = m[fractions[-1]]["n_sites"]
        if need is None:
            need = "not by more of these runs"
        elif need / full > MANY:
            need = f"more than {MANY:,}x today's"
        else:
            need = f"{need:,.0f} ({need / full:.1f}x)"
        h = r.get("half_of_every_supercell")
        half = "-" if h is None else f"{h['r2']:.3f} ({h['n_sites']:.0f})"
        lines.append(f"| {name} | {r['n_test']} | " + " | ".join(cells) + f" | {half} | {gain} | {need} |")
    mean = {f: float(np.mean([r["mean"][f]["r2"] for r in table.values()])) for f in fractions}
    halves = [r["half_of_every_supercell"]["r2"] for r in table.values() if r.get("half_of_every_supercell")]
    lines.append(
        "| mean | | " + " | ".join(f"{mean[f]:.3f}" for f in fractions) + f" | {np.mean(halves) if halves else float('nan'):.3f} | | |"
    )
    return lines


def describe(model, table: dict[str, dict]) -> tuple[str, str, list[str]]:
    """The page's heading, method paragraph and rows."""
    tier = list(model.cfg.tiers)[-1]
    n_models = 1 + len(getattr(model, "forward_members", None) or [])
    intro = (
        f"The linear {tier} heads of the checkpoint's {n_models} forward models fitted again on a random part of the training "
        f"supercells (whole supercells; {DRAWS} draws below the whole, sites averaged over them), ridge penalty by validation, "
        "geometry-block weights as the whole split chose; their mean scored on the test split's sites, R^2 around the channel's "
        "test mean. The trained tier heads do not enter, so the column at all of the supercells is the linear heads' own score, "
        f"not the shipped ensemble's. The last columns: the gain per doubling of the sites from half the supercells to all, and the "
        f"sites R^2 {GOAL} would need if every further doubling gained as much (a lower bound: the gains shrink). "
        "See `gnnspec.bench.learning_curve`."
    )
    return f"# The {tier} tier: accuracy against the number of training runs", intro, render(table)


def main(argv: list[str] | None = None) -> int:
    from gnnspec.bench import model_table_main

    return model_table_main(argv, "gnnspec.bench.learning_curve", __doc__, "benchmarks/learning_curve.md", learning_curve, describe)


if __name__ == "__main__":
    raise SystemExit(main())
