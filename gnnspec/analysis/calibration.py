"""Fitting and applying the uncertainty ensemble of a model (see :mod:`gnnspec.analysis.uncertainty`).

The ensemble and the training support (:mod:`gnnspec.analysis.support`) are checkpoint entries
(:mod:`gnnspec.analysis.attached`; older models keep them in files beside the checkpoint);
``infer_with_uncertainty`` uses them when present and falls back to the model's own heads (no
spread) otherwise.

The structure-side support (:mod:`gnnspec.models.structure_support`) lives inside the checkpoint
itself: :func:`calibrate_structure_support` fits its embedding part on the training and
validation splits and adds the entry to the checkpoint file, every other entry unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnspec.analysis.attached import ENSEMBLE, SUPPORT, read_arrays, write_arrays
from gnnspec.analysis.reconstruction import ReconstructionSupport
from gnnspec.analysis.support import QUANTIFIED_INPUTS, ChannelSupport, TrainingSupport
from gnnspec.analysis.uncertainty import PropertyEnsemble, calibrate, fit_ensemble
from gnnspec.structures.environments import DEFECTS


def split_table(model: Any, data: str, split: str, features: bool = False, need_spectra: bool = True):
    """The :class:`~gnnspec.models.environment_table.EnvironmentTable` of ``split`` (``features``:
    with the backbone features the structure embeddings come from); an InputError when the split
    is empty or (``need_spectra``) has no environment with spectra.

    Its spectra are those the model's encoder learned from: the forward model's in the tier of
    ``model.encoder_spectra_tier`` when the encoder was aligned on them (so the calibration, the
    support references and the ensemble see what the encoder saw), else the FEFF base tier."""
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.errors import InputError
    from gnnspec.models.environment_table import EnvironmentTable, encoder_learned_tier

    ds = LMDBStructureDataset(data, split, cutoff=model.cfg.backbone.cutoff, channels=model.cfg.channels)
    if not len(ds):
        raise InputError(f"{data}: the {split} split has no structures")
    tier = encoder_learned_tier(model)
    table = EnvironmentTable(model, ds, features=features, spectra_tier=None if tier is None else model.cfg.tier_index(tier))
    if need_spectra and table.with_spectra.numel() == 0:
        raise InputError(f"{data}: the {split} split has no environments with spectra")
    return table


def training_data(model_path: str | Path) -> str:
    """The dataset the checkpoint says it was trained on (``trained.train_config.data`` or
    ``train_config.data``), else the shipped dataset."""
    from gnnspec.models.factory import read_checkpoint, trained_config

    return trained_config(read_checkpoint(model_path)).get("data") or "datasets/nmc_feff10_fast"


@torch.no_grad()
def structure_support_entry(
    model: Any, train, val, data: str, max_references: int | None = None, seed: int = 0
) -> dict:
    """The checkpoint's structure-support entry with its embedding part fitted on the training and
    validation :class:`~gnnspec.models.environment_table.EnvironmentTable` ``train``/``val`` (built
    with features). The trained elements are kept from the model's record when it has one, else
    taken from the training split (the generated structures some runs add are NMC too)."""
    from gnnspec.models import structure_support as ss

    e_tr = train.structure_embeddings(model).double().cpu().numpy()
    e_va = val.structure_embeddings(model).double().cpu().numpy()
    record = dict(getattr(model, "structure_support_record", None) or {})
    if not record.get("elements"):
        from ase.data import chemical_symbols

        zs = sorted(set(train.centre_z.cpu().tolist()))  # every atom centres one environment
        record = {"version": ss.VERSION, "elements": [chemical_symbols[z] for z in zs], "elements_source": f"training split of {data}"}
    record["embedding"] = ss.fit_embedding(model, e_tr, e_va, max_references or ss.MAX_REFERENCES, seed, data)
    return record


def calibrate_structure_support(model: Any, model_path: str | Path, data: str | None = None, max_references: int | None = None) -> dict:
    """Fit the structure support on ``data``'s train and val splits (default: the model's training
    data), add it to the checkpoint at ``model_path`` (nothing else changes) and to ``model``;
    returns the report block."""
    data = data or training_data(model_path)
    train = split_table(model, data, "train", features=True, need_spectra=False)
    val = split_table(model, data, "val", features=True, need_spectra=False)
    return _save_structure_support(model, model_path, structure_support_entry(model, train, val, data, max_references))


def _save_structure_support(model: Any, model_path: str | Path, entry: dict) -> dict:
    """Add ``entry`` to the checkpoint file and the model; the report block of :func:`calibrate_model`."""
    from gnnspec.models.factory import write_checkpoint_entry
    from gnnspec.models.structure_support import ENTRY

    write_checkpoint_entry(model_path, ENTRY, entry)
    model.structure_support_record = entry
    emb = entry["embedding"]
    return {
        "stored_in": Path(model_path).name,
        "trained_elements": entry["elements"],
        "elements_source": entry["elements_source"],
        "training_environments": emb["n_training_environments"],
        "training_environments_kept": int(emb["train"].shape[0]),
        "validation_environments": emb["n_validation_environments"],
        "validation_nearest_cosine": dict(zip(("p01", "p05", "p50"), emb["val_quantiles"])),
    }


@torch.no_grad()
def table_embeddings(model: Any, table, quantified: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectrum embeddings, content and defect labels of every environment with spectra in ``table``
    (``quantified``: embedded with each environment's exact elemental quantification)."""
    rows = table.with_spectra
    emb = table.spectrum_embeddings(model, rows, quantified=quantified)
    return emb.double().cpu().numpy(), table.content[rows].double().cpu().numpy(), table.defects[rows].double().cpu().numpy()


