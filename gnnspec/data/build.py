"""Dataset build: NMC supercells -> FEFF10 spectra of every (structure, site, channel) -> LMDB.

Work is split into tasks: generating (and relaxing) one supercell, and one FEFF run of one
absorbing site in one tier (an ELNES run serves the EELS and XAS channel of its edge; an L2,3
channel needs an L3 and an L2 run). Tasks run in worker
processes (``--workers N``) or on a Dask distributed cluster (``--scheduler ADDRESS``). Each
finished task is committed to LMDB at once, so a killed build (even SIGKILL) loses only the
tasks in flight; rerunning the same command skips everything already stored. A stop (Ctrl-C,
or SIGTERM to the build or its process group) loses none: tasks not started are cancelled, the
ones under way finish and are stored, then the build exits; a second stop ends them at once
(their runs are planned again next time). A failed FEFF run
is stored as a ``failure/`` record with FEFF's message and does not stop the build; later
sessions skip it, unless ``retry_failed`` (``gnnspec data build --retry-failed``) clears the
failure records first (a run that timed out on an overloaded machine, say).

What to compute (the recipe, its supercells, splits, tiers and the order of the runs) is
:mod:`gnnspec.data.recipe`; this module runs it.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from gnnspec.channels import CHANNELS, channels_for_element
from gnnspec.config import config_to_dict
from gnnspec.data import schema
from gnnspec.data.recipe import (
    BuildConfig,
    extra_tier_site_ranks,
    pending_and_rechecks,
    pending_runs,
    run_groups,
    run_order,
    site_tasks,
    split_of,
    structure_params,
)
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError


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
    structure_dict: dict, sid: int, site: int, runs: list[tuple[str, list[str]]], preset: str, log_dir: str, work_root: str | None = None
) -> dict:
    """The FEFF runs of one site in tier ``preset``, one after the other (sharing one SCF where
    the tier allows): ``{"sid", "site", "tier", "runs": [{"run", "spectra": {raw: record}} or
    {"run", "failure": message}, ...]}``.

    ``runs``: ``(run, raw spectra to keep)`` such as ``("Ni-L2-elnes", ["Ni-L2-xas", "Ni-L2-eels"])``;
    ``work_root``: where each run's FEFF work folder goes (removed after the run)."""
    from pymatgen.core import Structure

    from gnnspec.simulate.ground_state import GroundState
    from gnnspec.simulate.runner import FeffRunError, run_feff_site

    _worker_init()
    structure = Structure.from_dict(structure_dict)
    log = Path(log_dir) / f"feff_{os.getpid()}.log"
    ground_state = GroundState()
    results = []
    for run, channels in runs:
        element = run.split("-")[0]
        wanted = [c.name for c in channels_for_element(element) if any(r in channels for r in c.runs)]
        try:
            spectra = run_feff_site(structure, site, wanted, preset=preset, log_path=log, workdir_root=work_root, runs=[run], ground_state=ground_state)
        except (FeffRunError, InputError) as exc:
            results.append({"run": run, "failure": str(exc)})
            continue
        out = {
            name: schema.spectrum_record(
                sp.energy, sp.intensity, sp.tier, sp.preset_hash, sp.feff_version, sp.seconds, sp.potentials_from, sp.core_hole_screening
            )
            for name, sp in spectra.items()
            if name in channels
        }
        results.append({"run": run, "spectra": out})
    return {"sid": sid, "site": site, "tier": preset, "runs": results}


