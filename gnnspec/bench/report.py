"""Markdown report and figures of a benchmark run (``benchmarks/report.md``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gnnspec.labels import CONTENT_ELEMENTS, DEFECTS


def _f(x, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f}" if abs(x) >= 10 ** (-nd) or x == 0 else f"{x:.2e}"


def forward_section(table: dict) -> list[str]:
    methods = ["gnnspec", "mean", "knn", "gbt"]
    lines = [
        "## 1. Forward accuracy (test split, site spectra)",
        "",
        "R^2 around the channel's mean test spectrum (the mean spectrum scores about 0), median per-spectrum R^2, "
        "MSE of normalised intensities, mean cosine. Baselines use a radial-distribution descriptor of the cluster "
        "(per neighbour element, 0.8-6 A): `knn` = 5 nearest neighbours, `gbt` = XGBoost on 16 principal components.",
        "",
        "| channel | n | " + " | ".join(f"{m} R^2 / med R^2 / MSE / cos" for m in methods) + " | GNN MSE / best baseline MSE |",
        "| --- | --- | " + " | ".join("---" for _ in methods) + " | --- |",
    ]
    for ch, row in table.items():
        cells = []
        for m in methods:
            r = row.get(m)
            cells.append("n/a" if r is None else f"{_f(r['r2'])} / {_f(r['r2_median'])} / {_f(r['mse'], 4)} / {_f(r['cosine'], 4)}")
        best = min(row[m]["mse"] for m in ("mean", "knn", "gbt"))
        ratio = row["gnnspec"]["mse"] / best if "gnnspec" in row else float("nan")
        n = next(iter(row.values()))["n"]
        lines.append(f"| {ch} | {n} | " + " | ".join(cells) + f" | {_f(ratio)} |")
    return lines + [""]


def inverse_section(table: dict, title: str = "## 2-3. Inverse accuracy and the multimodal table (test environments, FEFF spectra in)", note: str = "") -> list[str]:
    lines = [
        title,
        "",
        *([note, ""] if note else []),
        "Element-content MAE (atom fraction) and defect AUROC for every single channel, the XAS-only and "
        "EELS-only sets and all channels; `seed (XGBoost)` is the seed paper's method (gradient-boosted trees "
        "on CDF features and piecewise cubic fits per 5 eV window), trained on the same training split. Rows "
        "marked `+ quantification` (models that read one) give both methods each environment's exact elemental "
        "quantification of the subset's elements as well (`gnnspec.quantification`).",
        "",
        "| channels | n | method | " + " | ".join(f"MAE {e}" for e in CONTENT_ELEMENTS) + " | MAE mean | " + " | ".join(f"AUROC {d}" for d in DEFECTS) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in CONTENT_ELEMENTS) + " | --- | " + " | ".join("---" for _ in DEFECTS) + " |",
    ]
    for subset, row in table.items():
        for method, m in row.items():
            lines.append(
                f"| {subset} | {m['n']} | {method} | "
                + " | ".join(_f(m[f"mae_{e}"]) for e in CONTENT_ELEMENTS)
                + f" | {_f(m['mae_mean'])} | "
                + " | ".join(_f(m[f"auroc_{d}"]) for d in DEFECTS)
                + " |"
            )
    return lines + [""]


def tier_forward_section(table: dict, tier: str, base: str, baselines: dict | None = None) -> list[str]:
    """Forward accuracy in a higher tier (:func:`gnnspec.bench.fidelity.fidelity_table`), and with
    ``baselines`` (:func:`gnnspec.bench.tier_baselines.tier_baseline_table`) the classical ones."""
    lines = [
        f"## 1b. Forward accuracy in the {tier} tier (test sites where FEFF {tier} was computed)",
        "",
        f"The model's {tier} head, its {base} head and FEFF's own {base} spectrum of the same site, each against "
        f"FEFF {tier}: R^2 around the channel's mean {tier} spectrum on these sites, MSE and mean cosine "
        "(`gnnspec.bench.fidelity`).",
    ]
    edges = all("r2_aligned" in r["model_tier"] for r in table.values())
    spread = any("spread_coverage" in r["model_tier"] for r in table.values())
    if spread:
        lines += [
            f"The model predicts the mean of its forward ensemble; `within spread`: the fraction of energies where FEFF {tier} "
            "lies within its calibrated spread (fitted on validation for 0.68; `gnnspec.models.forward_ensemble`)."
        ]
    if edges:
        lines += [
            f"Edge position of the {tier} head: the rigid shift that best aligns each prediction with FEFF (RMS over the "
            "sites; positive mean: the model's edge lies too low) and R^2 after it (`gnnspec.scoring.edge_position_metrics`)."
        ]
    lines += [
        "",
        f"| channel | n | model {tier} R^2 / MSE / cos | model {base} R^2 / MSE / cos | FEFF {base} R^2 / MSE / cos |"
        + (f" {tier} aligned R^2 / shift RMS / mean (eV) |" if edges else "")
        + (" within spread |" if spread else ""),
        "| --- | --- | --- | --- | --- |" + (" --- |" if edges else "") + (" --- |" if spread else ""),
    ]
    for ch, r in table.items():
        cells = [f"{_f(r[s]['r2'])} / {_f(r[s]['mse'], 4)} / {_f(r[s]['cosine'], 4)}" for s in ("model_tier", "model_base", "feff_base")]
        if edges:
            m = r["model_tier"]
            cells.append(f"{_f(m['r2_aligned'])} / {m['shift_rms_ev']:.2f} / {m['shift_mean_ev']:+.2f}")
        if spread:
            cells.append(_f(r["model_tier"].get("spread_coverage", float("nan"))))
        lines.append(f"| {ch} | {r['model_tier']['n']} | " + " | ".join(cells) + " |")
    lines.append("")
    if baselines:
        from gnnspec.bench.tier_baselines import render

        lines += [
            f"Classical baselines on the same sites, fitted on the training split's {tier} sites (hyperparameters on "
            f"validation), R^2 (`gnnspec.bench.tier_baselines`). The last column maps each site's own FEFF {base} "
            f"spectrum to {tier}: an oracle no measured sample offers, the bound of a head that reads only a {base} spectrum.",
            "",
            *render(baselines, tier, base),
            "",
        ]
    return lines


def multimodal_figure(table: dict, path: Path, caption: str) -> None:
    from matplotlib.figure import Figure

    subsets = list(table)
    fig = Figure(figsize=(12, 4.5))
    axes = fig.subplots(1, len(DEFECTS), sharey=True)
    for ax, d in zip(np.atleast_1d(axes), DEFECTS):
        for k, method in enumerate(["gnnspec", "seed (XGBoost)"]):
            vals = [table[s].get(method, {}).get(f"auroc_{d}", np.nan) for s in subsets]
            ax.bar(np.arange(len(subsets)) + 0.4 * k, vals, width=0.4, label=method)
        ax.set_xticks(np.arange(len(subsets)) + 0.2)
        ax.set_xticklabels(subsets, rotation=70, fontsize=7)
        ax.axhline(0.5, color="k", lw=0.6, ls="--")
        ax.set_title(f"{d} AUROC")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.text(0.01, 0.01, caption, fontsize=6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)


def forward_figure(examples: dict, path: Path, caption: str) -> None:
    """Predicted against FEFF spectra, one panel per channel (the median-MSE test spectrum)."""
    from matplotlib.figure import Figure

    from gnnspec.channels import CHANNELS

    n = len(examples)
    cols = 4
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(14, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (ch, (feff, pred, knn)) in zip(axes.ravel(), examples.items()):
        grid = CHANNELS[ch].grid
        ax.plot(grid, feff, "k", lw=1.5, label="FEFF10")
        ax.plot(grid, pred, "C1", label="gnnspec")
        ax.plot(grid, knn, "C2", lw=0.8, ls="--", label="kNN")
        ax.set_title(ch, fontsize=9)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.text(0.01, 0.005, caption, fontsize=6)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=100)
