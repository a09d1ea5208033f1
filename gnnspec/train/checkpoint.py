"""Training checkpoints (``last.pt``, ``best.pt``): the model payload plus the training state.

On top of :func:`gnnspec.models.factory.model_payload` (format, version, model config, weights,
channel definitions) a training checkpoint stores ``raw_model`` (training weights when ``model``
holds the EMA weights), ``ema_n_averaged``, ``optimizer``, ``scheduler``, ``epoch``, ``step``,
``batch_in_epoch`` (batches of ``epoch`` already done), ``best_metric``, ``rng`` (one entry per
process: torch CPU and CUDA generator states), ``train_config`` (dict) and, when training passes it,
``structure_support`` (the elements of the training structures,
:func:`gnnspec.models.structure_support.element_record`). Only tensors and plain containers, str,
int, float, bool and None: every file loads with ``torch.load(weights_only=True)``. Files are
written to a temporary name and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gnnspec.models.factory import load_portable_state_dict, model_payload, portable_state_dict, read_checkpoint


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    ema=None,
    *,
    epoch: int,
    step: int,
    batch_in_epoch: int,
    best_metric: float | None,
    train_config: dict,
    rng: list[dict] | None = None,
    structure_support: dict | None = None,
) -> None:
    """Write a self-describing training checkpoint to ``path`` atomically.

    ``structure_support``: the structure-support record to store (replaces one the model carries)."""
    payload = model_payload(ema.module if ema is not None else model)
    if structure_support is not None:
        payload["structure_support"] = structure_support
    if ema is not None:
        payload["raw_model"] = portable_state_dict(model)
        payload["ema_n_averaged"] = ema.n_averaged.detach().cpu()
    payload.update(
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        epoch=int(epoch),
        step=int(step),
        batch_in_epoch=int(batch_in_epoch),
        best_metric=None if best_metric is None else float(best_metric),
        rng=rng if rng is not None else [rng_state()],
        train_config=train_config,
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def restore_training(path: str | Path, model, optimizer, scheduler, ema=None, rank: int = 0) -> dict:
    """Load weights, optimizer, scheduler, EMA and this process's RNG state; return the counters."""
    ckpt = read_checkpoint(path, "cpu")
    load_portable_state_dict(model, ckpt["raw_model"] if "raw_model" in ckpt else ckpt["model"])
    if ema is not None:
        load_portable_state_dict(ema.module, ckpt["model"])
        if "ema_n_averaged" in ckpt:
            ema.n_averaged.copy_(ckpt["ema_n_averaged"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    states = ckpt["rng"]
    set_rng_state(states[rank] if rank < len(states) else states[0])
    return {k: ckpt[k] for k in ("epoch", "step", "batch_in_epoch", "best_metric")}


#: What a training checkpoint holds only to resume training; a released model drops it.
RESUME_ONLY = ("raw_model", "ema_n_averaged", "optimizer", "scheduler", "batch_in_epoch", "rng")
#: What describes how a released model was trained; it moves under ``trained``.
TRAINING_RECORD = ("train_config", "epoch", "step", "best_metric", "alignment")


def release_checkpoint(src: str | Path, dst: str | Path) -> dict:
    """Write the model of the training checkpoint ``src`` as a released one at ``dst``: the model
    payload and every attached entry (structure support, ensembles, training support) kept, the
    training record under ``trained`` (config, epoch, step, best metric, alignment report), the
    resume-only state dropped. ``gnnspec ensemble`` and ``gnnspec calibrate`` then work on ``dst``;
    :func:`gnnspec.models.factory.load_checkpoint` reads both forms. Returns the released dict."""
    ckpt = read_checkpoint(src)
    if "trained" in ckpt:
        released = dict(ckpt)
    else:
        if "train_config" not in ckpt:
            from gnnspec.errors import InputError

            raise InputError(f"{src}: no train_config; not a training checkpoint")
        released = {k: v for k, v in ckpt.items() if k not in RESUME_ONLY + TRAINING_RECORD}
        released["trained"] = {k: ckpt[k] for k in TRAINING_RECORD if k in ckpt}
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(released, tmp)
    os.replace(tmp, dst)
    return released
