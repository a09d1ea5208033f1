"""Dataset build end to end with real FEFF10 runs on a tiny recipe (about a minute in all).

Tests on the ``full_build`` fixture skip without ``feff10``; the store, codec and recipe tests
run everywhere."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from gnnspec.cli import main
from gnnspec.config import from_dict, load_config
from gnnspec.data import schema
from gnnspec.data.build import build_dataset
from gnnspec.data.inspect import dataset_info, format_info, verify_dataset
from gnnspec.data.recipe import BuildConfig
from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError

TINY = {
    "name": "tiny",
    "seed": 5,
    "n_structures": 2,
    "relax": False,
    "thermal_sigma": 0.02,
    "sites_per_structure": 1,
    "channels": ["Li-K-xas", "O-K-xas", "O-K-eels", "Co-K-xas"],
}


def _recipe(tmp_path: Path, **over) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump({**TINY, **over}))
    return p


def _keys(path) -> list[bytes]:
    return sorted(k for k in SpectraStore(path).keys() if k != schema.METADATA_KEY)


@pytest.fixture(scope="module")
def full_build(tmp_path_factory):
    pytest.importorskip("feff10")  # only the tests that build with FEFF need it
    tmp = tmp_path_factory.mktemp("full")
    cfg = load_config(_recipe(tmp), BuildConfig)
    stats = build_dataset(cfg, tmp / "ds", workers=2, progress=False)
    return tmp / "ds", stats


def test_build_stores_every_planned_spectrum(full_build):
    path, stats = full_build
    assert stats["structures"] == 2 and stats["failures"] == 0
    store = SpectraStore(path)
    for sid in store.structure_ids():
        rec = store.structure(sid)
        assert rec["split"] in schema.SPLITS and rec["params"]["seed"] >= 0
        spectra = store.spectra_of(sid)
        planned = {(int(site), c) for site, groups in rec["sites"].items() for chans in groups.values() for c in chans}
        assert set(spectra) == planned
        for r in spectra.values():
            assert r["preset"] == "fast" and len(r["preset_hash"]) == 16 and r["feff_version"].startswith("feff10")
            assert r["energy"].dtype == r["intensity"].dtype == schema.SPECTRUM_DTYPE and np.all(np.diff(r["energy"]) > 0)
    # per structure: Li (K), O (ELNES: xas + eels), Co (K) at one site each
    assert stats["spectra"] == 2 * 4 and stats["runs"] == 2 * 3
    assert verify_dataset(path) == []
    info = dataset_info(path)
    assert info["spectra"] == 8 and info["spectra_per_tier"]["fast"]["O-K-eels"] == 2
    assert info["runs_per_tier"] == {"fast": {"stored": {"train": 6}, "pending": {"train": 0}, "failed": 0, "supercells": 2}}


def test_info_counts_the_runs_a_recipe_still_plans(full_build, tmp_path):
    """A recipe that gains an extra tier: ``data info`` counts its runs as pending, per split,
    and no supercell as covered, while the base tier stays complete."""
    from gnnspec.data.recipe import planned_runs

    path, _ = full_build
    copy = tmp_path / "ds"
    shutil.copytree(path, copy)
    store = SpectraStore(copy, readonly=False)
    meta = store.metadata()
    meta["build_config"]["extra_tiers"] = [{"preset": "scf", "sites_per_element": 1, "channels": ["O-K-eels", "Co-K-xas"]}]
    store.put_many({schema.METADATA_KEY: meta})
    cfg = from_dict(BuildConfig, meta["build_config"], "recipe")
    expected = sum(1 for sid in store.structure_ids() for p in planned_runs(cfg, store.structure(sid)) if p[0] == "scf")
    store.close()
    info = dataset_info(copy)
    assert expected >= 4  # an O and a Co site (K) of each of the 2 supercells
    assert info["runs_per_tier"]["scf"] == {"stored": {"train": 0}, "pending": {"train": expected}, "failed": 0, "supercells": 0}
    assert info["runs_per_tier"]["fast"]["stored"] == {"train": 6} and info["planned_feff_runs"] == 6 + expected
    assert f"pending {expected} (train {expected}, val 0, test 0)" in format_info(info)
    from gnnspec.bench.speed import build_throughput

    assert build_throughput(info)["spectra_per_run"] == pytest.approx(8 / 6)  # stored runs only, not the pending ones


def test_rerun_recomputes_nothing(full_build, tmp_path):
    path, _ = full_build
    cfg = load_config(_recipe(tmp_path), BuildConfig)
    stats = build_dataset(cfg, path, workers=1, progress=False)
    assert stats["runs"] == 0 and stats["structures"] == 0


def test_killed_build_resumes_to_the_same_records(full_build, tmp_path):
    """SIGKILL the whole build mid-run; the rerun completes without duplicates."""
    path, _ = full_build
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "gnnspec", "data", "build", str(_recipe(tmp_path)), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline:
        time.sleep(0.5)
        if (out / "data.mdb").exists():
            try:
                n = sum(1 for k in SpectraStore(out).keys("spectrum/"))
            except InputError:  # the file exists a moment before its metadata record is committed
                continue
            if n >= 2:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= n < 8, "the build should have been killed mid-way"
    assert main(["data", "build", str(_recipe(tmp_path)), "--out", str(out), "--workers", "2"]) == 0
    assert _keys(out) == _keys(path)
    assert not (tmp_path / "killed_logs" / "feff_work").exists(), "the killed runs' FEFF work folders were left behind"
    a, b = SpectraStore(out), SpectraStore(path)
    for key in b.keys("spectrum/"):
        assert np.allclose(a.get(key)["intensity"], b.get(key)["intensity"])


def test_changed_recipe_is_refused(full_build, tmp_path):
    path, _ = full_build
    cfg = load_config(_recipe(tmp_path, seed=6), BuildConfig)
    with pytest.raises(InputError, match="seed"):
        build_dataset(cfg, path, workers=1, progress=False)


def test_unknown_recipe_keys_and_values_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        load_config(_recipe(tmp_path, colour="red"), BuildConfig)
    with pytest.raises(InputError, match="unknown channel"):
        load_config(_recipe(tmp_path, channels=["Fe-K-xas"]), BuildConfig)
    with pytest.raises(InputError, match="unknown FEFF preset"):
        load_config(_recipe(tmp_path, preset="ultra"), BuildConfig)


def test_dask_local_cluster_build(full_build, tmp_path):
    distributed = pytest.importorskip("distributed")
    path, _ = full_build
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cfg = load_config(_recipe(tmp_path), BuildConfig)
        stats = build_dataset(cfg, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert stats["runs"] == 6
    assert _keys(tmp_path / "dask") == _keys(path)


def test_info_verify_and_import_from_the_cli(full_build, tmp_path, capsys, licoo2):
    path, _ = full_build
    assert main(["data", "info", str(path)]) == 0
    assert "O-K-eels" in capsys.readouterr().out
    assert main(["data", "verify", str(path)]) == 0
    # a FEFF run folder computed elsewhere
    from gnnspec.simulate.runner import run_feff_site

    run_dir = tmp_path / "feff_runs"
    run_dir.mkdir()
    co = next(i for i, s in enumerate(licoo2) if s.specie.symbol == "Co")
    run_feff_site(licoo2, co, ["Co-K-xas"], workdir_root=run_dir, keep_workdir=True)
    assert main(["data", "import", str(run_dir), "--out", str(tmp_path / "imported")]) == 0
    store = SpectraStore(tmp_path / "imported")
    (sid,) = store.structure_ids()
    assert list(store.spectra_of(sid, "imported")) == [(0, "Co-K-xas")]
    assert store.structure(sid)["structure"]["sites"][0]["species"][0]["element"] == "Co"
    assert main(["data", "info", str(tmp_path / "nothing")]) == 2


def test_verify_reports_a_broken_record(full_build, tmp_path):
    import shutil

    path, _ = full_build
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    store = SpectraStore(copy, readonly=False)
    key = next(store.keys("spectrum/"))
    rec = store.get(key)
    rec["intensity"] = rec["intensity"][:-1]
    store.put_many({key: rec})
    store.close()
    problems = verify_dataset(copy)
    assert len(problems) == 1 and key.decode() in problems[0]


def test_codec_roundtrip_without_pickle():
    value = {"a": np.arange(5, dtype=np.float64), "b": [1, "x", {"c": np.ones((2, 3), dtype=np.float32)}], "d": (1, 2)}
    back = schema.decode(schema.encode(value))
    assert np.array_equal(back["a"], value["a"]) and back["a"].dtype == np.float64
    assert back["b"][2]["c"].shape == (2, 3) and back["b"][2]["c"].dtype == np.float32
    assert back["d"] == [1, 2]
    assert b"pickle" not in schema.encode(value)


def test_offloaded_runs_give_the_same_records(full_build, tmp_path):
    """Export pending runs, compute them with the farm, ingest: same records as a local build."""
    from gnnspec.data.offload import export_tasks, ingest_results
    from gnnspec.simulate.farm import main as farm_main

    path, _ = full_build
    out = tmp_path / "offloaded"
    cfg = load_config(_recipe(tmp_path), BuildConfig)
    stats = build_dataset(cfg, out, workers=2, progress=False, structures_only=True)
    assert stats["structures"] == 2 and stats["runs"] == 0
    tasks = tmp_path / "tasks.jsonl"
    assert export_tasks(out, tasks) == 6
    results = tmp_path / "results.msgpack"
    assert farm_main([str(tasks), "--out", str(results), "--workers", "2"]) == 0
    counts = ingest_results(out, results, tasks)
    assert counts == {"spectra": 8, "failures": 0, "skipped": 0, "replaced": 0}
    assert _keys(out) == _keys(path)
    a, b = SpectraStore(out), SpectraStore(path)
    for key in b.keys("spectrum/"):
        ra, rb = a.get(key), b.get(key)
        assert np.allclose(ra["intensity"], rb["intensity"]) and ra["preset_hash"] == rb["preset_hash"]
    assert export_tasks(out, tasks) == 0  # nothing left to do


def test_spectrum_records_carry_the_core_hole_screening_of_screened_runs():
    energy, intensity = np.linspace(0, 1, 3), np.ones(3)
    screened = schema.spectrum_record(energy, intensity, "scf", "h", "10", 80.0, "Li-K-xanes", 0.85)
    assert screened["core_hole_screening"] == 0.85 and screened["potentials_from"] == "Li-K-xanes"
    assert "core_hole_screening" not in schema.spectrum_record(energy, intensity, "fast", "h", "10", 4.0)


def test_over_screened_li_k_runs_are_no_target(tmp_path):
    """A Li K scf run whose RPA response over-screened the core hole is left out of the targets;
    one with an ordinary screening, or made before the value was recorded, stays."""
    from pymatgen.core import Lattice, Structure

    from gnnspec.data.dataset import LMDBStructureDataset

    s = Structure(Lattice.cubic(4.0), ["Li", "Li", "Li", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0.5, 0.5, 0.5]])
    e = np.linspace(50.0, 120.0, 60)
    store = SpectraStore(tmp_path / "ds", readonly=False)
    meta = {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION, "build_config": {"preset": "fast"}, "presets": {"fast": {}, "scf": {}}}
    items = {schema.METADATA_KEY: meta, schema.structure_key(0): {"sid": 0, "split": "train", "structure": s.as_dict(), "vacancies": [], "sites": {}}}
    for site, screening in ((0, 0.70), (1, 0.975), (2, None)):
        for tier in ("fast", "scf"):
            ratio = screening if tier == "scf" else None
            items[schema.spectrum_key(0, site, "Li-K-xas", tier)] = schema.spectrum_record(e, 1 + (e - 50) / 70, tier, "x", "x", 1.0, None, ratio)
    store.put_many(items)
    store.close()
    assert schema.over_screened("Li-K-xas", {"core_hole_screening": 0.7}) and not schema.over_screened("Ni-L3-eels", {"core_hole_screening": 0.7})
    g = LMDBStructureDataset(tmp_path / "ds", "train", channels=["Li-K-xas"], tier="fast", extra_tiers=("scf",))[0]
    assert g.site_y_mask[:3, 0].tolist() == [True, True, True]
    assert g.site_y_tiers_mask[:3, 0, 0].tolist() == [False, True, True]
    info = dataset_info(tmp_path / "ds")
    assert info["core_hole_screening"] == {"scf Li-K-xas": {"over-screened": 1, "ordinary": 1, "unrecorded": 1}}
    assert "over-screened (no target) 1" in format_info(info)


def test_tiers_are_stored_and_read_back_apart(tmp_path):
    """Two tiers of one site in one LMDB: keys and records carry the tier; readers pick one."""
    from pymatgen.core import Lattice, Structure

    from gnnspec.data.dataset import LMDBStructureDataset

    s = Structure(Lattice.cubic(4.2), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    e3, e2 = np.linspace(848.0, 915.0, 80), np.linspace(866.0, 933.0, 80)
    store = SpectraStore(tmp_path / "ds", readonly=False)
    meta = {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION, "build_config": {"preset": "fast"}, "presets": {"fast": {}, "scf": {}}}
    items = {schema.METADATA_KEY: meta, schema.structure_key(0): {"sid": 0, "split": "train", "structure": s.as_dict(), "vacancies": [], "sites": {"0": {}}}}
    for tier, scale in (("fast", 1.0), ("scf", 3.0)):
        for run, e in (("Ni-L3-eels", e3), ("Ni-L2-eels", e2)):
            items[schema.spectrum_key(0, 0, run, tier)] = {"energy": e, "intensity": scale * (1 + (e - e[0]) / 50), "tier": tier, "preset": tier, "preset_hash": "x", "feff_version": "x", "seconds": 1.0}
    store.put_many(items)
    store.close()
    store = SpectraStore(tmp_path / "ds")
    assert store.tiers() == ["fast", "scf"]
    fast, scf = store.spectra_of(0, "fast"), store.spectra_of(0, "scf")
    assert set(fast) == set(scf) == {(0, "Ni-L3-eels"), (0, "Ni-L2-eels")}
    assert all(r["tier"] == "scf" for r in scf.values())
    assert np.allclose(scf[(0, "Ni-L2-eels")]["intensity"], 3 * fast[(0, "Ni-L2-eels")]["intensity"])
    for tier in ("fast", "scf"):
        g = LMDBStructureDataset(tmp_path / "ds", "train", channels=["Ni-L23-eels", "Ni-L3-eels", "O-K-eels"], tier=tier)[0]
        assert g.site_y_mask[0].tolist() == [True, True, False] and not g.site_y_mask[1].any()
    assert LMDBStructureDataset(tmp_path / "ds", "train").tier == "fast"
    assert verify_dataset(tmp_path / "ds") == []


def test_a_v1_dataset_is_refused_with_the_fix_and_migrates(tmp_path):
    store = SpectraStore(tmp_path / "v1", readonly=False)
    rec = {"energy": np.arange(3.0), "intensity": np.ones(3), "preset": "fast", "preset_hash": "x", "feff_version": "x", "seconds": 1.0}
    store.put_many({
        schema.METADATA_KEY: {"schema": schema.SCHEMA_NAME, "schema_version": 1, "build_config": {"preset": "fast"}},
        b"spectrum/000000/0001/Ni-K-xas": rec,
        b"failure/000000/0002/Ni-K-xanes": {"message": "boom"},
    })
    store.close()
    with pytest.raises(InputError, match="gnnspec data migrate"):
        SpectraStore(tmp_path / "v1")
    assert main(["data", "migrate", str(tmp_path / "v1")]) == 0
    store = SpectraStore(tmp_path / "v1")
    assert sorted(k for k in store.keys() if k != schema.METADATA_KEY) == [b"failure/000000/0002/fast/Ni-K-xanes", b"spectrum/000000/0001/fast/Ni-K-xas"]
    assert store.spectra_of(0, "fast")[(1, "Ni-K-xas")]["tier"] == "fast"


def test_per_element_site_counts_are_checked():
    from gnnspec.config import from_dict
    from gnnspec.data.recipe import TierConfig
    from gnnspec.errors import InputError

    tier = from_dict(TierConfig, {"preset": "scf", "sites_per_element": 4, "channels": ["O-K-xas", "Mn-K-xas"], "sites_by_element": {"Mn": 7}})
    assert (tier.sites_of("Mn"), tier.sites_of("O")) == (7, 4)
    with pytest.raises(InputError, match="'Co' has no channel in this tier"):
        from_dict(TierConfig, {"channels": ["O-K-xas", "Mn-K-xas"], "sites_by_element": {"Co": 2}}, "recipe.extra_tiers[0]")
    with pytest.raises(InputError, match="Mn needs a whole number of sites of at least 1, got 0"):
        from_dict(TierConfig, {"channels": ["O-K-xas", "Mn-K-xas"], "sites_by_element": {"Mn": 0}})


def test_extra_tier_sites_cover_defects_first_and_are_deterministic(full_build):
    from gnnspec.data.recipe import TierConfig, planned_runs, tier_site_ranks, tier_sites
    from gnnspec.structures.environments import environments

    path, _ = full_build
    store = SpectraStore(path)
    cfg = load_config(Path(path).parent / "recipe.yaml", BuildConfig)
    tier = TierConfig("scf", 1, ["O-K-eels", "Co-K-xas", "Li-K-xas"])
    for sid in store.structure_ids():
        rec = store.structure(sid)
        from pymatgen.core import Structure

        s = Structure.from_dict(rec["structure"])
        sites = tier_sites(rec, tier, cfg.seed, 0)
        assert sites == tier_sites(rec, tier, cfg.seed, 0)
        more = tier_sites(rec, TierConfig("scf", 3, tier.channels), cfg.seed, 0)  # a recipe that raises sites_per_element
        assert set(sites) < set(more)  # keeps every site already computed
        ranks = tier_site_ranks(rec, TierConfig("scf", 3, tier.channels), cfg.seed, 0)
        assert sorted(ranks) == more and {ranks[i] for i in sites} == {0}  # ... as the first of its element
        for el in {s[i].specie.symbol for i in more}:
            assert sorted(r for i, r in ranks.items() if s[i].specie.symbol == el) == list(range(sum(s[i].specie.symbol == el for i in more)))
        assert sorted(s[i].specie.symbol for i in sites) == sorted({"O", "Co", "Li"} & {x.specie.symbol for x in s})
        defective = {e.centre for e in environments(s, rec["vacancies"], include_bulk=False) if np.any(e.defects)}
        for i in sites:  # a defect-adjacent site is taken whenever the element has one
            if any(x.specie.symbol == s[i].specie.symbol and j in defective for j, x in enumerate(s)):
                assert i in defective
        # per-element counts: more O sites, the rest as before, every site already chosen kept
        by_element = TierConfig("scf", 1, tier.channels, sites_by_element={"O": 3})
        mixed = tier_sites(rec, by_element, cfg.seed, 0)
        assert set(sites) <= set(mixed) and {i for i in mixed if s[i].specie.symbol != "O"} == {i for i in sites if s[i].specie.symbol != "O"}
        assert sorted(i for i in mixed if s[i].specie.symbol == "O") == sorted(i for i in more if s[i].specie.symbol == "O")
        cfg.extra_tiers = [tier]
        plan = planned_runs(cfg, rec)
        assert {p[0] for p in plan} == {"fast", "scf"}
        assert sorted(p[1] for p in plan if p[0] == "scf") == sorted(sites)


def test_recheck_screening_plans_unrecorded_li_k_scf_runs_again(full_build, tmp_path):
    """--recheck-screening plans a screened Li K run again whose record lacks its core-hole
    screening, and no other run; the old record stays until the new one replaces it."""
    import shutil

    from gnnspec.data.recipe import TierConfig, pending_runs, planned_runs

    path, _ = full_build
    copy = tmp_path / "ds"
    shutil.copytree(path, copy)
    cfg = load_config(_recipe(tmp_path), BuildConfig)
    cfg.extra_tiers = [TierConfig("scf", 1, ["Li-K-xas", "O-K-xas"])]
    store = SpectraStore(copy, readonly=False)
    rec = store.structure(store.structure_ids()[0])
    sid = rec["sid"]
    scf = [p for p in planned_runs(cfg, rec) if p[0] == "scf"]
    assert {p[2] for p in scf} == {"Li-K-xanes", "O-K-elnes"}
    e = np.linspace(50.0, 120.0, 5)
    store.put_many({schema.spectrum_key(sid, site, r, "scf"): schema.spectrum_record(e, np.ones(5), "scf", "x", "x", 80.0) for _, site, _, raws in scf for r in raws})
    assert [p for p in pending_runs(store, rec, cfg) if p[0] == "scf"] == []
    again = [p for p in pending_runs(store, rec, cfg, recheck_screening=True) if p[0] == "scf"]
    assert [p[2] for p in again] == ["Li-K-xanes"]  # O K has no screening limit; the fast tier is unscreened
    (_, site, _, raws) = again[0]
    store.put_many({schema.spectrum_key(sid, site, raws[0], "scf"): schema.spectrum_record(e, np.ones(5), "scf", "x", "x", 80.0, None, 0.97)})
    assert [p for p in pending_runs(store, rec, cfg, recheck_screening=True) if p[0] == "scf"] == []


def test_ingest_replaces_a_record_only_with_a_recheck(tmp_path):
    """A farm result that carries the core-hole screening replaces a stored record without it;
    any other result for a stored record is skipped."""
    from gnnspec.codec import encode
    from gnnspec.data.offload import ingest_results

    store = SpectraStore(tmp_path / "ds", readonly=False)
    e = np.linspace(50.0, 120.0, 5)
    key = schema.spectrum_key(0, 3, "Li-K-xas", "scf")
    store.put_many({schema.METADATA_KEY: {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION}, key: schema.spectrum_record(e, np.ones(5), "scf", "x", "x", 80.0)})
    store.close()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"key": "scf/000000/0003/Li-K-xanes", "channels": ["Li-K-xas"]}) + "\n")
    results = tmp_path / "results.msgpack"

    def ingest(extra: dict) -> dict:
        result = {"key": "scf/000000/0003/Li-K-xanes", "seconds": 85.0, "spectra": {"xas": [e, 2 * np.ones(5)]}, **extra}
        results.write_bytes(encode({"results": [result]}))
        return ingest_results(tmp_path / "ds", results, tasks)

    assert ingest({}) == {"spectra": 0, "failures": 0, "skipped": 1, "replaced": 0}
    assert ingest({"core_hole_screening": 0.7})["replaced"] == 1
    stored = SpectraStore(tmp_path / "ds").get(key)
    assert stored["core_hole_screening"] == 0.7 and np.allclose(stored["intensity"], 2.0)
    assert ingest({"core_hole_screening": 0.97})["skipped"] == 1  # a recorded value is kept


def test_adding_l23_channels_to_a_recipe_computes_only_the_l2_runs(full_build, tmp_path):
    """Resuming with an L2,3 channel added runs the missing L3 and L2 runs and nothing else."""
    import shutil

    path, _ = full_build
    grown = tmp_path / "grown"
    shutil.copytree(path, grown)
    before = set(_keys(grown))
    cfg = load_config(_recipe(tmp_path, channels=[*TINY["channels"], "Co-L23-eels"]), BuildConfig)
    stats = build_dataset(cfg, grown, workers=2, progress=False)
    new = set(_keys(grown)) - before
    assert stats["runs"] == 4 and stats["failures"] == 0  # one Co site per structure: L3 and L2
    assert {k.decode().rsplit("/", 1)[1] for k in new} == {"Co-L3-eels", "Co-L2-eels"}
    store = SpectraStore(grown)
    for sid in store.structure_ids():
        spectra = store.spectra_of(sid)
        (site,) = {s for s, r in spectra if r == "Co-L2-eels"}
        l3, l2 = spectra[(site, "Co-L3-eels")]["energy"], spectra[(site, "Co-L2-eels")]["energy"]
        assert 12.0 < l2[0] - l3[0] < 18.0  # FEFF's own absolute axes: the L2 run sits one spin-orbit splitting higher


def test_extra_tier_runs_interleave_the_splits():
    """An extra tier's queue reaches val and test early, in proportion to the split sizes, while
    the base tier keeps supercell order."""
    from gnnspec.data.recipe import run_order, split_of

    cfg = BuildConfig(n_structures=56, cases=["pristine", "o_vacancy", "antisite", "combined"], preset="fast")
    key = run_order(cfg, ["fast", "scf"])
    queue = [(None, sid, tier, 0, "O-K-elnes", []) for sid in range(56) for tier in ("fast", "scf")]
    ordered = sorted(queue, key=key)
    assert [q[1] for q in ordered[:56]] == list(range(56)) and {q[2] for q in ordered[:56]} == {"fast"}
    scf = [q[1] for q in ordered[56:]]
    assert sorted(scf) == list(range(56))
    first = [split_of(s, 4) for s in scf[:14]]  # a quarter of the supercells
    assert first.count("train") == 9 and first.count("val") == 3 and first.count("test") == 2
    assert scf[:3] == [0, 4, 8]  # the first supercell of train, val and test


def test_rechecks_lead_their_tier():
    """Runs of stored records (--recheck-screening) come before the new runs of their tier, the
    base tier still first."""
    from gnnspec.data.recipe import run_order

    cfg = BuildConfig(n_structures=56, cases=["pristine", "o_vacancy", "antisite", "combined"], preset="fast")
    rechecks = frozenset({(50, "scf", 3), (7, "scf", 1)})
    key = run_order(cfg, ["fast", "scf"], rechecks)
    queue = [(None, sid, tier, site, []) for sid in range(56) for tier in ("fast", "scf") for site in (1, 3)]
    ordered = [(q[1], q[2], q[3]) for q in sorted(queue, key=key)]
    assert {t for _, t, _ in ordered[:112]} == {"fast"}
    assert set(ordered[112:114]) == rechecks
    assert ordered[114][:2] == (0, "scf")  # then the new runs, interleaved across the splits as before
    assert sorted(queue, key=run_order(cfg, ["fast", "scf"]))[112][1] == 0


def test_extra_tier_runs_go_breadth_first_over_the_sites():
    """Every supercell's first chosen site of an element comes before any supercell's second:
    supercells added to a recipe get their first sites before earlier ones get more."""
    from gnnspec.data.recipe import run_order

    cfg = BuildConfig(n_structures=56, cases=["pristine", "o_vacancy", "antisite", "combined"], preset="fast")
    # supercells 0-39 hold their first site (rank 0) already; 40-55 are new and need both
    queue = [(None, sid, "scf", site, []) for sid in range(56) for site in ((7,) if sid < 40 else (3, 7))]
    ranks = {(sid, "scf", 3): 0 for sid in range(56)} | {(sid, "scf", 7): 1 for sid in range(56)}
    ordered = [(q[1], q[3]) for q in sorted(queue, key=run_order(cfg, ["fast", "scf"], site_ranks=ranks))]
    assert sorted(ordered[:16]) == [(sid, 3) for sid in range(40, 56)]  # the new supercells' first sites
    second = [sid for sid, _ in ordered[16:]]
    assert second == [sid for sid, _ in sorted(((s, 7) for s in range(56)), key=lambda q: run_order(cfg, ["fast", "scf"])((None, q[0], "scf", 0, [])))]
    # without ranks, supercell order across the splits alone, as before
    plain = [(q[1], q[3]) for q in sorted(queue, key=run_order(cfg, ["fast", "scf"]))]
    assert plain[0] == (0, 7)


def test_spectra_are_stored_as_float32_and_compact_converts_older_records(tmp_path):
    """New spectrum records hold float32 arrays; ``compact --float32`` rewrites float64 ones (the
    values rounded to float32, nothing else changed) and leaves every other record's bytes."""
    e64 = np.linspace(8330.0, 8400.0, 67)
    y64 = np.exp(-(((e64 - 8350.0) / 4.0) ** 2)) * 1e-8
    record = schema.spectrum_record(e64, y64, "fast", "h", "feff10-rs 0.2.4", 3.2)
    assert record["energy"].dtype == record["intensity"].dtype == np.float32
    s = SpectraStore(tmp_path / "ds", readonly=False)
    s.put_many({schema.METADATA_KEY: {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION}})
    old = {**record, "energy": e64, "intensity": y64}  # as written before float32 storage
    keys = {k: f"spectrum/000000/{k:04d}/fast/Ni-K-xas".encode() for k in range(3)}
    s.put_many({keys[0]: old, keys[1]: record, b"structure/000000": {"split": "train", "x": e64}})
    with s.env.begin() as txn:
        before = dict(txn.cursor())
    s.close()
    assert main(["data", "compact", str(tmp_path / "ds"), "--float32"]) == 0
    after = SpectraStore(tmp_path / "ds")
    with after.env.begin() as txn:
        raw = dict(txn.cursor())
    converted = after.get(keys[0])
    assert converted["energy"].dtype == np.float32 and converted == {**old, "energy": converted["energy"], "intensity": converted["intensity"]}
    np.testing.assert_array_equal(converted["intensity"], y64.astype(np.float32))
    np.testing.assert_allclose(converted["energy"], e64, rtol=1e-7)
    assert raw[keys[1]] == before[keys[1]] and raw[b"structure/000000"] == before[b"structure/000000"]
    assert len(raw[keys[0]]) < 0.6 * len(before[keys[0]])


