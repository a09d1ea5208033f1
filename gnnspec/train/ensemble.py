"""An ensemble of independently trained spectrum encoders: an uncertainty that varies the embedding.

A bootstrap of property heads on fixed embeddings (``gnnspec calibrate``) cannot see how much an
answer would change with another training run of the encoder that makes the embedding. Here
each member is the model's embedding side (:data:`gnnspec.train.align.TRAINED`: the structure
projection, the spectrum encoder and the property heads) re-initialised from its own seed and
trained by the alignment stage (:func:`gnnspec.train.align.align_embeddings`) on the frozen
backbone and forward head; member 0 is the model's own embedding side. A query's answer is the
member mean; its spread is ``k`` times the member standard deviation, with ``k`` fitted on the
validation environments so that a held-out member falls within the spread of the others for 68 %
of the outputs (leave one member out, one ``k`` for the element content and one for the defect
probabilities). What the spread does not cover: errors every member shares (the same FEFF tier,
the same training structures), stated in the record.

Stored inside the checkpoint as ``encoder_ensemble`` (members' weights of the embedding side,
seeds, ``k``, the unscaled coverage), so a copied model file keeps it. ``gnnspec ensemble`` builds
it member by member and resumes where it stopped.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnspec.train.align import TRAINED, align_embeddings

ENTRY = "encoder_ensemble"
COVERAGE = 0.68
NOT_COVERED = "errors all members share (the FEFF tier and the training structures they all learned from)"


def embedding_side(model) -> dict[str, torch.Tensor]:
    """The weights of the model's embedding side (what a member replaces)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.split(".")[0] in TRAINED}


def with_member(model, member: dict[str, torch.Tensor]):
    """A copy of ``model`` with a member's embedding side."""
    m = copy.deepcopy(model)
    state = m.state_dict()
    state.update({k: v.to(state[k].device, state[k].dtype) for k, v in member.items()})
    m.load_state_dict(state)
    return m.eval()


def reinitialise(model, seed: int) -> None:
    """Fresh weights for the embedding side, from ``seed`` (torch's global generator left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for part in TRAINED:
            for module in getattr(model, part).modules():
                if module is not getattr(model, part) and hasattr(module, "reset_parameters"):
                    module.reset_parameters()


def train_member(model, splits: dict, align_cfg, augment, seed: int, generated=None) -> dict[str, torch.Tensor]:
    """One member: the embedding side re-initialised from ``seed`` and aligned (with the generated
    structures when ``align_cfg.generated``); the model is not changed."""
    m = copy.deepcopy(model)
    reinitialise(m, seed)
    align_embeddings(m, splits, align_cfg, augment, seed=seed, generated=generated)
    return embedding_side(m)


@torch.no_grad()
def member_predictions(
    model, members: list[dict], x: torch.Tensor, mask: torch.Tensor, quant: torch.Tensor | None = None, coverage: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Content ``[M, n, 5]`` and defect probabilities ``[M, n, 2]`` of every member for spectra ``x [n, C, K]``
    (``coverage [n, C, K]``: the measured energies, for encoders that read it)."""
    contents, defects = [], []
    for member in members:
        m = with_member(model, member)
        content, defect = m.property_answers(m.encode_spectra(x, mask, quant, coverage))
        contents.append(content)
        defects.append(defect)
    return np.stack(contents), np.stack(defects)


def spread_factor(values: np.ndarray, coverage: float = COVERAGE) -> tuple[float, float]:
    """``k`` such that a left-out member lies within ``k`` x the others' standard deviation of their
    mean for ``coverage`` of the outputs; and the coverage with ``k = 1``. ``values [M, ...]``, M >= 3."""
    m = values.shape[0]
    if m < 3:
        raise ValueError("the spread needs at least 3 members to be calibrated")
    ratios = []
    for i in range(m):
        others = np.delete(values, i, axis=0)
        ratios.append(np.abs(values[i] - others.mean(0)) / np.maximum(others.std(0, ddof=1), 1e-9))
    ratios = np.concatenate([r.reshape(-1) for r in ratios])
    return float(np.quantile(ratios, coverage)), float(np.mean(ratios <= 1.0))


