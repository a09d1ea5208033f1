"""The site-choice simulation: committee and random rules on a problem where leverage matters."""

import numpy as np

from gnnspec.bench.site_choice import render, simulate


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
    text = render({"X-K-xas": r}, "test", "scf", 12)
    assert "| X-K-xas | 60 | 24 + 18 | 40 |" in text and "| mean |" in text
