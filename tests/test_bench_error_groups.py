"""Where the higher-tier error sits (gnnspec.bench.error_groups) on a synthetic two-tier LMDB."""

import numpy as np
import pytest
import torch
from model_fixtures import two_tier_runs

from gnnspec.bench.error_groups import GROUPS, error_groups, group_table, main, render, site_groups
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return two_tier_runs(tmp_path_factory.mktemp("eg"), 1)


def test_group_r2_shares_the_channel_variance_and_names_the_worst_sites():
    y = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    p = y.copy()
    p[1, 0] += 1.0  # one site wrong by 1 in one energy
    p[3] += 2.0  # one site wrong by 2 in both
    keys = {"X": [(5, 0), (5, 1), (9, 2), (9, 3)]}
    groups = {(5, 0): ("recipe", "bulk-env"), (5, 1): ("recipe", "defect-env"), (9, 2): ("wide", "bulk-env"), (9, 3): ("wide", "defect-env")}
    row = group_table(keys, {"X": y}, {"X": p}, groups)["X"]
    per_site_var = 2.0  # every site 1 from the mean (1, 1) in each energy
    assert row["n"] == 4 and row["r2"] == pytest.approx(1.0 - (1.0 + 8.0) / (4 * per_site_var))
    assert row["groups"]["recipe"] == {"n": 2, "r2": pytest.approx(1.0 - 1.0 / (2 * per_site_var))}
    assert row["groups"]["wide"]["r2"] == pytest.approx(1.0 - 8.0 / (2 * per_site_var))
    assert row["groups"]["defect-env"]["r2"] == pytest.approx(1.0 - 9.0 / (2 * per_site_var))
    assert row["worst_sites"][:2] == [[9, 3], [5, 1]] and row["worst_share"] == pytest.approx(1.0)
    line = render({"X": row})[2]
    assert line.startswith("| X | 4 | -0.125 | ") and line.count("|") == len(GROUPS) + 5 and "(9/3, 5/1, " in line


def test_the_model_is_broken_down_by_family_environment_and_case(setup, tmp_path):
    from gnnspec.models.factory import load_checkpoint

    cfg, data, paths = setup
    store = SpectraStore(data, readonly=False)
    meta = store.metadata()
    meta["build_config"]["wide_from"] = 9  # the last test supercell counts as wide
    store.put_many({schema.METADATA_KEY: meta})
    groups = site_groups(SpectraStore(data))
    families = {sid: g[0] for (sid, _), g in groups.items()}
    assert families and all(fam == ("wide" if sid >= 9 else "recipe") for sid, fam in families.items())
    table = error_groups(load_checkpoint(paths[0]), str(data))
    for row in table.values():
        counted = {g: row["groups"][g]["n"] for g in row["groups"]}
        assert counted.get("recipe", 0) + counted.get("wide", 0) == row["n"]
        assert counted.get("defect-env", 0) + counted.get("bulk-env", 0) == row["n"]
        means = sum(v["n"] * (1 - v["r2"]) for g, v in row["groups"].items() if g in ("recipe", "wide"))
        assert 1 - means / row["n"] == pytest.approx(row["r2"])
    out = tmp_path / "eg.md"
    assert main(["--data", str(data), "--model", str(paths[0]), "--out", str(out), "--threads", "1"]) == 0
    assert out.read_text().startswith("# Where the hi-tier error sits") and out.with_suffix(".json").exists()
