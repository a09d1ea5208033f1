"""What a multi-fidelity model's higher tier buys: higher-tier FEFF spectra predicted three ways.

On the sites of a split where a higher FEFF tier (say ``scf``) was computed, its spectra are
compared (:func:`gnnspec.scoring.spectrum_metrics`, normalised intensity on the channel grids)
with:

* ``feff_base``: the base-tier FEFF spectrum of the same site (what a base-tier dataset offers);
* ``model_base``: the model's base-tier prediction (what a base-tier surrogate can reach);
* ``model_tier``: the model's prediction in the higher tier (:meth:`JointModel.tier_spectra`).

Run: ``python -m gnnspec.bench.fidelity --model runs/cpu_mf/best.pt`` (a model with
``model.tiers: [fast, scf]``); writes ``benchmarks/fidelity.md`` and its JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import torch

from gnnspec.data import keys as K
from gnnspec.errors import InputError
from gnnspec.scoring import spectrum_metrics

SOURCES = ("feff_base", "model_base", "model_tier")


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
    rows: dict[str, dict[str, list]] = {s: {c: [] for c in channels} for s in (*SOURCES, "target")}
    model.eval()
    for batch in DataLoader(graphs, batch_size=2, shuffle=False):
        batch.pos, batch.edge_shift = batch.pos.to(dtype), batch.edge_shift.to(dtype)
        out = model.forward_structure(batch, embed=False)
        sites = batch[K.SITE_Y_TIERS_MASK][:, t - 1].any(dim=1).nonzero(as_tuple=True)[0]
        if sites.numel() == 0:
            continue
        base, high = model.tier_spectra(out, batch, sites, 0), model.tier_spectra(out, batch, sites, t)
        have = (batch[K.SITE_Y_TIERS_MASK][sites, t - 1] & batch[K.SITE_Y_MASK][sites] & high["spectra_mask"]).numpy()
        arrays = {
            "target": batch[K.SITE_Y_TIERS][sites, t - 1],
            "feff_base": batch[K.SITE_Y][sites],
            "model_base": base["spectra"],
            "model_tier": high["spectra"],
        }
        for source, values in arrays.items():
            values = values.double().numpy()
            for c, name in enumerate(channels):
                rows[source][name].append(values[have[:, c], c])
    table = {}
    for name in channels:
        target = np.concatenate(rows["target"][name])
        if len(target):
            table[name] = {s: spectrum_metrics(np.concatenate(rows[s][name]), target) for s in SOURCES}
    if not table:
        raise InputError(f"{data}: split {split!r} holds no {tier}-tier spectra")
    return table


def render(table: dict, tier: str, base: str, caption: str) -> str:
    lines = [
        f"# The {tier} tier: FEFF {base}, the model's {base} head and its {tier} head against FEFF {tier}",
        "",
        f"*{caption}. Method: `gnnspec/bench/fidelity.py` (sites of the test split where FEFF {tier} was computed; "
        "normalised spectra on the channel grids). R^2 is left out: with a few sites per channel the spread around "
        "the mean spectrum is too small to divide by.*",
        "",
        f"| channel | sites | cosine: FEFF {base} | model {base} | model {tier} | MSE: FEFF {base} | model {base} | model {tier} |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in table.items():
        cos = " | ".join(f"{r[s]['cosine']:.4f}" for s in SOURCES)
        mse = " | ".join(f"{r[s]['mse']:.4f}" for s in SOURCES)
        lines.append(f"| {name} | {r['feff_base']['n']} | {cos} | {mse} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from gnnspec.analysis.calibration import training_data
    from gnnspec.models.factory import load_model, model_path

    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.fidelity", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a multi-fidelity checkpoint")
    p.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default="benchmarks/fidelity.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)
    data = args.data or training_data(model_path(args.model))
    table = fidelity_table(model, data, args.split)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    caption = f"python -m gnnspec.bench.fidelity at commit {commit}, model {Path(args.model).parent.name}/{Path(args.model).name}"
    out = Path(args.out)
    out.write_text(render(table, model.cfg.tiers[-1], model.cfg.tiers[0], caption))
    out.with_suffix(".json").write_text(json.dumps(table, indent=1) + "\n")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
