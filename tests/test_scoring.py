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