def spectrum_embeddings_of_split(
    model: Any, data: str, split: str, quantified: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`table_embeddings` of :func:`split_table`."""
    return table_embeddings(model, split_table(model, data, split), quantified)


def table_channel_spectra(model: Any, table) -> dict[str, np.ndarray]:
    """``{channel: [n, K]}`` environment spectra of ``table`` (:func:`split_table`), per channel of the model."""
    x, mask = table.x.double().cpu().numpy(), table.mask.cpu().numpy()
    return {name: x[mask[:, c], c] for c, name in enumerate(model.cfg.channels) if mask[:, c].any()}


def calibrate_model(model: Any, model_path: Path, data: str | None = None, members: int = 5, out: str | None = None) -> dict:
    """Fit the ensemble on train, calibrate on val, save both files, add the structure support
    to the checkpoint (:func:`calibrate_structure_support`); returns the report. ``data``: default
    the dataset the model was trained on.

    For a model that reads an elemental quantification, the ensemble is fitted and calibrated on
    the embeddings of every environment both without and with its exact quantification (the two
    ways a user may query), and the training support is kept for both inputs.
    """
    data = data or training_data(model_path)
    # each split tabulated once, with the backbone features of the structure support
    train, val = split_table(model, data, "train", features=True), split_table(model, data, "val", features=True)
    e_tr, c_tr, d_tr = table_embeddings(model, train)
    e_va, _, d_va = table_embeddings(model, val)
    quantified = bool(getattr(model, "takes_quantification", False))
    fit_sets = [(e_tr, c_tr, d_tr, e_va, d_va)]
    quantified_support = None
    if quantified:
        q_tr, _, _ = table_embeddings(model, train, quantified=True)
        q_va, _, _ = table_embeddings(model, val, quantified=True)
        fit_sets.append((q_tr, c_tr, d_tr, q_va, d_va))
        quantified_support = TrainingSupport.fit(q_tr, q_va, QUANTIFIED_INPUTS)
    ens = fit_ensemble(*(np.concatenate([f[i] for f in fit_sets]) for i in range(3)), members=members)
    per_defect = calibrate(ens, np.concatenate([f[3] for f in fit_sets]), np.concatenate([f[4] for f in fit_sets]))
    write_arrays(model_path, ENSEMBLE, ens.arrays())
    support = TrainingSupport.fit(e_tr, e_va)
    channels = ChannelSupport.fit(table_channel_spectra(model, train), table_channel_spectra(model, val))
    rows = {"train": train.with_spectra, "val": val.with_spectra}
    reconstruction = ReconstructionSupport.fit(
        (e_tr, train.x[rows["train"]].double().cpu().numpy(), train.mask[rows["train"]].cpu().numpy()),
        (e_va, val.x[rows["val"]].double().cpu().numpy(), val.mask[rows["val"]].cpu().numpy()),
        model.cfg.channels,
    )
    write_arrays(model_path, SUPPORT, {**support.arrays(quantified_support, channels), **reconstruction.arrays()})
    structure = _save_structure_support(model, model_path, structure_support_entry(model, train, val, data))
    report = {
        "model": Path(model_path).name,
        "data": data,
        "members": members,
        "method": "bootstrap ensemble of linear heads on spectrum embeddings; temperature scaling on validation",
        "inputs": "spectra alone and with the exact elemental quantification" if quantified else "spectra alone",
        "defects": {DEFECTS[j]: r for j, r in per_defect.items()},
        "ensemble": f"checkpoint entry {ENSEMBLE.entry}",
        "support": {
            "stored": f"checkpoint entry {SUPPORT.entry}",
            "training_environments": int(len(e_tr)),
            "validation_nearest_cosine": dict(zip(("p01", "p05", "p50"), map(float, support.val_quantiles))),
            "channels_validation_p01_correlation": {name: float(q[0]) for name, q in channels.val_quantiles.items()},
            **(
                {"quantified_validation_nearest_cosine": dict(zip(("p01", "p05", "p50"), map(float, quantified_support.val_quantiles)))}
                if quantified_support is not None
                else {}
            ),
        },
        "structure_support": structure,
    }
    report_file = Path(out) if out else Path(model_path).with_name(Path(model_path).stem + ".calibration.json")
    report["report_file"] = report_file.name
    report_file.write_text(json.dumps(report, indent=1))
    return {**report, "report_file": str(report_file)}


def refit_channel_support(model: Any, model_path: str | Path, data: str | None = None) -> ChannelSupport:
    """Refit only the spectrum-space part of the model's training support (same seed, so the same
    references and quantiles, now with the validation spectra kept); every other array is kept as it was."""
    data = data or training_data(model_path)
    train, val = split_table(model, data, "train"), split_table(model, data, "val")
    channels = ChannelSupport.fit(table_channel_spectra(model, train), table_channel_spectra(model, val))
    old = read_arrays(model_path, SUPPORT)
    if old is None:
        from gnnspec.errors import InputError

        raise InputError(f"{model_path}: the model has no training support to refit; run gnnspec calibrate")
    kept = {k: v for k, v in old.items() if not k.startswith("channel_")}
    write_arrays(model_path, SUPPORT, {**kept, **channels.arrays()})
    return channels


def encoder_ensemble_answer(
    model: Any,
    model_path: str | Path,
    spectra: dict[str, np.ndarray],
    quantification: dict[str, float] | None,
    coverage: dict[str, np.ndarray] | None = None,
) -> dict | None:
    """The checkpoint's encoder ensemble on one spectra set (:mod:`gnnspec.train.ensemble`), or None without one."""
    from gnnspec.models.factory import read_checkpoint
    from gnnspec.train.ensemble import ENTRY, ensemble_answer

    record = read_checkpoint(model_path).get(ENTRY)
    if not record or "k_content" not in record:
        return None
    x, mask = model.spectra_tensor(spectra)
    return ensemble_answer(model, record, x, mask, model.quantification_tensor(quantification, spectra), model.coverage_tensor(spectra, coverage))


