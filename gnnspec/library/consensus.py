"""Consensus ranking of library hits: the labels most of the nearest entries share come first.

Plain (``cosine``) ranking returns the entries nearest to the query in the embedding space.
When a spectrum embedding lands between environments of different labels, its single nearest
entry is a coin toss between them, while its neighbourhood as a whole still says which labels
are most likely. ``consensus`` ranking uses that:

1. take the ``pool`` nearest entries by cosine (default: :func:`default_pool`, the square root
   of the library size; at most the library size);
2. give each its **support**: the fraction of the pool whose labels it shares
   (:func:`gnnspec.structures.environments.labels_match`: equal defect labels, element content
   within ``CONTENT_TOL``), itself included; an entry with unknown defect labels shares labels
   with nothing and gets support 0;
3. order the pool by support, then by cosine; walking down that order, take each entry whose
   labels differ from those of every entry taken so far, until ``k`` are taken (when the pool
   holds fewer label classes than ``k``, the rest follow in the same order).

The support is a k-nearest-neighbour estimate of the probability that the query has the entry's
labels, so the hits are the label hypotheses from most to least probable, each represented by
its best-supported entry: the first hit is the answer to "what is this environment most likely
to be", and the next ones are the alternatives, not near-copies of the first. Every hit keeps
its cosine ``score`` and gains ``support``.

The default pool follows the square-root rule of k-nearest-neighbour estimates: it grows with
the library, whose label classes hold more entries as it grows, but more slowly, so the
neighbourhood stays local. Measured on the validation split (shipped model, library of the
3,632 training environments, where the rule gives 60; the 1,229 validation environments as
queries): from the spectra alone, label-match hit@1 0.784 with cosine ranking and 0.792 / 0.794 /
0.794 / 0.793 / 0.775 / 0.725 with pools of 20 / 50 / 60 / 100 / 200 / 400; with each query's
exact elemental quantification, 0.911 with cosine and 0.910 / 0.909 / 0.907 / 0.902 / 0.883 /
0.824 (consensus then adds nothing at rank 1; its distinct alternatives still raise hit@k).
A pool much larger than one label class's neighbourhood drifts towards the library's most
common labels, and rare label combinations are then never ranked first.
"""

from __future__ import annotations

import math

import numpy as np

# gnnspec.structures.environments (pymatgen) is imported inside the functions: the CLI reads
# RANKINGS without loading it.
RANKINGS = ("cosine", "consensus")


def default_pool(count: int) -> int:
    """Pool of a library of ``count`` entries: the rounded square root, at least 1."""
    return max(1, round(math.sqrt(count)))


def pool_size(count: int, pool: int | None) -> int:
    """The pool used for a library of ``count`` entries: ``pool`` (or the default), at most ``count``."""
    return min(int(count), default_pool(count) if pool is None else int(pool))


def check_ranking(rank: str, pool: int | None) -> None:
    """Refuse an unknown ``rank`` or, for consensus, a ``pool`` below 1 (:class:`InputError`)."""
    from gnnspec.errors import InputError

    if rank not in RANKINGS:
        raise InputError(f"unknown ranking {rank!r}; choose one of: {', '.join(RANKINGS)}")
    if rank == "consensus" and pool is not None and int(pool) < 1:
        raise InputError(f"the consensus pool must hold at least 1 entry, got {pool}")


def entry_labels(entries: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Content ``[n, 5]`` and defects ``[n, 2]`` of library entries or hits (unknown defect: NaN, never equal)."""
    from gnnspec.labels import CONTENT_ELEMENTS, DEFECTS

    content = np.array([[e["composition"].get(el, 0.0) for el in CONTENT_ELEMENTS] for e in entries], dtype=np.float64)
    defects = np.array(
        [[np.nan if e["defects"].get(name) is None else float(e["defects"][name]) for name in DEFECTS] for e in entries],
        dtype=np.float64,
    )
    return content.reshape(-1, len(CONTENT_ELEMENTS)), defects.reshape(-1, len(DEFECTS))


def consensus_order(scores: np.ndarray, ids: np.ndarray, labels: dict[int, tuple[np.ndarray, np.ndarray]], k: int):
    """Re-rank one query's pool (``scores``/``ids`` best first, ``-1`` ids: none) by support, then cosine.

    ``labels``: ``{id: (content [5], defects [2])}`` of every pool entry. Returns the first ``k``
    ``(scores, ids, supports)``; a support is the fraction of the pool whose labels the entry
    shares (itself included).
    """
    from gnnspec.structures.environments import labels_match

    keep = ids >= 0
    scores, ids = scores[keep], ids[keep]
    if ids.size == 0:
        return scores, ids, np.zeros(0)
    content = np.stack([labels[int(i)][0] for i in ids])
    defects = np.stack([labels[int(i)][1] for i in ids])
    same = labels_match(content[:, None], defects[:, None], content[None], defects[None])  # [m, m], symmetric
    sup = same.mean(axis=1)
    order = np.lexsort((-scores, -sup))  # last key is primary: support, then cosine
    taken: list[int] = []
    for j in order:
        if len(taken) == k:
            break
        if not same[taken, j].any():
            taken.append(int(j))
    chosen_set = set(taken)
    rest = [int(j) for j in order if int(j) not in chosen_set]
    chosen = np.array(taken + rest[: k - len(taken)], dtype=np.int64)
    return scores[chosen], ids[chosen], sup[chosen]
