"""The encoder ensemble: members differ, live inside the checkpoint, resume, and infer reports them."""

import json

import numpy as np
import pytest
import torch
from model_fixtures import smoke_config, write_synthetic_lmdb

from gnnspec.config import config_to_dict
from gnnspec.models.factory import build_model, model_payload, read_checkpoint
from gnnspec.train.data import graph_statistics, load_splits
from gnnspec.train.ensemble import ENTRY, embedding_side, reinitialise, spread_factor

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    data = write_synthetic_lmdb(tmp / "synthetic")
    cfg = smoke_config(data, tmp / "runs", align__epochs=2, align__batch_size=32)
    splits = load_splits(cfg.data, cfg.model.backbone.cutoff, cfg.model.channels)
    cfg.model.backbone.avg_num_neighbors = graph_statistics(splits["train"], cfg.model.spectra.r_readout)["avg_num_neighbors"]
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    path = tmp / "model.pt"
    torch.save({**model_payload(model), "trained": {"train_config": config_to_dict(cfg)}}, path)
    return cfg, splits, model, path


def test_spread_factor_by_hand():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 4000))  # members drawn alike: a left-out one lies within k sd
    k, unscaled = spread_factor(values)
    # |x - mean of 4| / sd of 4 is |t|-like with sqrt(1 + 1/4) scale: its 68th percentile near 1.1-1.3
    assert 1.0 < k < 1.4 and 0.55 < unscaled < 0.7
    with pytest.raises(ValueError, match="at least 3"):
        spread_factor(values[:2])


def test_reinitialise_changes_only_the_embedding_side_and_keeps_the_global_rng(setup):
    import copy

    _, _, model, _ = setup
    m = copy.deepcopy(model)
    state = torch.get_rng_state()
    reinitialise(m, 7)
    assert torch.equal(torch.get_rng_state(), state)
    before, after = embedding_side(model), embedding_side(m)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    full_before, full_after = model.state_dict(), m.state_dict()
    for k, v in full_before.items():
        if k not in before:
            assert torch.equal(v, full_after[k]), k


def test_ensemble_command_builds_resumes_and_infer_reports_it(setup, tmp_path, capsys):
    from gnnspec.channels import CHANNELS
    from gnnspec.cli import main
    from gnnspec.spectra import Spectrum, write_spectra

    cfg, splits, model, path = setup
    assert main(["ensemble", str(path), "--members", "3"]) == 0
    record = read_checkpoint(path)[ENTRY]
    assert len(record["members"]) == 3 and record["seeds"][0] is None and record["k_content"] > 0
    m0, m1 = record["members"][0], record["members"][1]
    assert all(torch.equal(m0[k], embedding_side(model)[k]) for k in m0)  # member 0: the model's own
    assert any(not torch.equal(m0[k], m1[k]) for k in m0)
    # resume: a fourth member is trained, the first three are kept as they were
    assert main(["ensemble", str(path), "--members", "4"]) == 0
    again = read_checkpoint(path)[ENTRY]
    assert len(again["members"]) == 4 and all(torch.equal(again["members"][2][k], record["members"][2][k]) for k in m0)
    # infer: the member mean and a spread
    name = next(c for c in model.cfg.channels if CHANNELS[c].element == "O")
    ch = CHANNELS[name]
    y = 1 + np.exp(-0.5 * ((ch.grid - ch.grid.mean()) / 3) ** 2)
    write_spectra(tmp_path / "q.json", {name: Spectrum(name, ch.grid, y)})
    assert main(["infer", str(tmp_path / "q.json"), "--model", str(path), "--out", str(tmp_path / "a.json")]) == 0
    ens = json.loads((tmp_path / "a.json").read_text())["encoder_ensemble"]
    assert ens["members"] == 4 and len(ens["member_defects"]) == 4
    assert sum(ens["element_content"].values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in ens["defects_spread"].values()) and "k = " in ens["spread"]
    assert main(["ensemble", str(path), "--members", "2"]) == 2


def test_release_keeps_the_model_and_its_training_record_and_drops_the_resume_state(setup, tmp_path, capsys):
    from gnnspec.cli import main
    from gnnspec.models.factory import load_checkpoint
    from gnnspec.train.checkpoint import RESUME_ONLY

    cfg, _, model, _ = setup
    train_config = config_to_dict(cfg)
    train_config["align"]["spectra_tier"] = model.cfg.tiers[0]
    run = {
        **model_payload(model),
        "optimizer": {"state": {}}, "scheduler": {}, "rng": [], "batch_in_epoch": 0, "raw_model": model.state_dict(),
        "epoch": 7, "step": 70, "best_metric": 0.5, "train_config": train_config, "alignment": {"epochs": 2, "val": None},
    }
    torch.save(run, tmp_path / "best.pt")
    assert main(["release", str(tmp_path / "best.pt"), "--out", str(tmp_path / "model.pt")]) == 0
    assert "epoch 7" in capsys.readouterr().out
    released = read_checkpoint(tmp_path / "model.pt")
    assert not set(RESUME_ONLY) & set(released) and "train_config" not in released
    assert released["trained"]["epoch"] == 7 and released["trained"]["alignment"]["epochs"] == 2
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded.encoder_spectra_tier == model.cfg.tiers[0]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert main(["release", str(tmp_path / "model.pt"), "--out", str(tmp_path / "again.pt")]) == 0  # released twice: the same
    assert read_checkpoint(tmp_path / "again.pt").keys() == released.keys()
    torch.save(model_payload(model), tmp_path / "bare.pt")
    assert main(["release", str(tmp_path / "bare.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no train_config" in capsys.readouterr().err
