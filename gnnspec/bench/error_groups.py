"""Where the forward model's higher-tier error sits: by supercell family, site environment and case.

On the test sites where FEFF computed the higher tier (``scf``), the model's prediction in that
tier (the forward ensemble's mean where it has one) is scored per group of sites:

* family: ``recipe`` supercells (the shipped recipe's compositions) against ``wide`` ones (index
  ``wide_from`` on: the whole Ni-Mn-Co triangle, Li orderings, lattice and thermal spread drawn
  per supercell; see the recipe);
* environment: sites whose environment carries a defect label (an O vacancy or an antisite within
  its radius, :func:`gnnspec.structures.environments.environments`) against the rest;
* the supercell's defect case.

A group's R^2 is ``1 - sum of its squared errors / (its site count x the per-site variance of all
test sites of the channel)``: around the channel's overall mean, so groups are comparable and the
site-weighted mean of the groups' errors is the channel's. The three worst sites' share of the
channel's squared error says whether a few sites dominate it.

Run: ``python -m gnnspec.bench.error_groups`` (the shipped model and dataset; writes
``benchmarks/error_groups.md`` and its JSON).
"""

from __future__ import annotations

import numpy as np

from gnnspec.errors import InputError

#: The columns of the table, in order: (key, label).
GROUPS = (
    ("recipe", "recipe supercells"),
    ("wide", "wide supercells"),
    ("defect-env", "defect environments"),
    ("bulk-env", "other environments"),
    ("pristine", "pristine"),
    ("o_vacancy", "O vacancy"),
    ("antisite", "antisite"),
    ("combined", "combined"),
)


def site_groups(store) -> dict[tuple[int, int], tuple[str, ...]]:
    """``{(sid, site): groups}`` of every site of the test split (family, environment, case)."""
    from pymatgen.core import Structure

    from gnnspec.structures.environments import environments

    wide_from = (store.metadata() or {}).get("build_config", {}).get("wide_from")
    out = {}
    for sid in store.structure_ids():
        record = store.structure(sid)
        if record["split"] != "test":
            continue
        structure = Structure.from_dict(record["structure"])
        defective = {e.centre for e in environments(structure, record.get("vacancies") or [], include_bulk=False) if np.any(e.defects)}
        family = "wide" if wide_from is not None and sid >= wide_from else "recipe"
        for site in range(len(structure)):
            out[(sid, site)] = (family, "defect-env" if site in defective else "bulk-env", record.get("case", "?"))
    return out


def group_table(keys: dict[str, list], Y: dict[str, np.ndarray], P: dict[str, np.ndarray], groups: dict) -> dict[str, dict]:
    """Per channel with at least two distinct sites: ``n``, ``r2``, per group ``{n, r2}``, and the
    worst three sites with their share of the squared error."""
    table = {}
    for name in Y:
        y, p = Y[name], P[name]
        per_site_var = float(((y - y.mean(0)) ** 2).sum(1).mean())
        if len(y) < 2 or per_site_var == 0.0:  # no site-to-site variation: R^2 undefined
            continue
        err = ((p - y) ** 2).sum(1) / per_site_var
        by_group: dict[str, list[float]] = {}
        for key, e in zip(keys[name], err):
            for g in groups[tuple(key)]:
                by_group.setdefault(g, []).append(float(e))
        worst = np.argsort(err)[::-1][:3]
        table[name] = {
            "n": len(err),
            "r2": 1.0 - float(err.mean()),
            "groups": {g: {"n": len(v), "r2": 1.0 - float(np.mean(v))} for g, v in by_group.items()},
            "worst_sites": [list(map(int, keys[name][i])) for i in worst],
            "worst_share": float(err[worst].sum() / err.sum()),
        }
    return table


def error_groups(model, data: str) -> dict[str, dict]:
    """:func:`group_table` of ``model``'s higher-tier predictions on ``data``'s test sites."""
    from gnnspec.bench.collect import collect_tier_sites
    from gnnspec.bench.tier_baselines import model_predictor
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.data.store import SpectraStore

    tiers = list(model.cfg.tiers)
    if len(tiers) < 2:
        raise InputError(f"the model predicts only the {tiers[0]} tier: there is no higher tier to break down")
    ds = LMDBStructureDataset(data, "test", cutoff=model.cfg.backbone.cutoff, channels=tuple(model.cfg.channels), tier=tiers[0], extra_tiers=(tiers[1],))
    sites = collect_tier_sites(ds, predict=model_predictor(model, tiers[1]))
    if not sites.Y:
        raise InputError(f"{data}: no test site holds the {tiers[1]} tier")
    return group_table(sites.keys, sites.Y, sites.P, site_groups(SpectraStore(data)))


def render(table: dict[str, dict]) -> list[str]:
    lines = [
        "| channel | n | R^2 | " + " | ".join(label for _, label in GROUPS) + " | worst 3 sites: share of the error (supercell, site) |",
        "| --- | --- | --- | " + " | ".join("---" for _ in GROUPS) + " | --- |",
    ]
    for name, r in table.items():
        cells = [f"{r['groups'][g]['r2']:.2f} ({r['groups'][g]['n']})" if g in r["groups"] else "-" for g, _ in GROUPS]
        worst = ", ".join(f"{sid}/{site}" for sid, site in r["worst_sites"])
        lines.append(f"| {name} | {r['n']} | {r['r2']:.3f} | " + " | ".join(cells) + f" | {r['worst_share']:.2f} ({worst}) |")
    return lines


def describe(model, table: dict[str, dict]) -> tuple[str, str, list[str]]:
    """The page's heading, method paragraph and rows."""
    tier = list(model.cfg.tiers)[1]
    intro = (
        f"R^2 of the model's {tier} prediction on the test sites where FEFF computed that tier, per group of sites "
        "(around the channel's overall mean; site counts in brackets). See `gnnspec.bench.error_groups`."
    )
    return f"# Where the {tier}-tier error sits", intro, render(table)


def main(argv: list[str] | None = None) -> int:
    from gnnspec.bench import model_table_main

    return model_table_main(argv, "gnnspec.bench.error_groups", __doc__, "benchmarks/error_groups.md", error_groups, describe)


if __name__ == "__main__":
    raise SystemExit(main())