def spectra_support(
    model: Any,
    model_path: str | Path,
    spectra: dict[str, np.ndarray],
    quantification: dict[str, float] | None = None,
    resolution: dict[str, float] | None = None,
    embedding: np.ndarray | None = None,
    coverage: dict[str, np.ndarray] | None = None,
    thickness: dict[str, float] | None = None,
) -> dict | None:
    """Whether ``spectra`` (``{channel: intensity on its grid}``) lie where the model was trained, or
    ``None`` when the checkpoint carries no training support (run ``gnnspec calibrate``).

    Both checks of :mod:`gnnspec.analysis.support`: the spectrum embedding's nearest training
    cosine (``embedding_in_distribution``) and, per channel (``channels``), the nearest training
    spectrum of that channel, compared at the measurement's ``resolution`` (``{channel: FWHM eV}``).
    A support calibrated since the reconstruction check also holds ``reconstruction``: per channel,
    whether the training environments nearest to the query in the embedding space have spectra
    like it (:mod:`gnnspec.analysis.reconstruction`, at the same resolution, thickness and noise).
    ``in_distribution`` is true only when every check passes; ``why`` names the foreign channels.
    ``embedding``: the query's ``[1, dim]`` embedding, when the caller has it already. ``coverage``:
    ``{channel: bool [K]}``, the grid energies a partial window measured (:func:`gnnspec.spectra.grid_coverage`;
    default: from ``spectra``'s own energies): each channel is compared on those. ``thickness``:
    ``{channel: t/lambda}`` of EELS channels whose plural scattering is in the spectrum; the
    validation spectra are measured alike, and with the query's own noise level
    (:meth:`gnnspec.analysis.support.ChannelSupport.check`)."""
    support_arrays = read_arrays(model_path, SUPPORT)
    if support_arrays is None:
        return None
    if embedding is None:
        embedding = model.embed_spectra(spectra, quantification, coverage)[None, :]
    support = TrainingSupport.from_arrays(support_arrays, quantified=quantification is not None, source=str(model_path))
    verdict = support.check(embedding)
    channel_support = ChannelSupport.from_arrays(support_arrays)
    if channel_support is None:
        return verdict
    x, _ = model.spectra_tensor(spectra)  # every channel mapped and normalised in one call
    covered = model.measured_coverage(spectra, coverage)  # a partial window is compared on the energies it measured
    resolution = resolution or {}
    per_channel = {}
    for name in spectra:
        row = x[0, model.cfg.channels.index(name)].cpu().numpy()
        per_channel.update(channel_support.check({name: row}, fwhm_ev=resolution.get(name), coverage=covered, thickness=(thickness or {}).get(name)))
    foreign = [name for name, c in per_channel.items() if not c["in_distribution"]]
    verdict["embedding_in_distribution"] = verdict["in_distribution"]
    verdict["channels"] = per_channel
    verdict["in_distribution"] = verdict["in_distribution"] and not foreign
    reconstruction = ReconstructionSupport.from_arrays(support_arrays, model.cfg.channels)
    unlike: list[str] = []
    if reconstruction is not None:  # the training environments the encoder places it among: do they look like it?
        alone = embedding if quantification is None else model.embed_spectra(spectra, None, coverage)[None, :]
        rows = {name: x[0, model.cfg.channels.index(name)].cpu().numpy() for name in spectra}
        verdict["reconstruction"] = reconstruction.check(alone, rows, resolution, thickness, covered)
        unlike = [name for name, c in verdict["reconstruction"].items() if not c["in_distribution"]]
        verdict["in_distribution"] = verdict["in_distribution"] and not unlike
    if foreign:
        noisy = [name for name in foreign if "why" in per_channel[name]]
        far = [name for name in foreign if name not in noisy]
        reasons = [f"{name}: {per_channel[name]['why']}" for name in noisy]
        if far:
            reasons.insert(
                0,
                f"{', '.join(far)}: the spectrum's shape is further from every training spectrum of its channel "
                "than twice the distance of 99 % of held-out simulated spectra measured like it",
            )
        verdict["why"] = "; ".join(reasons)
    if unlike:
        reason = (
            f"{', '.join(unlike)}: the training environments nearest to it in the embedding space have spectra further "
            "from it than twice the distance held-out simulated spectra have from theirs (reconstruction check)"
        )
        verdict["why"] = f"{verdict['why']}; {reason}" if verdict.get("why") else reason
    return verdict