# ---------------------------------------------------------------------------------------
def _open_for_build(cfg: BuildConfig, out: Path) -> SpectraStore:
    from gnnspec.simulate.presets import feff_version, get_preset, preset_hash

    store = SpectraStore(out, readonly=False)
    meta = store.metadata()
    cfg_dict = config_to_dict(cfg)
    presets = {}
    for name in [cfg.preset, *(x.preset for x in cfg.extra_tiers)]:
        preset = get_preset(name)
        presets[name] = {"hash": preset_hash(preset), "common": list(preset.common), "xanes": list(preset.xanes), "elnes": list(preset.elnes)}
    if meta is None:
        meta = {
            "schema": schema.SCHEMA_NAME,
            "schema_version": schema.SCHEMA_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_config": cfg_dict,
            "channels": {n: CHANNELS[n].as_dict() for n in cfg.channels},
            "presets": presets,
            "feff_version": feff_version(),
            "sessions": [],
        }
        store.put_many({schema.METADATA_KEY: meta})
    else:
        old = dict(meta.get("build_config", {}))
        for growable in ("n_structures", "channels", "extra_tiers"):
            old.pop(growable, None)
        old_wide = old.pop("wide_from", None)
        diff = sorted(k for k in old if old[k] != cfg_dict.get(k))
        if diff:
            raise InputError(
                f"{out}: existing dataset was built with a different config ({', '.join(diff)} differ); "
                "only n_structures, channels, extra_tiers and a wide_from past the stored supercells may change on resume"
            )
        if old_wide != cfg.wide_from:
            first = min(w for w in (old_wide, cfg.wide_from) if w is not None)
            drawn = [sid for sid in store.structure_ids() if sid >= first]
            if drawn:
                raise InputError(
                    f"{out}: wide_from {old_wide} -> {cfg.wide_from} would change how the stored supercells "
                    f"{drawn[0]}-{drawn[-1]} were drawn; it may only start at or after supercell {max(store.structure_ids()) + 1}"
                )
        for name, cards in presets.items():
            known = meta.get("presets", {}).get(name)
            if known is not None and known["hash"] != cards["hash"]:
                raise InputError(f"{out}: tier {name!r} was computed with cards {known['hash']}, the code now has {cards['hash']}; use a new tier name")
        meta["presets"] = {**meta.get("presets", {}), **presets}
        meta["channels"] = {**meta.get("channels", {}), **{n: CHANNELS[n].as_dict() for n in cfg.channels}}
        meta["build_config"] = cfg_dict
        store.put_many({schema.METADATA_KEY: meta})
    return store


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
    cfg: BuildConfig,
    out: str | Path,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    structures_only: bool = False,
    retry_failed: bool = False,
    recheck_screening: bool = False,
) -> dict:
    """Build (or resume) the dataset at ``out``. Returns a summary of this session.

    ``structures_only``: generate (and relax) the structures but run no FEFF (for example to
    compute the runs elsewhere with :mod:`gnnspec.data.offload`). ``retry_failed``: delete the
    stored failure records first, so their runs are planned again (``retried`` in the summary).
    ``recheck_screening``: run again the screened runs whose records lack the core-hole screening
    their edge is judged by (:func:`pending_runs`; ``rechecked`` in the summary).
    """
    from tqdm import tqdm

    out = Path(out)
    store = _open_for_build(cfg, out)
    retried = store.delete_prefix("failure/") if retry_failed else 0
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
    rechecked, recheck_tasks = 0, set()
    for sid in sorted(existing) if not structures_only else []:
        rec = existing[sid]
        pending, rechecks = pending_and_rechecks(store, rec, cfg, recheck_screening)
        rechecked += len(rechecks)
        recheck_tasks |= {(sid, tier, site) for tier, site, _, _ in rechecks}
        feff_queue += [(rec["structure"], sid, tier, site, runs) for tier, site, runs in site_tasks(pending)]
    # the base tier first, structure by structure, then each extra tier (its rechecks first,
    # then breadth first over the sites): cheap runs land early
    tier_order = [cfg.preset, *(x.preset for x in cfg.extra_tiers)]
    # the ranks of the queued structures' extra-tier sites; new structures add theirs as they come
    site_ranks = extra_tier_site_ranks(cfg, {sid: existing[sid] for sid in {item[1] for item in feff_queue}})
    queue_order = run_order(cfg, tier_order, frozenset(recheck_tasks), site_ranks)
    feff_queue.sort(key=queue_order)
    est_runs_per_structure = 130
    total = sum(len(item[4]) for item in feff_queue) + est_runs_per_structure * len(to_generate)

    dask = scheduler is not None
    if dask:
        executor = _DaskExecutor(scheduler)
    else:
        import multiprocessing as mp

        executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_leave_interrupts_to_the_build)
    max_in_flight = (workers if not dask else max(2, len(executor.client.nthreads()))) + 1
    in_flight: dict = {}
    stats = {"runs": 0, "spectra": 0, "failures": 0, "structures": 0, "feff_seconds": 0.0, "retried": retried, "rechecked": rechecked}
    t_start = time.time()
    bar = tqdm(total=total, desc="FEFF runs", unit="run", disable=not progress, file=sys.stderr, smoothing=0.05)
    generating = 0
    previous_handler = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        while feff_queue or to_generate or in_flight:
            while len(in_flight) < max_in_flight and (feff_queue or to_generate):
                # a new structure's base-tier runs come before any extra-tier run: generate the next
                # structure as soon as the queue runs short or holds only extra-tier runs
                base_ahead = bool(feff_queue) and feff_queue[0][2] == cfg.preset
                want_structure = to_generate and (len(feff_queue) < 2 * max_in_flight or not base_ahead) and (generating < 1 or structures_only)
                if want_structure or not feff_queue:
                    if not to_generate:
                        break
                    sid = to_generate.pop(0)
                    fut = executor.submit(generate_task, cfg_dict, sid)
                    in_flight[fut] = ("structure", sid)
                    generating += 1
                else:
                    sdict, sid, tier, site, runs = feff_queue.pop(0)
                    fut = executor.submit(feff_task, sdict, sid, site, runs, tier, str(log_dir), str(work_root))
                    in_flight[fut] = ("feff", sid)
            if not in_flight:
                break
            done, _ = _wait_any(set(in_flight), dask)
            for fut in done:
                kind, sid = in_flight.pop(fut)
                result = fut.result()
                if kind == "structure":
                    generating -= 1
                    _store_result(store, kind, sid, result, stats, bar)
                    runs = pending_runs(store, result, cfg) if not structures_only else []
                    if runs:
                        site_ranks.update(extra_tier_site_ranks(cfg, {sid: result}))
                    feff_queue += [(result["structure"], sid, tier, site, group) for tier, site, group in site_tasks(runs)]
                    feff_queue.sort(key=queue_order)
                    bar.total += len(runs) - est_runs_per_structure
                    bar.refresh()
                    continue
                _store_result(store, kind, sid, result, stats, bar)
    except KeyboardInterrupt:
        finished = _finish_in_flight(executor, in_flight, store, stats, bar, dask)
        bar.close()
        print(
            f"\ninterrupted: {stats['runs']} FEFF runs stored this session"
            + ("" if finished else " (the tasks still running were stopped: their runs are planned again)")
            + "; rerun the same command to resume",
            file=sys.stderr,
        )
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


