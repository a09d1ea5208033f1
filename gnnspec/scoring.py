"""Scores, in plain numpy: the one place every evaluation computes them.

Training metrics (:mod:`gnnspec.train.metrics`), the alignment stage, ``gnnspec evaluate``,
``gnnspec library evaluate`` and ``make bench`` all score through these functions:

* :func:`auroc`: area under the ROC curve of a score against 0/1 labels;
* :func:`spectrum_metrics`: R^2 (around the mean spectrum, and the per-spectrum median), MSE and
  cosine of predicted spectra (normalised intensity, :mod:`gnnspec.channels`);
* :func:`edge_position_metrics`: how much of a spectrum error is the edge's position: the energy
  shift that best aligns each prediction with its target, and R^2 after that shift;
* :func:`paired_r2_bootstrap`: confidence intervals of several predictions' R^2 on the same few
  spectra, and of their differences to a reference, resampling the spectra together;
* :func:`property_metrics`: element-content MAE (atom fraction, mean over elements) and AUROC per
  defect (:mod:`gnnspec.labels`);
* :func:`hit_rates`: retrieval hit@1 and hit@k from a query-by-rank matrix of label matches
  (whether hit r of query q shares the query's labels, :func:`gnnspec.structures.environments.labels_match`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN for one class."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    """R^2 of ``pred`` around the mean of ``target`` over rows (NaN when the rows are all equal)."""
    tot = ((target - target.mean(axis=0, keepdims=True)) ** 2).sum()
    return float(1.0 - ((pred - target) ** 2).sum() / tot) if tot > 0 else float("nan")


def spectrum_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Metrics of predicted spectra ``pred`` against ``target`` (``[n, K]``, one row per spectrum).

    ``r2``: R^2 around the channel's mean spectrum (the mean spectrum scores 0: how much of the
    spectrum-to-spectrum variation is predicted); ``r2_median``: the median over spectra of each
    spectrum's own R^2 around its mean intensity (the usual per-spectrum score of XANES
    surrogates; the mean spectrum already scores about 0.9 on it); ``mse``; mean ``cosine``.
    """
    if len(pred) == 0:
        return {"mse": float("nan"), "r2": float("nan"), "r2_median": float("nan"), "cosine": float("nan"), "n": 0}
    sq = (pred - target) ** 2
    res_each = sq.sum(1)
    tot_each = ((target - target.mean(1, keepdims=True)) ** 2).sum(1)
    cos = (pred * target).sum(1) / np.maximum(np.linalg.norm(pred, axis=1) * np.linalg.norm(target, axis=1), 1e-12)
    return {
        "mse": float(sq.mean()),
        "r2": _r2(pred, target),
        "r2_median": float(np.median(1 - res_each / np.maximum(tot_each, 1e-12))),
        "cosine": float(cos.mean()),
        "n": int(len(pred)),
    }


def edge_position_metrics(pred: np.ndarray, target: np.ndarray, step_ev: float, max_shift_ev: float = 5.0, resolution_ev: float = 0.1) -> dict[str, float]:
    """Split the error of ``pred`` against ``target`` (``[n, K]`` on one uniform grid of spacing
    ``step_ev`` eV) into the edge's position and the rest.

    For each spectrum, the rigid energy shift ``s`` (``-max_shift_ev`` to ``max_shift_ev`` in steps
    of ``resolution_ev``; linear interpolation, end values held) that minimises the squared error
    of the prediction moved by ``s`` against the target: ``s > 0`` means the predicted spectrum
    lies ``s`` eV too low. Returns ``shift_mean_ev`` (signed bias), ``shift_rms_ev``,
    ``shift_median_abs_ev`` and ``r2_aligned``: R^2 around the channel's mean spectrum of the
    shifted predictions (an upper bound on what a model with the edges exactly in place would
    score, since the shift is fitted against the target).
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if len(pred) == 0:
        return {"shift_mean_ev": float("nan"), "shift_rms_ev": float("nan"), "shift_median_abs_ev": float("nan"), "r2_aligned": float("nan")}
    n = int(round(max_shift_ev / resolution_ev))
    shifts = resolution_ev * np.arange(-n, n + 1)  # holds 0 exactly
    x = np.arange(pred.shape[1], dtype=np.float64)
    best = np.zeros(len(pred))
    aligned = np.empty_like(pred)
    for i, (p, t) in enumerate(zip(pred, target)):
        moved = np.stack([np.interp(x - s / step_ev, x, p) for s in shifts])
        j = int(((moved - t) ** 2).sum(1).argmin())
        best[i], aligned[i] = shifts[j], moved[j]
    return {
        "shift_mean_ev": float(best.mean()),
        "shift_rms_ev": float(np.sqrt((best**2).mean())),
        "shift_median_abs_ev": float(np.median(np.abs(best))),
        "r2_aligned": _r2(aligned, target),
    }


def paired_r2_bootstrap(
    preds: dict[str, np.ndarray], target: np.ndarray, reference: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap of R^2 around the mean spectrum for each prediction in ``preds``
    (``{label: [n, K]}``, all of the same ``target`` rows), resampling the rows with replacement,
    the same draws for every label (paired), ``n_boot`` draws from ``numpy.random.default_rng(seed)``.

    Per label: ``r2`` (all rows), ``r2_low``/``r2_high`` (the ``level`` interval), and against
    ``reference``: ``diff`` (R^2 minus the reference's), ``diff_low``/``diff_high``. With a few
    spectra per channel, the interval says whether one model beating another is more than the
    draw of test sites.
    """
    target = np.asarray(target, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(target), size=(n_boot, len(target)))
    boot = {lab: np.array([_r2(np.asarray(p)[d], target[d]) for d in draws]) for lab, p in preds.items()}
    full = {lab: _r2(np.asarray(p), target) for lab, p in preds.items()}
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for lab in preds:
        diff = boot[lab] - boot[reference]
        out[lab] = {
            "r2": full[lab],
            "r2_low": float(np.nanpercentile(boot[lab], lo)),
            "r2_high": float(np.nanpercentile(boot[lab], hi)),
            "diff": full[lab] - full[reference],
            "diff_low": float(np.nanpercentile(diff, lo)),
            "diff_high": float(np.nanpercentile(diff, hi)),
        }
    return out


def property_metrics(
    content_pred: np.ndarray, content: np.ndarray, defect_prob: np.ndarray, defects: np.ndarray, defect_names: Sequence[str]
) -> dict[str, float]:
    """``{"auroc_<defect>"..., "content_mae"}`` of predicted defect probabilities ``[n, n_def]`` and
    content fractions ``[n, n_el]`` against the labels (AUROC NaN where one class is absent)."""
    out = {f"auroc_{name}": auroc(np.asarray(defect_prob)[:, j], np.asarray(defects)[:, j]) for j, name in enumerate(defect_names)}
    out["content_mae"] = float(np.abs(np.asarray(content_pred) - np.asarray(content)).mean())
    return out


def hit_rates(match: np.ndarray, k: int) -> dict[str, float | None]:
    """``{"hit@1", "hit@k"}`` of a ``[queries, ranks]`` boolean match matrix (rank 0 first; a query
    with fewer than ``k`` hits is padded with False); ``None`` for no queries."""
    match = np.asarray(match, dtype=bool)
    if len(match) == 0:
        return {"hit@1": None, f"hit@{k}": None}
    match = match[:, None] if match.ndim == 1 else match
    return {"hit@1": float(match[:, 0].mean()), f"hit@{k}": float(match[:, :k].any(1).mean())}
