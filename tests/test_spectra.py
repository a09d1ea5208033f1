import json

import numpy as np
import pytest

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, to_channel_grid
from gnnspec.errors import InputError
from gnnspec.spectra import (
    SCHEMA,
    Spectrum,
    on_grid_by_channel,
    read_spectra,
    read_spectra_batch,
    spectra_on_grids,
    write_spectra,
    write_spectra_batch,
)


def _spectrum(name: str, shift: float = 0.0, n: int = 200) -> Spectrum:
    ch = CHANNELS[name]
    energy = np.linspace(ch.grid[0] - 5, ch.grid[-1] + 5, n)
    intensity = 1.0 + np.tanh(energy - ch.edge_energy) + 0.1 * np.sin(energy)
    energy = energy + shift  # the same spectrum, displaced by ``shift`` eV
    return Spectrum(name, energy, intensity)


def _obj(**channels) -> dict:
    return {"schema": SCHEMA, "channels": channels, "meta": {}}


def test_round_trip_keeps_every_value_and_the_meta(tmp_path):
    spectra = {name: _spectrum(name) for name in ("O-K-eels", "Ni-K-xas")}
    meta = {"source": "unit test", "shift_eV": np.float64(1.5), "nested": {"values": np.arange(3)}}
    path = write_spectra(tmp_path / "s.json", spectra, meta)
    back, back_meta = read_spectra(path)
    assert list(back) == ["O-K-eels", "Ni-K-xas"]  # canonical channel order
    for name, spectrum in spectra.items():
        assert back[name].energy.dtype == np.float64
        np.testing.assert_array_equal(back[name].energy, spectrum.energy)
        np.testing.assert_array_equal(back[name].intensity, spectrum.intensity)
    assert back_meta == {"source": "unit test", "shift_eV": 1.5, "nested": {"values": [0, 1, 2]}}
    assert json.loads(path.read_text())["schema"] == SCHEMA


def test_read_accepts_a_dict():
    spectra, meta = read_spectra(_obj(**{"Ni-L3-eels": {"energy": [850.0, 851.0], "intensity": [1, 2]}}))
    assert spectra["Ni-L3-eels"].intensity.tolist() == [1.0, 2.0]
    assert meta == {}


