"""Dataset build: NMC supercells -> FEFF10 spectra of every (structure, site, channel) -> LMDB.

Work is split into tasks: generating (and relaxing) one supercell, and one FEFF run of one
absorbing site (an ELNES run serves the EELS and XAS channel of its edge). Tasks run in worker
processes (``--workers N``) or on a Dask distributed cluster (``--scheduler ADDRESS``). Each
finished task is committed to LMDB at once, so a killed build (even SIGKILL) loses only the
tasks in flight; rerunning the same command skips everything already stored. A failed FEFF run
is stored as a ``failure/`` record with FEFF's message and does not stop the build.

Structure ``sid`` is drawn from ``numpy.random.default_rng([seed, sid])`` with defect case
``cases[sid % len(cases)]`` and split by block: block ``b = sid // len(cases)`` goes to
``val`` when ``b % 6 == 1``, ``test`` when ``b % 6 == 2``, else ``train``; so every split
holds every defect case in equal numbers and a supercell is never split.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, channels_for_element
from gnnspec.config import config_to_dict
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError

CASES = ("pristine", "o_vacancy", "antisite", "combined")


@dataclass
class BuildConfig:
    """A dataset recipe (YAML). Lengths in Angstrom, forces in eV/A."""

    name: str = "nmc"
    seed: int = 0
    n_structures: int = 24
    cases: list[str] = field(default_factory=lambda: list(CASES))
    supercell: list[int] = field(default_factory=lambda: [3, 3, 1])
    relax: bool = True
    relax_fmax: float = 0.1
    relax_steps: int = 60
    thermal_sigma: float = 0.03
    preset: str = "fast"
    channels: list[str] = field(default_factory=lambda: list(CHANNEL_NAMES))
    sites_per_structure: int = 0  # 0: every site; N: N random absorbing sites per element

    def __post_init__(self) -> None:
        from gnnspec.simulate.presets import PRESETS

        for c in self.cases:
            if c not in CASES:
                raise ValueError(f"unknown defect case {c!r}; known: {', '.join(CASES)}")
        for c in self.channels:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r}; known: {', '.join(CHANNEL_NAMES)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown FEFF preset {self.preset!r}; known: {', '.join(PRESETS)}")
        if len(self.supercell) != 3:
            raise ValueError("supercell needs three integers")


def split_of(sid: int, n_cases: int) -> str:
    block = sid // n_cases
    return {1: "val", 2: "test"}.get(block % 6, "train")


def structure_params(cfg: BuildConfig, sid: int):
    """The generator parameters of structure ``sid`` (deterministic in seed and sid)."""
    from gnnspec.structures.nmc import draw_params

    rng = np.random.default_rng([cfg.seed, sid])
    case = cfg.cases[sid % len(cfg.cases)]
    params = draw_params(rng, seed=int(rng.integers(2**31)), case=case, relax=cfg.relax, thermal_sigma=cfg.thermal_sigma)
    params.supercell = tuple(cfg.supercell)
    params.relax_fmax = cfg.relax_fmax
    params.relax_steps = cfg.relax_steps
    return params, case


def run_groups(element: str, channels: list[str]) -> dict[str, list[str]]:
    """FEFF runs needed at a site of ``element``: ``{"Ni-L3-elnes": ["Ni-L3-xas", "Ni-L3-eels"], ...}``."""
    from gnnspec.simulate.feff_input import run_kind

    groups: dict[str, list[str]] = {}
    for ch in channels_for_element(element):
        if ch.name in channels:
            groups.setdefault(f"{ch.element}-{ch.edge}-{run_kind(ch)}", []).append(ch.name)
    return groups


# ---------------------------------------------------------------------------------------
# tasks (run in worker processes; arguments and results are plain data)
def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def generate_task(cfg_dict: dict, sid: int) -> dict:
    """Generate structure ``sid``: the LMDB structure record."""
    from dataclasses import asdict

    from gnnspec.config import from_dict
    from gnnspec.structures.nmc import generate_nmc

    _worker_init()
    cfg = from_dict(BuildConfig, cfg_dict)
    params, case = structure_params(cfg, sid)
    t0 = time.perf_counter()
    sample = generate_nmc(params)
    seconds = time.perf_counter() - t0
    s = sample.structure
    rng = np.random.default_rng([cfg.seed, sid, 1])
    sites: dict[str, dict[str, list[str]]] = {}
    by_element: dict[str, list[int]] = {}
    for i, site in enumerate(s):
        by_element.setdefault(site.specie.symbol, []).append(i)
    for el, idx in by_element.items():
        groups = run_groups(el, cfg.channels)
        if not groups:
            continue
        chosen = idx
        if cfg.sites_per_structure and len(idx) > cfg.sites_per_structure:
            chosen = sorted(rng.choice(idx, size=cfg.sites_per_structure, replace=False).tolist())
        for i in chosen:
            sites[str(i)] = groups
    return {
        "sid": sid,
        "case": case,
        "split": split_of(sid, len(cfg.cases)),
        "structure": s.as_dict(),
        "params": asdict(params),
        "vacancies": sample.vacancies,
        "relax_info": sample.relax_info,
        "generate_seconds": seconds,
        "sites": sites,
    }


def feff_task(
    structure_dict: dict, sid: int, site: int, run: str, channels: list[str], preset: str, log_dir: str, work_root: str | None = None
) -> dict:
    """One FEFF run: ``{"spectra": {channel: record}}`` or ``{"failure": message}``.

    ``work_root``: where the run's FEFF work folder goes (removed after the run)."""
    from pymatgen.core import Structure

    from gnnspec.simulate.runner import FeffRunError, run_feff_site

    _worker_init()
    structure = Structure.from_dict(structure_dict)
    log = Path(log_dir) / f"feff_{os.getpid()}.log"
    try:
        spectra = run_feff_site(structure, site, channels, preset=preset, log_path=log, workdir_root=work_root)
    except (FeffRunError, InputError) as exc:
        return {"sid": sid, "site": site, "run": run, "failure": str(exc)}
    out = {}
    for name, sp in spectra.items():
        out[name] = {
            "energy": sp.energy,
            "intensity": sp.intensity,
            "preset": sp.preset,
            "preset_hash": sp.preset_hash,
            "feff_version": sp.feff_version,
            "seconds": sp.seconds,
        }
    return {"sid": sid, "site": site, "run": run, "spectra": out}


