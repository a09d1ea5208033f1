"""The site-choice simulation: committee and random rules on a problem where leverage matters."""

import numpy as np

from gnnspec.bench.site_choice import learning_curve, render, simulate


def _split(rng, n, spread):
    x = rng.normal(size=(n, 3)) * spread
    w = np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])
    return x, x @ w + rng.normal(scale=1.5, size=(n, 2))


def test_committee_picks_the_informative_sites_and_the_report_says_so():
    rng = np.random.default_rng(3)
    x, y = _split(rng, 60, 1.0)
    x[:10] *= 6.0  # a few far-out pool sites: informative for the slope, rarely drawn at random
    y[:10] = x[:10] @ np.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])
    val, test = _split(rng, 40, 4.0), _split(rng, 40, 4.0)
    r = simulate((x, y), val, test, draws=12)
    assert (r["n_pool"], r["n_start"], r["n_added"], r["n_test"]) == (60, 24, 18, 40)
    assert r["r2_committee"] > r["r2_random"] and r["diff_low"] <= r["diff"] <= r["diff_high"]
    # more sites, a better fit: the curve rises and so does its slope's sign
    curve = learning_curve((x, y), val, test, draws=12)
    assert curve["sites"] == [15, 30, 45, 60] and curve["r2"][0] < curve["r2"][-1] and curve["gain_per_doubling"] > 0
    assert curve["last_gain_per_doubling"] == (curve["r2"][3] - curve["r2"][2]) / np.log2(60 / 45)
    text = render({"X-K-xas": {**r, "curve": curve}}, "test", "scf", 12)
    assert "| X-K-xas | 60 | 24 + 18 | 40 |" in text and "| X-K-xas | 15: " in text and "| mean |" in text