BAD = {
    "schema": ({"schema": "gnnspec.spectra/2", "channels": {}}, "schema is 'gnnspec.spectra/2'"),
    "channel": (_obj(**{"Ni-L2-eels": {"energy": [1, 2], "intensity": [1, 2]}}), "valid channels: Li-K-xas"),
    "lengths": (_obj(**{"Ni-K-xas": {"energy": [1, 2, 3], "intensity": [1, 2]}}), "equal lengths"),
    "points": (_obj(**{"Ni-K-xas": {"energy": [1], "intensity": [1]}}), "at least 2 points"),
    "increasing": (_obj(**{"Ni-K-xas": {"energy": [1, 3, 2], "intensity": [1, 2, 3]}}), "strictly increasing"),
    "finite": (_obj(**{"Ni-K-xas": {"energy": [1, 2], "intensity": [1, float("nan")]}}), "non-finite"),
    "numbers": (_obj(**{"Ni-K-xas": {"energy": [1, "2"], "intensity": [1, 2]}}), "list of numbers"),
    "keys": (_obj(**{"Ni-K-xas": {"energy": [1, 2], "counts": [1, 2]}}), "exactly 'energy' and 'intensity'"),
    "empty": (_obj(), "non-empty"),
    "top": ({**_obj(**{"Ni-K-xas": {"energy": [1, 2], "intensity": [1, 2]}}), "chanels": {}}, "unknown top-level key"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_malformed_file_is_refused_naming_file_and_channel(tmp_path, case):
    obj, message = BAD[case]
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(InputError) as err:
        read_spectra(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    if case in ("lengths", "points", "increasing", "finite"):
        assert "channel Ni-K-xas" in str(err.value)


def test_not_json_and_missing_file_are_input_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_spectra(bad)
    with pytest.raises(InputError, match="cannot read"):
        read_spectra(tmp_path / "missing.json")


def test_write_refuses_invalid_spectra(tmp_path):
    with pytest.raises(InputError, match="strictly increasing"):
        write_spectra(tmp_path / "x.json", [Spectrum("Ni-K-xas", [2.0, 1.0], [1.0, 1.0])])
    with pytest.raises(InputError, match="non-finite"):
        write_spectra(tmp_path / "x.json", [Spectrum("Ni-K-xas", [1.0, 2.0], [1.0, np.inf])])


def test_batch_from_jsonl_and_from_a_folder(tmp_path):
    records = [("a", {"O-K-xas": _spectrum("O-K-xas")}), ("b", {"Mn-K-xas": _spectrum("Mn-K-xas")})]
    jsonl = write_spectra_batch(tmp_path / "batch.jsonl", records)
    with jsonl.open("a") as out:  # a record without id and a blank line
        out.write("\n" + json.dumps(_obj(**{"Ni-K-xas": {"energy": [8330.0, 8400.0], "intensity": [1, 2]}})) + "\n")
    got = read_spectra_batch(jsonl)
    assert [obj_id for obj_id, _ in got] == ["a", "b", "batch:4"]
    assert list(got[1][1]) == ["Mn-K-xas"]

    folder = tmp_path / "folder"
    for obj_id, spectra in records:
        write_spectra(folder / f"{obj_id}.json", spectra)
    assert [obj_id for obj_id, _ in read_spectra_batch(folder)] == ["a", "b"]


def test_batch_errors_name_the_line(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(_obj(**{"Ni-K-xas": {"energy": [1, 2], "intensity": [1, 2]}})) + "\n{oops\n")
    with pytest.raises(InputError, match=r"b.jsonl line 2: not valid JSON"):
        read_spectra_batch(path)
    line = json.dumps({"id": "x", **_obj(**{"Ni-K-xas": {"energy": [1, 2], "intensity": [1, 2]}})})
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(InputError, match="'x' appears more than once"):
        read_spectra_batch(path)


@pytest.mark.parametrize("name", CHANNEL_NAMES)
def test_every_channel_maps_onto_its_grid(name):
    spectrum = _spectrum(name)
    grids, mask = spectra_on_grids({name: spectrum})
    assert grids.shape == (len(CHANNEL_NAMES), 121) and grids.dtype == np.float32
    assert mask.tolist() == [n == name for n in CHANNEL_NAMES]
    row = grids[CHANNEL_NAMES.index(name)]
    expected = to_channel_grid(CHANNELS[name], spectrum.energy, spectrum.intensity)
    np.testing.assert_allclose(row, expected, rtol=1e-6)
    assert row.mean() == pytest.approx(1.0, rel=1e-5)  # area normalisation
    assert not grids[~mask].any()


def test_shift_per_channel_and_scalar():
    spectra = {name: _spectrum(name, shift=-3.0) for name in ("O-K-eels", "Co-L3-xas")}
    reference, _ = spectra_on_grids({name: _spectrum(name) for name in spectra})
    scalar, _ = spectra_on_grids(spectra, shift=3.0)
    per_channel, _ = spectra_on_grids(spectra, shift={"O-K-eels": 3.0, "Co-L3-xas": 3.0})
    np.testing.assert_allclose(scalar, reference, atol=1e-5)
    np.testing.assert_allclose(per_channel, reference, atol=1e-5)


def test_on_grid_by_channel_is_the_present_rows_in_canonical_order():
    spectra = {name: _spectrum(name, shift=-3.0) for name in ("Co-L3-xas", "O-K-eels")}
    rows, mask = spectra_on_grids(spectra, shift=3.0, source="s.json")
    by_channel = on_grid_by_channel(spectra, shift=3.0, source="s.json")
    assert list(by_channel) == [n for n in CHANNEL_NAMES if n in spectra]
    for name, row in by_channel.items():
        assert row.dtype == np.float64
        np.testing.assert_array_equal(row, rows[CHANNEL_NAMES.index(name)])
    with pytest.raises(InputError, match="s.json: unknown channel"):
        on_grid_by_channel({"Fe-K-xas": spectra["O-K-eels"]}, source="s.json")


def test_spectrum_off_its_grid_is_refused_naming_the_channel():
    ch = CHANNELS["Ni-L3-eels"]
    half_off = Spectrum("Ni-L3-eels", ch.grid + 35.0, np.ones(ch.n_energy))  # covers 25 of 60 eV
    with pytest.raises(InputError, match="channel Ni-L3-eels: .* covering 42% of the channel grid"):
        spectra_on_grids({"Ni-L3-eels": half_off})
    kev = Spectrum("Ni-K-xas", np.linspace(8.3, 8.4, 50), np.ones(50))
    with pytest.raises(InputError, match="Ni-K-xas"):
        spectra_on_grids({"Ni-K-xas": kev})
    flat_zero = Spectrum("O-K-xas", CHANNELS["O-K-xas"].grid, np.zeros(121))
    with pytest.raises(InputError, match="non-positive mean"):
        spectra_on_grids({"O-K-xas": flat_zero})
