"""Retrieval benchmarks: label match of nearest environments, and index latency/recall at scale.

Label match: a library of the structure embeddings of every train and validation environment;
queries are the FEFF environment spectra of the test environments, embedded by the spectrum
encoder. A hit matches when the retrieved environment has the same defect labels and an element
content within 0.05 (mean absolute difference over Li, Ni, Mn, Co, O). Reported for cosine
ranking and for consensus ranking (:mod:`gnnspec.library.consensus`, the default pool); for a
model that reads an elemental quantification, also with each query's exact quantification and
with the quantification its own FEFF intensities hold (shipped k-factors,
:mod:`gnnspec.quantification.intensities`).

Scale: random unit vectors (dimension 128, labelled as such; uniform on the sphere, the worst
case for approximate search, and clustered) in libraries of 10k, 100k and 1M entries; each index
kind's single-query latency (p50, p99), recall@1 of the query's source and recall@10 against
exact search.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from gnnspec.data.environment_set import EnvironmentSet
from gnnspec.library.consensus import consensus_order, pool_size
from gnnspec.library.index import build_index, choose_kind, rescored_search, resolve_params, search
from gnnspec.models.environment_table import EnvironmentTable
from gnnspec.quantification import channel_element_index, channel_fractions
from gnnspec.scoring import hit_rates
from gnnspec.structures.environments import labels_match


@torch.no_grad()
def structure_embeddings(model, dataset) -> np.ndarray:
    return EnvironmentTable(model, dataset).structure_embeddings(model).double().numpy()


@torch.no_grad()
def spectrum_embeddings(model, envs: EnvironmentSet, amounts: np.ndarray | None = None, coverage: np.ndarray | None = None) -> np.ndarray:
    """Spectrum embeddings of every environment; ``amounts [n, 5]``: with the quantification of these
    element amounts (:meth:`EnvironmentSet.amounts`); ``coverage [n, C, K]`` (bool): the measured
    energies, for an encoder that reads them (ignored by one that does not)."""
    dtype = next(model.parameters()).dtype
    x, mask = torch.tensor(envs.y, dtype=dtype), torch.tensor(envs.mask)
    quant = None if amounts is None else channel_fractions(torch.tensor(amounts, dtype=dtype), mask, channel_element_index(model.cfg.channels))
    cov = None if coverage is None else torch.as_tensor(coverage, dtype=torch.bool)
    return model.encode_spectra(x, mask, quant, cov).double().numpy()


def label_match(
    lib: EnvironmentSet, lib_emb: np.ndarray, query: EnvironmentSet, query_emb: np.ndarray, k: int = 5, pool: int | None = None
) -> dict:
    ok = query.mask.any(1)
    q_emb, q_content, q_defects = query_emb[ok], query.content[ok], query.defects[ok]
    index = build_index("exact", lib_emb.astype(np.float32), {})
    pool = pool_size(len(lib_emb), pool)
    scores, idx = search(index, q_emb.astype(np.float32), max(k, pool))
    labels = dict(enumerate(zip(lib.content, lib.defects)))
    ranked = np.stack([consensus_order(s, i, labels, k)[1] for s, i in zip(scores, idx)])

    def rates(rows: np.ndarray) -> dict:
        match = labels_match(lib.content[rows], lib.defects[rows], q_content[:, None, :], q_defects[:, None, :])
        return hit_rates(match, k)

    out = {**rates(idx[:, :k]), "queries": int(len(q_emb)), "library": int(len(lib_emb))}
    return {**out, "consensus": {"pool": pool, **rates(ranked)}}


def random_library(n: int, dim: int, distribution: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` random unit vectors: ``uniform`` on the sphere, or ``clustered`` around ``n // 100``
    random centres (spread 0.5 per coordinate relative to the centre's, the way embeddings of
    similar environments gather); float32 ``[n, dim]``."""
    if distribution == "uniform":
        base = rng.standard_normal((n, dim)).astype(np.float32)
    elif distribution == "clustered":
        centres = rng.standard_normal((max(1, n // 100), dim)).astype(np.float32)
        base = centres[rng.integers(len(centres), size=n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    else:
        raise ValueError(f"unknown distribution {distribution!r}")
    return base / np.linalg.norm(base, axis=1, keepdims=True)


def scale_table(
    sizes: list[int], dim: int = 128, n_queries: int = 200, seed: int = 0, distributions=("uniform", "clustered")
) -> list[dict]:
    """Latency and recall of each index kind on random libraries (not embeddings), as a library searches.

    Queries are library vectors with 5 % noise. recall@1: the noisy vector's source is found
    first; recall@10: overlap of the top 10 with exact search. IVF-PQ candidates are re-scored
    exactly (``rerank`` x k), as :class:`gnnspec.library.Library` does.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for distribution in distributions:
        for n in sizes:
            base = random_library(n, dim, distribution, rng)
            source = rng.choice(n, n_queries, replace=False)
            queries = base[source] + 0.05 * rng.standard_normal((n_queries, dim)).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            exact = build_index("exact", base, {})
            _, truth = search(exact, queries, 10)
            kinds = ["exact", choose_kind(n)] if choose_kind(n) != "exact" else ["exact", "hnsw"]
            for kind in dict.fromkeys(kinds):
                params = resolve_params(kind, n, dim)
                t0 = time.perf_counter()
                index = exact if kind == "exact" else build_index(kind, base, params)
                build_s = time.perf_counter() - t0
                lat, found = [], []
                for q in queries:
                    t = time.perf_counter()
                    if kind == "ivfpq":
                        _, ids = rescored_search(index, base, q[None], 10, params["rerank"])
                    else:
                        _, ids = search(index, q[None], 10)
                    lat.append(time.perf_counter() - t)
                    found.append(ids[0])
                rows.append(
                    {
                        "distribution": distribution,
                        "entries": n,
                        "index": kind,
                        "params": params,
                        "build_s": build_s,
                        "p50_ms": 1e3 * float(np.percentile(lat, 50)),
                        "p99_ms": 1e3 * float(np.percentile(lat, 99)),
                        "recall@1": float(np.mean([f[0] == s for f, s in zip(found, source)])),
                        "recall@10": float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])),
                    }
                )
    return rows
