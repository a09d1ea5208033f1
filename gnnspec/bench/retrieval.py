"""Retrieval benchmarks: label match of nearest environments, and index latency/recall at scale.

Label match: a library of the structure embeddings of every train and validation environment;
queries are the FEFF environment spectra of the test environments, embedded by the spectrum
encoder. A hit matches when the retrieved environment has the same defect labels and an element
content within 0.05 (mean absolute difference over Li, Ni, Mn, Co, O).

Scale: random unit vectors (dimension 128, labelled as such) in libraries of 10k, 100k and 1M
entries; each index kind's single-query latency (p50, p99) and recall@10 against exact search.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from gnnspec.bench.collect import EnvSet
from gnnspec.library.index import build_index, choose_kind, resolve_params, search

CONTENT_TOL = 0.05


@torch.no_grad()
def structure_embeddings(model, dataset) -> np.ndarray:
    dtype = next(model.parameters()).dtype
    rows = []
    for i in range(len(dataset)):
        g = dataset[i].clone()
        g.pos, g.edge_shift = g.pos.to(dtype), g.edge_shift.to(dtype)
        rows.append(model.forward_structure(g, embed=True, spectra=False)["structure_embedding"].double().numpy())
    return np.concatenate(rows)


@torch.no_grad()
def spectrum_embeddings(model, envs: EnvSet) -> np.ndarray:
    dtype = next(model.parameters()).dtype
    x = torch.tensor(envs.y, dtype=dtype)
    return model.encode_spectra(x, torch.tensor(envs.mask)).double().numpy()


def label_match(lib: EnvSet, lib_emb: np.ndarray, query: EnvSet, query_emb: np.ndarray, k: int = 5) -> dict:
    ok = query.mask.any(1)
    q_emb, q_content, q_defects = query_emb[ok], query.content[ok], query.defects[ok]
    index = build_index("exact", lib_emb.astype(np.float32), {})
    _, idx = search(index, q_emb.astype(np.float32), k)
    match = (np.abs(lib.content[idx] - q_content[:, None, :]).mean(-1) <= CONTENT_TOL) & (lib.defects[idx] == q_defects[:, None, :]).all(-1)
    return {"hit@1": float(match[:, 0].mean()), f"hit@{k}": float(match.any(1).mean()), "queries": int(len(q_emb)), "library": int(len(lib_emb))}


def scale_table(sizes: list[int], dim: int = 128, n_queries: int = 200, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        base = rng.standard_normal((n, dim)).astype(np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        queries = base[rng.choice(n, n_queries, replace=False)] + 0.05 * rng.standard_normal((n_queries, dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = build_index("exact", base, {})
        _, truth = search(exact, queries, 10)
        kinds = ["exact", choose_kind(n)] if choose_kind(n) != "exact" else ["exact", "hnsw"]
        for kind in dict.fromkeys(kinds):
            t0 = time.perf_counter()
            index = exact if kind == "exact" else build_index(kind, base, resolve_params(kind, n, dim))
            build_s = time.perf_counter() - t0
            lat = []
            found = []
            for q in queries:
                t = time.perf_counter()
                _, ids = search(index, q[None], 10)
                lat.append(time.perf_counter() - t)
                found.append(ids[0])
            recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
            rows.append({"entries": n, "index": kind, "build_s": build_s, "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99)), "recall@10": float(recall)})
    return rows
