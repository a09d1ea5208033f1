"""Realignment: the encoder learns the spectra the model predicts, not those of its own trained head.

``gnnspec train`` aligns the spectrum encoder on the scf-tier spectra of the model's own trained
scf head (:mod:`gnnspec.train.align`): the forward ensemble and its linear tier heads
(:mod:`gnnspec.models.forward_ensemble`), which predict FEFF scf better
(``docs/2026-12-06-forward-ensemble.md``, ``docs/2026-12-06-linear-tier-heads.md``), are
attached only afterwards. Measured on the shipped model, a 30-epoch realignment trades content
accuracy for O-vacancy AUROC on FEFF's own spectra and was not applied to it
(``docs/2026-12-06-eleven-forward-models-and-realignment.md``). Realignment continues
the alignment stage of every encoder in the checkpoint (the model's own embedding side and each
member of its encoder ensemble, :mod:`gnnspec.train.ensemble`) for ``epochs`` epochs on the
environment spectra the model's prediction gives (``simulator="ensemble"`` of
:class:`gnnspec.models.environment_table.EnvironmentTable`), with the stage's own loss, schedule
and best-epoch choice on validation; then the encoder ensemble's spread is fitted again.

The tables are made once (one pass of every forward model over every training, generated and
validation structure) and serve all encoders. Each finished encoder is written into the
checkpoint entry ``realignment_progress``, so a stopped run resumes with the next encoder; the
last step writes the model's embedding side, the encoder ensemble and the ``realignment``
record in one atomic write. From then on the checkpoint says its encoder learned the ensemble's
spectra (:func:`gnnspec.models.environment_table.checkpoint_simulator`), and the calibration,
the support references and the benchmarks feed it those. The entries fitted on the old
embeddings (the property-head ensemble and the training support of ``gnnspec calibrate``) are
dropped: run ``gnnspec calibrate`` again. The backbone and the forward heads are not touched.
"""

from __future__ import annotations

import copy
from pathlib import Path

from gnnspec.errors import InputError

PROGRESS = "realignment_progress"
#: Entries fitted on the old embeddings, dropped by a realignment (``gnnspec calibrate`` refits them),
#: with the files older models kept them in (:mod:`gnnspec.analysis.attached`, a layer above this one).
STALE = ("uncertainty_ensemble", "training_support")
STALE_SIDECARS = (".uncertainty.npz", ".support.npz")


def _encoders(model, ckpt: dict) -> list[tuple[str, int, dict | None]]:
    """``(name, seed, embedding side or None for the model's own)`` of every encoder to realign."""
    from gnnspec.train.ensemble import ENTRY

    out: list[tuple[str, int, dict | None]] = [("own", 0, None)]
    record = ckpt.get(ENTRY) or {}
    for i, (member, seed) in enumerate(zip(record.get("members", []), record.get("seeds", []))):
        if i > 0:  # member 0 is the model's own embedding side
            out.append((f"encoder member {i}", int(seed), member))
    return out


