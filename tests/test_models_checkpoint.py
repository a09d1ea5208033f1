"""Checkpoints hold the same keys whatever device, dtype or compile state a model trained in."""

import subprocess
import sys

import torch
from model_fixtures import random_cluster, tiny_model_config

from gnnspec.models.factory import build_model, load_checkpoint, model_payload, portable_state_dict
from gnnspec.train.ema import EMA


def _spectra(model, data):
    with torch.no_grad():
        return model.forward_structure(data, embed=False)["spectra"].double()


def test_a_trained_ema_float64_model_round_trips_through_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    ema = EMA(model, 0.9)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = random_cluster(6, seed=2, dtype=torch.float32)
    for _ in range(3):  # a few float32 steps, EMA after each (autocast is a GPU setting: see the gpu tests)
        loss = model.forward_structure(data, embed=False)["spectra"].square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    averaged = ema.module
    fresh_keys = set(portable_state_dict(build_model(tiny_model_config())))
    assert set(portable_state_dict(averaged.double())) == fresh_keys  # dtype changes no key
    averaged = averaged.float()
    payload = model_payload(averaged)
    assert set(payload["model"]) == fresh_keys
    assert all(t.device.type == "cpu" for t in payload["model"].values())
    # what a CUDA-trained model added: constants of e3nn's traced code; they must not matter
    generated = [k for k in averaged.state_dict() if "_compiled_main_left_right" in k]
    assert generated, "the tiny model should hold e3nn generated code"
    prefix = generated[0].rsplit(".", 1)[0]
    payload["model"][f"{prefix}._tensor_constant0"] = torch.zeros(3)
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    expected = _spectra(averaged, random_cluster(6, seed=2, dtype=torch.float32))
    loaded = load_checkpoint(path)
    assert torch.allclose(_spectra(loaded, random_cluster(6, seed=2, dtype=torch.float32)), expected, atol=1e-7)
    # and in a fresh process, as `gnnspec evaluate best.pt` after a GPU run
    torch.save(expected, tmp_path / "expected.pt")
    code = (
        "import sys, torch; sys.path.insert(0, 'tests');"
        "from model_fixtures import random_cluster; from gnnspec.models.factory import load_checkpoint;"
        f"m = load_checkpoint(r'{path}'); e = torch.load(r'{tmp_path / 'expected.pt'}');"
        "o = m.forward_structure(random_cluster(6, seed=2, dtype=torch.float32), embed=False)['spectra'].double();"
        "assert torch.allclose(o, e, atol=1e-7), (o - e).abs().max()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
