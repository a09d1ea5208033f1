"""What the measured benchmark shows, stated from its own numbers.

``benchmarks/measured.md`` is rewritten by every ``make bench``; a paragraph written by hand
above its tables was dropped each time. This module writes that paragraph from a result of
:func:`gnnspec.bench.measured.measured_benchmark` (with its ``reference_edges`` and
``shared_eels`` answers where present), so the words and the tables come from one run:

* **valence order**: how many ordered pairs of Mn oxides each method's Mn K edges keep;
* **shape**: each method's Spearman range over the compounds, and the compounds where the
  forward model's shape is poor (:data:`POOR_SPEARMAN`);
* **the forward models' edge spread** on each compound, against their spread on the NMC test
  sites when ``make bench`` passes it (the compounds with a spread below :data:`KNOWN_SPREAD_EV`
  are the ones whose edge the model knows);
* **the measured spectra through convert and infer**: which edges lie outside the training
  edges, by how much, and the support verdicts;
* **the shared NMC EELS**: the support verdict and the channels that make it.

Nothing here judges beyond a stated threshold; the interpretation a reader needs (that an
outside-of-distribution compound's valence order is not a claim) is the same rule that
``gnnspec predict`` and ``gnnspec infer`` apply to every answer.
"""

from __future__ import annotations

import numpy as np

#: A forward-model shape below this Spearman correlation with the measurement is named as poor.
POOR_SPEARMAN = 0.5
#: An edge spread (eV) below this is "known": about the energy scale's error of the measured references.
KNOWN_SPREAD_EV = 1.0


