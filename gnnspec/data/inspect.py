"""Summaries and integrity checks of a gnnspec LMDB dataset (``gnnspec data info|verify``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from gnnspec.channels import RUN_NAMES
from gnnspec.data import schema
from gnnspec.data.store import DATA_FILE, SpectraStore


def dataset_info(path: str | Path) -> dict:
    """Counts per channel, split and defect case; failures; presets; file size; FEFF timings."""
    store = SpectraStore(path)
    meta = store.metadata() or {}
    per_channel: Counter = Counter()
    per_preset: Counter = Counter()
    seconds = []
    per_tier: dict[str, Counter] = {}
    seconds_per_tier: dict[str, list[float]] = {}
    from gnnspec.simulate.presets import PRESETS

    screening: dict[str, Counter] = {}  # per run spectrum of an edge with an over-screening limit
    for key, rec in store.items("spectrum/"):
        _, _, _, tier, run = schema.parse_key(key)
        screened = tier in PRESETS and PRESETS[tier].screened_core_hole
        if schema.screening_limit(run) is not None and (screened or "core_hole_screening" in rec):
            state = "unrecorded" if "core_hole_screening" not in rec else "over-screened" if schema.over_screened(run, rec) else "ordinary"
            screening.setdefault(f"{tier} {run}", Counter())[state] += 1
        per_channel[run] += 1
        per_tier.setdefault(tier, Counter())[run] += 1
        per_preset[f"{rec['preset']} ({rec['preset_hash']})"] += 1
        seconds.append(rec["seconds"])
        seconds_per_tier.setdefault(tier, []).append(rec["seconds"])
    from gnnspec.config import from_dict
    from gnnspec.data.recipe import BuildConfig, run_progress

    # the runs the recipe asks for now, every tier (an imported or synthetic dataset has no recipe)
    recipe = meta.get("build_config", {})
    cfg = from_dict(BuildConfig, recipe, f"{path}: build_config") if "seed" in recipe and "preset" in recipe else None
    splits: Counter = Counter()
    cases: Counter = Counter()
    n_sites = 0
    planned_runs = 0
    runs_per_tier: dict[str, dict] = {}  # per tier: stored / pending runs per split, failed, supercells covered
    for _, rec in store.items("structure/"):
        splits[rec["split"]] += 1
        cases[rec.get("case", "imported")] += 1
        n_sites += len(rec["structure"]["sites"])
        if cfg is None:
            planned_runs += sum(len(g) for g in rec["sites"].values())
            continue
        for tier, counts in run_progress(store, rec, cfg).items():
            planned_runs += sum(counts.values())
            row = runs_per_tier.setdefault(tier, {"stored": Counter(), "pending": Counter(), "failed": 0, "supercells": 0})
            row["stored"][rec["split"]] += counts["stored"]
            row["pending"][rec["split"]] += counts["pending"]
            row["failed"] += counts["failed"]
            row["supercells"] += counts["stored"] > 0
    failures = [(k.decode(), rec["message"]) for k, rec in store.items("failure/")]
    sessions = meta.get("sessions", [])
    wall = sum(s.get("wall_seconds", 0.0) for s in sessions)
    return {
        "path": str(path),
        "schema": f"{meta.get('schema')} v{meta.get('schema_version')}",
        "structures": sum(splits.values()),
        "sites": n_sites,
        "splits": dict(splits),
        "cases": dict(cases),
        "spectra": sum(per_channel.values()),
        "spectra_per_run": {c: per_channel[c] for c in RUN_NAMES if per_channel.get(c, 0)},
        "spectra_per_tier": {tier: {c: n[c] for c in RUN_NAMES if n.get(c, 0)} for tier, n in per_tier.items()},
        "feff_seconds_median_per_tier": {tier: float(np.median(s)) for tier, s in seconds_per_tier.items()},
        "core_hole_screening": {name: dict(n) for name, n in screening.items()},
        "planned_feff_runs": planned_runs,
        "runs_per_tier": {t: {**r, "stored": dict(r["stored"]), "pending": dict(r["pending"])} for t, r in runs_per_tier.items()},
        "failures": len(failures),
        "failure_examples": failures[:5],
        "presets": dict(per_preset),
        "feff_version": meta.get("feff_version"),
        "feff_seconds_per_spectrum_run_median": float(np.median(seconds)) if seconds else None,
        "build_wall_hours": wall / 3600.0,
        "build_sessions": len(sessions),
        "size_mb": (Path(path) / DATA_FILE).stat().st_size / 1e6,
        "build_config": meta.get("build_config"),
    }


def format_info(info: dict) -> str:
    lines = [
        f"dataset      {info['path']}  ({info['schema']}, {info['size_mb']:.1f} MB)",
        f"structures   {info['structures']}  splits {info['splits']}  cases {info['cases']}",
        f"sites        {info['sites']}",
        f"spectra      {info['spectra']}  (FEFF runs planned {info['planned_feff_runs']}, failed {info['failures']})",
    ]
    progress = info.get("runs_per_tier", {})
    for tier in [*info["spectra_per_tier"], *(t for t in progress if t not in info["spectra_per_tier"])]:
        runs = info["spectra_per_tier"].get(tier, {})
        seconds = info["feff_seconds_median_per_tier"].get(tier)
        lines.append(f"  tier {tier}" + (f" (median {seconds:.1f} s per FEFF run)" if seconds is not None else " (no spectra yet)"))
        if tier in progress:
            lines.append("    " + _format_run_progress(progress[tier], info["structures"]))
        for run, n in runs.items():
            lines.append(f"    {run:<12s} {n}")
    for name, counts in info.get("core_hole_screening", {}).items():
        lines.append(
            f"  {name}: core-hole screening ordinary {counts.get('ordinary', 0)}, over-screened (no target) "
            f"{counts.get('over-screened', 0)}, not recorded {counts.get('unrecorded', 0)}"
        )
    lines.append(f"presets      {info['presets']}  {info['feff_version']}")
    if info["feff_seconds_per_spectrum_run_median"] is not None:
        lines.append(f"FEFF time    median {info['feff_seconds_per_spectrum_run_median']:.2f} s per run")
    lines.append(f"build        {info['build_wall_hours']:.2f} h wall over {info['build_sessions']} session(s)")
    for key, msg in info["failure_examples"]:
        lines.append(f"  failed {key}: {msg[:120]}")
    return "\n".join(lines)


def _format_run_progress(row: dict, n_structures: int) -> str:
    """One line: a tier's FEFF runs stored and pending per split, failed, supercells covered."""

    def per_split(counts: dict) -> str:
        return f"{sum(counts.values())} (" + ", ".join(f"{s} {counts.get(s, 0)}" for s in schema.SPLITS) + ")"

    return (
        f"FEFF runs stored {per_split(row['stored'])}, pending {per_split(row['pending'])}, failed {row['failed']}; "
        f"supercells with a stored run {row['supercells']} of {n_structures}"
    )


