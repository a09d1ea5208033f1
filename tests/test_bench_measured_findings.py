"""The measured page's "What it shows" lines are written from the run's own numbers."""

from gnnspec.bench.measured import render, summarise
from gnnspec.bench.measured_findings import findings, nmc_edge_spread


def _row(compound, method, edge, spearman, measured="SSRL XDI"):
    return {
        "compound": compound,
        "channel": "Mn-K-xas",
        "measured": measured,
        "method": method,
        "edge_simulated_eV": edge,
        "edge_measured_eV": 6540.0,
        "edge_error_eV": edge - 6540.0,
        "spearman": spearman,
        "cosine": 0.99,
    }


def _result():
    rows = [
        _row("MnO", "FEFF scf", 6549.0, 0.70),
        _row("Mn2O3", "FEFF scf", 6552.0, 0.87),
        _row("beta-MnO2", "FEFF scf", 6555.0, 0.97),
        _row("MnO", "forward model (scf)", 6553.5, 0.24),
        _row("Mn2O3", "forward model (scf)", 6553.0, 0.92),
        _row("beta-MnO2", "forward model (scf)", 6554.7, 0.95),
    ]
    result = summarise(rows)
    result["model_edge_spread_eV"] = {"forward model (scf)": {"MnO": 9.0, "Mn2O3": 4.3, "beta-MnO2": 0.3}}
    result["reference_edges"] = [
        {"compound": "MnO", "measured": "SSRL XDI", "edge_as_given_eV": 6543.6, "edge_eV": 6546.9, "training_p01_eV": 6551.3, "training_p99_eV": 6555.9,
         "energy_scale_tolerance_eV": 1.57, "inside_training_range": False, "in_distribution": False},
        {"compound": "beta-MnO2", "measured": "SSRL XDI", "edge_as_given_eV": 6551.4, "edge_eV": 6554.7, "training_p01_eV": 6551.3, "training_p99_eV": 6555.9,
         "energy_scale_tolerance_eV": 1.57, "inside_training_range": True, "in_distribution": True},
    ]
    return result


def test_findings_state_the_valence_order_shape_and_spread_of_each_method():
    text = "\n".join(findings(_result()))
    # FEFF scf: MnO < Mn2O3 < beta-MnO2, 3 of 3; the model puts MnO above Mn2O3: 2 of 3
    assert "FEFF scf 3 of 3" in text and "forward model (scf) 2 of 3" in text and "(most: FEFF scf)" in text
    assert "FEFF scf 0.70-0.97" in text and "Below 0.5 for the forward model (scf): MnO 0.24." in text
    # spreads of 1 eV or more are named as not known, the narrow one as known
    assert "(MnO, Mn2O3)" in text and "known: beta-MnO2." in text
    assert "NMC test sites" not in text  # no NMC spread given: no comparison claimed
    assert "outside: MnO (SSRL XDI) 4.4 eV below" in text and "inside: beta-MnO2 (SSRL XDI)" in text
    assert "the energy scale's error: 1.6 eV" in text and "1 of 2 in distribution" in text


def test_the_nmc_spread_enters_when_make_bench_stores_it():
    edge_shifts = {"Mn-K-xas": {"test": {"median_spread_eV": 0.22}}, "Ni-K-xas": {"test": {"median_spread_eV": 0.38}}, "Co-K-xas": {}}
    assert nmc_edge_spread(edge_shifts) == (0.22, 0.38) and nmc_edge_spread(None) is None
    result = _result() | {"nmc_edge_spread_eV": [0.22, 0.38]}
    assert "median ± 0.22-0.38 eV on the NMC test sites" in "\n".join(findings(result))


def test_the_page_opens_with_the_findings_and_changes_with_the_numbers():
    result = _result()
    page = render(result, "test")
    assert page.index("What it shows") < page.index("| compound | measured | method |")
    result["model_edge_spread_eV"]["forward model (scf)"] = {"MnO": 0.4, "Mn2O3": 0.5, "beta-MnO2": 0.3}
    again = render(result, "test")
    assert "disagree on the edge itself" in page and "disagree on the edge itself" not in again


def test_no_numbers_no_findings():
    assert findings({"rows": [], "valence_order": {}, "measured_edges_eV": {}}) == []
