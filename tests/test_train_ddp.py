"""DistributedDataParallel under torchrun with two gloo processes on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from model_fixtures import SMOKE_CONFIG, write_synthetic_lmdb

ROOT = Path(__file__).resolve().parent.parent


def test_torchrun_two_cpu_processes(tmp_path):
    data = write_synthetic_lmdb(tmp_path / "data")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "gnnspec",
        "train",
        str(SMOKE_CONFIG),
        "--data",
        str(data),
        "--out",
        str(run_dir),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("test metrics") == 1  # only rank 0 reports
    last = torch.load(run_dir / "last.pt", weights_only=True)
    # 6 training supercells over 2 processes, 2 per batch: 2 steps per epoch
    assert last["epoch"] == 3 and last["step"] == 3 * 2
    assert len(last["rng"]) == 2  # one RNG state per process
    assert (run_dir / "best.pt").exists() and (run_dir / "metrics_test.json").exists()