# ---------------------------------------------------------------------------------------
def _open_for_build(cfg: BuildConfig, out: Path) -> SpectraStore:
    from gnnspec.simulate.presets import feff_version, get_preset, preset_hash

    store = SpectraStore(out, readonly=False)
    meta = store.metadata()
    cfg_dict = config_to_dict(cfg)
    if meta is None:
        preset = get_preset(cfg.preset)
        meta = {
            "schema": schema.SCHEMA_NAME,
            "schema_version": schema.SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_config": cfg_dict,
            "channels": {n: CHANNELS[n].as_dict() for n in cfg.channels},
            "presets": {
                preset.name: {
                    "hash": preset_hash(preset),
                    "common": list(preset.common),
                    "xanes": list(preset.xanes),
                    "elnes": list(preset.elnes),
                }
            },
            "feff_version": feff_version(),
            "sessions": [],
        }
        store.put_many({schema.METADATA_KEY: meta})
    else:
        old = dict(meta.get("build_config", {}))
        old.pop("n_structures", None)
        diff = sorted(k for k in old if old[k] != cfg_dict.get(k))
        if diff:
            raise InputError(f"{out}: existing dataset was built with a different config ({', '.join(diff)} differ); only n_structures may change on resume")
    return store


def pending_runs(store: SpectraStore, record: dict) -> list[tuple[int, str, list[str]]]:
    """FEFF runs of a structure record that have neither spectra nor a failure stored."""
    sid = record["sid"]
    done = set(store.keys(f"spectrum/{sid:06d}/")) | set(store.keys(f"failure/{sid:06d}/"))
    todo = []
    for site_str, groups in record["sites"].items():
        site = int(site_str)
        for run, chans in groups.items():
            if schema.failure_key(sid, site, run) in done:
                continue
            if all(schema.spectrum_key(sid, site, c) in done for c in chans):
                continue
            todo.append((site, run, chans))
    return todo


class _DaskExecutor:
    """A concurrent.futures-style view of a Dask distributed client."""

    def __init__(self, address: str):
        from distributed import Client

        self.client = Client(address)

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.client.close()


def _wait_any(futures: set, dask: bool):
    if dask:
        from distributed import wait

        res = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(res.done), set(res.not_done)
    done, not_done = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
    return done, not_done