def _store_result(store: SpectraStore, kind: str, sid: int, result: dict, stats: dict, bar) -> None:
    """Store one finished task: a structure record, or a site's spectra and failures."""
    if kind == "structure":
        store.put_many({schema.structure_key(sid): result})
        stats["structures"] += 1
        return
    for one in result["runs"]:
        if "failure" in one:
            store.put_many({schema.failure_key(result["sid"], result["site"], one["run"], result["tier"]): {"message": one["failure"]}})
            stats["failures"] += 1
        else:
            items = {schema.spectrum_key(result["sid"], result["site"], c, result["tier"]): rec for c, rec in one["spectra"].items()}
            store.put_many(items)
            stats["spectra"] += len(items)
            stats["feff_seconds"] += next(iter(one["spectra"].values()))["seconds"]
        stats["runs"] += 1
        bar.update(1)


def _finish_in_flight(executor, in_flight: dict, store: SpectraStore, stats: dict, bar, dask: bool) -> bool:
    """After a stop (Ctrl-C or SIGTERM): cancel the tasks not yet started, let the running ones
    finish and store them, so that no FEFF run already under way is lost (a site's scf runs take
    minutes). A second stop ends the wait: the workers are ended and their tasks planned again
    next time. True when every running task was stored."""
    try:
        for fut in list(in_flight):
            if not dask and fut.cancel():  # not started yet (a Dask future's cancel would stop a running one)
                in_flight.pop(fut)
        if in_flight:
            print(
                f"\nstopping: waiting for the {len(in_flight)} task(s) under way to finish and be stored "
                "(Ctrl-C again to stop at once; their runs are then planned again)",
                file=sys.stderr,
            )
        while in_flight:
            done, _ = _wait_any(set(in_flight), dask)
            for fut in done:
                kind, sid = in_flight.pop(fut)
                try:
                    result = fut.result()
                except Exception:  # a worker that died with the stop: its task is planned again
                    continue
                _store_result(store, kind, sid, result, stats, bar)
    except KeyboardInterrupt:
        _end_workers(executor, dask)
        return False
    executor.shutdown(wait=False, cancel_futures=True)
    return True


def _end_workers(executor, dask: bool) -> None:
    """End the workers of an interrupted build now (local processes; a Dask cluster's tasks are cancelled)."""
    if not dask:  # SIGKILL: the workers ignore SIGINT and SIGTERM (_leave_interrupts_to_the_build)
        processes = list((getattr(executor, "_processes", None) or {}).values())
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=10)  # reaped here, not left to an init that may never do it
    executor.shutdown(wait=False, cancel_futures=True)


def _leave_interrupts_to_the_build() -> None:
    """Worker initializer: a terminal's Ctrl-C, or a scheduler's SIGTERM to the process group,
    reaches every process of the build; workers ignore both so that the build decides (finish the
    tasks under way, or end the workers at a second stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _terminate(signum, frame) -> None:
    """SIGTERM (a scheduler or ``kill``) stops a build like Ctrl-C: record the session, exit."""
    raise KeyboardInterrupt


def _record_session(store: SpectraStore, stats: dict, t_start: float, workers: int, interrupted: bool) -> None:
    meta = store.metadata() or {}
    sessions = list(meta.get("sessions", []))
    sessions.append({**stats, "wall_seconds": time.time() - t_start, "workers": workers, "interrupted": interrupted, "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    meta["sessions"] = sessions
    store.put_many({schema.METADATA_KEY: meta})
