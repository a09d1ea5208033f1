"""Build or extend a library from a gnnspec LMDB dataset or a folder of structure files.

A **source** is

* an LMDB dataset folder (``data.mdb``): every structure of every split, or of one ``split``;
  vacancies and site types are recorded there, so both defect labels are known;
* a folder of structure files (CIF, POSCAR/CONTCAR, ``*.vasp``, pymatgen JSON), read with
  :func:`gnnspec.structures.read_structure`, or one such file: no vacancy record, so
  ``o_vacancy`` is ``None`` (unknown); ``antisite`` is derived from the ``site_type`` site
  property when present, else ``None``; ``split`` is ``None``.

Every site environment becomes an entry (``include_bulk`` adds the whole structure, site -1).
A structure already in the library (same pymatgen dict, by sha256) is skipped on ``add``.

With a model that has the structure-side support check
(:meth:`gnnspec.models.api.ModelAPI.structure_support`), every site of every embedded structure
is checked against what the model learned (elements never seen in training within its cutoff,
an environment embedding unlike every training environment). The counts and the flagged sites
are returned as ``structure_support`` with the other counts and recorded with the source's
provenance in the manifest (at most :data:`FLAGGED_IN_MANIFEST` structures listed there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnnspec.data import schema
from gnnspec.data.store import DATA_FILE, SpectraStore
from gnnspec.errors import InputError
from gnnspec.library.embed import Embedder, model_hash, structure_entries
from gnnspec.library.library import Library
from gnnspec.library.store import structure_hash
from gnnspec.structures.io import read_structure, structure_files

#: Flagged structures listed in a source's manifest record (all are counted).
FLAGGED_IN_MANIFEST = 100


@dataclass
class SourceStructure:
    """One structure of a source with what is known about it."""

    structure_id: int | str
    structure: Structure
    structure_dict: dict
    vacancies: list[dict] | None
    split: str | None


def source_kind(source: str | Path) -> str:
    """``lmdb`` (a dataset folder), ``folder`` (structure files) or ``file`` (one structure file)."""
    path = Path(source)
    if path.is_dir():
        return "lmdb" if (path / DATA_FILE).exists() else "folder"
    if path.is_file():
        return "file"
    raise InputError(f"{path}: no such dataset folder, structure folder or structure file")


def iter_source(source: str | Path, split: str | None = None) -> tuple[int, Iterator[SourceStructure]]:
    """Number of structures in ``source`` and an iterator over them (see module docstring)."""
    path = Path(source)
    kind = source_kind(path)
    if kind == "lmdb":
        schema.check_split(split)
        store = SpectraStore(path)
        sids = [sid for sid in store.structure_ids() if split is None or store.structure(sid)["split"] == split]

        def lmdb_items() -> Iterator[SourceStructure]:
            for sid in sids:
                rec = store.structure(sid)
                yield SourceStructure(
                    sid, Structure.from_dict(rec["structure"]), rec["structure"], list(rec.get("vacancies", [])), rec.get("split")
                )

        return len(sids), lmdb_items()
    if split is not None:
        raise InputError(f"{path}: structure files carry no split; --split applies to LMDB datasets only")
    files = structure_files(path)

    def file_items() -> Iterator[SourceStructure]:
        for f in files:
            s = read_structure(f)
            yield SourceStructure(f.name, s, s.as_dict(), None, None)

    return len(files), file_items()


def source_entries(
    model: Embedder,
    source: str | Path,
    split: str | None = None,
    include_bulk: bool = False,
    vector_source: str = "structure",
    skip: set[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[dict], dict]:
    """Vectors, entries and counts of every environment in ``source``.

    Structures whose hash is in ``skip`` are left out. Returns ``(vectors [n, dim], entries,
    {"structures", "skipped", "entries"})``, plus ``structure_support`` (:func:`support_summary`
    of the embedded structures) when the model has the check and embedded a structure.
    """
    total, items = iter_source(source, split)
    label = str(Path(source).resolve())
    vectors, entries, skipped, used = [], [], 0, 0
    checks: list[tuple[int | str, dict]] = []
    for done, item in enumerate(items, start=1):
        h = structure_hash(item.structure_dict)
        if skip is not None and h in skip:
            skipped += 1
        else:
            try:
                v, labels = structure_entries(model, item.structure, item.vacancies, include_bulk, vector_source)
            except InputError as exc:
                raise InputError(f"{source} structure {item.structure_id}: {exc}") from None
            vectors.append(v)
            if hasattr(model, "structure_support"):
                n_sites = len(item.structure)
                given = v[:n_sites] if vector_source == "structure" else None  # the structure embeddings already made
                checks.append((item.structure_id, model.structure_support(item.structure, list(range(n_sites)), embeddings=given)))
            for lab in labels:
                entries.append(
                    {
                        **lab,
                        "structure_id": item.structure_id,
                        "split": item.split,
                        "source": label,
                        "structure": item.structure_dict,
                    }
                )
            used += 1
            if skip is not None:
                skip.add(h)
        if progress is not None:
            progress(done, total)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, 0))
    stats: dict[str, Any] = {"structures": used, "skipped": skipped, "entries": len(entries)}
    if checks:
        stats["structure_support"] = support_summary(checks)
    return stacked, entries, stats


def support_summary(checks: list[tuple[int | str, dict]]) -> dict:
    """Counts and flagged sites of ``(structure_id, structure_support report)`` pairs:
    ``{"elements_source", "environment_check_available", "sites_checked", "sites_out_of_distribution",
    "unseen_elements", "structures_flagged": [{"structure_id", "sites": [{"site", "element",
    "unseen_elements", "nearest_training_cosine", "why"}]}]}``."""
    flagged, unseen, n_sites = [], set(), 0
    for sid, report in checks:
        n_sites += len(report["sites"])
        bad = [
            {k: r[k] for k in ("site", "element", "unseen_elements", "nearest_training_cosine", "why")}
            for r in report["sites"]
            if not r["in_distribution"]
        ]
        for r in bad:
            unseen.update(r["unseen_elements"])
        if bad:
            flagged.append({"structure_id": sid, "sites": bad})
    first = checks[0][1]
    return {
        "elements_source": first["elements_source"],
        "environment_check_available": bool(first["environment_check"]["available"]),
        "sites_checked": n_sites,
        "sites_out_of_distribution": sum(len(f["sites"]) for f in flagged),
        "unseen_elements": sorted(unseen),
        "structures_flagged": flagged,
    }


def support_warnings(summary: dict | None, source: str | Path) -> list[str]:
    """One stderr line per structure of a :func:`support_summary` with sites outside the training distribution."""
    if not summary:
        return []
    lines = []
    for f in summary["structures_flagged"]:
        first = f["sites"][0]
        lines.append(
            f"warning: {source} structure {f['structure_id']}: {len(f['sites'])} site(s) outside the model's training "
            f"distribution (site {first['site']} ({first['element']}): {'; '.join(first['why'])}); embedded anyway"
        )
    return lines


def build_library(
    model: Embedder,
    source: str | Path,
    out: str | Path,
    include_bulk: bool = False,
    index: str = "auto",
    split: str | None = None,
    vector_source: str = "structure",
    thresholds: dict | None = None,
    index_params: dict | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Library:
    """Embed every environment of ``source`` with ``model`` into a new library at ``out``.

    ``index``: ``auto``, ``exact``, ``hnsw`` or ``ivfpq``; ``thresholds``/``index_params``
    override the auto sizes and index parameters (:mod:`gnnspec.library.index`);
    ``vector_source``: ``structure`` or ``predicted`` (:mod:`gnnspec.library.embed`).
    """
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise InputError(f"{out}: already holds a library; use `gnnspec library add` to extend it, or another folder")
    vectors, entries, stats = source_entries(model, source, split, include_bulk, vector_source, skip=set(), progress=progress)
    if not entries:
        raise InputError(f"{source}: no structures{f' in split {split}' if split else ''}; nothing to build")
    lib = Library.create(
        out, model_hash(model), vectors.shape[1], index, thresholds, index_params, vector_source, overwrite=overwrite
    )
    lib.add(vectors, entries, source=_provenance(source, split, include_bulk, stats))
    return lib


def add_to_library(
    library: Library | str | Path,
    model: Embedder,
    source: str | Path,
    split: str | None = None,
    include_bulk: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Add the environments of ``source`` to an existing library made by the same model.

    Structures already in the library are skipped. Returns ``{"structures", "skipped", "entries",
    "count"}``, plus ``structure_support`` (:func:`support_summary`) when the model has the check.
    """
    lib = library if isinstance(library, Library) else Library.open(library)
    lib.check_model_hash(model_hash(model))
    vector_source = lib.manifest.get("vector_source", "structure")
    vectors, entries, stats = source_entries(
        model, source, split, include_bulk, vector_source, skip=set(lib.structure_hashes()), progress=progress
    )
    if entries:
        lib.add(vectors, entries, source=_provenance(source, split, include_bulk, stats))
    return {**stats, "count": lib.count}


def _provenance(source: str | Path, split: str | None, include_bulk: bool, stats: dict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": str(Path(source).resolve()),
        "kind": source_kind(source),
        "split": split,
        "include_bulk": include_bulk,
        "skipped": stats["skipped"],
    }
    support = stats.get("structure_support")
    if support is not None:
        listed = support["structures_flagged"][:FLAGGED_IN_MANIFEST]
        out["structure_support"] = {**support, "structures_flagged": listed, "structures_flagged_total": len(support["structures_flagged"])}
    return out