def build_dataset(
    cfg: BuildConfig, out: str | Path, workers: int = 2, scheduler: str | None = None, progress: bool = True, structures_only: bool = False
) -> dict:
    """Build (or resume) the dataset at ``out``. Returns a summary of this session.

    ``structures_only``: generate (and relax) the structures but run no FEFF (for example to
    compute the runs elsewhere with :mod:`gnnspec.data.offload`).
    """
    from tqdm import tqdm

    out = Path(out)
    store = _open_for_build(cfg, out)
    log_dir = out.parent / f"{out.name}_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # FEFF work folders live here while a run lasts; a killed build (SIGKILL, power cut) leaves
    # some behind, and the next session of the build clears them
    work_root = log_dir / "feff_work"
    shutil.rmtree(work_root, ignore_errors=True)
    work_root.mkdir()
    cfg_dict = config_to_dict(cfg)

    existing = {sid: store.structure(sid) for sid in store.structure_ids() if sid < cfg.n_structures}
    to_generate = [sid for sid in range(cfg.n_structures) if sid not in existing]
    feff_queue: list[tuple] = []
    for sid in sorted(existing) if not structures_only else []:
        rec = existing[sid]
        feff_queue += [(rec["structure"], sid, site, run, chans) for site, run, chans in pending_runs(store, rec)]
    est_runs_per_structure = 130
    total = len(feff_queue) + est_runs_per_structure * len(to_generate)

    dask = scheduler is not None
    if dask:
        executor = _DaskExecutor(scheduler)
    else:
        import multiprocessing as mp

        executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    max_in_flight = (workers if not dask else max(2, len(executor.client.nthreads()))) + 1
    in_flight: dict = {}
    stats = {"runs": 0, "spectra": 0, "failures": 0, "structures": 0, "feff_seconds": 0.0}
    t_start = time.time()
    bar = tqdm(total=total, desc="FEFF runs", unit="run", disable=not progress, file=sys.stderr, smoothing=0.05)
    generating = 0
    previous_handler = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        while feff_queue or to_generate or in_flight:
            while len(in_flight) < max_in_flight and (feff_queue or to_generate):
                want_structure = to_generate and (len(feff_queue) < 2 * max_in_flight) and (generating < 1 or structures_only)
                if want_structure or not feff_queue:
                    if not to_generate:
                        break
                    sid = to_generate.pop(0)
                    fut = executor.submit(generate_task, cfg_dict, sid)
                    in_flight[fut] = ("structure", sid)
                    generating += 1
                else:
                    sdict, sid, site, run, chans = feff_queue.pop(0)
                    fut = executor.submit(feff_task, sdict, sid, site, run, chans, cfg.preset, str(log_dir), str(work_root))
                    in_flight[fut] = ("feff", sid)
            if not in_flight:
                break
            done, _ = _wait_any(set(in_flight), dask)
            for fut in done:
                kind, sid = in_flight.pop(fut)
                result = fut.result()
                if kind == "structure":
                    generating -= 1
                    store.put_many({schema.structure_key(sid): result})
                    runs = pending_runs(store, result) if not structures_only else []
                    feff_queue += [(result["structure"], sid, site, run, chans) for site, run, chans in runs]
                    bar.total += len(runs) - est_runs_per_structure
                    stats["structures"] += 1
                    bar.refresh()
                    continue
                if "failure" in result:
                    store.put_many({schema.failure_key(result["sid"], result["site"], result["run"]): {"message": result["failure"]}})
                    stats["failures"] += 1
                else:
                    items = {schema.spectrum_key(result["sid"], result["site"], c): rec for c, rec in result["spectra"].items()}
                    store.put_many(items)
                    stats["spectra"] += len(items)
                    stats["feff_seconds"] += next(iter(result["spectra"].values()))["seconds"]
                stats["runs"] += 1
                bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: {stats['runs']} FEFF runs stored this session; rerun the same command to resume", file=sys.stderr)
        executor.shutdown(wait=False, cancel_futures=True)
        _record_session(store, stats, t_start, workers, interrupted=True)
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    bar.close()
    executor.shutdown(wait=True)
    shutil.rmtree(work_root, ignore_errors=True)
    _record_session(store, stats, t_start, workers, interrupted=False)
    return stats


def _terminate(signum, frame) -> None:
    """SIGTERM (a scheduler or ``kill``) stops a build like Ctrl-C: record the session, exit."""
    raise KeyboardInterrupt


def _record_session(store: SpectraStore, stats: dict, t_start: float, workers: int, interrupted: bool) -> None:
    meta = store.metadata() or {}
    sessions = list(meta.get("sessions", []))
    sessions.append({**stats, "wall_seconds": time.time() - t_start, "workers": workers, "interrupted": interrupted, "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    meta["sessions"] = sessions
    store.put_many({schema.METADATA_KEY: meta})