def test_compact_leaves_no_lock_file_of_the_replaced_database(tmp_path):
    """After compaction the next opener makes a fresh lock file (the old one described the old file)."""
    s = SpectraStore(tmp_path / "ds", readonly=False)
    s.put_many({schema.METADATA_KEY: {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION}})
    for i in range(50):
        s.put_many({f"x/{i}".encode(): {"i": i}})
    s.close()
    assert (tmp_path / "ds" / "lock.mdb").exists()
    assert main(["data", "compact", str(tmp_path / "ds")]) == 0
    assert not (tmp_path / "ds" / "lock.mdb").exists()
    assert SpectraStore(tmp_path / "ds").get(b"x/49") == {"i": 49}


def test_compact_keeps_every_record_and_fills_the_pages(tmp_path):
    """Records written out of key order (as a parallel build writes them) leave half-full leaf
    pages; the compacted file holds the same bytes under the same keys in far fewer pages."""
    rng = np.random.default_rng(0)
    s = SpectraStore(tmp_path / "ds", readonly=False)
    s.put_many({schema.METADATA_KEY: {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION}})
    written = {}
    for i in rng.permutation(600):
        key = f"spectrum/{i:06d}/0000/fast/Ni-K-xas".encode()
        written[key] = {"energy": rng.normal(size=67), "intensity": rng.normal(size=67)}
        s.put_many({key: written[key]})
    with s.env.begin() as txn:
        raw_before = dict(txn.cursor())
    pages_before = s.env.stat()["leaf_pages"]
    fingerprint = s.fingerprint()
    s.close()
    assert main(["data", "compact", str(tmp_path / "ds")]) == 0
    after = SpectraStore(tmp_path / "ds")
    with after.env.begin() as txn:
        assert dict(txn.cursor()) == raw_before
    assert after.env.stat()["leaf_pages"] < 0.75 * pages_before
    assert after.fingerprint() == fingerprint
    grown = SpectraStore(tmp_path / "ds", readonly=False)
    grown.put_many({b"spectrum/999999/0000/fast/Ni-K-xas": {"energy": np.zeros(3)}})
    assert grown.fingerprint() != fingerprint
    np.testing.assert_array_equal(after.get(next(iter(written)))["energy"], next(iter(written.values()))["energy"])


