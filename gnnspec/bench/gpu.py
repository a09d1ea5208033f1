"""Inference throughput of the forward model on the CPU and (where there is one) on CUDA, same model and structures.

Every site with a channel of every given supercell (by default the test split of the model's
dataset) is predicted through the user API two ways per device: one call per structure
(:meth:`gnnspec.models.api.ModelAPI.predict_site_spectra`) and batched,
:meth:`~gnnspec.models.api.ModelAPI.predict_many` with ``batch_size`` supercells per forward pass
(what ``gnnspec predict`` over a folder does). Graph building is included, as a user pays it.
Reported: spectra per second (an absorbing site gives one spectrum per channel of its element).
Run: ``python -m gnnspec.bench.gpu MODEL.pt --out inference.json``; ``make bench`` runs it too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def _spectra_per_second(model, structures: list, batch_size: int | None, repeats: int = 2) -> float:
    """Spectra per second over ``structures``: one call per structure (``batch_size`` None) or batched."""
    sites = [sorted(item) for item in model.predict_many(structures, batch_size=len(structures))]  # also the warm-up

    def once() -> int:
        if batch_size is None:
            out = [model.predict_site_spectra(s, w) for s, w in zip(structures, sites)]
        else:
            out = model.predict_many(structures, sites, batch_size=batch_size)
        if next(model.parameters()).is_cuda:
            torch.cuda.synchronize()
        return sum(len(chans) for item in out for chans in item.values())

    t0 = time.perf_counter()
    n = sum(once() for _ in range(repeats))
    return n / (time.perf_counter() - t0)


def split_structures(model_path: str, data: str | None = None) -> tuple[str, list]:
    """The dataset a model was trained on (or ``data``) and its test-split supercells."""
    from pymatgen.core import Structure

    from gnnspec.data.store import SpectraStore
    from gnnspec.models.factory import read_checkpoint

    ckpt = read_checkpoint(model_path)
    data = data or ckpt.get("trained", {}).get("train_config", {}).get("data") or ckpt.get("train_config", {}).get("data")
    store = SpectraStore(data)
    recs = [store.structure(sid) for sid in store.structure_ids()]
    return data, [Structure.from_dict(r["structure"]) for r in recs if r.get("split") == "test"]


def inference_throughput(model_path: str, structures: list, batch_size: int = 8) -> dict:
    """Spectra per second on every available device, one call per structure and batched."""
    from gnnspec.models.factory import load_checkpoint

    result = {"structures": len(structures), "atoms": int(sum(len(s) for s in structures)), "batch_size": batch_size, "devices": {}}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        m = load_checkpoint(model_path, device)
        per = _spectra_per_second(m, structures, None)
        batched = _spectra_per_second(m, structures, batch_size)
        result["devices"][device.type] = {
            "per_structure_spectra_per_s": per,
            "batched_spectra_per_s": batched,
            "batched_speedup": batched / per,
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
    _, structures = split_structures(args.model, args.data)
    result = inference_throughput(args.model, structures, args.batch_size)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