def realign(
    model_path: str | Path, epochs: int, data: str | None = None, log=print, lr: float | None = None, from_scratch: bool = False
) -> dict:
    """Realign every encoder of the checkpoint at ``model_path`` on its forward ensemble's spectra
    (module docstring); resumable. ``lr``: the peak learning rate (default: the alignment's own);
    ``from_scratch``: re-initialise each encoder's embedding side from its seed first, as
    ``gnnspec train`` and ``gnnspec ensemble`` start the stage, instead of continuing from its
    trained weights. Returns the ``realignment`` record."""
    from gnnspec.data.store import SpectraStore
    from gnnspec.models.environment_table import REALIGNMENT
    from gnnspec.models.factory import (
        load_checkpoint,
        read_checkpoint,
        write_checkpoint_entries,
        write_checkpoint_entry,
    )
    from gnnspec.models.forward_ensemble import member_count
    from gnnspec.models.linear_tier_heads import head_count
    from gnnspec.train.align import (
        align_embeddings,
        alignment_tables,
        recorded_alignment,
        recorded_alignment_data,
        score,
        selection_score,
    )
    from gnnspec.train.ensemble import ENTRY, embedding_side, fit_spread, reinitialise, with_member

    if epochs < 1:
        raise InputError(f"the realignment needs at least 1 epoch, got {epochs}")
    ckpt = read_checkpoint(model_path)
    if not (ckpt.get("trained") or {}).get("alignment"):
        raise InputError(f"{model_path}: the checkpoint records no alignment stage to continue (trained.alignment)")
    trained, align, augment = recorded_alignment(ckpt, str(model_path))
    if align.spectra_tier is None:
        raise InputError(f"{model_path}: its encoder learned FEFF's base-tier spectra, not a forward model's: nothing to realign")
    model = load_checkpoint(model_path)
    model.cfg.tier_index(align.spectra_tier)  # a ValueError naming the tiers when the model lacks it
    linear = head_count(model, align.spectra_tier)
    if member_count(model) < 2 and not linear:
        raise InputError(
            f"{model_path}: no forward ensemble or linear {align.spectra_tier} heads: the model predicts with its own head, "
            "which its encoder already learned (attach some with gnnspec ensemble --forward-from / --linear-heads)"
        )
    if lr is not None and not lr > 0:
        raise InputError(f"the learning rate must be > 0, got {lr}")
    align.epochs, align.lr = int(epochs), float(lr or align.lr)
    data = data or trained.get("data")
    if not data or not Path(data).exists():
        raise InputError(f"{model_path}: its training dataset {data!r} is not here (pass --data)")
    splits, pool = recorded_alignment_data(model, trained, align, data, str(model_path))
    fingerprint = SpectraStore(data).fingerprint()
    progress = ckpt.get(PROGRESS) or {}
    settings = {"epochs": align.epochs, "lr": align.lr, "from_scratch": bool(from_scratch), "data_sha256": fingerprint}
    if progress and any(progress.get(k) != v for k, v in settings.items()):
        log(f"{model_path}: an unfinished realignment with other epochs, learning rate or data is discarded")
        progress = {}
    progress = progress or {**settings, "done": {}}
    log(f"environment spectra of the forward ensemble ({member_count(model)} forward models, {linear} linear heads), tier {align.spectra_tier} ...")
    tables = alignment_tables(model, splits, align, pool, simulator="ensemble")
    train, val = tables
    if val is None or not len(val.with_spectra):
        raise InputError(f"{data}: no validation environments to choose the realigned encoders' epochs on")
    for name, seed, member in _encoders(model, ckpt):
        if name in progress["done"]:
            continue
        m = copy.deepcopy(model) if member is None else with_member(model, member)
        before = score(m, val, [train, val], align.content_tol)
        if from_scratch:
            reinitialise(m, seed)
        start = "fresh weights from its seed" if from_scratch else "its trained weights"
        log(f"{name}: {align.epochs} alignment epochs from {start} (validation hit@1 of the trained encoder {selection_score(before):.3f}) ...")
        report = align_embeddings(m, splits, align, augment, seed=seed, generated=pool, tables=tables)
        progress["done"][name] = {
            "weights": embedding_side(m),
            "seed": seed,
            "val_before": before,
            "val_after": report["val"],
            "best_epoch": report["best_epoch"],
        }
        log(f"{name}: validation hit@1 {selection_score(before):.3f} -> {selection_score(report['val']):.3f} (epoch {report['best_epoch']})")
        write_checkpoint_entry(model_path, PROGRESS, progress)
    done = progress["done"]
    state = {k: v.detach().cpu() for k, v in ckpt["model"].items()}
    state.update(done["own"]["weights"])
    entries = {"model": state}
    model.load_state_dict({**model.state_dict(), **{k: v.to(next(model.parameters()).dtype) for k, v in done["own"]["weights"].items()}})
    if ckpt.get(ENTRY):
        ensemble = dict(ckpt[ENTRY])
        ensemble["members"] = [done["own"]["weights"]] + [done[name]["weights"] for name, _, _ in _encoders(model, ckpt)[1:]]
        entries[ENTRY] = fit_spread(model, ensemble, val)
    record = {
        "simulator": "forward ensemble: the mean of the model's forward models and their linear tier heads (gnnspec predict)",
        "tier": align.spectra_tier,
        "forward_models": member_count(model),
        "linear_heads": linear,
        "forward_sources": [m.get("source", "?") for m in (model.forward_ensemble_record or {}).get("members", [])],
        "epochs": align.epochs,
        "lr": align.lr,
        "from_scratch": bool(from_scratch),
        "data": str(data),
        "data_sha256": fingerprint,
        "environments": int(len(train.with_spectra)),
        "encoders": {name: {k: v for k, v in d.items() if k != "weights"} for name, d in done.items()},
    }
    entries[REALIGNMENT] = record
    write_checkpoint_entries(model_path, entries, remove=(PROGRESS, *STALE))
    for suffix in STALE_SIDECARS:
        Path(model_path).with_name(Path(model_path).stem + suffix).unlink(missing_ok=True)
    return record


def summary_lines(record: dict) -> list[str]:
    """Printable lines of a ``realignment`` record."""
    from gnnspec.train.align import selection_score

    lines = [
        f"encoders realigned on the {record['tier']} spectra of {record['forward_models']} forward models "
        f"and {record['linear_heads']} linear heads, {record['epochs']} epochs (peak learning rate {record['lr']:g}"
        f"{', from fresh weights' if record.get('from_scratch') else ''}), {record['environments']} environments"
    ]
    for name, d in record["encoders"].items():
        lines.append(f"  {name}: validation hit@1 {selection_score(d['val_before']):.3f} -> {selection_score(d['val_after']):.3f}")
    return lines