def test_wide_supercells_are_appended_and_never_redraw_stored_ones(tmp_path):
    """``wide_from`` switches the generator for the ids from there on; a resume may only place it
    after the stored supercells (structures only, no FEFF)."""
    out = tmp_path / "ds"
    build_dataset(load_config(_recipe(tmp_path), BuildConfig), out, workers=1, progress=False, structures_only=True)
    with pytest.raises(InputError, match="supercells 1-1 were drawn"):
        build_dataset(load_config(_recipe(tmp_path, wide_from=1, n_structures=3), BuildConfig), out, workers=1, progress=False, structures_only=True)
    before = SpectraStore(out).structure(1)
    build_dataset(load_config(_recipe(tmp_path, wide_from=2, n_structures=4), BuildConfig), out, workers=1, progress=False, structures_only=True)
    store = SpectraStore(out)
    assert store.structure(1) == before
    shipped, wide = store.structure(1)["params"], [store.structure(sid)["params"] for sid in (2, 3)]
    assert "li_ordering" not in shipped or shipped["li_ordering"] == "random"
    for p in wide:
        assert p["tm_ratio_name"] == "triangle" or p["tm_ratio_name"].startswith("edge without")
        assert 2.81 <= p["a"] <= 2.90 and 14.1 <= p["c"] <= 14.6 and p["li_ordering"] in ("random", "clustered", "layers", "rows")
    with pytest.raises(InputError, match="wide_from must be"):
        load_config(_recipe(tmp_path, wide_from=-1), BuildConfig)