def verify_dataset(path: str | Path) -> list[str]:
    """Check every record; return the problems found (empty list: all good)."""
    from pymatgen.core import Structure

    store = SpectraStore(path)
    problems: list[str] = []
    structures: dict[int, int] = {}
    for key, rec in store.items("structure/"):
        name = key.decode()
        try:
            s = Structure.from_dict(rec["structure"])
            structures[int(rec["sid"])] = len(s)
        except Exception as exc:
            problems.append(f"{name}: structure does not parse ({exc})")
            continue
        if rec.get("split") not in schema.SPLITS:
            problems.append(f"{name}: unknown split {rec.get('split')!r}")
        for site in rec["sites"]:
            if not 0 <= int(site) < len(s):
                problems.append(f"{name}: planned site {site} out of range")
    for key, rec in store.items("spectrum/"):
        name = key.decode()
        parts = schema.parse_key(key)
        if len(parts) != 5:
            problems.append(f"{name}: malformed key")
            continue
        _, sid, site, tier, run = parts
        if run not in RUN_NAMES:
            problems.append(f"{name}: unknown FEFF run spectrum {run}")
        if rec.get("tier", tier) != tier:
            problems.append(f"{name}: record says tier {rec.get('tier')!r}")
        if int(sid) not in structures:
            problems.append(f"{name}: no structure record {sid}")
        elif int(site) >= structures[int(sid)]:
            problems.append(f"{name}: site {site} out of range")
        e, y = np.asarray(rec.get("energy")), np.asarray(rec.get("intensity"))
        if e.shape != y.shape or e.ndim != 1 or len(e) < 2:
            problems.append(f"{name}: energy/intensity shapes {e.shape} and {y.shape}")
        elif not (np.all(np.isfinite(e)) and np.all(np.isfinite(y))):
            problems.append(f"{name}: non-finite values")
        elif not np.all(np.diff(e) > 0):
            problems.append(f"{name}: energies not increasing")
        for field in ("preset", "preset_hash", "feff_version"):
            if field not in rec:
                problems.append(f"{name}: missing {field}")
    return problems
