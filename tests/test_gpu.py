"""On CUDA: a few training steps with gpu.yaml's AMP and EMA settings, then the checkpoint loads
in a fresh process on the CPU and on CUDA and evaluates to the same numbers. Skipped without CUDA
(the CPU round trip is tests/test_models_checkpoint.py)."""

import json
import subprocess
import sys

import pytest
import torch
from model_fixtures import smoke_config, write_synthetic_lmdb

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _evaluate_in_fresh_process(checkpoint, data, device: str) -> dict:
    code = (
        "import json, sys; sys.path.insert(0, 'tests');"
        "from gnnspec.models.factory import load_checkpoint; from gnnspec.train.data import load_split;"
        "from gnnspec.train.metrics import evaluate;"
        f"m = load_checkpoint(r'{checkpoint}', '{device}');"
        f"g = load_split(r'{data}', 'test', m.cfg.backbone.cutoff, m.cfg.channels);"
        "r = evaluate(m, g);"
        "print(json.dumps({'spectra': r['spectra'], 'content_mae': r['content_mae']}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_cuda_trained_checkpoint_evaluates_alike_on_cpu_and_cuda(tmp_path):
    from gnnspec.train.loop import run_training

    data = write_synthetic_lmdb(tmp_path / "data")
    cfg = smoke_config(data, tmp_path / "run", epochs=2, device="cuda", amp=True, optim__ema_decay=0.999, align__epochs=2)
    summary = run_training(cfg)
    assert not summary["interrupted"]
    best = tmp_path / "run" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    assert not [k for k in ckpt["model"] if "_compiled_" in k]
    cpu = _evaluate_in_fresh_process(best, data, "cpu")
    cuda = _evaluate_in_fresh_process(best, data, "cuda")
    for key in ("mse", "r2", "cosine"):
        assert cpu["spectra"][key] == pytest.approx(cuda["spectra"][key], rel=1e-3, abs=1e-5)
    assert cpu["content_mae"]["spectra"] == pytest.approx(cuda["content_mae"]["spectra"], rel=1e-3, abs=1e-5)
