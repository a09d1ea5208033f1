"""The encoder on FEFF's higher-tier spectra against the simulators' (gnnspec.bench.scf_queries),
on a synthetic two-tier LMDB (tier ``hi`` on every third site)."""

import json

import numpy as np
import pytest
import torch
from model_fixtures import model_with_members, two_tier_runs

from gnnspec.bench.scf_queries import COLUMNS, SOURCES, main, score_model, section, source_spectra
from gnnspec.data import keys as K
from gnnspec.data.dataset import LMDBStructureDataset
from gnnspec.models.factory import load_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scfq")
    cfg, data, paths = two_tier_runs(tmp, 3)
    model_file, _ = model_with_members(tmp, data, paths)
    return cfg, data, model_file


def graphs_of(model, data, split="test"):
    return LMDBStructureDataset(data, split, model.cfg.backbone.cutoff, channels=model.cfg.channels, tier="synthetic", extra_tiers=("hi",))


def test_each_environment_is_the_mean_of_its_members_with_feff_in_the_tier(setup):
    _, data, model_file = setup
    model = load_checkpoint(model_file)
    graphs = graphs_of(model, data)
    spectra = source_spectra(model, graphs, "hi")
    assert all(torch.equal(spectra["feff"][1], spectra[s][1]) for s in SOURCES)  # same members and channels everywhere
    g, row = graphs[0], 0
    members, member_env = g[K.ENV_MEMBER_INDEX].numpy(), g[K.ENV_MEMBER_ENV].numpy()
    have = g[K.SITE_Y_TIERS_MASK][:, 0].numpy()
    checked = 0
    for env in range(int(g[K.ENV_CENTRE_INDEX].numel())):
        atoms = members[member_env == env]
        for c in range(len(model.cfg.channels)):
            with_feff = [a for a in atoms if have[a, c]]
            assert bool(spectra["feff"][1][row + env, c]) == bool(with_feff)
            if with_feff:
                want = g[K.SITE_Y_TIERS][with_feff, 0, c].double().mean(0).numpy()
                np.testing.assert_allclose(spectra["feff"][0][row + env, c].double().numpy(), want, rtol=1e-5)
                checked += 1
    assert checked > 0
    # the model's sources are its spectra, not FEFF's, and the ensemble is not the own head
    m = spectra["feff"][1]
    assert not torch.allclose(spectra["ensemble"][0][m], spectra["feff"][0][m].to(spectra["ensemble"][0].dtype))
    assert not torch.allclose(spectra["ensemble"][0][m], spectra["own"][0][m])


def test_supercell_intervals_resample_whole_supercells():
    from gnnspec.bench.scf_queries import supercell_intervals

    sid = np.repeat([0, 1, 2, 3], 5)
    defects = np.zeros((20, 1))
    defects[::2] = 1
    a = {
        "sid": sid,
        "defects": defects,
        "hit": np.zeros(20, bool),
        "content": np.full((20, 1), 0.1),
        "content_true": np.zeros((20, 1)),
        "prob": np.full((20, 1), 0.5),
    }
    b = dict(a, hit=sid < 2, content=np.where(sid < 2, 0.0, 0.1)[:, None])  # better on supercells 0 and 1 only
    d = supercell_intervals(a, b, ("x",), n_boot=200)
    assert d["hit@1"][0] == 0.5 and 0.0 <= d["hit@1"][1] < 0.5 < d["hit@1"][2] <= 1.0
    assert np.isclose(d["content_mae"][0], -0.05) and d["auroc_x"] == [0.0, 0.0, 0.0]
    # a draw holds whole supercells: the hit rate moves in steps of a quarter
    draws = {round(v, 6) for v in np.linspace(0, 1, 5)}
    assert round(d["hit@1"][1], 6) in draws and round(d["hit@1"][2], 6) in draws
    with pytest.raises(ValueError, match="same queries"):
        supercell_intervals(a, dict(b, sid=sid[::-1]), ("x",))


def test_scores_cover_every_source_and_the_cli_writes_the_table(setup, tmp_path, capsys):
    _, data, model_file = setup
    model = load_checkpoint(model_file)
    result = score_model(model, graphs_of(model, data, "train"), graphs_of(model, data), "hi")
    assert set(result["sources"]) == set(SOURCES) and result["environments"] > 0
    assert all(0.0 <= result["sources"][s]["hit@1"] <= 1.0 for s in SOURCES)
    lines = section({**result, "simulator": "ensemble"}, "## 2-3c")
    assert lines[0] == "## 2-3c" and "learned the forward ensemble's spectra" in lines[2]
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ") and not line.startswith("| ---")][1:] == [f"| {s}" for s in SOURCES]
    out = tmp_path / "q.md"
    assert main(["--compare", f"a={model_file}", f"b={model_file}", "--data", str(data), "--tier", "hi", "--out", str(out), "--threads", "1"]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["a"]["sources"] == saved["b"]["sources"] and saved["a"]["simulator"] == "own"
    # the same model against itself: every difference and its interval are 0
    diffs = np.array([v for d in saved["b"]["intervals"].values() for v in d.values()], dtype=float)
    assert saved["b"]["against"] == "a" and np.all((diffs == 0) | np.isnan(diffs)) and (diffs == 0).any()
    text = out.read_text()
    assert all(c in text for c in COLUMNS) and text.count("| a | own |") == len(SOURCES)
    assert main(["--compare", f"a={model_file}", "--data", str(data), "--tier", "ultra", "--out", str(out)]) == 2
    assert "has no ultra tier" in capsys.readouterr().err
