"""The shared scores (gnnspec.scoring) on hand-computed cases."""

import numpy as np
import pytest

from gnnspec.scoring import hit_rates, property_metrics


def test_hit_rates_of_a_match_matrix():
    match = np.array([[True, False, False], [False, False, True], [False, False, False], [False, True, False]])
    assert hit_rates(match, 3) == {"hit@1": 0.25, "hit@3": 0.75}
    assert hit_rates(match, 2) == {"hit@1": 0.25, "hit@2": 0.5}  # only the first k ranks count
    assert hit_rates(np.array([True, False]), 1) == {"hit@1": 0.5}  # one rank per query
    assert hit_rates(np.zeros((0, 5), dtype=bool), 5) == {"hit@1": None, "hit@5": None}


def test_property_metrics_by_hand():
    content_pred = np.array([[0.5, 0.5], [1.0, 0.0]])
    content = np.array([[0.25, 0.75], [1.0, 0.0]])
    prob = np.array([[0.9, 0.2], [0.1, 0.4], [0.8, 0.6]])
    defects = np.array([[1, 0], [0, 0], [0, 1]])
    out = property_metrics(content_pred, content, prob[:2], defects[:2], ["o_vacancy", "antisite"])
    assert list(out) == ["auroc_o_vacancy", "auroc_antisite", "content_mae"]
    assert out["content_mae"] == pytest.approx(0.125) and out["auroc_o_vacancy"] == 1.0
    assert np.isnan(out["auroc_antisite"])  # one class only
    three = property_metrics(np.zeros((3, 2)), np.zeros((3, 2)), prob, defects, ["o_vacancy", "antisite"])
    assert three["auroc_o_vacancy"] == 1.0 and three["auroc_antisite"] == 1.0


def test_edge_position_metrics_find_a_known_shift():
    """Predictions that are the targets moved 1.5 eV down: every fitted shift is +1.5 eV and the
    aligned R^2 is about 1 while the plain one is far below."""
    from gnnspec.scoring import edge_position_metrics, spectrum_metrics

    step = 0.5
    e = np.arange(-10, 50, step)
    centres = np.array([0.0, 1.0, 2.5, 4.0])
    target = np.stack([1 / (1 + np.exp(-(e - c) / 0.8)) + 2 * np.exp(-((e - c - 3) ** 2) / 2) for c in centres])
    pred = np.stack([np.interp(e + 1.5, e, t) for t in target])  # the same spectra, 1.5 eV too low
    m = edge_position_metrics(pred, target, step)
    assert m["shift_mean_ev"] == pytest.approx(1.5, abs=1e-9)
    assert m["shift_rms_ev"] == pytest.approx(1.5, abs=1e-9)
    assert m["r2_aligned"] > 0.999
    assert spectrum_metrics(pred, target)["r2"] < 0.8
    exact = edge_position_metrics(target, target, step)
    assert exact["shift_rms_ev"] == 0.0 and exact["r2_aligned"] == pytest.approx(1.0)


def test_paired_bootstrap_separates_a_real_difference_from_noise():
    """Two predictions of 30 spectra: one with a fifth of the other's error. The paired interval of
    the difference excludes 0; a prediction against itself differs by exactly 0."""
    from gnnspec.scoring import paired_r2_bootstrap, spectrum_metrics

    rng = np.random.default_rng(1)
    target = rng.normal(size=(30, 40))
    good, bad = target + 0.1 * rng.normal(size=target.shape), target + 0.5 * rng.normal(size=target.shape)
    b = paired_r2_bootstrap({"bad": bad, "good": good, "same": bad}, target, reference="bad", n_boot=500)
    assert b["good"]["r2"] == pytest.approx(spectrum_metrics(good, target)["r2"])
    assert b["good"]["r2_low"] < b["good"]["r2"] < b["good"]["r2_high"]
    assert 0 < b["good"]["diff_low"] < b["good"]["diff"] < b["good"]["diff_high"]
    assert b["same"]["diff"] == b["same"]["diff_low"] == b["same"]["diff_high"] == 0.0
