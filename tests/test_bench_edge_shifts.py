"""The edge-shift benchmark: a known slope through its fit, and through real LMDB records."""

import numpy as np
import pytest
from model_fixtures import write_synthetic_lmdb
from pymatgen.core import Structure

from gnnspec.bench.edge_shifts import describe, edge_shift_table, line_fit, site_rows
from gnnspec.channels import CHANNELS
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore


def test_line_fit_recovers_a_slope_and_brackets_it():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), 4)
    x = np.repeat(rng.uniform(0.5, 1.0, 30), 4)  # one x per group, as Li content per supercell
    y = 8333.0 - 2.0 * x + rng.normal(0.0, 0.2, len(x)) + np.repeat(rng.normal(0.0, 0.2, 30), 4)
    fit = line_fit(x, y, groups, draws=500)
    assert fit["slope"] == pytest.approx(-2.0, abs=0.6) and fit["low"] < -2.0 < fit["high"]
    assert fit["low"] < fit["slope"] < fit["high"] and fit["r"] < -0.5 and fit["n"] == 120


def test_site_rows_read_feff_edges_li_content_and_bonds(tmp_path):
    """scf K-edge records whose half step sits 3 eV lower per unit Li: the table finds the slope."""
    data = write_synthetic_lmdb(tmp_path / "lmdb", splits=("train",) * 4 + ("test",) * 2, supercell=(2, 2, 1))
    store = SpectraStore(data, readonly=False)
    ch = CHANNELS["Ni-K-xas"]
    energy = ch.edge_energy - 5.0 + 0.5 * np.arange(131)
    want = {}
    for sid in store.structure_ids():
        s = Structure.from_dict(store.structure(sid)["structure"])
        li = sum(x.specie.symbol == "Li" for x in s) / sum(x.specie.symbol in ("Mn", "Co", "Ni") for x in s)
        items = {}
        for site in [i for i, x in enumerate(s) if x.specie.symbol == "Ni"][:3]:
            at = ch.edge_energy + 10.0 - 3.0 * li
            step = 1.0 / (1.0 + np.exp(-(energy - at) / 0.7))
            items[schema.spectrum_key(sid, site, "Ni-K-xas", "scf")] = schema.spectrum_record(energy, step, "scf", "", "test", 0.0)
            want[(sid, site)] = (li, at)
        store.put_many(items)
    rows = site_rows(SpectraStore(data))
    assert {(r["sid"], r["site"]) for r in rows} == set(want)
    for r in rows:
        assert r["li_per_tm"] == pytest.approx(want[(r["sid"], r["site"])][0])
        assert r["edge_eV"] == pytest.approx(want[(r["sid"], r["site"])][1], abs=0.05)
        assert 1.7 < r["mo_A"] < 2.4
    from test_library_helpers import tiny_model

    table = edge_shift_table(tiny_model(), str(data))  # a one-tier model: FEFF's fits only
    assert set(table) == {"Ni-K-xas"} and "test" not in table["Ni-K-xas"] and "feff_contrast" not in table["Ni-K-xas"]
    assert table["Ni-K-xas"]["feff"]["edge_vs_li"]["slope"] == pytest.approx(-3.0, abs=0.05)
    assert table["Ni-K-xas"]["feff"]["shift_li_1_to_0p5_eV"] == pytest.approx(1.5, abs=0.03)
    title, intro, lines = describe(None, table)
    assert "Ni-K-xas" in "\n".join(lines) and "3.3-3.6 eV" in intro


def test_the_page_scores_the_calibrated_spread_on_the_test_sites():
    fit = {"slope": -2.0, "low": -3.0, "high": -1.0, "r": -0.3, "n": 10}
    feff = {"edge_vs_li": fit, "edge_vs_mo": fit, "mo_vs_li": fit, "shift_li_1_to_0p5_eV": 1.0, "li_range": [0.5, 1.0], "sites": 10, "supercells": 4}
    test = {"feff_edge_vs_li": fit, "model_edge_vs_li": fit, "model_edge_vs_feff": fit, "rms_error_eV": 0.3, "sites": 10}
    _, _, lines = describe(None, {"Ni-K-xas": {"feff": feff, "test": {**test, "within_spread": 0.8, "median_spread_eV": 0.36}}})
    assert lines[-1].endswith("| 0.30 | 80% (0.36) |")
    _, _, lines = describe(None, {"Ni-K-xas": {"feff": feff, "test": test}})  # no edge calibration
    assert lines[-1].endswith("| 0.30 | - |")