def infer_with_uncertainty(
    model: Any,
    model_path: str | Path,
    spectra: dict[str, np.ndarray],
    quantification: dict[str, float] | None = None,
    resolution: dict[str, float] | None = None,
    coverage: dict[str, np.ndarray] | None = None,
    thickness: dict[str, float] | None = None,
) -> dict:
    """``model.infer`` plus ``uncertainty`` (ensemble standard deviations), calibrated defect
    probabilities and ``support`` (:mod:`gnnspec.analysis.support`), from what the checkpoint carries
(:mod:`gnnspec.analysis.attached`).

    ``quantification``: optional elemental quantification (``model.infer``). ``resolution``:
    ``{channel: FWHM eV}`` of the measurement, at which the spectrum-space support compares it.
    ``coverage``: ``{channel: bool [K]}``, the grid energies each channel measured (``model.infer``)."""
    result = model.infer(spectra, quantification, coverage)
    emb = model.embed_spectra(spectra, quantification, coverage)[None, :]
    support = spectra_support(model, model_path, spectra, quantification, resolution, embedding=emb, coverage=coverage, thickness=thickness)
    if support is not None:
        result["support"] = support
    result["encoder_ensemble"] = encoder_ensemble_answer(model, model_path, spectra, quantification, coverage)
    ens_arrays = read_arrays(model_path, ENSEMBLE)
    if ens_arrays is None:
        result["uncertainty"] = None
        return result
    ens = PropertyEnsemble.from_arrays(ens_arrays)
    pred = ens.predict(emb)
    result["element_content"] = {el: float(v) for el, v in zip(model.cfg.content_elements, pred["content"][0])}
    result["defects"] = {d: float(v) for d, v in zip(model.cfg.defects, pred["defect"][0])}
    result["uncertainty"] = {
        "element_content_std": {el: float(v) for el, v in zip(model.cfg.content_elements, pred["content_std"][0])},
        "defects_std": {d: float(v) for d, v in zip(model.cfg.defects, pred["defect_std"][0])},
        "method": "bootstrap ensemble of property heads; defect probabilities temperature-calibrated on validation",
    }
    return result
