"""A measured K edge against the range of edges the model learned; the range from stored spectra."""

import numpy as np
import pytest
from model_fixtures import write_synthetic_lmdb

from gnnspec.channels import CHANNELS
from gnnspec.data import schema
from gnnspec.data.store import SpectraStore
from gnnspec.data.stored_edges import edge_ranges, stored_edges
from gnnspec.models.predicted_edges import measured_edges

CH = CHANNELS["Ni-K-xas"]


def _step(at: float, energy=None):
    energy = CH.grid if energy is None else energy
    return 1.0 / (1.0 + np.exp(-(energy - at) / 0.7))


def test_a_measured_edge_is_placed_against_the_training_range():
    calibration = {"training_edges": {"scf": {"Ni-K-xas": {"p01_eV": CH.edge_energy + 8.0, "p99_eV": CH.edge_energy + 12.0}}}}
    shifts = {"Ni-K-xas": 2.0}  # what infer moved the measured energies by
    inside = measured_edges({"Ni-K-xas": _step(CH.edge_energy + 10.0)}, shifts, calibration, "scf")["Ni-K-xas"]
    assert inside["edge_eV"] == pytest.approx(CH.edge_energy + 10.0, abs=0.05)
    assert inside["edge_as_given_eV"] == pytest.approx(CH.edge_energy + 8.0, abs=0.05)
    assert inside["inside_training_range"] and "why" not in inside
    low = measured_edges({"Ni-K-xas": _step(CH.edge_energy + 4.0)}, shifts, calibration, "scf")["Ni-K-xas"]
    assert not low["inside_training_range"] and low["why"].startswith("4.0 eV below") and "lower valence" in low["why"]
    assert low["energy_scale_tolerance_eV"] is None and "unknown error" in low["why"]  # the Ni K offset rests on NiO alone
    high = measured_edges({"Ni-K-xas": _step(CH.edge_energy + 15.0)}, shifts, calibration, "scf")["Ni-K-xas"]
    assert "higher valence" in high["why"]
    # another tier, or no calibration: the edge without a verdict; O K is no step edge
    other = measured_edges({"Ni-K-xas": _step(CH.edge_energy + 4.0), "O-K-xas": np.ones(121)}, {}, calibration, "fast")
    assert set(other) == {"Ni-K-xas"} and "inside_training_range" not in other["Ni-K-xas"]
    # a measurement that stops short of the step's top, or never rises, gets no edge
    short = CH.grid < CH.edge_energy + 40.0
    cut = measured_edges({"Ni-K-xas": _step(CH.edge_energy + 10.0)}, {}, calibration, "scf", coverage={"Ni-K-xas": short})["Ni-K-xas"]
    assert cut["edge_eV"] is None and "no edge placed" in cut["why"]
    flat = measured_edges({"Ni-K-xas": np.linspace(2.0, 1.0, 121)}, {}, calibration, "scf")["Ni-K-xas"]
    assert flat["edge_eV"] is None and "no rising step" in flat["why"]


def test_edge_ranges_of_stored_spectra_per_split(tmp_path):
    data = write_synthetic_lmdb(tmp_path / "lmdb", splits=("train",) * 3 + ("test",), supercell=(2, 2, 1))
    store = SpectraStore(data, readonly=False)
    energy = CH.edge_energy - 5.0 + 0.5 * np.arange(131)
    want = {"train": [], "test": []}
    for sid in store.structure_ids():
        split = store.structure(sid)["split"]
        for k in range(3):
            at = CH.edge_energy + 5.0 + 2.0 * sid + 0.5 * k
            store.put_many({schema.spectrum_key(sid, 10 + k, "Ni-K-xas", "scf"): schema.spectrum_record(energy, _step(at, energy), "scf", "", "t", 0.0)})
            want[split].append(at)
    found = [(sid, site, edge) for sid, _, site, _, edge in stored_edges(SpectraStore(data), "scf", split="train")]
    assert len(found) == 9 and all(site in (10, 11, 12) for _, site, _ in found)
    np.testing.assert_allclose(sorted(e for *_, e in found), sorted(want["train"]), atol=0.05)
    r = edge_ranges(SpectraStore(data), ["scf", "synthetic"])
    assert set(r) <= {"scf", "synthetic"} and set(r["scf"]) == {"Ni-K-xas"}
    ni = r["scf"]["Ni-K-xas"]
    assert ni["n"] == 9 and ni["min_eV"] == pytest.approx(min(want["train"]), abs=0.05)
    assert ni["p01_eV"] <= ni["p50_eV"] <= ni["p99_eV"] <= ni["max_eV"] == pytest.approx(max(want["train"]), abs=0.05)


def test_an_offset_energy_scale_gives_its_error_as_tolerance():
    """Mn K energies moved by the shipped scf offset carry its leave-one-compound-out RMS: an edge
    1 eV below the range is within it; given on FEFF's scale (not moved) it is outside."""
    from gnnspec.edge_offsets import read_edge_offsets

    mn = CHANNELS["Mn-K-xas"]
    loco = read_edge_offsets()[("Mn-K-xas", "scf")].loco_rms_eV
    assert loco > 1.0
    calibration = {"training_edges": {"scf": {"Mn-K-xas": {"p01_eV": mn.edge_energy + 12.0, "p99_eV": mn.edge_energy + 16.0}}}}
    y = {"Mn-K-xas": 1.0 / (1.0 + np.exp(-(mn.grid - mn.edge_energy - 11.0) / 0.7))}
    moved = measured_edges(y, {"Mn-K-xas": 3.35}, calibration, "scf")["Mn-K-xas"]
    assert moved["energy_scale_tolerance_eV"] == pytest.approx(loco) and moved["inside_training_range"]
    given = measured_edges(y, {}, calibration, "scf")["Mn-K-xas"]
    assert given["energy_scale_tolerance_eV"] == 0.0 and not given["inside_training_range"]
