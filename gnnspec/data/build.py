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

Structure ``sid`` is drawn from ``numpy.random.default_rng([seed, sid])`` with defect case
``cases[sid % len(cases)]`` and split by block: block ``b = sid // len(cases)`` goes to
``val`` when ``b % 6 == 1``, ``test`` when ``b % 6 == 2``, else ``train``; so every split
holds every defect case in equal numbers and a supercell is never split.

Tiers (:mod:`gnnspec.simulate.presets`): the recipe's ``preset`` computes every chosen site;
each entry of ``extra_tiers`` computes a few sampled sites of every supercell with another
preset (:func:`tier_sites`: per element, sites whose environment holds a defect first). The
runs of a structure are planned from the recipe whenever a build starts, so adding channels or
extra tiers to a recipe and resuming computes only the new runs.
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

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, DEFAULT_CHANNELS, channels_for_element
from gnnspec.config import config_to_dict
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError

CASES = ("pristine", "o_vacancy", "antisite", "combined")


@dataclass
class TierConfig:
    """Another FEFF tier on sampled sites of every supercell."""

    preset: str = "scf"
    sites_per_element: int = 1  # sites per element present, per supercell
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))

    def __post_init__(self) -> None:
        from gnnspec.simulate.presets import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"unknown FEFF preset {self.preset!r}; known: {', '.join(PRESETS)}")
        for c in self.channels:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r}; known: {', '.join(CHANNEL_NAMES)}")
        if self.sites_per_element < 1:
            raise ValueError("sites_per_element must be at least 1")


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
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    sites_per_structure: int = 0  # 0: every site; N: N random absorbing sites per element
    extra_tiers: list[TierConfig] = field(default_factory=list)
    # supercells with id >= wide_from are drawn by gnnspec.structures.nmc.draw_wide_params (the
    # whole TM composition triangle, Li vacancy orderings, lattice parameters and thermal
    # displacements drawn per supercell); None: every supercell by draw_params
    wide_from: int | None = None

    def __post_init__(self) -> None:
        from gnnspec.simulate.presets import PRESETS

        if self.wide_from is not None and self.wide_from < 0:
            raise ValueError(f"wide_from must be a supercell id >= 0, got {self.wide_from}")
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
        tiers = [self.preset, *(x.preset for x in self.extra_tiers)]
        if len(set(tiers)) != len(tiers):
            raise ValueError(f"each tier may appear once: {tiers}")


def split_of(sid: int, n_cases: int) -> str:
    block = sid // n_cases
    return {1: "val", 2: "test"}.get(block % 6, "train")


