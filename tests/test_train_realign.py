"""Realignment: every encoder of a checkpoint continues its alignment on the spectra its forward
ensemble predicts; the forward side stays bit for bit, the checkpoint says what the encoder
learned, the stale calibration goes, and a stopped run resumes with the next encoder."""

import subprocess
import sys

import pytest
import torch
from model_fixtures import model_with_members, two_tier_runs

from gnnspec.data.dataset import LMDBStructureDataset
from gnnspec.errors import InputError
from gnnspec.models.environment_table import EnvironmentTable, encoder_simulator
from gnnspec.models.factory import load_checkpoint, read_checkpoint
from gnnspec.models.forward_ensemble import ensemble_pass
from gnnspec.train.align import TRAINED
from gnnspec.train.ensemble import ENTRY as ENCODERS
from gnnspec.train.ensemble import embedding_side, reinitialise
from gnnspec.train.realign import PROGRESS, STALE, realign

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return two_tier_runs(tmp_path_factory.mktemp("realign"), 3)


def aligned_model(tmp_path, runs, members: bool = True):
    """A two-tier model whose (recorded) alignment learned tier ``hi`` of its own head, with two
    forward members, an encoder ensemble of three and stale calibration entries."""
    cfg, data, paths = runs
    model_file, _ = model_with_members(tmp_path, data, paths if members else paths[:1] + paths[1:2])
    ckpt = read_checkpoint(model_file)
    train_config = ckpt["trained"]["train_config"]
    train_config["align"].update(spectra_tier="hi", generated=False)
    ckpt["trained"]["alignment"] = {"epochs": 3}
    model = load_checkpoint(model_file)
    sides = [embedding_side(model)]
    for seed in (1001, 1002):
        reinitialise(model, seed)
        sides.append(embedding_side(model))
    ckpt[ENCODERS] = {"members": sides, "seeds": [None, 1001, 1002]}
    ckpt.update({name: {"stale": torch.zeros(2)} for name in STALE})
    if not members:
        ckpt.pop("forward_ensemble")
    torch.save(ckpt, model_file)
    return model_file, data


def test_the_ensemble_simulator_gives_the_models_prediction(tmp_path, runs):
    model_file, data = aligned_model(tmp_path, runs)
    model = load_checkpoint(model_file)
    assert encoder_simulator(model) == "own"
    graphs = LMDBStructureDataset(data, "train", cutoff=model.cfg.backbone.cutoff, channels=model.cfg.channels)
    own = EnvironmentTable(model, graphs, features=False, spectra_tier=1)
    ens = EnvironmentTable(model, graphs, features=False, spectra_tier=1, simulator="ensemble")
    g = graphs[0]
    g.pos, g.edge_shift = g.pos.float(), g.edge_shift.float()
    with torch.no_grad():
        want, _ = model.environment_spectra(ensemble_pass(model, g, model.spectra_head.absorbers_of(g.z), 1), g)
    assert torch.allclose(ens.x[: want.shape[0]], want.to(ens.x.dtype), atol=1e-6)
    assert torch.equal(own.mask, ens.mask) and not torch.allclose(own.x, ens.x)
    with pytest.raises(InputError, match="unknown simulator"):
        EnvironmentTable(model, graphs, features=False, spectra_tier=1, simulator="feff")


