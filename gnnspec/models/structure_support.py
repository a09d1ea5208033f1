"""Structure-side training support: is a site's structure inside what the model learned?

The forward model and the structure embedding happily run on any structure; their output for
an element the backbone never saw in training (its element embedding is still the random
initial vector) or for an environment unlike every training environment is an extrapolation.
This module says so, per absorbing site, with two checks:

* **elements**: ``unseen_elements``, the elements within ``cfg.backbone.cutoff`` Angstrom of the
  site (the site itself included; periodic images counted) that no training structure held.
  Messages travel ``n_layers`` such hops, so an element further away can still reach the site;
  the environment check sees that through the embedding.
* **environment**: the cosine of the site's structure embedding (the unit environment embedding
  the library retrieves with, :meth:`gnnspec.models.api.ModelAPI.embed_environments`: centre
  site plus every site within 3.2 Angstrom) to its nearest training environment's embedding,
  against the 1st percentile of the same number for the validation split's environments
  (held-out structures of the training distribution, so in distribution by construction). About
  1 % of in-distribution sites fall below it: a flag is a warning, not a proof.

A site is ``in_distribution`` when it has no unseen element and its cosine is at least the
validation 1st percentile. Where the embedding part was never fitted, the environment check is
reported unavailable (``environment_in_distribution: None``) and the verdict rests on the
elements alone.

**Where the numbers live.** Inside the checkpoint, under :data:`ENTRY` (``"structure_support"``),
so a checkpoint copied alone keeps them; the entry is a plain dict that
``torch.load(weights_only=True)`` reads:

======================  ==============================================================
``version``             :data:`VERSION`
``elements``            symbols of the training structures' elements, by atomic number
``elements_source``     where they came from (training writes :data:`FROM_TRAINING`)
``embedding``           optional: ``train`` (float16 tensor ``[n, dim]``, unit training
                        embeddings, a seeded subset of at most :data:`MAX_REFERENCES`),
                        ``quantiles`` (:data:`QUANTILES`), ``val_quantiles`` (floats, the
                        validation nearest-cosine quantiles), ``n_training_environments``,
                        ``n_validation_environments``, ``data`` (dataset path), ``weights``
                        (:func:`embedding_fingerprint` of the weights it was fitted with)
======================  ==============================================================

Training records the elements (:func:`element_record`); ``gnnspec calibrate`` fits the embedding
part on the model's training and validation splits (:func:`fit_embedding`). A checkpoint made
before the record falls back to the model's ``content_elements`` plus its channels' elements
(:data:`FROM_CONTENT`). An embedding part fitted with other weights (the alignment stage
rewrites them) is not used: the check then says it is unavailable.

Use :meth:`gnnspec.models.api.ModelAPI.structure_support` (``model.structure_support(structure,
sites)``) or :func:`structure_support`; both return plain JSON-able dicts.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from gnnspec.errors import InputError

#: Checkpoint key of the record (module docstring).
ENTRY = "structure_support"
VERSION = 1
#: Validation quantiles kept; the first is the threshold.
QUANTILES = (0.01, 0.05, 0.5)
#: Training environment embeddings kept at most (float16: ``dim * 2`` bytes each in the checkpoint).
MAX_REFERENCES = 2000
FROM_TRAINING = "training data"
FROM_CONTENT = "model content elements (checkpoint predates the record)"


# -- building the record -------------------------------------------------------------------
def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def _atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers[symbol]


def trained_elements(*datasets) -> list[str]:
    """Element symbols of every graph (``z``) in ``datasets`` (graph lists; None skipped), by atomic number."""
    seen: set[int] = set()
    for graphs in datasets:
        if graphs is None:
            continue
        for i in range(len(graphs)):
            seen.update(int(z) for z in torch.unique(graphs[i].z).tolist())
    return [_symbol(z) for z in sorted(seen)]


def element_record(*datasets, source: str = FROM_TRAINING) -> dict:
    """The checkpoint entry (no embedding part) of the elements of ``datasets`` (graph lists)."""
    elements = trained_elements(*datasets)
    if not elements:
        raise ValueError("no structures to record the trained elements from")
    return {"version": VERSION, "elements": elements, "elements_source": source}


def embedding_fingerprint(model: Any) -> str:
    """Hex sha256 of the weights the structure embedding depends on (backbone and embedding head),
    as float32 on the CPU, so a dtype or device change keeps it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(("backbone.", "env_embedding.")) or "_compiled_" in name:
            continue
        t = tensor.detach().cpu()
        t = (t.float() if t.is_floating_point() else t).contiguous()
        digest.update(f"{name}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def nearest_cosine(references: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``embeddings [m, d]`` to its nearest row of ``references [n, d]`` (``[m]``)."""
    return (_unit(embeddings) @ _unit(references).T).max(axis=1)


def fit_embedding(
    model: Any,
    train: np.ndarray,
    val: np.ndarray,
    max_references: int = MAX_REFERENCES,
    seed: int = 0,
    data: str | None = None,
) -> dict:
    """The ``embedding`` part of the entry from the structure embeddings of the training (``train
    [n, d]``) and validation (``val [m, d]``) environments: a seeded subset of at most
    ``max_references`` training rows (float16) and the validation nearest-cosine quantiles against
    that subset (so the threshold matches what a query is compared with)."""
    train, val = np.asarray(train), np.asarray(val)
    if len(train) == 0 or len(val) == 0:
        raise ValueError("fitting the structure support needs training and validation environments")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(train), size=min(max_references, len(train)), replace=False))
    refs = _unit(train[keep]).astype(np.float16)
    cos = nearest_cosine(refs, val)
    return {
        "train": torch.from_numpy(refs),
        "quantiles": list(QUANTILES),
        "val_quantiles": [float(v) for v in np.quantile(cos, QUANTILES)],
        "n_training_environments": int(len(train)),
        "n_validation_environments": int(len(val)),
        "data": data,
        "weights": embedding_fingerprint(model),
    }


