"""Per-atom explanation of a predicted spectrum: which atoms make which features.

The forward model predicts a site's spectrum as the explicit sum of per-atom contribution
spectra (the absorber's own term plus one term per neighbour atom). This module turns those
contributions into a table of each atom's share and a figure: the cluster projected onto a
plane, coloured by share, next to the stacked contribution spectra.

Share of atom j: ``sum_E c_j(E) / sum_E S(E)`` with ``S = sum_j c_j`` (shares sum to 1;
a negative share is an atom that lowers the spectrum).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gnnspec.channels import get_channel
from gnnspec.errors import InputError


def explain_site(model: Any, structure: Any, site: int, channel: str, warn: bool = True) -> dict:
    """Contributions of every atom to ``channel`` at ``site``.

    Returns ``{"energy" [K] eV, "spectrum" [K], "atoms": [{"index", "element", "distance"
    (Angstrom), "share", "position" (Angstrom, relative to the site)}], "contributions" [n, K],
    "structure_support", "forward_models", "linear_heads", "spread" [K] or None, "channel_skill"}``
    (the channel's R^2 against FEFF on held-out sites, :mod:`gnnspec.models.channel_skill`, or
    None where the checkpoint holds none), atoms sorted by
    distance. With a forward ensemble (:mod:`gnnspec.models.forward_ensemble`) spectrum and
    contributions are the mean of ``forward_models`` models (and of ``linear_heads`` linear tier
    heads, :mod:`gnnspec.models.linear_tier_heads`, whose contributions may be negative) and
    ``spread`` their calibrated spread. ``structure_support`` is the site's
    structure-side verdict (:mod:`gnnspec.models.structure_support`; None for a model without
    the check); with ``warn`` a site outside the training distribution gets a one-line warning
    on stderr (the explanation is still made).
    """
    from gnnspec.models.forward_ensemble import member_count
    from gnnspec.models.linear_tier_heads import head_count
    from gnnspec.models.structure_support import warning_lines
    from gnnspec.structures import read_structure

    try:
        ch = get_channel(channel)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    s = read_structure(structure)
    spectra, contrib, spread = model.predict_site_spectra(s, [site], return_contributions=True, return_spread=True)
    if channel not in spectra[site]:
        raise InputError(f"site {site} is {s[site].specie.symbol}; channel {channel} needs a {ch.element} absorber")
    energy, spectrum = spectra[site][channel]
    c = contrib[site][channel]
    order = np.argsort(c["distance"], kind="stable")
    intensity = c["intensity"][order]
    total = float(spectrum.sum())
    atoms = []
    centre = s[site].coords
    for row, j in enumerate(order):
        idx = int(c["atom_index"][j])
        atoms.append(
            {
                "index": idx,
                "element": s[idx].specie.symbol,
                "distance": float(c["distance"][j]),
                "share": float(intensity[row].sum() / total) if total else float("nan"),
                "position": [float(x) for x in _nearest_image(s, idx, centre)],
            }
        )
    support = model.structure_support(s, [site]) if hasattr(model, "structure_support") else None
    if warn and support is not None:
        for line in warning_lines(support, f"{structure}" if isinstance(structure, (str, Path)) else ""):
            print(line, file=sys.stderr)
    return {
        "site": site,
        "channel": channel,
        "energy": energy,
        "spectrum": spectrum,
        "atoms": atoms,
        "contributions": intensity,
        "structure_support": support,
        "forward_models": member_count(model),
        "linear_heads": head_count(model, model.cfg.tiers[model.cfg.tier_index(None)]),
        "spread": spread.get(site, {}).get(channel),
        "channel_skill": (model.channel_skill() if hasattr(model, "channel_skill") else {}).get(channel),
    }


def _nearest_image(structure, index: int, centre: np.ndarray) -> np.ndarray:
    frac = structure.lattice.get_fractional_coords(structure[index].coords - centre)
    frac -= np.round(frac)
    return structure.lattice.get_cartesian_coords(frac)


def write_explanation(result: dict, out_dir: str | Path) -> list[Path]:
    """Write ``contributions.csv`` (atom shares), ``contributions.json`` (everything, the site's
    ``structure_support`` verdict included) and ``contributions.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "contributions.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["atom_index", "element", "distance_A", "share"])
        for a in result["atoms"]:
            w.writerow([a["index"], a["element"], f"{a['distance']:.4f}", f"{a['share']:.6f}"])
    data = out / "contributions.json"
    data.write_text(
        json.dumps(
            {
                "site": result["site"],
                "channel": result["channel"],
                "energy": result["energy"].tolist(),
                "spectrum": result["spectrum"].tolist(),
                "atoms": result["atoms"],
                "contributions": result["contributions"].tolist(),
                "structure_support": result.get("structure_support"),
                "forward_models": result.get("forward_models", 1),
                "linear_heads": result.get("linear_heads", 0),
                "spread": None if result.get("spread") is None else np.asarray(result["spread"]).tolist(),
                "channel_skill": result.get("channel_skill"),
            }
        )
    )
    fig = out / "contributions.png"
    plot_explanation(result, fig)
    return [table, data, fig]


def plot_explanation(result: dict, path: str | Path, top: int = 8) -> None:
    """Cluster projection coloured by share, and stacked contributions (largest ``top`` atoms)."""
    from matplotlib.figure import Figure

    atoms = result["atoms"]
    pos = np.array([a["position"] for a in atoms])
    share = np.array([a["share"] for a in atoms])
    fig = Figure(figsize=(11, 4.5))
    (ax0, ax1) = fig.subplots(1, 2)
    lim = np.abs(share).max() or 1.0
    sc = ax0.scatter(pos[:, 0], pos[:, 1], c=share, cmap="coolwarm", vmin=-lim, vmax=lim, s=120, edgecolors="k")
    for a, p in zip(atoms, pos):
        ax0.annotate(a["element"], p[:2], fontsize=7, ha="center", va="center")
    ax0.set_xlabel("x (A)")
    ax0.set_ylabel("y (A)")
    ax0.set_aspect("equal")
    ax0.set_title(f"site {result['site']}: share of {result['channel']}")
    fig.colorbar(sc, ax=ax0, label="share of spectrum")
    e = result["energy"]
    contrib = result["contributions"]
    order = np.argsort(-np.abs(contrib.sum(1)))[:top]
    rest = np.delete(contrib, order, axis=0).sum(0)
    base = np.zeros_like(e)
    for j in order:
        ax1.fill_between(e, base, base + contrib[j], alpha=0.7, label=f"{atoms[j]['element']} {atoms[j]['distance']:.2f} A")
        base = base + contrib[j]
    ax1.fill_between(e, base, base + rest, alpha=0.4, color="grey", label="other atoms")
    ax1.plot(e, result["spectrum"], "k", lw=1.5, label="predicted spectrum")
    ax1.set_xlabel("energy (eV)")
    ax1.set_ylabel("normalised intensity")
    ax1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
