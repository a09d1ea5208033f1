"""Building blocks of the benchmarks: the structural descriptor, the seed method's features, baselines."""

import json

import numpy as np
import pytest

from gnnspec.bench.descriptors import site_descriptors
from gnnspec.bench.spectral_features import n_features_per_channel, seed_features
from gnnspec.channels import CHANNEL_NAMES
from gnnspec.structures.nmc import NMCParams, generate_nmc


def test_descriptor_is_invariant_to_rotation_and_translation():
    s = generate_nmc(NMCParams(seed=4, li_content=0.8)).structure
    sites = [0, 10, 50]
    d0 = site_descriptors(s, sites)
    moved = s.copy()
    moved.translate_sites(list(range(len(s))), [0.13, 0.27, 0.05])
    assert np.allclose(site_descriptors(moved, sites), d0, atol=1e-8)
    from pymatgen.core.operations import SymmOp

    rotated = s.copy()
    rotated.apply_operation(SymmOp.from_axis_angle_and_translation([0.3, 0.5, 0.8], 37.0))
    assert np.allclose(site_descriptors(rotated, sites), d0, atol=1e-8)
    other = generate_nmc(NMCParams(seed=4, li_content=0.8, n_o_vacancies=2)).structure
    assert not np.allclose(site_descriptors(other, sites), d0)


def test_seed_features_mark_missing_channels_as_nan():
    rng = np.random.default_rng(0)
    y = 1 + rng.random((3, 12, 121))
    mask = np.ones((3, 12), dtype=bool)
    mask[1, 0] = False
    f = seed_features(y, mask, ["Li-K-xas", "O-K-eels"])
    nf = n_features_per_channel()
    assert f.shape == (3, 2 * nf)
    assert np.isnan(f[1, :nf]).all() and np.isfinite(f[1, nf:]).all() and np.isfinite(f[0]).all()
    # CDF features end at 1 and cubic fits reproduce a cubic exactly
    x = np.arange(121) * 0.5
    cubic = 1 + 1e-4 * (x - 30) ** 3 + 2.0
    f = seed_features(np.tile(cubic, (1, 12, 1)), np.ones((1, 12), bool), [CHANNEL_NAMES[0]])
    assert f[0, 0] == pytest.approx(cubic[0] / cubic.sum())


def test_forward_baselines_beat_the_mean_on_learnable_data():
    pytest.importorskip("xgboost")
    from gnnspec.bench.baselines import forward_gbt, forward_knn, forward_mean

    rng = np.random.default_rng(1)
    X = rng.random((200, 6))
    grid = np.linspace(0, 1, 40)
    Y = np.exp(-((grid[None, :] - X[:, :1]) ** 2) / 0.02) + X[:, 1:2]
    tr, te = slice(0, 150), slice(150, 200)
    mse = lambda p: float(((p - Y[te]) ** 2).mean())  # noqa: E731
    base = mse(forward_mean(Y[tr], 50))
    assert mse(forward_knn(X[tr], Y[tr], X[te])) < 0.5 * base
    assert mse(forward_gbt(X[tr], Y[tr], X[te], n_estimators=100)) < 0.5 * base


def test_scale_table_reports_recall_of_each_index_kind():
    from gnnspec.bench.retrieval import random_library, scale_table

    v = random_library(500, 16, "clustered", np.random.default_rng(0))
    assert v.shape == (500, 16) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    rows = scale_table([3000], dim=16, n_queries=20, distributions=("clustered",))
    assert [r["index"] for r in rows] == ["exact", "hnsw"]
    exact, hnsw = rows
    assert exact["recall@1"] == 1.0 and exact["recall@10"] == 1.0  # noisy copies find their source
    assert hnsw["params"]["ef_search"] > 0 and hnsw["recall@10"] >= 0.9
    assert 0 < exact["p50_ms"] <= exact["p99_ms"]


def test_rerun_check_compares_accuracy_numbers_and_timings():
    from gnnspec.bench.rerun import comparable, compare_runs, rerun_section

    run = {
        "command": "make bench",
        "model_sha256": "abc",
        "data": "d",
        "data_sha256": "f00",
        "commit": "c1",
        "forward": {"O-K-xas": {"gnnspec": {"r2": 0.77, "n": 213}}},
        "inverse": {"all channels": {"gnnspec": {"auroc_antisite": 0.89}}},
        "retrieval": {"hit@1": 0.67},
        "training": {"structures_per_s": 3.0},
    }
    again = json.loads(json.dumps(run)) | {"commit": "c2", "retrieval": {"hit@1": 0.68}, "training": {"structures_per_s": 3.3}}
    assert comparable(run, again) and not comparable(run, again | {"model_sha256": "other"}) and not comparable(None, run)
    assert not comparable(run, again | {"data_sha256": "grown"})  # the same path, other data
    assert not comparable({k: v for k, v in run.items() if k != "data_sha256"}, run)
    check = compare_runs(run, again)
    assert check["compared"] == 4 and check["max_diff_at"] == "retrieval/hit@1"
    assert abs(check["max_abs_diff"] - 0.01) < 1e-12
    assert abs(check["timing_ratios"]["training supercells/s"] - 1.1) < 1e-12
    assert "## 6. Rerun check" in "\n".join(rerun_section(check))
    assert "No previous run" in "\n".join(rerun_section(None))