# -- reading it back -----------------------------------------------------------------------
def fallback_elements(model: Any) -> list[str]:
    """The model's ``content_elements`` plus its channels' absorbing elements, by atomic number."""
    from gnnspec.channels import CHANNELS

    els = set(model.cfg.content_elements) | {CHANNELS[c].element for c in model.cfg.channels}
    return sorted(els, key=_atomic_number)


def _environment_part(model: Any, entry: dict | None) -> tuple[dict | None, str | None]:
    """``(embedding part, None)`` when usable for ``model``, else ``(None, why not)``."""
    emb = (entry or {}).get("embedding")
    if emb is None:
        return None, "no structure-embedding support in this checkpoint (fit it with gnnspec calibrate)"
    if tuple(emb.get("quantiles", ())) != QUANTILES:
        return None, "the structure-embedding support was fitted with other quantiles (rerun gnnspec calibrate)"
    if emb.get("weights") != embedding_fingerprint(model):
        return None, "the structure-embedding support was fitted for other weights (rerun gnnspec calibrate)"
    return emb, None


def _elements_within(structure, sites: list[int], cutoff: float) -> dict[int, set[str]]:
    """``{site: element symbols within cutoff Angstrom, the site's own included}``."""
    centre, neighbour, _, dists = structure.get_neighbor_list(cutoff)
    out = {s: {structure[s].specie.symbol} for s in sites}
    want = np.isin(centre, sites) & (dists > 1e-8)
    for c, n in zip(centre[want].tolist(), neighbour[want].tolist()):
        out[c].add(structure[n].specie.symbol)
    return out


def structure_support(model: Any, structure: Any, sites: list[int] | int, embeddings: np.ndarray | None = None) -> dict:
    """The verdict of each of ``sites`` of ``structure`` (module docstring).

    ``embeddings``: the model's unit environment embeddings of ``structure`` ``[n_sites, dim]``
    when already computed (otherwise computed here). Returns ``{"trained_elements",
    "elements_source", "cutoff_A", "environment_check": {"available", ...}, "sites": [{"site",
    "element", "elements_within_cutoff", "unseen_elements", "nearest_training_cosine",
    "environment_in_distribution", "in_distribution", "why"}]}``; cosines are plain floats, a
    check that could not run is ``None``.
    """
    from gnnspec.structures import read_structure

    s = read_structure(structure)
    sites = [int(sites)] if isinstance(sites, (int, np.integer)) else [int(i) for i in sites]
    for i in sites:
        if not 0 <= i < len(s):
            raise InputError(f"site {i} is out of range: the structure has {len(s)} sites (0-{len(s) - 1})")
    entry = getattr(model, "structure_support_record", None)
    if entry and entry.get("elements"):
        trained, source = list(entry["elements"]), str(entry.get("elements_source", FROM_TRAINING))
    else:
        trained, source = fallback_elements(model), FROM_CONTENT
    cutoff = float(model.cfg.backbone.cutoff)
    emb_part, unavailable = _environment_part(model, entry)
    if emb_part is not None:
        p01 = float(emb_part["val_quantiles"][0])
        check = {
            "available": True,
            "statistic": "cosine of the site's structure embedding to its nearest training environment's",
            **{f"validation_p{round(100 * q):02d}": float(v) for q, v in zip(QUANTILES, emb_part["val_quantiles"])},
            "training_environments_kept": int(emb_part["train"].shape[0]),
            "data": emb_part.get("data"),
        }
        if embeddings is None:
            embeddings = model.embed_environments(s)
        embeddings = np.asarray(embeddings)
        if embeddings.shape[0] != len(s):
            raise ValueError(f"{embeddings.shape[0]} environment embeddings for a structure of {len(s)} sites")
        refs = emb_part["train"].float().cpu().numpy() if torch.is_tensor(emb_part["train"]) else np.asarray(emb_part["train"])
        cosines = dict(zip(sites, nearest_cosine(refs, embeddings[sites]).tolist()))
    else:
        check = {"available": False, "reason": unavailable}
        cosines = {}
    within = _elements_within(s, sites, cutoff)
    known = set(trained)
    rows = []
    for i in sites:
        unseen = sorted(within[i] - known, key=_atomic_number)
        cos = cosines.get(i)
        env_ok = None if cos is None else bool(cos >= p01)
        why = []
        if unseen:
            why.append(f"{', '.join(unseen)} within {cutoff:g} A never seen in training")
        if env_ok is False:
            why.append(f"environment unlike every training environment (nearest cosine {cos:.3f} < validation p01 {p01:.3f})")
        rows.append(
            {
                "site": i,
                "element": s[i].specie.symbol,
                "elements_within_cutoff": sorted(within[i], key=_atomic_number),
                "unseen_elements": unseen,
                "nearest_training_cosine": None if cos is None else float(cos),
                "environment_in_distribution": env_ok,
                "in_distribution": not unseen and env_ok is not False,
                "why": why,
            }
        )
    return {"trained_elements": trained, "elements_source": source, "cutoff_A": cutoff, "environment_check": check, "sites": rows}


def warning_lines(report: dict, label: str = "") -> list[str]:
    """One line per out-of-distribution site of a :func:`structure_support` report (``label``
    names the structure), for stderr; empty when every site is in distribution."""
    prefix = f"{label} " if label else ""
    return [
        f"warning: {prefix}site {r['site']} ({r['element']}) is outside the model's training distribution: "
        f"{'; '.join(r['why'])}; the prediction is an extrapolation"
        for r in report["sites"]
        if not r["in_distribution"]
    ]
