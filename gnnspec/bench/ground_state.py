"""The scf tier with one SCF per site: same spectra as a run per edge, and runs per core-hour.

For each chosen site, every ``scf`` run its channels need is computed twice: on its own (each
run its own SCF, as before :mod:`gnnspec.simulate.ground_state`) and, after the site's first
run, on that first run's SCF. Reported per run: the cosine and the largest difference between
the two spectra (relative to the spectrum's maximum), and both costs; per set of sites, runs
per core-hour before and after. Cost is the CPU time of FEFF's stage processes (``getrusage`` of
the finished children), so a benchmark on a busy machine still counts core-seconds; wall
seconds are reported beside it.

    python -m gnnspec.bench.ground_state datasets/nmc_feff10_fast --elements Li O Mn Co Ni --workers 2

writes ``benchmarks/ground_state.{json,md}`` (test split, first supercell holding each element).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Accept a run on a shared SCF where its spectrum matches its own run's within this cosine.
COSINE_GOAL = 0.999


def _cpu_children() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _timed(text: str, kind: str, timeout_s: float, log: Path, ground_state=None, run_name: str | None = None) -> tuple[dict, float, float, dict]:
    from gnnspec.simulate.engine import run_feff_text

    stages: dict = {}
    cpu0 = _cpu_children()
    spectra, wall = run_feff_text(text, kind, timeout_s, log, stage_seconds=stages, ground_state=ground_state, run_name=run_name)
    return spectra, wall, _cpu_children() - cpu0, stages


def site_check(structure_dict: dict, site: int) -> list[dict]:
    """Every scf run of ``site`` on its own SCF, then the runs after the first on the first's SCF."""
    from pymatgen.core import Structure

    from gnnspec.channels import DEFAULT_CHANNELS
    from gnnspec.simulate.feff_input import build_feff_input, site_runs
    from gnnspec.simulate.ground_state import GroundState
    from gnnspec.simulate.presets import get_preset

    preset = get_preset("scf")
    structure = Structure.from_dict(structure_dict)
    element = structure[site].specie.symbol
    shared = GroundState()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "feff.log"
        for i, run in enumerate(site_runs(element, list(DEFAULT_CHANNELS))):
            _, edge, kind = run.split("-")
            text = build_feff_input(structure, site, edge, kind, preset)
            own, wall, cpu, stages = _timed(text, kind, preset.stage_timeout_s, log, shared if i == 0 else None, run)
            row = {"element": element, "site": site, "run": run, "own_seconds": wall, "own_cpu_seconds": cpu, "own_pot_seconds": stages.get("pot", 0.0)}
            if i > 0:
                reused, wall, cpu, stages = _timed(text, kind, preset.stage_timeout_s, log, shared, run)
                row.update({"shared_from": shared.source, "shared_seconds": wall, "shared_cpu_seconds": cpu, "shared_pot_seconds": stages.get("pot", 0.0)})
                for modality, (energy, y) in own.items():
                    e2, y2 = reused[modality]
                    same_axis = bool(np.array_equal(energy, e2))
                    y2 = y2 if same_axis else np.interp(energy, e2, y2)
                    row[f"{modality}_cosine"] = float(y @ y2 / (np.linalg.norm(y) * np.linalg.norm(y2)))
                    row[f"{modality}_max_relative_difference"] = float(np.max(np.abs(y - y2)) / np.max(np.abs(y)))
                    row[f"{modality}_same_energy_axis"] = same_axis
            rows.append(row)
    return rows


def cost_summary(rows: list[dict]) -> dict:
    """Runs per core-hour of the measured sites: every run its own SCF, and one SCF per site."""
    before = sum(r["own_cpu_seconds"] for r in rows)
    after = sum(r["shared_cpu_seconds"] if "shared_from" in r else r["own_cpu_seconds"] for r in rows)
    wall_before = sum(r["own_seconds"] for r in rows)
    wall_after = sum(r["shared_seconds"] if "shared_from" in r else r["own_seconds"] for r in rows)
    shared = [r for r in rows if "shared_from" in r]
    cosines = [r[k] for r in shared for k in r if k.endswith("_cosine")]
    return {
        "runs": len(rows),
        "sites": len({(r["element"], r["site"]) for r in rows}),
        "runs_per_core_hour_before": 3600.0 * len(rows) / before,
        "runs_per_core_hour_after": 3600.0 * len(rows) / after,
        "runs_per_hour_wall_before": 3600.0 * len(rows) / wall_before,
        "runs_per_hour_wall_after": 3600.0 * len(rows) / wall_after,
        "own_cpu_seconds_per_run": before / len(rows),
        "shared_cpu_seconds_per_run": float(np.mean([r["shared_cpu_seconds"] for r in shared])) if shared else None,
        "min_cosine": min(cosines) if cosines else None,
        "max_relative_difference": max((r[k] for r in shared for k in r if k.endswith("_max_relative_difference")), default=None),
        "all_within_goal": bool(cosines) and min(cosines) >= COSINE_GOAL,
    }


