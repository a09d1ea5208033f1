"""FAISS indexes over unit vectors: inner product (= cosine similarity), chosen by library size.

=========  ====================================================  =========================
kind       FAISS index                                           auto choice (defaults)
=========  ====================================================  =========================
``exact``  ``IndexFlatIP``: exhaustive, exact scores             fewer than 50 000 vectors
``hnsw``   ``IndexHNSWFlat(METRIC_INNER_PRODUCT)``: graph        fewer than 1 000 000
           search, exact scores of the candidates it visits
``ivfpq``  ``IndexIVFPQ(IndexFlatIP, METRIC_INNER_PRODUCT)``:    1 000 000 and more
           coarse lists + product-quantised codes; candidates
           are re-scored exactly from ``vectors.npy``
=========  ====================================================  =========================

The thresholds and parameters are arguments (tests use small ones) and are recorded in the
library manifest, so a library keeps its choice when it grows, and switches kind, rebuilding
its index, only when it was created with ``auto`` and crosses a threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import faiss
except ImportError as exc:  # an optional dependency: the `search` extra
    raise ImportError("gnnspec.library needs FAISS: pip install 'gnnspec[search]' (or faiss-cpu)") from exc

from gnnspec.errors import InputError

INDEX_KINDS = ("exact", "hnsw", "ivfpq")
#: Auto choice: exact below ``exact_below`` vectors, HNSW below ``hnsw_below``, IVF-PQ beyond.
DEFAULT_THRESHOLDS = {"exact_below": 50_000, "hnsw_below": 1_000_000}
#: ``M``: graph degree; ``ef_construction``/``ef_search``: candidate list lengths (build/query).
DEFAULT_HNSW = {"M": 32, "ef_construction": 200, "ef_search": 256}
#: ``nlist``/``m`` of ``None`` are derived from the size and dimension (:func:`resolve_params`);
#: ``nprobe``: lists searched per query; ``rerank``: candidates fetched per wanted hit.
DEFAULT_IVFPQ = {"nlist": None, "m": None, "nbits": 8, "nprobe": 64, "rerank": 16}
#: IVF-PQ is trained on at most this many vectors (a seeded random sample).
MAX_TRAIN = 200_000


def choose_kind(n: int, requested: str = "auto", thresholds: dict | None = None) -> str:
    """The index kind for ``n`` vectors: ``requested`` unless it is ``auto``."""
    if requested != "auto":
        if requested not in INDEX_KINDS:
            raise InputError(f"unknown index kind {requested!r}; valid: auto, {', '.join(INDEX_KINDS)}")
        return requested
    t = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    if n < t["exact_below"]:
        return "exact"
    return "hnsw" if n < t["hnsw_below"] else "ivfpq"


def _pq_subquantizers(dim: int) -> int:
    """Largest divisor of ``dim`` that is at most ``dim / 4`` (sub-vectors of 4 or more numbers)."""
    best = 1
    for m in range(1, max(dim // 4, 1) + 1):
        if dim % m == 0:
            best = m
    return best


def resolve_params(kind: str, n: int, dim: int, params: dict | None = None) -> dict:
    """The full parameter set of ``kind`` for ``n`` vectors of ``dim``: defaults, then ``params``."""
    params = dict(params or {})
    if kind == "exact":
        return {}
    if kind == "hnsw":
        unknown = set(params) - set(DEFAULT_HNSW)
        if unknown:
            raise InputError(f"unknown hnsw parameter(s) {sorted(unknown)}; valid: {', '.join(DEFAULT_HNSW)}")
        return {**DEFAULT_HNSW, **params}
    unknown = set(params) - set(DEFAULT_IVFPQ)
    if unknown:
        raise InputError(f"unknown ivfpq parameter(s) {sorted(unknown)}; valid: {', '.join(DEFAULT_IVFPQ)}")
    p = {**DEFAULT_IVFPQ, **params}
    if p["nlist"] is None:
        p["nlist"] = int(max(1, min(4 * np.sqrt(max(n, 1)), n // 39 if n >= 39 else 1)))
    if p["m"] is None:
        p["m"] = _pq_subquantizers(dim)
    if dim % p["m"]:
        raise InputError(f"ivfpq: m={p['m']} does not divide the dimension {dim}")
    return p


def min_vectors(kind: str, params: dict) -> int:
    """Fewest vectors an index of ``kind`` can be built from (IVF-PQ must train its codebooks)."""
    if kind != "ivfpq":
        return 0
    return max(int(params["nlist"]), 2 ** int(params["nbits"]))


def _configure(index: faiss.Index, kind: str, params: dict) -> faiss.Index:
    """Set the query-time parameters (``ef_search``, ``nprobe``) that the index file may not hold."""
    if kind == "hnsw":
        index.hnsw.efSearch = int(params["ef_search"])
    elif kind == "ivfpq":
        index.nprobe = int(params["nprobe"])
    return index


def build_index(kind: str, vectors: np.ndarray, params: dict, seed: int = 0) -> faiss.Index:
    """A new index of ``kind`` holding ``vectors`` (float32 ``[n, d]``, unit rows), ids 0..n-1."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(params["M"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(params["ef_construction"])
    elif kind == "ivfpq":
        need = min_vectors(kind, params)
        if n < need:
            raise InputError(
                f"an ivfpq index needs at least {need} vectors to train (nlist={params['nlist']}, nbits={params['nbits']}); the library has {n}"
            )
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(
            quantizer, dim, int(params["nlist"]), int(params["m"]), int(params["nbits"]), faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(seed)
        train = vectors if n <= MAX_TRAIN else vectors[np.sort(rng.choice(n, MAX_TRAIN, replace=False))]
        index.train(np.ascontiguousarray(train))
    else:
        raise InputError(f"unknown index kind {kind!r}; valid: {', '.join(INDEX_KINDS)}")
    if n:
        index.add(vectors)
    return _configure(index, kind, params)


def add_vectors(index: faiss.Index, vectors: np.ndarray) -> None:
    """Append ``vectors`` to ``index`` (their ids continue from ``index.ntotal``)."""
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(scores [q, k], ids [q, k])`` by inner product; missing hits have id -1."""
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), int(k))


def rescored_search(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int, rerank: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``rerank * k`` approximate candidates, re-scored exactly against ``vectors``.

    For IVF-PQ, whose compressed codes rank near neighbours coarsely; ``vectors`` are the stored
    unit rows (an array or a memory map). Missing hits have id -1 and score -inf.
    """
    fetch = min(int(index.ntotal), int(k) * int(rerank))
    _, cand = search(index, queries, fetch)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for r, row in enumerate(cand):
        row = np.unique(row[row >= 0])
        exact = np.asarray(vectors[row]) @ queries[r]
        top = np.argsort(-exact, kind="stable")[:k]
        scores[r, : len(top)], ids[r, : len(top)] = exact[top], row[top]
    return scores, ids


def write_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read_index(path: Path, kind: str, params: dict) -> faiss.Index:
    """Read an index file and set its query-time parameters; refuse a file FAISS cannot read."""
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from None
    return _configure(index, kind, params)
