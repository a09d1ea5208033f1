#!/usr/bin/env bash
# One-call GPU check for a box that is lent for a few minutes and has no network.
#   bash benchmarks/gpu_check.sh            (from the repository root; writes $OUT/gpu_check.json)
# Installs nothing from the network: if a wheels/ folder exists (Python 3.12 wheels of lmdb, ase,
# pymatgen-core and its dependencies, feff10-rs), pip installs from it with --no-index; the
# package itself is used from the source tree. Steps, each with its own time limit:
#   1. the gpu-marked tests (a CUDA checkpoint evaluates alike on CPU and CUDA);
#   2. three minutes of `gnnspec train` with train_configs/gpu.yaml, ending in a short alignment
#      stage, with nvidia-smi sampling the GPU's utilisation every second;
#   3. `gnnspec evaluate` of the result on the test split;
#   4. inference throughput: spectra per second on CUDA and on the CPU, same model.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/_work/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=PASSIVE
if [ -d wheels ]; then
  $PY -m pip install -q --no-index --find-links wheels lmdb ase pymatgen-core feff10-rs >"$OUT/pip.log" 2>&1 || echo "wheel install failed: see $OUT/pip.log"
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
start=$(date +%s)

timeout 600 $PY -m pytest -q -m gpu tests/test_gpu.py >"$OUT/gpu_tests.log" 2>&1
tests_rc=$?

$PY - "$OUT" <<'PYEOF'
import sys, yaml
cfg = yaml.safe_load(open("train_configs/gpu.yaml"))
cfg.update(max_minutes=3.0, run_dir=f"{sys.argv[1]}/run")
cfg["align"]["epochs"] = 15
yaml.safe_dump(cfg, open(f"{sys.argv[1]}/gpu_check.yaml", "w"))
PYEOF
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 >"$OUT/utilisation.csv" 2>/dev/null &
smi=$!
t0=$(date +%s)
timeout 900 $PY - "$OUT" >"$OUT/train.log" 2>&1 <<'PYEOF'
import json, sys
from gnnspec.train.config import load_train_config
from gnnspec.train.loop import run_training
summary = run_training(load_train_config(f"{sys.argv[1]}/gpu_check.yaml"))  # what `gnnspec train` runs
json.dump(summary, open(f"{sys.argv[1]}/train_summary.json", "w"), indent=1, default=str)
PYEOF
train_rc=$?
train_s=$(( $(date +%s) - t0 ))
kill $smi 2>/dev/null
timeout 300 $PY -m gnnspec evaluate "$OUT/run/best.pt" --split test --out "$OUT/evaluate.json" >"$OUT/evaluate.log" 2>&1
eval_rc=$?
timeout 300 $PY -m gnnspec.bench.gpu "$OUT/run/best.pt" --out "$OUT/inference.json" >"$OUT/inference.log" 2>&1
infer_rc=$?

$PY - "$OUT" "$commit" "$tests_rc" "$train_rc" "$train_s" "$eval_rc" "$infer_rc" "$start" <<'PYEOF'
import json, sys, time
from pathlib import Path
out, commit, tests_rc, train_rc, train_s, eval_rc, infer_rc, start = sys.argv[1:]
o = Path(out)
def load(name):
    p = o / name
    return json.loads(p.read_text()) if p.exists() else None
util = [float(l.split(",")[0]) for l in (o / "utilisation.csv").read_text().splitlines() if l.strip()] if (o / "utilisation.csv").exists() else []
summary = load("train_summary.json") or {}
report = {
    "commit": commit,
    "gpu_tests": {"rc": int(tests_rc), "tail": (o / "gpu_tests.log").read_text()[-400:]},
    "train": {"rc": int(train_rc), "wall_s": int(train_s), "summary": summary},
    "gpu_utilisation_percent": {"mean": sum(util) / len(util) if util else None, "samples": len(util), "busy_share_over_60": (sum(u >= 60 for u in util) / len(util)) if util else None},
    "evaluate": {"rc": int(eval_rc), "metrics": load("evaluate.json")},
    "inference": {"rc": int(infer_rc), "result": load("inference.json")},
    "total_wall_s": int(time.time() - int(start)),
}
(o / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
print(json.dumps({k: v for k, v in report.items() if k != "train"}, indent=1, default=str)[:3000])
PYEOF
