"""Spectra in, nearest library environments out; and a plot of the hits' predicted spectra.

A query is one ``gnnspec.spectra/1`` set (any subset of the model's channels). Its spectra are
mapped onto the channel grids by :func:`gnnspec.spectra.spectra_on_grids` (interpolated,
normalised to unit mean), embedded by the library's model (``embed_spectra``) and searched.

Result of one query::

    {"hits": [{"id", "score", "composition", "defects", "split", "structure_id", "site",
               "element", "source", "structure"}, ...],   # best first, score = cosine
     "channels_used": ["Ni-K-xas", ...],
     "quantification": {"Ni": ..., "O": ...} or null,   # the elemental quantification used
     "centre": "Ni" or null}                             # the centre element hits were restricted to

With ``rank="consensus"`` the hits are ordered by label support first and each carries a
``"support"`` (:mod:`gnnspec.library.consensus`).

A batch (a folder of ``.json`` files or a ``.jsonl`` file) gives a list of such results, each
with its query ``"id"`` first. ``gnnspec query`` moves calibrated energies (``convert --energy
absolute|reference``, read from each record's meta) onto the encoder's FEFF scale first
(:func:`on_encoder_scale`) and adds each query's ``"energy_scale"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from gnnspec.channels import CHANNELS, normalise
from gnnspec.errors import InputError
from gnnspec.library.embed import Embedder, model_channels, predicted_environment_spectra
from gnnspec.library.library import Library
from gnnspec.spectra import SpectraSet, Spectrum, grid_coverage, on_grid_by_channel, read_spectra, read_spectra_records
from gnnspec.structures.environments import R_ENV, environment_members


def as_spectra(spectra: Any) -> SpectraSet:
    """``{channel: Spectrum}`` (a :class:`SpectraSet`, with its quantification) from itself, a
    ``gnnspec.spectra/1`` dict or a file path."""
    if isinstance(spectra, Mapping) and spectra and all(isinstance(v, Spectrum) for v in spectra.values()):
        return spectra if isinstance(spectra, SpectraSet) else SpectraSet(spectra)  # keeps a set's quantification
    return read_spectra(spectra)[0]


def spectra_grids(spectra: Any) -> dict[str, np.ndarray]:
    """``{channel: normalised intensity on the channel grid}`` in canonical channel order."""
    return on_grid_by_channel(as_spectra(spectra))


def query_quantification(spectra: Any, quantification: Mapping[str, float] | None = None) -> dict[str, float] | None:
    """The quantification a query uses: ``quantification`` if given, else the spectra set's own (or None)."""
    if quantification is not None:
        return dict(quantification)
    return getattr(as_spectra(spectra), "quantification", None)


def embed_query(model: Embedder, spectra: Any, quantification: Mapping[str, float] | None = None) -> tuple[np.ndarray, list[str]]:
    """Unit embedding ``[dim]`` of one spectra set and the channels it used.

    The set's elemental quantification (or ``quantification``, which overrides it) goes to the
    model as well, when there is one (:mod:`gnnspec.quantification`).
    """
    spectra = as_spectra(spectra)  # a file is read once, for its spectra and its quantification
    grids = spectra_grids(spectra)
    known = model_channels(model)
    unknown = [c for c in grids if c not in known]
    if unknown:
        raise InputError(f"channel(s) {', '.join(unknown)} unknown to the model; it reads: {', '.join(known)}")
    quant = query_quantification(spectra, quantification)
    extra = {} if quant is None else {"quantification": quant}
    coverage = grid_coverage(spectra)
    if not all(c.all() for c in coverage.values()):  # a partial window: the energies it measured
        extra["coverage"] = coverage
    vector = model.embed_spectra(grids, **extra)
    return np.asarray(vector, dtype=np.float64).reshape(-1), list(grids)


