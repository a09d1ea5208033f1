"""What a multi-fidelity model's higher tier buys: higher-tier FEFF spectra predicted three ways.

On the sites of a split where a higher FEFF tier (say ``scf``) was computed, its spectra are
compared (:func:`gnnspec.scoring.spectrum_metrics`, normalised intensity on the channel grids)
with:

* ``feff_base``: the base-tier FEFF spectrum of the same site (what a base-tier dataset offers);
* ``model_base``: the model's base-tier prediction (what a base-tier surrogate can reach);
* ``model_tier``: the model's prediction in the higher tier (the member mean with a forward ensemble, :mod:`gnnspec.models.forward_ensemble`),
  also split into the edge's position and the rest (:func:`gnnspec.scoring.edge_position_metrics`:
  the shift that best aligns each prediction with FEFF, R^2 after it).

Run: ``python -m gnnspec.bench.fidelity --model runs/cpu_mf/best.pt`` (a model with
``model.tiers: [fast, scf]``); writes ``benchmarks/fidelity.md`` and its JSON.

What training on both tiers buys (:func:`tier_comparison`): ``--compare scf=A.pt fast=B.pt
both=C.pt`` scores several models on the same higher-tier sites, each with its prediction in
that tier (a model without it: its highest tier), per channel R^2 around the channel's mean
spectrum on those sites, cosine and MSE; writes ``benchmarks/multifidelity.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from gnnspec.channels import CHANNELS
from gnnspec.data import keys as K
from gnnspec.errors import InputError
from gnnspec.models.forward_ensemble import ensemble_pass, ensemble_passes, member_count
from gnnspec.scoring import edge_position_metrics, paired_r2_bootstrap, spectrum_metrics

SOURCES = ("feff_base", "model_base", "model_tier")


def predicted_tier(model, tier: str) -> int:
    """Row of ``tier`` in the model's tiers, or its highest tier's when it does not predict ``tier``."""
    return model.cfg.tiers.index(tier) if tier in model.cfg.tiers else len(model.cfg.tiers) - 1


@torch.no_grad()
def fidelity_table(model, data: str, split: str = "test", tier: str | None = None) -> dict[str, dict[str, dict]]:
    """``{channel: {source: spectrum_metrics}}`` on ``split``'s sites of ``tier`` (default: the model's last)."""
    from torch_geometric.loader import DataLoader

    from gnnspec.train.data import load_split

    tiers = list(model.cfg.tiers)
    tier = tier or tiers[-1]
    if len(tiers) < 2 or tier not in tiers[1:]:
        raise InputError(f"the model predicts the tiers {tiers}; it needs a higher tier than {tiers[0]} (not {tier!r})")
    t = tiers.index(tier)
    channels = model.cfg.channels
    graphs = load_split(data, split, model.cfg.backbone.cutoff, channels, False, tuple(tiers[1:]))
    dtype = next(model.parameters()).dtype
    rows: dict[str, dict[str, list]] = {s: {c: [] for c in channels} for s in (*SOURCES, "target", "spread")}
    model.eval()
    for batch in DataLoader(graphs, batch_size=2, shuffle=False):
        batch.pos, batch.edge_shift = batch.pos.to(dtype), batch.edge_shift.to(dtype)
        sites = batch[K.SITE_Y_TIERS_MASK][:, t - 1].any(dim=1).nonzero(as_tuple=True)[0]
        if sites.numel() == 0:
            continue
        base, high = ensemble_passes(model, batch, [(sites, 0), (sites, t)])  # one backbone pass per member
        have = (batch[K.SITE_Y_TIERS_MASK][sites, t - 1] & batch[K.SITE_Y_MASK][sites] & high["spectra_mask"]).numpy()
        arrays = {
            "target": batch[K.SITE_Y_TIERS][sites, t - 1],
            "feff_base": batch[K.SITE_Y][sites],
            "model_base": base["spectra"],
            "model_tier": high["spectra"],
            "spread": high.get("spectra_spread", torch.zeros_like(high["spectra"])),
        }
        for source, values in arrays.items():
            values = values.double().numpy()
            for c, name in enumerate(channels):
                rows[source][name].append(values[have[:, c], c])
    table = {}
    for name in channels:
        target = np.concatenate(rows["target"][name])
        if len(target):
            preds = {s: np.concatenate(rows[s][name]) for s in SOURCES}
            table[name] = {s: spectrum_metrics(preds[s], target) for s in SOURCES}
            table[name]["model_tier"].update(edge_position_metrics(preds["model_tier"], target, CHANNELS[name].step))
            spread = np.concatenate(rows["spread"][name])
            if spread.any():  # a forward ensemble: how often FEFF lies within its calibrated spread
                table[name]["model_tier"]["spread_coverage"] = float(np.mean(np.abs(preds["model_tier"] - target) <= spread))
    if not table:
        raise InputError(f"{data}: split {split!r} holds no {tier}-tier spectra")
    return table


@torch.no_grad()
def tier_comparison(models: dict, data: str, split: str = "test", tier: str = "scf", reference: str | None = None) -> dict[str, dict[str, dict]]:
    """``{channel: {label: spectrum_metrics}}``: each model of ``models`` (``{label: model}``)
    predicting the ``tier`` spectra of ``split``'s sites where FEFF computed that tier, in that
    tier when it has it, else in its highest tier. Every model is scored on the same spectra.
    A label may stand for a list of models (same channels and cutoff): their mean prediction,
    each member in its own tier index, is scored (an ensemble of forward models).

    Each entry also holds the paired bootstrap of :func:`gnnspec.scoring.paired_r2_bootstrap`
    (95 % intervals of R^2 and of its difference to ``reference``, default the first label;
    2,000 draws of the sites, seed 0)."""
    from torch_geometric.loader import DataLoader

    from gnnspec.data.dataset import LMDBStructureDataset, base_tier
    from gnnspec.data.store import SpectraStore

    store = SpectraStore(data)
    if tier not in store.tiers():
        raise InputError(f"{data}: no {tier}-tier spectra (it holds {', '.join(store.tiers())})")
    base = base_tier(store)
    rows: dict[str, dict[str, list]] = {}
    targets: dict[str, list] = {}
    for label, entry in models.items():
        members = list(entry) if isinstance(entry, (list, tuple)) else [entry]
        model = members[0]
        channels = tuple(model.cfg.channels)
        if any(tuple(m.cfg.channels) != channels or m.cfg.backbone.cutoff != model.cfg.backbone.cutoff for m in members):
            raise InputError(f"{label}: the members of an ensemble must share their channels and cutoff")
        ds = LMDBStructureDataset(data, split, cutoff=model.cfg.backbone.cutoff, channels=channels, tier=base, extra_tiers=(tier,))
        rows[label] = {c: [] for c in channels}
        first = not targets
        for m in members:
            m.eval()
        for batch in DataLoader([ds[i] for i in range(len(ds))], batch_size=2, shuffle=False):
            sites = batch[K.SITE_Y_TIERS_MASK][:, 0].any(dim=1).nonzero(as_tuple=True)[0]
            if sites.numel() == 0:
                continue
            spectra, have = [], batch[K.SITE_Y_TIERS_MASK][sites, 0]
            for m in members:
                t = predicted_tier(m, tier)
                dtype = next(m.parameters()).dtype
                b = batch.clone()
                b.pos, b.edge_shift = b.pos.to(dtype), b.edge_shift.to(dtype)
                pred = ensemble_pass(m, b, sites, t)
                spectra.append(pred["spectra"].double())
                have = have & pred["spectra_mask"]
            mean, have = torch.stack(spectra).mean(0).numpy(), have.numpy()
            for c, name in enumerate(channels):
                rows[label][name].append((batch.sid[batch.batch[sites]].numpy()[have[:, c]], sites.numpy()[have[:, c]], mean[:, c][have[:, c]]))
                if first:
                    targets.setdefault(name, []).append(batch[K.SITE_Y_TIERS][sites, 0, c].double().numpy()[have[:, c]])
    reference = reference or next(iter(models))
    if reference not in models:
        raise InputError(f"reference {reference!r} is none of the compared models ({', '.join(models)})")
    table: dict[str, dict[str, dict]] = {}
    for name, parts in targets.items():
        target = np.concatenate(parts)
        if not len(target):
            continue
        first_label = next(iter(models))
        first_keys = [(int(a), int(b)) for part in rows[first_label][name] for a, b in zip(part[0], part[1])]
        preds = {}
        for label in models:
            if name not in rows[label]:
                continue
            keys = [(int(a), int(b)) for part in rows[label][name] for a, b in zip(part[0], part[1])]
            if keys != first_keys:
                raise InputError(f"{label}: scored on other {name} sites than {first_label}; the models must share the channel's masks")
            preds[label] = np.concatenate([part[2] for part in rows[label][name]])
        table[name] = {label: spectrum_metrics(pred, target) for label, pred in preds.items()}
        if reference in preds and len(target) > 1:
            for label, ci in paired_r2_bootstrap(preds, target, reference).items():
                table[name][label].update(ci, reference=reference)
    if not table:
        raise InputError(f"{data}: split {split!r} holds no {tier}-tier spectra")
    return table


def render_comparison(table: dict, tiers: dict[str, str], tier: str, caption: str) -> str:
    """Markdown of :func:`tier_comparison`; ``tiers``: the tier each model predicted in."""
    labels = list(next(iter(table.values())))
    head = " | ".join(f"{lab} ({tiers[lab]} head)" for lab in labels)
    lines = [
        f"# Training on both FEFF tiers against either alone, scored on FEFF {tier}",
        "",
        f"*{caption}. Method: `gnnspec.bench.fidelity.tier_comparison`: the test split's sites where FEFF "
        f"{tier} was computed, normalised spectra on the channel grids; R^2 around the channel's mean {tier} "
        "spectrum on those sites.*",
        "",
        f"| channel | sites | R^2: {head} | cosine: {' | '.join(labels)} |",
        "| --- | --- | " + " | ".join("---" for _ in labels) + " | " + " | ".join("---" for _ in labels) + " |",
    ]
    means = {lab: [] for lab in labels}

    def interval(entry: dict, key: str, sign: str = "") -> str:
        value = f"{entry[key]:{sign}.3f}"
        return f"{value} [{entry[key + '_low']:{sign}.2f}, {entry[key + '_high']:{sign}.2f}]" if key + "_low" in entry else value

    for name, r in table.items():
        for lab in labels:
            means[lab].append(r[lab]["r2"])
        r2 = " | ".join(interval(r[lab], "r2") for lab in labels)
        cos = " | ".join(f"{r[lab]['cosine']:.4f}" for lab in labels)
        lines.append(f"| {name} | {r[labels[0]]['n']} | {r2} | {cos} |")
    lines.append("| mean | | " + " | ".join(f"{np.mean(means[lab]):.3f}" for lab in labels) + " | " + " | ".join("" for _ in labels) + " |")
    reference = next((e["reference"] for r in table.values() for e in r.values() if "reference" in e), None)
    if reference is not None:
        others = [lab for lab in labels if lab != reference]
        lines += [
            "",
            f"R^2 minus {reference}'s on the same sites, with its 95 % paired bootstrap interval in brackets (2,000 draws "
            "of the sites; `gnnspec.scoring.paired_r2_bootstrap`); * where the interval excludes 0.",
            "",
            "| channel | " + " | ".join(f"{lab} - {reference}" for lab in others) + " |",
            "| --- | " + " | ".join("---" for _ in others) + " |",
        ]
        for name, r in table.items():
            cells = []
            for lab in others:
                e = r[lab]
                if "diff" not in e:
                    cells.append("")
                    continue
                cells.append(interval(e, "diff", "+") + (" *" if e["diff_low"] > 0 or e["diff_high"] < 0 else ""))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(table: dict, tier: str, base: str, caption: str) -> str:
    lines = [
        f"# The {tier} tier: FEFF {base}, the model's {base} head and its {tier} head against FEFF {tier}",
        "",
        f"*{caption}. Method: `gnnspec/bench/fidelity.py` (sites of the test split where FEFF {tier} was computed; "
        f"normalised spectra on the channel grids). R^2 around the channel's mean {tier} spectrum on these sites (a few "
        "sites per channel: read it with the cosine and MSE). Edge position: the rigid shift that best aligns each "
        f"model {tier} spectrum with FEFF's (positive: the model's edge lies too low), its RMS and mean over the sites, "
        "and R^2 after that shift (`gnnspec.scoring.edge_position_metrics`). With a forward ensemble the model's spectra "
        f"are the member mean, and the last column is how often FEFF {tier} lies within the calibrated spread (fitted on "
        "validation for 68 %).*",
        "",
        f"| channel | sites | R^2: FEFF {base} | model {base} | model {tier} | model {tier} aligned | edge shift RMS / mean (eV) "
        f"| cosine: FEFF {base} | model {base} | model {tier} | MSE: FEFF {base} | model {base} | model {tier} | within spread |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in table.items():
        r2 = " | ".join(f"{r[s]['r2']:.3f}" for s in SOURCES)
        cos = " | ".join(f"{r[s]['cosine']:.4f}" for s in SOURCES)
        mse = " | ".join(f"{r[s]['mse']:.4f}" for s in SOURCES)
        m = r["model_tier"]
        edge = f"{m['r2_aligned']:.3f} | {m['shift_rms_ev']:.2f} / {m['shift_mean_ev']:+.2f}"
        within = f"{m['spread_coverage']:.2f}" if "spread_coverage" in m else "-"
        lines.append(f"| {name} | {r['feff_base']['n']} | {r2} | {edge} | {cos} | {mse} | {within} |")
    return "\n".join(lines) + "\n"


def _members_note(model) -> str:
    """`` (mean of N forward models[, M linear heads])`` for a model with a forward ensemble, else empty."""
    from gnnspec.models.linear_tier_heads import fitted_on, head_count

    linear = {t: head_count(model, t) for t in model.cfg.tiers[1:] if head_count(model, t)}
    heads = "".join(f", {n} linear {t} heads" for t, n in linear.items())
    heads += f" fitted on {fitted_on(getattr(model, 'forward_ensemble_record', None))}" if linear else ""
    return f" (mean of {member_count(model)} forward models{heads})" if member_count(model) > 1 or linear else ""


def _data_label(data: str) -> str:
    from gnnspec.data.store import SpectraStore

    return f"data {data} (sha256 {SpectraStore(data).fingerprint()[:12]})"


def main(argv: list[str] | None = None) -> int:
    from gnnspec.analysis.calibration import training_data
    from gnnspec.models.factory import load_model, model_path

    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a multi-fidelity checkpoint")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="LABEL=MODEL",
        help="score these models on the same higher-tier sites instead; LABEL=A.pt,B.pt scores the mean of several models",
    )
    p.add_argument(
        "--own-forward",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="with --compare: these labels' models predict with their own forward side only (their forward ensemble left out)",
    )
    p.add_argument("--tier", default="scf", help="with --compare: the FEFF tier scored against (default scf)")
    p.add_argument("--reference", default=None, help="with --compare: the label the others' R^2 is compared with (default: the first)")
    p.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None, help="default benchmarks/fidelity.md, with --compare benchmarks/multifidelity.md")
    args = p.parse_args(argv)
    if (args.model is None) == (args.compare is None):
        p.error("give --model or --compare")
    torch.set_num_threads(1)
    from gnnspec.bench import current_commit

    commit = current_commit()
    if args.compare:
        pairs = [item.partition("=") for item in args.compare]
        if any(not sep or not label or not path for label, sep, path in pairs):
            p.error("--compare takes LABEL=MODEL pairs, such as both=runs/mf/best.pt")
        unknown = set(args.own_forward) - {label for label, _, _ in pairs}
        if unknown:
            p.error(f"--own-forward names labels that --compare does not: {', '.join(sorted(unknown))}")
        models = {  # a label's models; each one's own forward ensemble too unless --own-forward names the label
            label: [load_model(q, forward_ensemble=label not in args.own_forward) for q in path.split(",")] for label, _, path in pairs
        }
        data = args.data or training_data(model_path(pairs[0][2]))
        table = tier_comparison(models, data, args.split, args.tier, args.reference)
        tiers = {lab: "/".join(dict.fromkeys(m.cfg.tiers[predicted_tier(m, args.tier)] for m in members)) for lab, members in models.items()}
        caption = f"python -m gnnspec.bench.fidelity --compare at commit {commit}, {_data_label(data)}: " + ", ".join(
            f"{label} = " + " + ".join(f"{Path(q).parent.name}/{Path(q).name}" + _members_note(m) for q, m in zip(path.split(","), models[label]))
            + f" (tiers {models[label][0].cfg.tiers if len(models[label]) == 1 else [m.cfg.tiers for m in models[label]]})"
            for label, _, path in pairs
        )
        out = Path(args.out or "benchmarks/multifidelity.md")
        out.write_text(render_comparison(table, tiers, args.tier, caption))
        out.with_suffix(".json").write_text(json.dumps({"tiers": tiers, "table": table}, indent=1) + "\n")
        print(out.read_text())
        return 0
    model = load_model(args.model)
    data = args.data or training_data(model_path(args.model))
    table = fidelity_table(model, data, args.split)
    caption = f"python -m gnnspec.bench.fidelity at commit {commit}, model {Path(args.model).parent.name}/{Path(args.model).name}{_members_note(model)}, {_data_label(data)}"
    out = Path(args.out or "benchmarks/fidelity.md")
    out.write_text(render(table, model.cfg.tiers[-1], model.cfg.tiers[0], caption))
    out.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