def _range(values: list[float], fmt: str = "{:.2f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if f"{lo:.2f}" == f"{hi:.2f}" else f"{fmt.format(lo)}-{fmt.format(hi)}"


def valence_sentence(result: dict) -> str | None:
    """How many valence-ordered pairs each method's Mn K edges keep."""
    order = result.get("valence_order") or {}
    if not order:
        return None
    parts = [f"{method} {o['pairs_in_valence_order']} of {o['pairs']}" for method, o in order.items()]
    best = max(order, key=lambda m: order[m]["pairs_in_valence_order"])
    return (
        "Mn K edges rising with the Mn valence, ordered pairs of the Mn oxides kept: "
        + ", ".join(parts)
        + f" (most: {best})."
    )


def shape_sentence(result: dict) -> str | None:
    """Spearman range per method; the forward model's poor compounds named."""
    rows = result.get("rows") or []
    if not rows:
        return None
    methods = list(dict.fromkeys(r["method"] for r in rows))
    parts = [f"{m} {_range([r['spearman'] for r in rows if r['method'] == m])}" for m in methods]
    text = "Shape after the edges are put on each other, Spearman against the measurements: " + "; ".join(parts) + "."
    model = [m for m in methods if not m.startswith("FEFF ")]
    for m in model:
        poor: dict[str, list[float]] = {}
        for r in rows:
            if r["method"] == m and r["spearman"] < POOR_SPEARMAN:
                poor.setdefault(r["compound"], []).append(r["spearman"])
        if poor:
            named = ", ".join(f"{c} {_range(v)}" for c, v in poor.items())
            text += f" Below {POOR_SPEARMAN} for the {m}: {named}."
    return text


def spread_sentence(result: dict, nmc_spread_eV: tuple[float, float] | None = None) -> str | None:
    """The forward models' calibrated edge spread per compound, against the NMC test sites'."""
    spreads = result.get("model_edge_spread_eV") or {}
    for method, by_compound in spreads.items():
        known = {c: v for c, v in by_compound.items() if v is not None}
        if not known:
            continue
        wide = {c: v for c, v in known.items() if v >= KNOWN_SPREAD_EV}
        narrow = {c: v for c, v in known.items() if v < KNOWN_SPREAD_EV}
        text = (
            f"The {method}'s calibrated edge spread (±, `gnnspec predict`'s `edge_spread_eV`): "
            + ", ".join(f"{c} ± {v:.1f} eV" for c, v in known.items())
        )
        if nmc_spread_eV is not None:
            text += f", against a median ± {nmc_spread_eV[0]:.2f}-{nmc_spread_eV[1]:.2f} eV on the NMC test sites (report, section 1d)"
        text += "."
        if wide:
            text += (
                f" Where it is {KNOWN_SPREAD_EV:.0f} eV or more ({', '.join(wide)}) the forward models disagree on the edge itself, "
                "so the edge and the valence order it would give are not known to the model there"
            )
            text += f"; known: {', '.join(narrow)}." if narrow else "."
        return text
    return None


def reference_edge_sentence(rows: list[dict] | None) -> str | None:
    """Which measured edges, through convert and infer, lie outside the training edges."""
    if not rows:
        return None
    outside, inside = [], []
    for r in rows:
        if r.get("edge_eV") is None or r.get("training_p01_eV") is None:
            continue
        if r["inside_training_range"]:
            inside.append(f"{r['compound']} ({r['measured']})")
            continue
        below = r["training_p01_eV"] - r["edge_eV"]
        where = f"{below:.1f} eV below" if below > 0 else f"{r['edge_eV'] - r['training_p99_eV']:.1f} eV above"
        outside.append(f"{r['compound']} ({r['measured']}) {where}")
    tolerances = sorted({round(r["energy_scale_tolerance_eV"], 1) for r in rows if r.get("energy_scale_tolerance_eV") is not None})
    n_in = sum(bool(r["in_distribution"]) for r in rows)
    text = "Given the measured spectra themselves, `gnnspec infer` places their K edges against FEFF's training edges"
    if tolerances:
        text += f" (the energy scale's error: {', '.join(f'{t:.1f}' for t in tolerances)} eV)"
    text += ": " + (("outside: " + "; ".join(outside)) if outside else "every edge inside")
    text += (f"; inside: {', '.join(inside)}" if inside and outside else "") + "."
    text += f" Support verdict: {n_in} of {len(rows)} in distribution."
    return text


def eels_sentence(answer: dict | None) -> str | None:
    """The shared NMC EELS: its support verdict and the channels behind it."""
    if not answer:
        return None
    s = answer["support"]
    channels = s.get("channels") or {}
    foreign = [c for c, v in channels.items() if not v.get("in_distribution", True)]
    recon = [c for c, v in (s.get("reconstruction") or {}).items() if not v.get("in_distribution", True)]
    verdict = "in distribution" if s["in_distribution"] else "out of distribution"
    text = f"The shared NMC STEM-EELS through convert and infer: {verdict}"
    details = []
    if foreign:
        details.append(f"shape unlike every training spectrum in {', '.join(foreign)} of {len(channels)} channels")
    if recon:
        details.append(f"reconstruction check failed in {', '.join(recon)}")
    return text + (f" ({'; '.join(details)})." if details else ".")


def findings(result: dict) -> list[str]:
    """The page's "What it shows" lines (Markdown bullets), every number read off ``result``
    (``nmc_edge_spread_eV``: :func:`nmc_edge_spread` of the same run, where ``make bench`` stored it)."""
    nmc = result.get("nmc_edge_spread_eV")
    sentences = [
        valence_sentence(result),
        shape_sentence(result),
        spread_sentence(result, tuple(nmc) if nmc else None),
        reference_edge_sentence(result.get("reference_edges")),
        eels_sentence(result.get("shared_eels")),
    ]
    sentences = [s for s in sentences if s]
    if not sentences:
        return []
    return ["What it shows (written from this run's numbers by `gnnspec/bench/measured_findings.py`):", ""] + [f"- {s}" for s in sentences] + [""]


def nmc_edge_spread(edge_shifts: dict | None) -> tuple[float, float] | None:
    """The range over channels of the median calibrated edge spread on the NMC test sites, from
    :func:`gnnspec.bench.edge_shifts.edge_shift_table`; None without it."""
    medians = [e["test"]["median_spread_eV"] for e in (edge_shifts or {}).values() if "median_spread_eV" in (e.get("test") or {})]
    medians = [m for m in medians if m is not None and np.isfinite(m)]
    return (min(medians), max(medians)) if medians else None
