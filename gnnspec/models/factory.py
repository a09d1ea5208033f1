"""Model factory and self-describing checkpoints.

``MODELS`` maps a config's ``name`` to its class; :func:`build_model` refuses unknown names
listing the valid ones. A checkpoint (``last.pt``/``best.pt``) is a plain dict of tensors,
str, int, float, bool, lists and dicts, readable with ``torch.load(weights_only=True)``:

==================  ==========================================================
``format``          ``"gnnspec.checkpoint"``
``format_version``  :data:`CHECKPOINT_VERSION`
``model_config``    the resolved :class:`ModelConfig` as a dict
``model``           the model's ``state_dict`` (the EMA weights when EMA is on)
``channels``        channel definitions (name, grid, normalisation) the model was trained on
==================  ==========================================================

Optional: ``structure_support`` (the trained elements and the structure-embedding support,
:mod:`gnnspec.models.structure_support`); :func:`load_checkpoint` attaches it to the model as
``structure_support_record`` and :func:`model_payload` writes it back, so it survives a re-save.
Optional: ``forward_ensemble`` (forward members, :mod:`gnnspec.models.forward_ensemble`), attached
as ``forward_members`` (their mean is what the model predicts) and ``forward_ensemble_record``.
:func:`load_checkpoint` also sets ``encoder_spectra_tier`` (:func:`encoder_spectra_tier`): the
tier whose forward-model spectra the encoder was aligned on, None for FEFF spectra; and
``encoder_simulator``: which forward model made them (``"ensemble"`` with a ``realignment`` entry,
:func:`gnnspec.models.environment_table.checkpoint_simulator`).
:func:`write_checkpoint_entry` adds or replaces one entry of a checkpoint file, leaving every
other entry as it was.

Training adds ``raw_model``, ``optimizer``, ``scheduler``, ``ema``, ``epoch``, ``step``,
``batch_in_epoch``, ``best_metric``, ``rng``, ``train_config`` (see :mod:`gnnspec.train.checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gnnspec.assets import DEFAULT_MODEL  # noqa: F401  (re-exported)
from gnnspec.channels import CHANNELS
from gnnspec.config import config_to_dict, from_dict
from gnnspec.errors import InputError
from gnnspec.models.config import ModelConfig
from gnnspec.models.environment_table import checkpoint_simulator
from gnnspec.models.forward_ensemble import ENTRY as FORWARD_ENSEMBLE
from gnnspec.models.forward_ensemble import LazyMembers, own_forward_record
from gnnspec.models.joint import JointModel
from gnnspec.models.structure_support import ENTRY as STRUCTURE_SUPPORT

MODELS: dict[str, type[nn.Module]] = {"joint": JointModel}

CHECKPOINT_FORMAT = "gnnspec.checkpoint"
CHECKPOINT_VERSION = 1


def build_model(cfg: ModelConfig | dict) -> nn.Module:
    """The model ``cfg`` describes (a :class:`ModelConfig` or its dict)."""
    if isinstance(cfg, dict):
        cfg = from_dict(ModelConfig, cfg, "model")
    if cfg.name not in MODELS:
        raise InputError(f"unknown model {cfg.name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[cfg.name](cfg)


def _generated(key: str) -> bool:
    """Whether a state-dict key lies in code that e3nn generates (``_compiled_main_*`` submodules)."""
    return any(part.startswith("_compiled_") for part in key.split("."))


def portable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The weights every checkpoint holds: on the CPU, without e3nn's generated code's constants.

    e3nn's tensor products keep code-generated submodules (``_compiled_main_left_right``) whose
    constants (Wigner 3j blocks, and ``_tensor_constant*`` added when the code is traced or
    compiled on a device) follow from the irreps alone. Leaving them out makes the keys the same
    whatever device, dtype or compile state the model trained in; :func:`load_portable_state_dict`
    takes them from the freshly built model.
    """
    return {k: v.detach().cpu() for k, v in module.state_dict().items() if not _generated(k)}


