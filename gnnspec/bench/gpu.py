"""Inference throughput of the forward model on CUDA and on the CPU, same model and structures.

Every site of every test-split supercell of the model's dataset is predicted twice per device:
one call per structure (as ``predict_site_spectra`` does) and batched, ``batch_size`` supercells
per forward pass. Reported: spectra per second (an absorbing site gives one spectrum per
channel of its element). Run: ``python -m gnnspec.bench.gpu MODEL.pt --out inference.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def _spectra_per_second(model, graphs: list, device: torch.device, batch_size: int, repeats: int = 3) -> float:
    from torch_geometric.loader import DataLoader

    dtype = next(model.parameters()).dtype
    batches = [b.to(device) for b in DataLoader(graphs, batch_size=batch_size, shuffle=False)]
    for b in batches:
        b.pos, b.edge_shift = b.pos.to(dtype), b.edge_shift.to(dtype)

    def once() -> int:
        n = 0
        with torch.no_grad():
            for b in batches:
                out = model.forward_structure(b, embed=False)
                n += int(out["spectra_mask"].sum())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n

    once()  # warm-up
    t0 = time.perf_counter()
    n = sum(once() for _ in range(repeats))
    return n / (time.perf_counter() - t0)


def inference_throughput(model_path: str, data: str | None = None, batch_size: int = 8) -> dict:
    """Spectra per second on every available device, per structure and batched."""
    from gnnspec.models.factory import load_checkpoint, read_checkpoint
    from gnnspec.train.data import load_split

    ckpt = read_checkpoint(model_path)
    data = data or ckpt.get("trained", {}).get("train_config", {}).get("data") or ckpt.get("train_config", {}).get("data")
    model = load_checkpoint(model_path)
    graphs = list(load_split(data, "test", model.cfg.backbone.cutoff, model.cfg.channels))
    result = {"structures": len(graphs), "atoms": int(sum(g.num_nodes for g in graphs)), "devices": {}}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        m = load_checkpoint(model_path, device)
        result["devices"][device.type] = {
            "per_structure_spectra_per_s": _spectra_per_second(m, graphs, device, 1),
            f"batched_{batch_size}_spectra_per_s": _spectra_per_second(m, graphs, device, batch_size),
            "threads": torch.get_num_threads(),
        }
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name(0)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="checkpoint")
    p.add_argument("--data", default=None, help="dataset (default: the one the model was trained on)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    result = inference_throughput(args.model, args.data, args.batch_size)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