def is_batch(path: str | Path) -> bool:
    """A folder or a ``.jsonl`` file holds many queries; anything else is one spectra file."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".jsonl"


def load_query_records(path: str | Path) -> list[tuple[str, dict[str, Spectrum], dict]]:
    """``(id, spectra, meta)`` of every query in ``path`` (one file: its stem is the id)."""
    path = Path(path)
    if is_batch(path):
        return read_spectra_records(path)
    if not path.exists():
        raise InputError(f"{path}: no such spectra file")
    spectra, meta = read_spectra(path)
    return [(path.stem, spectra, meta)]


def load_queries(path: str | Path) -> list[tuple[str, dict[str, Spectrum]]]:
    """``(id, spectra)`` of every query in ``path`` (one file: its stem is the id)."""
    return [(qid, spectra) for qid, spectra, _ in load_query_records(path)]


def on_encoder_scale(
    records: list[tuple[str, dict[str, Spectrum], dict]], tier: str
) -> tuple[list[tuple[str, SpectraSet]], list[dict]]:
    """Every query's calibrated energies moved onto FEFF tier ``tier``'s scale, as ``infer`` does
    (:mod:`gnnspec.models.energy_scale`), from each record's own meta; returns the moved
    ``(id, spectra)`` queries and, per query, ``{"encoder_tier", "channels"}`` saying what was done."""
    from gnnspec.models.energy_scale import energy_shifts, shifted

    queries, scales = [], []
    for qid, spectra, meta in records:
        shifts, record = energy_shifts(meta, list(spectra), tier)
        queries.append((qid, shifted(as_spectra(spectra), shifts)))
        scales.append({"encoder_tier": tier, "channels": record})
    return queries, scales


def run_queries(
    library: Library,
    queries: list[tuple[str, dict[str, Spectrum]]],
    k: int = 5,
    rank: str = "cosine",
    pool: int | None = None,
    centre: str | None = None,
) -> list[dict]:
    """``[{"id", "hits", "channels_used", "quantification", "centre"}]`` for each query, in order (one
    vector search for all); ``rank``/``pool``/``centre``: see :meth:`Library.query_vectors`."""
    vectors, used = [], []
    for qid, spectra in queries:
        try:
            v, channels = embed_query(library.model, spectra)
        except InputError as exc:
            raise InputError(f"query {qid}: {exc}") from None
        vectors.append(v)
        used.append(channels)
    hits = library.query_vectors(np.stack(vectors), k, rank, pool, centre)
    return [
        {"id": qid, "hits": h, "channels_used": c, "quantification": query_quantification(spectra), "centre": centre}
        for (qid, spectra), h, c in zip(queries, hits, used)
    ]


def hit_spectra(model: Embedder, hit: Mapping) -> dict[str, np.ndarray]:
    """Forward-predicted spectra of a hit's environment ``{channel: intensity on the grid}``."""
    if hit.get("structure") is None:
        return {}
    structure = Structure.from_dict(hit["structure"])
    site = int(hit["site"])
    members = np.arange(len(structure)) if site < 0 else environment_members(structure, R_ENV)[site]
    return predicted_environment_spectra(model, structure, [members])[0]


def plot_hits(model: Embedder, query: Mapping[str, np.ndarray], hits: list[dict], path: str | Path, title: str = "") -> Path:
    """PNG of the query spectra (black) and each hit's predicted spectra (normalised alike), one panel per query channel.

    ``query``: ``{channel: normalised intensity on the grid}`` (:func:`spectra_grids`). x: energy
    (eV, absolute); y: intensity normalised to unit mean over the grid.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    predicted = [{c: normalise(CHANNELS[c], y) for c, y in hit_spectra(model, hit).items()} for hit in hits]
    channels = list(query)
    fig = Figure(figsize=(7.0, 2.6 * len(channels)), layout="constrained")
    axes = fig.subplots(len(channels), 1, squeeze=False)
    colours = colormaps["viridis"](np.linspace(0.0, 0.85, max(len(hits), 1)))
    for ax, ch in zip(axes[:, 0], channels):
        grid = CHANNELS[ch].grid
        ax.plot(grid, query[ch], color="black", lw=2.0, label="query")
        for rank, (hit, spec, colour) in enumerate(zip(hits, predicted, colours), start=1):
            if ch in spec:
                where = "bulk" if hit["site"] < 0 else f"{hit['element']} site {hit['site']}"
                ax.plot(grid, spec[ch], color=colour, lw=1.0, label=f"#{rank} id {hit['id']} ({where}) score {hit['score']:.3f}")
        ax.set_title(ch, fontsize=9)
        ax.set_xlabel("energy (eV)")
        ax.set_ylabel("intensity (unit mean)")
        ax.legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_path(base: str | Path, qid: str, batch: bool) -> Path:
    """The PNG of one query: ``base`` itself, or ``{stem}-{id}{suffix}`` beside it in a batch."""
    base = Path(base)
    if not batch:
        return base
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", qid).strip("_") or "query"
    return base.with_name(f"{base.stem}-{safe}{base.suffix or '.png'}")


def plot_results(
    library: Library, queries: list[tuple[str, dict[str, Spectrum]]], results: list[dict], base: str | Path, batch: bool
) -> list[Path]:
    """One PNG per query (see :func:`plot_path`); returns the paths written."""
    if not hasattr(library.model, "predict_site_spectra"):
        raise InputError(f"--plot needs a model that predicts spectra; {type(library.model).__name__} does not")
    paths = []
    for (qid, spectra), res in zip(queries, results):
        grids = {c: v for c, v in spectra_grids(spectra).items() if c in res["channels_used"]}
        paths.append(plot_hits(library.model, grids, res["hits"], plot_path(base, qid, batch), title=f"query {qid}"))
    return paths