def test_retrieval_label_match_reports_cosine_and_consensus_ranking():
    from gnnspec.bench.retrieval import label_match
    from gnnspec.data.environment_set import EnvironmentSet as EnvSet

    # library: the nearest entry (cos 0.99) is pristine, the next three (0.98-0.96) have an O vacancy
    cos = np.array([0.99, 0.98, 0.97, 0.96])
    lib_emb = np.stack([cos, np.sqrt(1 - cos**2), np.zeros(4)], axis=1)
    content = np.tile([0.4, 0.1, 0.0, 0.0, 0.5], (4, 1))
    lib = EnvSet(
        np.zeros((4, 12, 3)), np.ones((4, 12), bool), content, np.array([[0, 0], [1, 0], [1, 0], [1, 0]], float), np.zeros(4)
    )
    query = EnvSet(np.zeros((1, 12, 3)), np.ones((1, 12), bool), content[:1], np.array([[1.0, 0.0]]), np.zeros(1))
    r = label_match(lib, lib_emb, query, np.array([[1.0, 0.0, 0.0]]), k=2, pool=4)
    assert r["hit@1"] == 0.0 and r["hit@2"] == 1.0 and r["queries"] == 1 and r["library"] == 4
    assert r["consensus"]["hit@1"] == 1.0 and r["consensus"]["pool"] == 4
    # default pool: sqrt(4) = 2, where the pristine and a vacancy entry tie and cosine decides
    assert label_match(lib, lib_emb, query, np.array([[1.0, 0.0, 0.0]]), k=2)["consensus"] == {
        "pool": 2,
        "hit@1": 0.0,
        "hit@2": 1.0,
    }


def test_inverse_table_gives_both_methods_the_quantification_of_a_model_that_reads_one(tmp_path):
    import torch
    from model_fixtures import write_synthetic_lmdb
    from test_library_helpers import tiny_model

    from gnnspec.bench import retrieval
    from gnnspec.bench.accuracy import inverse_table
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.data.environment_set import EnvironmentSet

    torch.set_num_threads(1)
    data = write_synthetic_lmdb(tmp_path / "synthetic", splits=("train",) * 3 + ("test",) * 2)
    train, test = (EnvironmentSet.from_dataset(LMDBStructureDataset(data, s)) for s in ("train", "test"))
    model = tiny_model(quantification=True)
    table = inverse_table(model, train, test, quick=True)
    assert set(table["all channels"]) == {"seed (XGBoost)", "gnnspec", "seed (XGBoost) + quantification", "gnnspec + quantification"}
    assert set(table["O-K-eels"]) == {"seed (XGBoost)", "gnnspec"}  # one element: a quantification says nothing
    plain, quantified = table["all channels"]["gnnspec"], table["all channels"]["gnnspec + quantification"]
    assert plain["n"] == quantified["n"] and plain["mae_mean"] != quantified["mae_mean"]
    assert not np.allclose(retrieval.spectrum_embeddings(model, test), retrieval.spectrum_embeddings(model, test, amounts=test.amounts("exact")))
    assert "gnnspec" in inverse_table(tiny_model(), train, test, quick=True)["all channels"]


def test_the_inverse_table_at_the_encoders_tier_reads_the_forward_models_spectra(tmp_path):
    """simulated_set: labels and members as FEFF's set, spectra from the forward model for every
    environment of an absorbing element; the tier sections of the report render from it."""
    import torch
    from model_fixtures import write_synthetic_lmdb
    from test_library_helpers import tiny_model

    from gnnspec.bench.accuracy import inverse_table
    from gnnspec.bench.report import inverse_section
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.data.environment_set import EnvironmentSet
    from gnnspec.models.environment_table import simulated_set

    torch.set_num_threads(1)
    data = write_synthetic_lmdb(tmp_path / "synthetic", splits=("train",) * 3 + ("test",) * 2)
    model = tiny_model()
    ds = {s: LMDBStructureDataset(data, s) for s in ("train", "test")}
    feff = {s: EnvironmentSet.from_dataset(d) for s, d in ds.items()}
    sim = {s: simulated_set(model, d, model.cfg.tiers[0]) for s, d in ds.items()}
    for s in ds:
        assert np.array_equal(sim[s].content, feff[s].content) and np.array_equal(sim[s].sid, feff[s].sid)
        assert sim[s].mask.sum() >= feff[s].mask.sum()
        both = sim[s].mask & feff[s].mask
        assert not np.allclose(sim[s].y[both], feff[s].y[both])
    table = inverse_table(model, sim["train"], sim["test"], quick=True)
    assert table["all channels"]["gnnspec"]["n"] == int(sim["test"].mask.any(1).sum())
    text = "\n".join(inverse_section(table, title="## 2-3b. at scf fidelity", note="forward-model spectra"))
    assert text.startswith("## 2-3b. at scf fidelity") and "forward-model spectra" in text and "| all channels |" in text