def recipe_runs_per_core_hour(rows: list[dict], runs_per_site: dict[str, int]) -> float:
    """Runs per core-hour of a recipe's scf mix (``{"Li": 1, "O": 1, "Ni": 3, ...}`` runs a site,
    one site per element) at the measured costs: a site's first run with its own SCF, the rest on
    it. Each element's costs are its own rows' where measured, else the mean over all rows."""
    first = [r for r in rows if "shared_from" not in r]
    shared = [r for r in rows if "shared_from" in r]

    def cost(subset: list[dict], key: str, fallback: list[dict]) -> float:
        return float(np.mean([r[key] for r in (subset or fallback)]))

    runs, cpu = 0, 0.0
    for element, n in runs_per_site.items():
        cpu += cost([r for r in first if r["element"] == element], "own_cpu_seconds", first)
        if n > 1:
            cpu += (n - 1) * cost([r for r in shared if r["element"] == element], "shared_cpu_seconds", shared)
        runs += n
    return 3600.0 * runs / cpu


#: The shipped recipe's scf runs a site: Li K; O K (ELNES); K, L3 and L2 of each TM.
RECIPE_RUNS_PER_SITE = {"Li": 1, "O": 1, "Mn": 3, "Co": 3, "Ni": 3}


def chosen_sites(data: str, elements: list[str], split: str = "test") -> list[tuple[dict, int]]:
    """The first site of each element in the first supercell of ``split`` that holds it."""
    from gnnspec.data.dataset import LMDBStructureDataset

    ds = LMDBStructureDataset(data, split)
    out = []
    for el in elements:
        for i in range(len(ds)):
            rec = ds.record(i)
            species = [s["species"][0]["element"] for s in rec["structure"]["sites"]]
            if el in species:
                out.append((rec["structure"], species.index(el)))
                break
    return out


def caption(data: str) -> str:
    """Where a result comes from: commit, dataset fingerprint, FEFF version."""

    from gnnspec.bench import current_commit
    from gnnspec.data.store import SpectraStore
    from gnnspec.simulate.presets import feff_version

    commit = current_commit()
    return f"at commit {commit}, data {data} (sha256 {SpectraStore(data).fingerprint()[:12]}), {feff_version()}"


def markdown(rows: list[dict], summary: dict, recipe: float | None, where: str = "") -> str:
    lines = [
        "# scf tier: one SCF per site",
        "",
        f"*`python -m gnnspec.bench.ground_state` {where} (module docstring): each run of a site on its own SCF",
        "and on the SCF of the site's first run. Cosine and largest difference (relative to the maximum)",
        "between the two spectra; CPU seconds of FEFF's stage processes.*",
        "",
        "| run | site | own SCF (CPU s) | shared SCF from | shared (CPU s) | cosine (xas / eels) | max rel. difference | same energies |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "shared_from" not in r:
            lines.append(f"| {r['run']} | {r['site']} | {r['own_cpu_seconds']:.1f} | (computes it) | - | - | - | - |")
            continue
        cos = " / ".join(f"{r[k]:.6f}" for k in ("xas_cosine", "eels_cosine") if k in r)
        diff = max(r[k] for k in r if k.endswith("_max_relative_difference"))
        same = all(r[k] for k in r if k.endswith("_same_energy_axis"))
        lines.append(f"| {r['run']} | {r['site']} | {r['own_cpu_seconds']:.1f} | {r['shared_from']} | {r['shared_cpu_seconds']:.1f} | {cos} | {diff:.1e} | {same} |")
    s = summary
    lines += [
        "",
        f"{s['runs']} runs at {s['sites']} sites: runs per core-hour {s['runs_per_core_hour_before']:.0f} (a run its own SCF) -> "
        f"{s['runs_per_core_hour_after']:.0f} (one SCF per site); wall {s['runs_per_hour_wall_before']:.0f} -> {s['runs_per_hour_wall_after']:.0f} runs per hour. "
        f"Smallest cosine {s['min_cosine']:.6f} (goal >= {COSINE_GOAL}); largest relative difference {s['max_relative_difference']:.1e}.",
    ]
    if recipe is not None:
        lines.append(
            f"The shipped recipe's scf mix (per supercell the same number of sites per element: Li K, O K, and K, L3, L2 of each TM; "
            f"each element at its own measured costs where measured, else the mean) at these costs: {recipe:.0f} runs per core-hour."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.ground_state", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a gnnspec dataset (its test supercells give the sites)")
    p.add_argument("--elements", nargs="+", default=["Li", "O", "Mn", "Co", "Ni"])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="benchmarks/ground_state")
    args = p.parse_args(argv)
    sites = chosen_sites(args.data, args.elements)
    with cf.ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = [r for rs in pool.map(site_check, *zip(*sites)) for r in rs]
    summary = cost_summary(rows)
    recipe = recipe_runs_per_core_hour(rows, RECIPE_RUNS_PER_SITE)
    where = caption(args.data)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"where": where, "rows": rows, "summary": summary, "recipe_runs_per_core_hour": recipe}, indent=1))
    Path(args.out).with_suffix(".md").write_text(markdown(rows, summary, recipe, where))
    print(markdown(rows, summary, recipe, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
