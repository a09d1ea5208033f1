"""The learning curve of the linear tier heads: supercell subsets, the power-law fit, a real run."""

import json

import numpy as np
import pytest
import torch
from model_fixtures import model_with_members, two_tier_runs

from gnnspec.bench.learning_curve import (
    describe,
    half_of_every_supercell,
    learning_curve,
    main,
    sites_at_least,
    supercell_subset,
)
from gnnspec.errors import InputError
from gnnspec.models.factory import load_checkpoint

torch.set_num_threads(1)


def test_sites_for_the_goal_assume_each_doubling_gains_what_the_last_did():
    assert sites_at_least(100, 0.70, 200, 0.80, 0.9) == pytest.approx(400)  # one more doubling
    assert sites_at_least(100, 0.70, 200, 0.75, 0.9) == pytest.approx(200 * 2**3)
    assert sites_at_least(110, 0.80, 200, 0.85, 0.9) == pytest.approx(200 * 2 ** (0.05 / (0.05 / np.log2(200 / 110))))
    assert sites_at_least(100, 0.88, 200, 0.92, 0.9) == 200  # reached already
    assert sites_at_least(100, 0.60, 200, 0.59, 0.9) is None  # the last doubling gained nothing


def test_subsets_are_whole_supercells_at_least_two_and_all_at_one():
    rng = np.random.default_rng(0)
    owners = np.repeat(np.arange(10), 3)
    assert len(supercell_subset(owners, 0.05, rng)) == 2
    half = supercell_subset(owners, 0.5, rng)
    assert len(half) == 5 and set(half) <= set(range(10))
    assert np.isin(owners, half).sum() == 15  # every site of a chosen cell
    np.testing.assert_array_equal(supercell_subset(owners, 1.0, rng), np.arange(10))
    owners = np.repeat(np.arange(6), [2, 4, 3, 1, 4, 2])
    keep = half_of_every_supercell(owners, rng)
    counts = np.bincount(owners[keep], minlength=6)
    assert list(counts[[0, 1, 4, 5]]) == [1, 2, 2, 1] and counts[2] in (1, 2) and counts[3] in (0, 1)


def test_learning_curve_of_a_model_with_members_and_its_page(tmp_path):
    _, data, paths = two_tier_runs(tmp_path / "runs", 2)
    model_file, _ = model_with_members(tmp_path, data, paths, linear_heads=True)
    model = load_checkpoint(model_file)
    table = learning_curve(model, str(data), draws=2)
    assert table
    for r in table.values():
        sizes = [r["mean"][f]["n_sites"] for f in r["mean"]]
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
        assert all(np.isfinite(p["r2"]) for p in r["points"])
        assert len([p for p in r["points"] if p["fraction"] == 1.0]) == 1
        within = [p for p in r["points"] if p["mode"] == "sites"]
        assert len(within) == 2 and all(p["n_supercells"] >= r["mean"]["0.5"]["n_sites"] / 4 for p in within)
        assert r["half_of_every_supercell"]["r2"] == pytest.approx(np.mean([p["r2"] for p in within]))
    title, _, lines = describe(model, table)
    assert "hi" in title and lines[-1].startswith("| mean |")
    out = tmp_path / "lc.md"
    assert main(["--model", str(model_file), "--data", str(data), "--out", str(out), "--threads", "1"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["table"].keys() == table.keys()
    with pytest.raises(InputError, match="tier 'synthetic'"):
        learning_curve(model, str(data), tier="synthetic")
