"""Speed: FEFF10 against gnnspec on the same clusters, training throughput, dataset-build throughput.

All timings are wall-clock seconds on the machine that runs the benchmark (the report names it).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from gnnspec.channels import channels_for_element


def hardware() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def feff_vs_gnn(model, structure: Structure, sites: list[int]) -> dict:
    """FEFF10 wall time per spectrum on ``sites`` against one batched gnnspec pass over the same sites."""
    from gnnspec.simulate.runner import run_feff_site

    n_spectra, t0 = 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for site in sites:
            chans = [c.name for c in channels_for_element(structure[site].specie.symbol)]
            out = run_feff_site(structure, site, chans, log_path=Path(tmp) / "feff.log")
            n_spectra += len(out)
    feff_s = time.perf_counter() - t0
    model.predict_site_spectra(structure, sites[:1])  # warm-up
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        pred = model.predict_site_spectra(structure, sites)
    gnn_s = (time.perf_counter() - t0) / reps
    n_pred = sum(len(v) for v in pred.values())
    return {
        "sites": len(sites),
        "feff_spectra": n_spectra,
        "feff_s_per_spectrum": feff_s / n_spectra,
        "gnn_spectra": n_pred,
        "gnn_s_per_spectrum": gnn_s / n_pred,
        "speedup": (feff_s / n_spectra) / (gnn_s / n_pred),
    }


def scf_cost(structure: Structure, sites: list[int]) -> dict:
    """Where the time of the ``scf`` tier goes, and runs per core-hour before and after sharing one
    SCF per site (:func:`gnnspec.bench.ground_state.site_check`): every run of ``sites`` (K, L3 and
    L2 runs of a TM, the O K ELNES run, the Li K XANES run) on its own SCF, with its stages' wall
    times, then a site's later runs again on its first run's SCF."""
    from gnnspec.bench.ground_state import RECIPE_RUNS_PER_SITE, cost_summary, recipe_runs_per_core_hour, site_check

    structure_dict = structure.as_dict()
    rows = [row for site in sites for row in site_check(structure_dict, site)]
    summary = cost_summary(rows)
    wall = sum(r["own_seconds"] for r in rows)
    return {
        "runs": [{"run": r["run"], "site": r["site"], "seconds": r["own_seconds"], "cpu_seconds": r["own_cpu_seconds"]} for r in rows],
        "rows": rows,
        "seconds_per_run": wall / len(rows),
        "pot_share": sum(r["own_pot_seconds"] for r in rows) / wall,
        "runs_per_core_hour": summary["runs_per_core_hour_before"],
        "shared": summary,
        "recipe_runs_per_core_hour": recipe_runs_per_core_hour(rows, RECIPE_RUNS_PER_SITE),
    }


def training_throughput(model, train_cfg, graphs: list, steps: int) -> dict:
    """Optimizer steps of the full training objective on real batches: supercells and environments per second."""
    from torch_geometric.loader import DataLoader

    from gnnspec.train.objective import Objective

    objective = Objective(model, train_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = DataLoader(graphs, batch_size=train_cfg.batch_size, shuffle=True)
    dtype = next(model.parameters()).dtype
    batches = []
    while len(batches) < steps + 1:
        batches += list(loader)
    n_struct = n_env = 0
    for i, batch in enumerate(batches[: steps + 1]):
        batch.pos, batch.edge_shift = batch.pos.to(dtype), batch.edge_shift.to(dtype)
        if i == 1:
            t0 = time.perf_counter()  # first step is warm-up
        loss, _ = objective(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 1:
            n_struct += batch.num_graphs
            n_env += int(batch.env_centre_index.numel())
    dt = time.perf_counter() - t0
    return {"steps": steps, "structures_per_s": n_struct / dt, "environments_per_s": n_env / dt, "device": str(next(model.parameters()).device)}


def build_throughput(dataset_info: dict) -> dict:
    """Spectra per core-hour of the shipped build, from its records (FEFF seconds per run)."""
    med = dataset_info.get("feff_seconds_per_spectrum_run_median")
    return {
        "median_s_per_run": med,
        "runs_per_core_hour": 3600.0 / med if med else float("nan"),
        "spectra_per_run": dataset_info["spectra"] / max(1, _stored_runs(dataset_info)),
    }


def _stored_runs(dataset_info: dict) -> int:
    """FEFF runs with their spectra stored: counted per tier where the dataset has a recipe,
    else the planned runs less the failed ones (a dataset without pending runs)."""
    per_tier = dataset_info.get("runs_per_tier")
    if per_tier:
        return sum(sum(row["stored"].values()) for row in per_tier.values())
    return dataset_info["planned_feff_runs"] - dataset_info["failures"]


def worker_scaling(n_structures: int = 2) -> dict:
    """Wall time of one small build with 1 and with 2 worker processes (speed-up)."""
    from gnnspec.data.build import build_dataset
    from gnnspec.data.recipe import BuildConfig

    cfg = BuildConfig(name="bench", seed=3, n_structures=n_structures, relax=False, sites_per_structure=2, channels=["Li-K-xas", "O-K-xas", "O-K-eels", "Ni-K-xas"])
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            t0 = time.perf_counter()
            stats = build_dataset(cfg, Path(tmp) / f"w{workers}", workers=workers, progress=False)
            times[workers] = time.perf_counter() - t0
    return {"runs": stats["runs"], "wall_s_1_worker": times[1], "wall_s_2_workers": times[2], "speedup": times[1] / times[2]}


def median(values) -> float:
    return float(np.median(values)) if len(values) else float("nan")
