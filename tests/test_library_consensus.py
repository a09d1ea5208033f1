"""Consensus ranking: the label class most of the nearest entries share comes first, alternatives follow."""

from __future__ import annotations

import numpy as np
import pytest
from test_library_helpers import FakeEmbedder  # noqa: F401  (sets single-threaded torch/faiss)

from gnnspec.errors import InputError
from gnnspec.library import Library
from gnnspec.library.consensus import consensus_order, entry_labels

DIM = 4
PRISTINE = {"o_vacancy": False, "antisite": False}
VACANCY = {"o_vacancy": True, "antisite": False}
LI_RICH = {"Li": 0.4, "Ni": 0.1, "Mn": 0.0, "Co": 0.0, "O": 0.5}
NI_RICH = {"Li": 0.1, "Ni": 0.4, "Mn": 0.0, "Co": 0.0, "O": 0.5}


def _entry(composition: dict, defects: dict, site: int) -> dict:
    return {
        "structure_id": "s0",
        "site": site,
        "element": "O",
        "composition": composition,
        "defects": defects,
        "split": "train",
        "source": "unit-test",
        "structure": None,
    }


def _towards(cos: float) -> np.ndarray:
    """A unit vector at cosine ``cos`` from the query direction e0."""
    return np.array([cos, np.sqrt(1.0 - cos * cos), 0.0, 0.0], dtype=np.float32)


@pytest.fixture
def lib(tmp_path):
    """Nearest entry: pristine Li-rich (0.99); then three O-vacancy Li-rich (0.98-0.96); one Ni-rich (0.95);
    an entry with an unknown defect label (0.94); far away, pristine Li-rich entries (0.10)."""
    rows = [
        (0.99, LI_RICH, PRISTINE),
        (0.98, LI_RICH, VACANCY),
        (0.97, LI_RICH, VACANCY),
        (0.96, LI_RICH, VACANCY),
        (0.95, NI_RICH, PRISTINE),
        (0.94, LI_RICH, {"o_vacancy": None, "antisite": False}),
        (0.10, LI_RICH, PRISTINE),
        (0.10, LI_RICH, PRISTINE),
        (0.10, LI_RICH, PRISTINE),
    ]
    lib = Library.create(tmp_path / "lib", "hash-a", DIM)
    lib.add(np.stack([_towards(c) for c, _, _ in rows]), [_entry(comp, d, i) for i, (_, comp, d) in enumerate(rows)])
    return lib


QUERY = np.array([1.0, 0.0, 0.0, 0.0])


def test_cosine_ranking_is_nearest_first(lib):
    hits = lib.query_vectors(QUERY, k=3)[0]
    assert [h["id"] for h in hits] == [0, 1, 2] and "support" not in hits[0]


def test_consensus_puts_the_best_supported_labels_first_then_distinct_alternatives(lib):
    hits = lib.query_vectors(QUERY, k=4, rank="consensus", pool=6)[0]
    # pool = ids 0-5: three vacancy entries agree, the pristine Li-rich and the Ni-rich stand alone,
    # the unknown-label entry shares labels with nothing
    assert [h["id"] for h in hits] == [1, 0, 4, 5]
    assert [h["support"] for h in hits] == pytest.approx([3 / 6, 1 / 6, 1 / 6, 0.0])
    assert hits[0]["defects"] == VACANCY and hits[0]["score"] == pytest.approx(0.98, abs=1e-5)
    # more hits than label classes: the remaining pool entries follow in support order
    six = lib.query_vectors(QUERY, k=6, rank="consensus", pool=6)[0]
    assert [h["id"] for h in six] == [1, 0, 4, 5, 2, 3]


def test_a_pool_reaching_the_far_entries_changes_the_majority(lib):
    # with the three far pristine Li-rich entries in the pool, pristine Li-rich has support 4/9
    hits = lib.query_vectors(QUERY, k=2, rank="consensus", pool=100)[0]
    assert [h["id"] for h in hits] == [0, 1]
    assert [h["support"] for h in hits] == pytest.approx([4 / 9, 3 / 9])


def test_default_pool_is_the_square_root_of_the_library_size(lib):
    from gnnspec.library.consensus import default_pool, pool_size

    assert [default_pool(n) for n in (1, 9, 2449, 1_000_000)] == [1, 3, 49, 1000]
    assert pool_size(9, None) == 3 and pool_size(9, 100) == 9
    # pool 3 = ids 0-2: the two vacancy entries outvote the nearest, pristine one
    hits = lib.query_vectors(QUERY, k=2, rank="consensus")[0]
    assert [h["id"] for h in hits] == [1, 0] and [h["support"] for h in hits] == pytest.approx([2 / 3, 1 / 3])


def test_query_arguments_are_checked(lib):
    with pytest.raises(InputError, match="unknown ranking 'majority'"):
        lib.query_vectors(QUERY, rank="majority")
    with pytest.raises(InputError, match="consensus pool must hold at least 1"):
        lib.query_vectors(QUERY, rank="consensus", pool=0)


def test_consensus_order_of_one_pool_directly():
    entries = [_entry(LI_RICH, VACANCY, 0), _entry(LI_RICH, PRISTINE, 1), _entry(LI_RICH, PRISTINE, 2)]
    content, defects = entry_labels(entries)
    labels = {10 + i: (c, d) for i, (c, d) in enumerate(zip(content, defects))}
    scores, ids, support = consensus_order(np.array([0.9, 0.8, 0.7, -1.0]), np.array([10, 11, 12, -1]), labels, k=2)
    assert ids.tolist() == [11, 10] and scores.tolist() == pytest.approx([0.8, 0.9])
    assert support.tolist() == pytest.approx([2 / 3, 1 / 3])