def test_realignment_trains_every_encoder_on_the_ensembles_spectra(tmp_path, runs):
    model_file, data = aligned_model(tmp_path, runs)
    sidecar = model_file.with_name(model_file.stem + ".support.npz")  # where older models kept their support
    sidecar.write_bytes(b"stale")
    before = read_checkpoint(model_file)
    record = realign(model_file, epochs=2, log=lambda *_: None)
    assert not sidecar.exists()
    after = read_checkpoint(model_file)
    assert record["forward_models"] == 3 and list(record["encoders"]) == ["own", "encoder member 1", "encoder member 2"]
    assert after["realignment"]["epochs"] == 2 and PROGRESS not in after and not set(STALE) & set(after)
    for name, tensor in before["model"].items():
        if name.split(".")[0] in ("backbone", "spectra_head"):
            assert torch.equal(tensor, after["model"][name]), name
    changed = [k for k in before["model"] if k.split(".")[0] == "encoder" and not torch.equal(before["model"][k], after["model"][k])]
    assert changed  # the model's own encoder learned
    own = {k: v for k, v in after["model"].items() if k.split(".")[0] in TRAINED}
    assert all(torch.equal(own[k], after[ENCODERS]["members"][0][k]) for k in own)  # member 0 is the model's own
    for old, new in zip(before[ENCODERS]["members"][1:], after[ENCODERS]["members"][1:]):
        assert any(not torch.equal(old[k], new[k]) for k in old)
    assert after[ENCODERS]["k_content"] > 0 and after[ENCODERS]["seeds"] == [None, 1001, 1002]
    model = load_checkpoint(model_file)
    assert encoder_simulator(model) == "ensemble"
    # the tables of calibration, support and benchmarks now hold what the encoder learned
    graphs = LMDBStructureDataset(data, "val", cutoff=model.cfg.backbone.cutoff, channels=model.cfg.channels)
    auto = EnvironmentTable(model, graphs, features=False, spectra_tier=1)
    assert auto.simulator == "ensemble"


def test_a_stopped_realignment_resumes_with_the_next_encoder(tmp_path, runs):
    model_file, _ = aligned_model(tmp_path, runs)

    def stop_at_member_1(message):
        if message.startswith("encoder member 1:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        realign(model_file, epochs=1, log=stop_at_member_1)
    progress = read_checkpoint(model_file)[PROGRESS]
    assert list(progress["done"]) == ["own"] and "realignment" not in read_checkpoint(model_file)
    messages = []
    realign(model_file, epochs=1, log=messages.append)
    assert not any(m.startswith("own:") for m in messages)
    assert sum(m.startswith("encoder member") for m in messages) == 4  # two members: start and result
    after = read_checkpoint(model_file)
    kept = progress["done"]["own"]["weights"]
    assert all(torch.equal(kept[k], after["model"][k]) for k in kept)


def test_realignment_refuses_a_model_without_an_ensemble(tmp_path, runs):
    model_file, _ = aligned_model(tmp_path, runs, members=False)
    with pytest.raises(InputError, match="no forward ensemble"):
        realign(model_file, epochs=1, log=lambda *_: None)
    with pytest.raises(InputError, match="at least 1 epoch"):
        realign(model_file, epochs=0)


def test_the_cli_realigns_and_says_to_calibrate_again(tmp_path, runs):
    model_file, _ = aligned_model(tmp_path, runs)
    done = subprocess.run(
        [sys.executable, "-m", "gnnspec", "ensemble", str(model_file), "--realign", "--epochs", "1"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "validation hit@1" in done.stdout and "run gnnspec calibrate" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "gnnspec", "ensemble", str(model_file), "--realign", "--linear-heads"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--realign runs on its own" in bad.stderr and "Traceback" not in bad.stderr
    for flags in (["--lr", "1e-4"], ["--from-scratch"]):
        ignored = subprocess.run([sys.executable, "-m", "gnnspec", "ensemble", str(model_file), *flags], capture_output=True, text=True)
        assert ignored.returncode == 2 and "add --realign" in ignored.stderr and "Traceback" not in ignored.stderr


def test_from_scratch_starts_each_encoder_from_its_seed(tmp_path, runs):
    """--from-scratch: the stage starts from re-initialised weights (as gnnspec train does), so the
    result differs from continuing the trained encoder; a resume with the other setting starts over."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    continued, _ = aligned_model(tmp_path / "a", runs)
    fresh, _ = aligned_model(tmp_path / "b", runs)
    realign(continued, epochs=1, log=lambda *_: None)
    messages = []
    record = realign(fresh, epochs=1, log=messages.append, from_scratch=True)
    assert record["from_scratch"] and "from fresh weights from its seed" in messages[1]
    a, b = read_checkpoint(continued)["model"], read_checkpoint(fresh)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
