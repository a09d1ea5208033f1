"""Model factory, configs and self-describing checkpoints."""

from pathlib import Path

import pytest
import torch
from model_fixtures import random_cluster, tiny_model_config

from gnnspec.errors import InputError
from gnnspec.models import MODELS, build_model, load_checkpoint
from gnnspec.models.factory import model_payload, read_checkpoint
from gnnspec.train.config import load_train_config

torch.set_num_threads(1)
CONFIGS = sorted((Path(__file__).resolve().parent.parent / "train_configs").glob("*.yaml"))


def test_unknown_model_name_lists_valid_names():
    cfg = tiny_model_config()
    cfg.name = "transformer"
    with pytest.raises(InputError, match="valid models: joint"):
        build_model(cfg)
    assert set(MODELS) == {"joint"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_train_config_builds_a_model(path):
    cfg = load_train_config(path)
    model = build_model(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.data == "datasets/nmc_feff10_fast"


def test_train_configs_exist():
    assert {p.name for p in CONFIGS} >= {"cpu.yaml", "gpu.yaml", "smoke.yaml"}


def test_unknown_config_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nmodel:\n  backbone:\n    n_layer: 3\n")
    with pytest.raises(InputError, match="n_layer"):
        load_train_config(bad)


def test_set_overrides_are_typed_and_checked_like_the_file(tmp_path, capsys):
    from gnnspec.cli import main

    cpu = CONFIGS[0].parent / "cpu.yaml"
    cfg = load_train_config(cpu, ["model.tiers=[scf]", "align.epochs=0", "max_minutes=null", "augment.instrument.counts=[10, 20]"])
    assert cfg.model.tiers == ["scf"] and cfg.align.epochs == 0 and cfg.max_minutes is None
    assert list(cfg.augment.instrument.counts) == [10.0, 20.0]
    assert cfg.model.backbone.lmax == load_train_config(cpu).model.backbone.lmax  # the rest of the section is kept
    with pytest.raises(InputError, match=r"unknown key.*n_layer.*\(after --set model.backbone.n_layer=3\)"):
        load_train_config(cpu, ["model.backbone.n_layer=3"])
    with pytest.raises(InputError, match="expected an integer"):
        load_train_config(cpu, ["epochs=many"])
    with pytest.raises(InputError, match="epochs is not a section"):
        load_train_config(cpu, ["epochs.x=1"])
    for bad in ("epochs", "=3", "align..epochs=1"):
        with pytest.raises(InputError, match="expected KEY=VALUE"):
            load_train_config(cpu, [bad])
    # the CLI: a bad override is one line and exit 2, before any data is read
    assert main(["train", str(cpu), "--set", "optim.lr=-1", "--out", str(tmp_path / "run")]) == 2
    assert "optim" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_invalid_model_configs():
    with pytest.raises(InputError, match="r_readout"):
        tiny_model_config(spectra={"r_readout": 9.0})
    with pytest.raises(InputError, match="unknown channel"):
        tiny_model_config(channels=["Fe-K-xas"])
    with pytest.raises(ValueError, match="0e"):
        build_model(tiny_model_config(backbone={**tiny_model_config().backbone.__dict__, "hidden_irreps": "4x1o"}))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    path = tmp_path / "model.pt"
    torch.save(model_payload(model), path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "gnnspec.checkpoint" and raw["format_version"] == 1
    assert raw["model_config"]["backbone"]["hidden_irreps"] == tiny_model_config().backbone.hidden_irreps
    loaded = load_checkpoint(path)
    data = random_cluster(4, dtype=torch.float32)
    a = model.eval().forward_structure(data, embed=False)["spectra"]
    b = loaded.forward_structure(data, embed=False)["spectra"]
    assert torch.equal(a, b)


def test_bad_checkpoints_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such model file"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a readable"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a gnnspec checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