def structure_params(cfg: BuildConfig, sid: int):
    """The generator parameters of structure ``sid`` (deterministic in seed and sid)."""
    from gnnspec.structures.nmc import draw_params, draw_wide_params, ideal_cell

    rng = np.random.default_rng([cfg.seed, sid])
    case = cfg.cases[sid % len(cfg.cases)]
    seed = int(rng.integers(2**31))
    if cfg.wide_from is not None and sid >= cfg.wide_from:
        n_tm = (len(ideal_cell()) // 4) * int(np.prod(cfg.supercell))
        params = draw_wide_params(rng, seed=seed, case=case, relax=cfg.relax, n_tm=n_tm)
    else:
        params = draw_params(rng, seed=seed, case=case, relax=cfg.relax, thermal_sigma=cfg.thermal_sigma)
    params.supercell = tuple(cfg.supercell)
    params.relax_fmax = cfg.relax_fmax
    params.relax_steps = cfg.relax_steps
    return params, case


def run_groups(element: str, channels: list[str]) -> dict[str, list[str]]:
    """FEFF runs needed at a site of ``element``: ``{"Ni-L2-elnes": ["Ni-L2-xas", "Ni-L2-eels"], ...}``."""
    from gnnspec.simulate.feff_input import site_runs

    return site_runs(element, channels)  # empty for an element without channels


def tier_sites(record: dict, tier: TierConfig, seed: int, tier_index: int) -> list[int]:
    """Sites of a structure record computed in an extra tier, chosen to cover the labels.

    Per element with a channel in the tier, ``sites_per_element`` sites: first from the sites
    whose environment (:func:`gnnspec.structures.environments.environments`) carries a defect
    label (an O vacancy or an antisite within its radius), then from the rest, each group in a
    seeded random order (``numpy.random.default_rng([seed, sid, 2, tier_index])``). Deterministic.
    """
    from pymatgen.core import Structure

    from gnnspec.structures.environments import environments

    structure = Structure.from_dict(record["structure"])
    defective = {e.centre for e in environments(structure, record.get("vacancies") or [], include_bulk=False) if np.any(e.defects)}
    rng = np.random.default_rng([seed, record["sid"], 2, tier_index])
    elements = {CHANNELS[c].element for c in tier.channels}
    chosen: list[int] = []
    for el in sorted(elements):
        idx = [i for i, s in enumerate(structure) if s.specie.symbol == el]
        first = [i for i in idx if i in defective]
        rest = [i for i in idx if i not in defective]
        order = list(rng.permutation(first)) + list(rng.permutation(rest))
        chosen += [int(i) for i in order[: tier.sites_per_element]]
    return sorted(chosen)


def planned_runs(cfg: BuildConfig, record: dict) -> list[tuple[str, int, str, list[str]]]:
    """Every FEFF run the recipe asks of a structure record: ``(tier, site, run, raw spectra)``.

    The base tier (``cfg.preset``) runs at the record's chosen sites (every site, or the
    ``sites_per_structure`` drawn when it was generated) for ``cfg.channels``; each extra tier at
    :func:`tier_sites`.
    """
    species = [site["species"][0]["element"] for site in record["structure"]["sites"]]
    plan = []
    for site_str in record["sites"]:
        site = int(site_str)
        for run, raws in run_groups(species[site], cfg.channels).items():
            plan.append((cfg.preset, site, run, raws))
    for k, tier in enumerate(cfg.extra_tiers):
        for site in tier_sites(record, tier, cfg.seed, k):
            for run, raws in run_groups(species[site], tier.channels).items():
                plan.append((tier.preset, site, run, raws))
    return plan


def split_progress(sid: int, n_structures: int, n_cases: int) -> float:
    """Where supercell ``sid`` stands within its own split, from 0 (its first) to 1 (past its last).

    Sorting an extra tier's runs by it interleaves the splits in proportion to their sizes
    (train 36, val 12, test 8 supercells of the shipped recipe), so a build that stops part way
    has computed that tier in every split, not in the first supercells only.
    """
    same = [s for s in range(n_structures) if split_of(s, n_cases) == split_of(sid, n_cases)]
    return same.index(sid) / len(same) if sid in same else 1.0


def run_order(cfg: BuildConfig, tier_order: list[str], rechecks: frozenset = frozenset()):
    """Sort key of queued FEFF tasks ``(structure, sid, tier, site, runs)``: the base tier by
    supercell id, each extra tier after it with its supercells interleaved across the splits.

    ``rechecks``: ``(sid, tier, site)`` of tasks that run stored records again
    (``--recheck-screening``); they lead their tier, since they decide which stored spectra are
    targets at all, before new runs add to them."""
    progress = {sid: split_progress(sid, cfg.n_structures, len(cfg.cases)) for sid in range(cfg.n_structures)}

    def key(item: tuple) -> tuple:
        tier, sid = item[2], item[1]
        rank = tier_order.index(tier)
        if rank == 0:
            return (rank, sid)
        return (rank, 0 if (sid, tier, item[3]) in rechecks else 1, progress.get(sid, 1.0), sid)

    return key


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


def site_tasks(runs: list[tuple[str, int, str, list[str]]]) -> list[tuple[str, int, list[tuple[str, list[str]]]]]:
    """Pending runs ``(tier, site, run, raws)`` as FEFF tasks ``(tier, site, [(run, raws), ...])``.

    In a tier whose runs share one SCF per site (:attr:`Preset.shares_ground_state`), a site's
    runs form one task, so its first run's potentials serve the others; else one run a task."""
    from gnnspec.simulate.presets import get_preset

    tasks: list[tuple[str, int, list[tuple[str, list[str]]]]] = []
    grouped: dict[tuple[str, int], list[tuple[str, list[str]]]] = {}
    for tier, site, run, raws in runs:
        if get_preset(tier).shares_ground_state:
            if (tier, site) not in grouped:
                grouped[(tier, site)] = []
                tasks.append((tier, site, grouped[(tier, site)]))
            grouped[(tier, site)].append((run, raws))
        else:
            tasks.append((tier, site, [(run, raws)]))
    return tasks


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


def pending_runs(store: SpectraStore, record: dict, cfg: BuildConfig, recheck_screening: bool = False) -> list[tuple[str, int, str, list[str]]]:
    """Planned FEFF runs (:func:`planned_runs`) of a structure record with neither spectra nor a failure stored.

    ``recheck_screening``: also the runs of a screened tier whose edge has an over-screening limit
    (:data:`gnnspec.data.schema.OVER_SCREENED_BELOW`) and whose stored record lacks
    ``core_hole_screening`` (made before it was recorded): their new records replace the old ones,
    which stay until then."""
    return _pending(store, record, cfg, recheck_screening)[0]


def _pending(store: SpectraStore, record: dict, cfg: BuildConfig, recheck_screening: bool) -> tuple[list, list]:
    """:func:`pending_runs` and those of them that are rechecks (runs whose records are stored)."""
    from gnnspec.simulate.presets import get_preset

    sid = record["sid"]
    done = set(store.keys(f"spectrum/{sid:06d}/")) | set(store.keys(f"failure/{sid:06d}/"))
    todo, rechecks = [], []
    for tier, site, run, raws in planned_runs(cfg, record):
        if schema.failure_key(sid, site, run, tier) in done:
            continue
        if all(schema.spectrum_key(sid, site, r, tier) in done for r in raws):
            if not (recheck_screening and _unrecorded_screening(store, sid, site, tier, raws, get_preset(tier).screened_core_hole)):
                continue
            rechecks.append((tier, site, run, raws))
        todo.append((tier, site, run, raws))
    return todo, rechecks


def _unrecorded_screening(store: SpectraStore, sid: int, site: int, tier: str, raws: list[str], screened: bool) -> bool:
    """Whether a screened run's stored records lack the core-hole screening its edge is judged by."""
    if not screened or all(schema.screening_limit(r) is None for r in raws):
        return False
    return any("core_hole_screening" not in store.get(schema.spectrum_key(sid, site, r, tier)) for r in raws)


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
        pending, rechecks = _pending(store, rec, cfg, recheck_screening)
        rechecked += len(rechecks)
        recheck_tasks |= {(sid, tier, site) for tier, site, _, _ in rechecks}
        feff_queue += [(rec["structure"], sid, tier, site, runs) for tier, site, runs in site_tasks(pending)]
    # the base tier first, structure by structure, then each extra tier (its rechecks first):
    # cheap runs land early
    tier_order = [cfg.preset, *(x.preset for x in cfg.extra_tiers)]
    queue_order = run_order(cfg, tier_order, frozenset(recheck_tasks))
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
