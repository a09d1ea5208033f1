"""Index choice by size, recall of the approximate indexes against the exact one, kind switch on growth."""

from __future__ import annotations

import numpy as np
import pytest
from test_library_helpers import FakeEmbedder  # noqa: F401  (sets single-threaded torch/faiss)

from gnnspec.errors import InputError
from gnnspec.library import Library
from gnnspec.library.index import DEFAULT_THRESHOLDS, choose_kind, resolve_params

DIM = 16


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _entries(n: int, offset: int = 0) -> list[dict]:
    return [
        {"structure_id": offset + i, "site": 0, "composition": {}, "defects": {}, "split": None, "source": "random"}
        for i in range(n)
    ]


def _library(path, n: int, seed: int = 0, **kw) -> Library:
    lib = Library.create(path, "random", DIM, **kw)
    lib.add(_unit(n, seed), _entries(n))
    return lib


def _recall(approx: Library, exact: Library, queries: np.ndarray, k: int) -> float:
    got = approx.query_vectors(queries, k)
    want = exact.query_vectors(queries, k)
    return float(np.mean([len({h["id"] for h in g} & {h["id"] for h in w}) / k for g, w in zip(got, want)]))


def test_auto_choice_by_size():
    assert DEFAULT_THRESHOLDS == {"exact_below": 50_000, "hnsw_below": 1_000_000}
    assert choose_kind(49_999) == "exact" and choose_kind(50_000) == "hnsw" and choose_kind(1_000_000) == "ivfpq"
    small = {"exact_below": 10, "hnsw_below": 20}
    assert [choose_kind(n, "auto", small) for n in (9, 10, 19, 20)] == ["exact", "hnsw", "hnsw", "ivfpq"]
    assert choose_kind(5, "hnsw", small) == "hnsw"  # an explicit kind wins
    with pytest.raises(InputError, match="valid: auto, exact, hnsw, ivfpq"):
        choose_kind(5, "annoy")
    p = resolve_params("ivfpq", 1_000_000, 128)
    assert p["m"] == 32 and p["nlist"] == 4000 and p["nbits"] == 8


@pytest.fixture(scope="module")
def exact_2k(tmp_path_factory):
    return _library(tmp_path_factory.mktemp("exact") / "lib", 2000, index="exact")


def test_hnsw_recall_on_2k_vectors(exact_2k, tmp_path):
    hnsw = _library(tmp_path / "hnsw", 2000, thresholds={"exact_below": 1000})
    assert hnsw.index_kind == "hnsw" and hnsw.manifest["index"]["requested"] == "auto"
    assert hnsw.manifest["index"]["params"]["M"] == 32
    queries = _unit(200, 99)
    assert _recall(Library.open(hnsw.path), exact_2k, queries, 10) >= 0.9


def test_ivfpq_recall_and_exact_scores(exact_2k, tmp_path):
    ivf = _library(tmp_path / "ivf", 2000, index="ivfpq")
    assert ivf.index_kind == "ivfpq"
    queries = _unit(100, 98)
    assert _recall(Library.open(ivf.path), exact_2k, queries, 10) >= 0.8
    hits = ivf.query_vectors(_unit(2000, 0)[17], k=3)[0]
    assert hits[0]["id"] == 17 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)  # re-scored exactly


def test_auto_kind_switches_as_the_library_grows(tmp_path):
    lib = _library(tmp_path / "grow", 50, thresholds={"exact_below": 100, "hnsw_below": 300})
    assert lib.index_kind == "exact"
    lib.add(_unit(100, 1), _entries(100, 50))
    assert lib.index_kind == "hnsw" and lib.index.ntotal == 150
    lib.add(_unit(250, 2), _entries(250, 150))
    lib = Library.open(lib.path)
    assert lib.index_kind == "ivfpq" and lib.count == 400
    for block, seed, row in ((0, 0, 7), (50, 1, 3), (150, 2, 200)):
        assert lib.query_vectors(_unit(400, seed)[row], k=1)[0][0]["id"] == block + row


def test_forced_kind_stays_and_ivfpq_needs_training_data(tmp_path):
    lib = _library(tmp_path / "forced", 30, index="hnsw")
    assert lib.index_kind == "hnsw"
    lib.add(_unit(5, 3), _entries(5, 30))
    assert Library.open(lib.path).index_kind == "hnsw"
    few = Library.create(tmp_path / "few", "random", DIM, index="ivfpq")
    with pytest.raises(InputError, match="ivfpq index needs at least 256 vectors"):
        few.add(_unit(100, 0), _entries(100))
    assert Library.open(few.path).count == 0


def test_rescored_search_returns_exact_scores_of_the_candidates():
    from gnnspec.library.index import build_index, rescored_search, search

    base = _unit(3000, 5)
    queries = base[:10] + 0.01 * _unit(10, 6)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    index = build_index("ivfpq", base, resolve_params("ivfpq", 3000, DIM, {"nlist": 16, "nprobe": 16}))
    scores, ids = rescored_search(index, base, queries, 5, rerank=600)  # every vector a candidate: exact
    exact_scores, exact_ids = search(build_index("exact", base, {}), queries, 5)
    assert np.array_equal(ids, exact_ids) and np.allclose(scores, exact_scores, atol=1e-5)
