"""How well a library answers spectra queries whose answers are known (label-match hit@k).

Queries are the environments of a gnnspec LMDB dataset (every split, or one) that have FEFF
spectra: each environment's spectra (the mean site spectrum per channel over its atoms, see
:mod:`gnnspec.structures.environments`) are embedded by the library's model, exactly as a
user's ``gnnspec query`` would embed them, and searched in the library's index. A retrieved
entry **matches** when it shares the query's labels
(:func:`gnnspec.structures.environments.labels_match`: the same defect labels and an element
content within ``CONTENT_TOL``); entries whose defect labels are unknown never match.

Reported: hit@1 and hit@k over all queries, and hit@1 by centre element and by defect class,
for cosine ranking (top level of the report) and for consensus ranking (under ``"consensus"``,
with the ``pool`` it used; :mod:`gnnspec.library.consensus`).
With ``quantification_error`` set, each query also carries its environment's elemental
quantification (:mod:`gnnspec.quantification`: the atom amounts of its elements), each amount
multiplied by ``exp(N(0, quantification_error))`` (:func:`gnnspec.quantification.perturb_amounts`,
seeded: the same draws every run), as a measurement of that relative accuracy would give it; 0
gives the exact one.
With ``intensity_k_factors`` (per channel, :func:`gnnspec.quantification.intensities.read_k_factors`;
``gnnspec data k-factors`` fits them on standards) each query instead carries the
quantification its own FEFF spectra hold in their intensities: the sum over the environment's
atoms of each channel's integrated raw intensity, divided by that channel's k-factor
(:mod:`gnnspec.quantification.intensities`); no label enters. The report says how far the measured atom
fractions fall from the true ones.
With ``centre_known``, each query's hits are restricted to environments centred on the query's
own centre element (``gnnspec query --centre``), as when a user asks which environments of one
element explain the spectra.
The honest check queries structures that neither the model nor the library has seen, so the
report also counts query structures the library already holds (by structure hash).

Which spectra a query carries (``spectra``): ``feff``, the dataset's FEFF spectra in its base
tier; ``model``, the library model's forward-model spectra of the same environments and channels
in the tier its encoder learned from (``encoder_spectra_tier``, else its base tier), as the
calibration and the benchmarks score such a model (the dataset's higher tiers cover only sampled
sites); ``auto`` (default): ``model`` when the encoder learned a forward-model tier, else
``feff``. The intensity quantification always comes from the FEFF runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from gnnspec.channels import CHANNELS
from gnnspec.data.environment_set import EnvironmentSet
from gnnspec.data.store import DATA_FILE
from gnnspec.errors import InputError
from gnnspec.labels import CONTENT_ELEMENTS, DEFECTS
from gnnspec.library.build import source_kind
from gnnspec.library.consensus import check_ranking, entry_labels, pool_size
from gnnspec.library.library import Library
from gnnspec.library.store import structure_hash
from gnnspec.models.environment_table import SIMULATED, encoder_learned_tier, encoder_simulator, simulated_set
from gnnspec.quantification.k_factors import read_k_factors
from gnnspec.scoring import hit_rates
from gnnspec.structures.environments import CONTENT_TOL, labels_match


def defect_class(defects: np.ndarray) -> str:
    """``none``, ``o_vacancy``, ``antisite`` or ``both`` for a 0/1 row in :data:`DEFECTS` order."""
    present = [name for name, v in zip(DEFECTS, defects) if v]
    return "both" if len(present) == len(DEFECTS) else (present[0] if present else "none")


def _scores(rows: list[dict], results: list[list[dict]], k: int) -> dict:
    """hit@1, hit@k and hit@1 by centre element and by defect class of one ranking's ``results``
    (:func:`gnnspec.scoring.hit_rates`)."""
    match = np.zeros((len(rows), k), dtype=bool)  # a query with fewer than k hits cannot match beyond them
    for q, (r, hits) in enumerate(zip(rows, results)):
        content, defects = entry_labels(hits)
        found = labels_match(content, defects, r["content"][None], r["defects"][None])[:k]
        match[q, : len(found)] = found

    def breakdown(groups: list[str]) -> dict:
        members = {g: [q for q, name in enumerate(groups) if name == g] for g in sorted(set(groups))}
        return {g: {"queries": len(qs), "hit@1": hit_rates(match[qs], k)["hit@1"]} for g, qs in members.items()}

    return {
        **hit_rates(match, k),
        "hit@1_by_centre": breakdown([r["centre"] for r in rows]),
        "hit@1_by_defects": breakdown([defect_class(r["defects"]) for r in rows]),
    }


def _quantification_report(error, k_source, k_factors, log_errors) -> dict | None:
    if k_factors is not None:
        err = np.concatenate(log_errors) if log_errors else np.zeros(0)
        return {
            "source": "integrated intensities of each query's own FEFF spectra",
            "k_factors_file": k_source,
            "k_factors": k_factors,
            "atom_fraction_log_error": {
                "mean": float(err.mean()),
                "sd": float(err.std()),
                "within_5_percent": float((abs(err) < 0.05).mean()),
            },
        }
    if error is not None:
        return {"source": "labels, perturbed", "relative_error": float(error)}
    return None


def evaluate_library(
    lib: Library,
    data: str | Path,
    split: str | None = None,
    k: int = 5,
    pool: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    quantification_error: float | None = None,
    centre_known: bool = False,
    intensity_k_factors: str | Path | None = None,
    spectra: str = "auto",
) -> dict:
    """Label-match retrieval report of ``lib`` for the environments of dataset ``data`` (module docstring)."""
    from gnnspec.data import schema
    from gnnspec.data.dataset import LMDBStructureDataset

    if int(k) < 1:
        raise InputError(f"k must be at least 1, got {k}")
    check_ranking("consensus", pool)
    if quantification_error is not None and not (np.isfinite(quantification_error) and quantification_error >= 0):
        raise InputError(f"the quantification error must be a number >= 0, got {quantification_error}")
    if quantification_error is not None and intensity_k_factors is not None:
        raise InputError("give a quantification error (from the labels) or intensity k-factors, not both")
    generator = torch.Generator().manual_seed(0)  # the same draws every run
    schema.check_split(split)
    k_factors = None if intensity_k_factors is None else read_k_factors(intensity_k_factors)
    if source_kind(data) != "lmdb":
        raise InputError(f"{data}: not a gnnspec LMDB dataset (no {DATA_FILE})")
    model = lib.model
    tier = encoder_learned_tier(model, spectra)  # an InputError for an unknown choice, before any data is read
    ds = LMDBStructureDataset(data, split, cutoff=model.cfg.backbone.cutoff, channels=model.cfg.channels)
    if len(ds) == 0:
        raise InputError(f"{data}: no structures{'' if split is None else f' in the {split} split'}")
    try:
        envs = EnvironmentSet.from_dataset(ds, k_factors)
    except KeyError as exc:  # a channel of the data without a k-factor
        raise InputError(f"{data} with {intensity_k_factors}: {exc.args[0]}") from None
    if tier is not None:  # the same environments and channels, with the forward model's spectra
        envs = replace(envs, y=simulated_set(model, ds, tier).y)
    queries = envs.with_spectra
    if k_factors is not None:
        amounts = envs.amounts("intensities")
    elif quantification_error is not None:  # drawn for the queries only, in their order
        amounts = np.full_like(envs.content, np.nan)
        amounts[queries] = envs.rows(queries).amounts("perturbed", quantification_error, generator)
    known = lib.structure_hashes()
    overlap = sum(structure_hash(ds.record(i)["structure"]) in known for i in range(len(ds)))
    rows: list[dict] = []
    log_errors: list[np.ndarray] = []
    for done, e in enumerate(queries.tolist()):
        present = [name for c, name in enumerate(envs.channels) if envs.mask[e, c]]
        query = {name: envs.y[e, envs.channels.index(name)] for name in present}
        quantification = None
        if k_factors is not None:  # the elements a present channel measures, as the intensities hold them
            measured = list(dict.fromkeys(CHANNELS[name].element for name in present))
            got = np.array([amounts[e, CONTENT_ELEMENTS.index(el)] for el in measured])
            want = np.array([envs.content[e, CONTENT_ELEMENTS.index(el)] for el in measured])
            log_errors.append(np.log(got / got.sum()) - np.log(want / want.sum()))
            quantification = dict(zip(measured, got.tolist()))
        elif quantification_error is not None:
            quantification = dict(zip(CONTENT_ELEMENTS, amounts[e].tolist()))
        vector = model.embed_spectra(query, quantification=quantification)
        rows.append(
            {
                "vector": np.asarray(vector, dtype=np.float64).reshape(-1),
                "content": envs.content[e],
                "defects": envs.defects[e],
                "centre": chemical_symbols[int(envs.centre_z[e])],
            }
        )
        if progress is not None:
            progress(done + 1, len(queries))
    if not rows:
        raise InputError(f"{data}: no environment with spectra to query")
    vectors = np.stack([r["vector"] for r in rows])
    centres = [r["centre"] for r in rows] if centre_known else None
    cosine = _scores(rows, lib.query_vectors(vectors, k, centre=centres), k)
    consensus = _scores(rows, lib.query_vectors(vectors, k, rank="consensus", pool=pool, centre=centres), k)
    return {
        "library": str(lib.path),
        "library_entries": lib.count,
        "data": str(data),
        "split": split or "all",
        "query_spectra": "FEFF (dataset base tier)" if tier is None else f"{SIMULATED[encoder_simulator(model)]}, tier {tier}",
        "query_structures": len(ds),
        "query_structures_in_library": int(overlap),
        "queries": len(rows),
        "k": int(k),
        "content_tol": CONTENT_TOL,
        "quantification": _quantification_report(quantification_error, None if intensity_k_factors is None else str(intensity_k_factors), k_factors, log_errors),
        "centre_known": bool(centre_known),
        **cosine,
        "consensus": {"pool": pool_size(lib.count, pool), **consensus},
    }
