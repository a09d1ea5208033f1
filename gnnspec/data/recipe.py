"""A dataset recipe and the FEFF runs it asks for: what a build computes, not how it runs.

Structure ``sid`` is drawn from ``numpy.random.default_rng([seed, sid])`` with defect case
``cases[sid % len(cases)]`` and split by block: block ``b = sid // len(cases)`` goes to
``val`` when ``b % 6 == 1``, ``test`` when ``b % 6 == 2``, else ``train``; so every split
holds every defect case in equal numbers and a supercell is never split.

Tiers (:mod:`gnnspec.simulate.presets`): the recipe's ``preset`` computes every chosen site;
each entry of ``extra_tiers`` computes a few sampled sites of every supercell with another
preset (:func:`tier_sites`: per element, sites whose environment holds a defect first). The
runs of a structure are planned from the recipe whenever a build starts, so adding channels or
extra tiers to a recipe and resuming computes only the new runs (:func:`pending_runs`), and
:func:`run_order` decides which come first. :mod:`gnnspec.data.build` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, DEFAULT_CHANNELS
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore

CASES = ("pristine", "o_vacancy", "antisite", "combined")


@dataclass
class TierConfig:
    """Another FEFF tier on sampled sites of every supercell."""

    preset: str = "scf"
    sites_per_element: int = 1  # sites per element present, per supercell
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    # per-element counts in place of sites_per_element (e.g. {Mn: 7, O: 8}), where the learning
    # curve of the tier (gnnspec.bench.learning_curve) says more sites of an element pay
    sites_by_element: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from gnnspec.simulate.presets import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"unknown FEFF preset {self.preset!r}; known: {', '.join(PRESETS)}")
        for c in self.channels:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r}; known: {', '.join(CHANNEL_NAMES)}")
        if self.sites_per_element < 1:
            raise ValueError("sites_per_element must be at least 1")
        elements = {CHANNELS[c].element for c in self.channels}
        for el, n in self.sites_by_element.items():
            if el not in elements:
                raise ValueError(f"sites_by_element: {el!r} has no channel in this tier (its elements: {', '.join(sorted(elements))})")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"sites_by_element: {el} needs a whole number of sites of at least 1, got {n!r}")

    def sites_of(self, element: str) -> int:
        """Sites per supercell of ``element`` in this tier."""
        return int(self.sites_by_element.get(element, self.sites_per_element))


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


def tier_site_ranks(record: dict, tier: TierConfig, seed: int, tier_index: int) -> dict[int, int]:
    """Sites of a structure record computed in an extra tier, each with its rank among the chosen
    sites of its element (0 for the first chosen), chosen to cover the labels.

    Per element with a channel in the tier, :meth:`TierConfig.sites_of` sites: first from the sites
    whose environment (:func:`gnnspec.structures.environments.environments`) carries a defect
    label (an O vacancy or an antisite within its radius), then from the rest, each group in a
    seeded random order (``numpy.random.default_rng([seed, sid, 2, tier_index])``). Deterministic;
    raising an element's count keeps every site already chosen and its rank.
    """
    from pymatgen.core import Structure

    from gnnspec.structures.environments import environments

    structure = Structure.from_dict(record["structure"])
    defective = {e.centre for e in environments(structure, record.get("vacancies") or [], include_bulk=False) if np.any(e.defects)}
    rng = np.random.default_rng([seed, record["sid"], 2, tier_index])
    elements = {CHANNELS[c].element for c in tier.channels}
    ranks: dict[int, int] = {}
    for el in sorted(elements):
        idx = [i for i, s in enumerate(structure) if s.specie.symbol == el]
        first = [i for i in idx if i in defective]
        rest = [i for i in idx if i not in defective]
        order = list(rng.permutation(first)) + list(rng.permutation(rest))
        ranks.update({int(i): rank for rank, i in enumerate(order[: tier.sites_of(el)])})
    return ranks


def tier_sites(record: dict, tier: TierConfig, seed: int, tier_index: int) -> list[int]:
    """The sites of :func:`tier_site_ranks`, sorted."""
    return sorted(tier_site_ranks(record, tier, seed, tier_index))


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


def run_order(cfg: BuildConfig, tier_order: list[str], rechecks: frozenset = frozenset(), site_ranks: dict | None = None):
    """Sort key of queued FEFF tasks ``(structure, sid, tier, site, runs)``: the base tier by
    supercell id, each extra tier after it, breadth first: the first chosen site of every
    element of every supercell (:func:`tier_site_ranks`) before any second one, and so on, with
    the supercells of each round interleaved across the splits.

    ``rechecks``: ``(sid, tier, site)`` of tasks that run stored records again
    (``--recheck-screening``); they lead their tier, since they decide which stored spectra are
    targets at all, before new runs add to them. ``site_ranks``: ``(sid, tier, site) -> rank``
    (absent: every site rank 0, the supercells' order alone), so that a recipe that adds
    supercells or raises ``sites_per_element`` gives every supercell its first sites before
    earlier supercells get more."""
    progress = {sid: split_progress(sid, cfg.n_structures, len(cfg.cases)) for sid in range(cfg.n_structures)}
    site_ranks = {} if site_ranks is None else site_ranks  # the caller's dict, read at each sort

    def key(item: tuple) -> tuple:
        tier, sid, site = item[2], item[1], item[3]
        rank = tier_order.index(tier)
        if rank == 0:
            return (rank, sid)
        recheck = 0 if (sid, tier, site) in rechecks else 1
        return (rank, recheck, site_ranks.get((sid, tier, site), 0), progress.get(sid, 1.0), sid)

    return key


def extra_tier_site_ranks(cfg: BuildConfig, records: dict[int, dict]) -> dict[tuple[int, str, int], int]:
    """``(sid, tier, site) -> rank`` of every extra-tier site of ``records`` (sid -> record), for
    :func:`run_order`."""
    ranks = {}
    for sid, record in records.items():
        for k, tier in enumerate(cfg.extra_tiers):
            ranks.update({(sid, tier.preset, site): r for site, r in tier_site_ranks(record, tier, cfg.seed, k).items()})
    return ranks


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


def pending_runs(store: SpectraStore, record: dict, cfg: BuildConfig, recheck_screening: bool = False) -> list[tuple[str, int, str, list[str]]]:
    """Planned FEFF runs (:func:`planned_runs`) of a structure record with neither spectra nor a failure stored.

    ``recheck_screening``: also the runs of a screened tier whose edge has an over-screening limit
    (:data:`gnnspec.data.schema.OVER_SCREENED_BELOW`) and whose stored record lacks
    ``core_hole_screening`` (made before it was recorded): their new records replace the old ones,
    which stay until then."""
    return pending_and_rechecks(store, record, cfg, recheck_screening)[0]


def pending_and_rechecks(store: SpectraStore, record: dict, cfg: BuildConfig, recheck_screening: bool) -> tuple[list, list]:
    """:func:`pending_runs` and those of them that are rechecks (runs whose records are stored)."""
    from gnnspec.simulate.presets import get_preset

    sid = record["sid"]
    done = _stored_keys(store, sid)
    todo, rechecks = [], []
    for tier, site, run, raws in planned_runs(cfg, record):
        state = _run_state(done, sid, tier, site, run, raws)
        if state == "failed":
            continue
        if state == "stored":
            if not (recheck_screening and _unrecorded_screening(store, sid, site, tier, raws, get_preset(tier).screened_core_hole)):
                continue
            rechecks.append((tier, site, run, raws))
        todo.append((tier, site, run, raws))
    return todo, rechecks


def run_progress(store: SpectraStore, record: dict, cfg: BuildConfig) -> dict[str, dict[str, int]]:
    """Per tier, how many of the runs the recipe plans for a structure record are ``stored``,
    ``failed`` or ``pending`` (``gnnspec data info``)."""
    sid = record["sid"]
    done = _stored_keys(store, sid)
    progress: dict[str, dict[str, int]] = {}
    for tier, site, run, raws in planned_runs(cfg, record):
        counts = progress.setdefault(tier, {"stored": 0, "failed": 0, "pending": 0})
        counts[_run_state(done, sid, tier, site, run, raws)] += 1
    return progress


def _stored_keys(store: SpectraStore, sid: int) -> set[bytes]:
    return set(store.keys(f"spectrum/{sid:06d}/")) | set(store.keys(f"failure/{sid:06d}/"))


def _run_state(done: set[bytes], sid: int, tier: str, site: int, run: str, raws: list[str]) -> str:
    """``failed`` (a failure record), ``stored`` (every raw spectrum of the run) or ``pending``."""
    if schema.failure_key(sid, site, run, tier) in done:
        return "failed"
    if all(schema.spectrum_key(sid, site, r, tier) in done for r in raws):
        return "stored"
    return "pending"


def _unrecorded_screening(store: SpectraStore, sid: int, site: int, tier: str, raws: list[str], screened: bool) -> bool:
    """Whether a screened run's stored records lack the core-hole screening its edge is judged by."""
    if not screened or all(schema.screening_limit(r) is None for r in raws):
        return False
    return any("core_hole_screening" not in store.get(schema.spectrum_key(sid, site, r, tier)) for r in raws)