def test_retry_failed_plans_a_stored_failure_again(tmp_path):
    """A failure record (a FEFF run that timed out on a busy machine, say) is skipped by later
    sessions; --retry-failed deletes it first, so the run is planned again."""
    from gnnspec.data.recipe import pending_runs

    out = tmp_path / "ds"
    cfg = load_config(_recipe(tmp_path), BuildConfig)
    build_dataset(cfg, out, workers=1, progress=False, structures_only=True)
    store = SpectraStore(out, readonly=False)
    record = store.structure(store.structure_ids()[0])
    tier, site, run, _ = pending_runs(store, record, cfg)[0]
    store.put_many({schema.failure_key(record["sid"], site, run, tier): {"message": "FEFF10 failed: stage 'pot' failed: timed out after 1200s"}})
    assert (tier, site, run) not in {p[:3] for p in pending_runs(store, record, cfg)}
    store.close()
    stats = build_dataset(cfg, out, workers=1, progress=False, structures_only=True, retry_failed=True)
    assert stats["retried"] == 1 and stats["structures"] == 0
    store = SpectraStore(out)
    assert not list(store.keys("failure/")) and (tier, site, run) in {p[:3] for p in pending_runs(store, record, cfg)}
    assert main(["data", "build", str(_recipe(tmp_path)), "--out", str(out), "--workers", "1", "--structures-only", "--retry-failed"]) == 0