def test_convergence_geometry_row_moves_atoms_reproducibly_and_measures_edge_shifts(licoo2):
    from gnnspec.bench.convergence import DISPLACEMENT_A, REFERENCE, VARIATIONS, displaced, edge_shift

    d = licoo2.as_dict()
    assert displaced(d, 0.0, 1) is d
    a, b, c = displaced(d, DISPLACEMENT_A, 1), displaced(d, DISPLACEMENT_A, 1), displaced(d, DISPLACEMENT_A, 2)
    from pymatgen.core import Structure

    moved = [x.distance(y) for x, y in zip(Structure.from_dict(a), licoo2)]  # nearest periodic image
    assert a == b and a != c and 0 < np.mean(moved) < 5 * DISPLACEMENT_A
    assert REFERENCE["geometry"] in {label for row, label, *_ in VARIATIONS if row == "geometry"}
    e = np.linspace(0.0, 40.0, 401)

    def step(e0):
        return {"energy": e.tolist(), "intensity": (1.0 / (1.0 + np.exp(-(e - e0) / 0.8))).tolist()}

    assert edge_shift(step(20.0), step(20.7)) == pytest.approx(0.7, abs=0.11)
    assert edge_shift(step(20.0), step(19.5)) == pytest.approx(-0.5, abs=0.11)


def test_convergence_table_names_a_missing_structure_or_element_and_keys_rows_by_structure(tmp_path):
    from model_fixtures import write_synthetic_lmdb

    from gnnspec.bench.convergence import convergence_table, row_key
    from gnnspec.errors import InputError

    data = write_synthetic_lmdb(tmp_path / "synthetic", splits=("train", "test"))
    with pytest.raises(InputError, match="the test split has 1 structures, not a structure 3"):
        convergence_table(str(data), 1, ("O-K-elnes",), ("SCF radius",), structures=(3,))
    with pytest.raises(InputError, match="test structure 0 .* has no Fe site for the run Fe-K-xanes"):
        convergence_table(str(data), 1, ("Fe-K-xanes",), ("SCF radius",), structures=(0,))
    old = {"run": "O-K-elnes", "setting": "FMS radius"}  # a row written before the structure choice
    assert row_key(old) == row_key({**old, "structure": 0}) != row_key({**old, "structure": 1})


def test_convergence_markdown_has_a_line_per_run_and_structure_and_marks_missing_settings():
    from gnnspec.bench.convergence import COLUMNS, markdown_table

    rows = [
        {"run": "Li-K-xanes", "structure": 1, "site": 4, "setting": "SCF radius", "value": "3 A", "relative_l2_change": 0.0412, "seconds": 70.4},
        {"run": "Li-K-xanes", "structure": 1, "site": 4, "setting": "core hole", "value": "FSR", "relative_l2_change": 0.5, "seconds": 60.0},
        {"run": "Li-K-xanes", "site": 0, "setting": "core hole", "value": "FSR", "relative_l2_change": 0.2, "seconds": 61.0},
        {"run": "Li-K-xanes", "site": 0, "setting": "geometry", "value": "as stored (tier)", "relative_l2_change": 0.0, "seconds": 1.0},
    ]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 4 and all(line.count("|") == len(COLUMNS) + 3 for line in lines)
    assert lines[2] == "| Li-K-xanes | 1, 4 | 0.041, 70 s | - | - | - | - | - | 0.500, 60 s |"
    assert lines[3].startswith("| Li-K-xanes | 0, 0 | - |") and lines[3].endswith("| 0.200, 61 s |")


def test_make_bench_writes_the_standalone_pages_of_its_tier_sections(tmp_path):
    """Sections 1b-1d of the report and their standalone pages come from one table: the pages
    written from make bench's stored tables carry the report's rows and its caption."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from gnnspec.bench.__main__ import render as render_report
    from gnnspec.bench.__main__ import write_tier_pages

    results = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results.json").read_text())
    forward_tier = results["forward_tier"]
    model = SimpleNamespace(cfg=SimpleNamespace(tiers=[forward_tier["base"], forward_tier["tier"]]))
    write_tier_pages(forward_tier, model, tmp_path, "`make bench` at commit abc")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["edge_shifts.json", "edge_shifts.md", "error_groups.json", "error_groups.md", "tier_baselines.json", "tier_baselines.md"]
    report = render_report(results, {"structures": 1, "spectra": 1, "splits": {}}, "make bench at commit abc")
    for name in ("error_groups", "edge_shifts"):
        page = (tmp_path / f"{name}.md").read_text()
        rows = [line for line in page.splitlines() if line.startswith("| ") and "---" not in line]
        assert rows and all(row in report for row in rows), name
        assert "`make bench` at commit abc" in page
        assert json.loads((tmp_path / f"{name}.json").read_text())["table"] == forward_tier["groups" if name == "error_groups" else "edge_shifts"]
    baselines = (tmp_path / "tier_baselines.md").read_text()
    assert "| mean |" in baselines and f"gnnspec {forward_tier['tier']}" in baselines