def load_portable_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` (portable, or older with generated keys) strictly into a freshly built ``module``."""
    own = module.state_dict()
    full = {k: v for k, v in state.items() if not _generated(k)}
    full.update({k: v for k, v in own.items() if _generated(k)})
    module.load_state_dict(full)


def model_payload(model: nn.Module) -> dict:
    """The self-describing part of a checkpoint: format, config, weights, channel definitions, and
    the model's structure-support record when it carries one."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_config": config_to_dict(model.cfg),
        "model": portable_state_dict(model),
        "channels": {c: CHANNELS[c].as_dict() for c in model.cfg.channels},
    }
    record = getattr(model, "structure_support_record", None)
    if record is not None:
        payload[STRUCTURE_SUPPORT] = record
    return payload


def write_checkpoint_entry(path: str | Path, name: str, value: Any) -> None:
    """Set entry ``name`` of the checkpoint at ``path`` to ``value`` (tensors and plain containers),
    every other entry unchanged; written to a temporary name and renamed (atomic)."""
    write_checkpoint_entries(path, {name: value})


def write_checkpoint_entries(path: str | Path, entries: dict[str, Any], remove: tuple[str, ...] = ()) -> None:
    """Set several entries of the checkpoint at ``path`` and drop those named in ``remove``, in
    one atomic write (a temporary file renamed), every other entry unchanged."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    ckpt.update(entries)
    for name in remove:
        ckpt.pop(name, None)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint dict (``weights_only=True``), checked for format and version."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such model file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise InputError(f"{path}: not a readable gnnspec checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a gnnspec checkpoint")
    if ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint format version {ckpt.get('format_version')} is not {CHECKPOINT_VERSION}")
    for name, ch in ckpt.get("channels", {}).items():
        if name not in CHANNELS or CHANNELS[name].as_dict() != ch:
            raise InputError(f"{path}: channel {name} was defined differently when this model was trained")
    return ckpt


def model_path(path: str | Path | None = None) -> Path:
    """The checkpoint ``path`` names, or the shipped default model when ``path`` is None."""
    if path:
        return Path(path)
    if not DEFAULT_MODEL.exists():
        raise InputError(f"no default model at {DEFAULT_MODEL}; train one (gnnspec train) and pass it with --model")
    return DEFAULT_MODEL


def load_model(path: str | Path | None = None, map_location: str | torch.device = "cpu", forward_ensemble: bool = True) -> nn.Module:
    """The model of :func:`model_path` (``path`` or the shipped default), in eval mode."""
    return load_checkpoint(model_path(path), map_location, forward_ensemble)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", forward_ensemble: bool = True) -> nn.Module:
    """Rebuild the model saved in ``path`` (no training config needed), in eval mode.

    ``forward_ensemble``: attach the checkpoint's forward members (:mod:`gnnspec.models.forward_ensemble`)
    as ``model.forward_members``, so its spectra are the member mean; False: the model's own forward
    side only (its trained heads and, where fitted, its own linear tier heads; no spread)."""
    ckpt = read_checkpoint(path, map_location)
    cfg = from_dict(ModelConfig, ckpt["model_config"], f"{path}: model_config")
    cfg.compile = False
    model = build_model(cfg)
    load_portable_state_dict(model, ckpt["model"])
    model.structure_support_record = ckpt.get(STRUCTURE_SUPPORT)
    model.encoder_spectra_tier = encoder_spectra_tier(ckpt)
    model.encoder_simulator = checkpoint_simulator(ckpt)
    model = model.to(map_location).eval()
    record = ckpt.get(FORWARD_ENSEMBLE)
    if record and not forward_ensemble:
        model.forward_ensemble_record = own_forward_record(record)
    elif record:
        model.forward_members = LazyMembers(model, record, str(path))  # built when a prediction needs them
        model.forward_ensemble_record = {k: v for k, v in record.items() if k != "members"} | {
            "members": [{k: v for k, v in m.items() if k != "weights"} for m in record["members"]]
        }
    return model


def trained_config(ckpt: dict) -> dict:
    """The training config a checkpoint records: ``trained.train_config`` of a released model,
    ``train_config`` of a run's checkpoint, else empty."""
    return (ckpt.get("trained") or {}).get("train_config") or ckpt.get("train_config") or {}


def encoder_spectra_tier(ckpt: dict) -> str | None:
    """The tier of forward-model environment spectra the checkpoint's encoder was aligned on
    (``align.spectra_tier`` of a run whose alignment stage ran), or None: the encoder learned
    the FEFF spectra of the dataset's base tier. Reads run checkpoints and exported ones."""
    trained = ckpt.get("trained") or ckpt
    if not trained.get("alignment"):
        return None
    return ((trained.get("train_config") or {}).get("align") or {}).get("spectra_tier")