def _build_until_a_feff_run(tmp_path: Path, name: str):
    """``gnnspec data build`` of the tiny recipe into ``tmp_path/name`` with 1 worker, in its own
    process group, returned once its first FEFF work folder exists (a site task is under way):
    ``(process, out, FEFF work root)``."""
    out = tmp_path / name
    cmd = [sys.executable, "-m", "gnnspec", "data", "build", str(_recipe(tmp_path)), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    work = tmp_path / f"{name}_logs" / "feff_work"
    deadline = time.time() + 120
    while time.time() < deadline and not (work.is_dir() and any(work.iterdir())):
        time.sleep(0.1)
    assert work.is_dir() and any(work.iterdir()), "no FEFF run started"
    return proc, out, work


def test_a_stopped_build_stores_the_site_under_way(full_build, tmp_path):
    """SIGTERM while the first FEFF task runs: the build finishes that site (and the one task the
    worker already holds), stores it and exits (interrupted); before, they were thrown away."""
    proc, out, work = _build_until_a_feff_run(tmp_path, "stopped")
    assert not (out / "data.mdb").exists() or not list(SpectraStore(out).keys("spectrum/"))
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler stops a job: the whole process group
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "task(s) under way to finish" in err, err
    store = SpectraStore(out)
    stored = {tuple(schema.parse_key(k)[1:3]) for k in store.keys("spectrum/")}
    # the site under way, and at most the one task already handed to the worker behind it
    assert 1 <= len(stored) <= 2, "the site under way should have been stored, and no new task started"
    session = store.metadata()["sessions"][-1]
    assert session["interrupted"] and session["runs"] >= 1
    # no run was cut short into a failure record; what was stored is what an uninterrupted build stores
    assert not list(store.keys("failure/"))
    full = SpectraStore(full_build[0])
    for key in store.keys("spectrum/"):
        np.testing.assert_allclose(store.get(key)["intensity"], full.get(key)["intensity"])


def test_a_second_stop_ends_the_workers_at_once(tmp_path):
    """Two SIGTERMs while a FEFF task runs: the build exits within seconds, its workers ended."""
    pytest.importorskip("feff10")
    proc, out, work = _build_until_a_feff_run(tmp_path, "twice")
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    started = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - started < 20 and "the tasks still running were stopped" in err
    time.sleep(1.0)
    # no worker of the group outlives the build (exited ones may wait as zombies for an init that reaps them)
    states = subprocess.run(["ps", "-o", "stat=", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert all(s.startswith("Z") for s in states), states
    assert any(work.iterdir()), "the FEFF run was not cut short: its work folder was cleaned up by a finished run"
    assert not list(SpectraStore(out).keys("spectrum/"))  # planned again next time