def ensemble_answer(
    model, record: dict, x: torch.Tensor, mask: torch.Tensor, quant: torch.Tensor | None = None, coverage: torch.Tensor | None = None
) -> dict:
    """The ensemble's answer for one spectra set (``x [1, C, K]``): member mean and calibrated spread."""
    contents, defects = member_predictions(model, record["members"], x, mask, quant, coverage)
    kc, kd = record.get("k_content"), record.get("k_defects")
    return {
        "members": len(record["members"]),
        "element_content": {el: float(v) for el, v in zip(model.cfg.content_elements, contents.mean(0)[0])},
        "defects": {d: float(v) for d, v in zip(model.cfg.defects, defects.mean(0)[0])},
        "element_content_spread": {el: float(v) for el, v in zip(model.cfg.content_elements, (kc or 1.0) * contents.std(0, ddof=1)[0])},
        "defects_spread": {d: float(v) for d, v in zip(model.cfg.defects, (kd or 1.0) * defects.std(0, ddof=1)[0])},
        "member_defects": [{d: float(v) for d, v in zip(model.cfg.defects, row[0])} for row in defects],
        "spread": f"k x member standard deviation, k = {kc:.2f} (content) and {kd:.2f} (defects), fitted so a held-out member falls inside for {COVERAGE:.0%} of validation outputs"
        if kc and kd
        else "member standard deviation (not calibrated)",
        "not_covered": NOT_COVERED,
    }


def build_ensemble(model, model_path: str | Path, splits: dict, align_cfg, augment, members: int, log=print, generated=None) -> dict:
    """Train the missing members of the checkpoint's ensemble (resumable: each member is written into
    the checkpoint as it finishes), then fit ``k`` on the validation split; returns the record.
    ``generated``: the training run's generated pool, for an alignment with ``align_cfg.generated``."""
    from gnnspec.models.environment_table import EnvironmentTable
    from gnnspec.models.factory import read_checkpoint, write_checkpoint_entry

    if members < 3:
        raise ValueError("an encoder ensemble needs at least 3 members")
    record: dict[str, Any] = read_checkpoint(model_path).get(ENTRY) or {"members": [embedding_side(model)], "seeds": [None]}
    while len(record["members"]) < members:
        seed = 1000 + len(record["members"])
        log(f"member {len(record['members'])}: alignment stage from seed {seed} ...")
        record["members"].append(train_member(model, splits, align_cfg, augment, seed, generated))
        record["seeds"].append(seed)
        record.pop("k_content", None), record.pop("k_defects", None)
        write_checkpoint_entry(model_path, ENTRY, record)
    tier = align_cfg.spectra_tier
    val = EnvironmentTable(model, splits["val"], spectra_tier=None if tier is None else model.cfg.tier_index(tier))
    record["members"], record["seeds"] = record["members"][:members], record["seeds"][:members]
    fit_spread(model, record, val)
    write_checkpoint_entry(model_path, ENTRY, record)
    return record


def fit_spread(model, record: dict, val) -> dict:
    """Fit the record's spread factors ``k`` (and the coverage figures) on the environments of the
    validation table ``val`` (an :class:`~gnnspec.models.environment_table.EnvironmentTable`); in place."""
    rows = val.with_spectra
    contents, defects = member_predictions(model, record["members"], val.x[rows], val.mask[rows])
    record["k_content"], record["coverage_content_unscaled"] = spread_factor(contents)
    record["k_defects"], record["coverage_defects_unscaled"] = spread_factor(defects)
    truth_c = val.content[rows].cpu().numpy()
    record["truth_inside_content"] = float(np.mean(np.abs(contents.mean(0) - truth_c) <= record["k_content"] * contents.std(0, ddof=1)))
    record["mean_spread_defects"] = float((record["k_defects"] * defects.std(0, ddof=1)).mean())
    return record
