"""Edge intensities of FEFF site spectra: integration window, k-factors from standards and their
files, environment amounts, ``gnnspec quantify``."""

import numpy as np
import pytest

from gnnspec.channels import CHANNELS
from gnnspec.quantification.intensities import INTEGRATION_WINDOW_EV, environment_amounts, fit_k_factors, integrated_intensity


def _edge(channel: str, height: float) -> dict:
    """A raw site spectrum: a step of ``height`` at the edge on FEFF's absolute energies, 0.25 eV apart."""
    ch = CHANNELS[channel]
    energy = np.arange(ch.edge_energy - 10.0, ch.edge_energy + 70.0, 0.25)
    return {"energy": energy, "intensity": height * (energy >= ch.edge_energy)}


def test_integral_covers_the_window_from_the_channel_start():
    r = _edge("O-K-eels", 2.0)
    start = CHANNELS["O-K-eels"].edge_energy + CHANNELS["O-K-eels"].start
    expected = 2.0 * (start + INTEGRATION_WINDOW_EV - CHANNELS["O-K-eels"].edge_energy)
    assert integrated_intensity(r["energy"], r["intensity"], "O-K-eels") == pytest.approx(expected, abs=0.5)
    with pytest.raises(ValueError, match="misses the integration window"):
        integrated_intensity(np.array([1.0, 2.0]), np.array([1.0, 1.0]), "O-K-eels")


def test_amounts_of_an_environment_are_atom_counts_when_each_atom_gives_its_k_factor():
    # standards: O atoms give 3 units per atom, Ni atoms 5 (each element its own absolute scale)
    standards = [
        {(0, "O-K-eels"): 3.0, (1, "O-K-eels"): 3.0, (2, "Ni-L3-eels"): 5.0, (2, "Ni-K-xas"): 40.0},
        {(0, "O-K-eels"): 3.3, (1, "Ni-L3-eels"): 5.0, (1, "Ni-K-xas"): 44.0},
    ]
    k = fit_k_factors(standards)
    assert k["O-K-eels"]["k"] == pytest.approx(3.1) and k["O-K-eels"]["sites"] == 3
    assert k["Ni-K-xas"]["cv"] == pytest.approx(2.0 / 42.0)
    # an environment of 4 O and 2 Ni atoms (and a Li atom whose spectra are not asked for)
    integrals = {(i, "O-K-eels"): 3.1 for i in range(4)} | {(i, "Ni-L3-eels"): 5.0 for i in (4, 5)}
    integrals |= {(i, "Ni-K-xas"): 42.0 for i in (4, 5)} | {(6, "Li-K-xas"): 1.0}
    amounts = environment_amounts(integrals, range(7), ["O-K-eels", "Ni-L3-eels", "Ni-K-xas"], k)
    assert amounts == pytest.approx({"O": 4.0, "Ni": 2.0})
    with pytest.raises(KeyError, match="no k-factor for channel Li-K-xas"):
        environment_amounts(integrals, range(7), ["Li-K-xas"], k)


def test_k_factor_files_round_trip_and_bad_files_are_refused(tmp_path):
    from gnnspec.errors import InputError
    from gnnspec.quantification.k_factors import SHIPPED_K_FACTORS, read_k_factors, write_k_factors

    k = fit_k_factors([{(0, "O-K-eels"): 2.0, (1, "Ni-L3-eels"): 4.0}])
    write_k_factors(tmp_path / "k.json", k, {"dataset": "hand-made"})
    assert read_k_factors(tmp_path / "k.json") == k
    shipped = read_k_factors()  # the shipped FEFF10 k-factors cover every channel
    assert set(shipped) == set(CHANNELS) and all(v["k"] > 0 and v["cv"] < 0.05 for v in shipped.values())
    assert SHIPPED_K_FACTORS.name == "k_factors.json"
    (tmp_path / "bad.json").write_text('{"schema": "gnnspec.k_factors/1", "window_eV": 50.0, "channels": {"Xx-K-xas": {"k": 1}}}')
    with pytest.raises(InputError, match="bad.json: channel 'Xx-K-xas'"):
        read_k_factors(tmp_path / "bad.json")
    (tmp_path / "window.json").write_text('{"schema": "gnnspec.k_factors/1", "window_eV": 30.0, "channels": {}}')
    with pytest.raises(InputError, match="30.0 eV window"):
        read_k_factors(tmp_path / "window.json")


def test_each_k_factor_reader_names_the_other_kind(tmp_path, capsys):
    """Handed the other kind of k-factor file, a reader says what the file holds and which command takes it."""
    from gnnspec.cli import main
    from gnnspec.errors import InputError
    from gnnspec.quantification.k_factors import SHIPPED_K_FACTORS, read_eels_k_factors, read_k_factors, write_eels_k_factors

    record = {"standard": {"k_factors": {"O": 1.2, "Mn": 0.8}, "composition": {"O": 2, "Mn": 1}}, "file": "std.msa", "optics": {}, "window_eV": 50.0}
    eels = write_eels_k_factors(tmp_path / "eels_k.json", record)
    assert read_eels_k_factors(eels) == {"O": 1.2, "Mn": 0.8}
    with pytest.raises(InputError, match=r"eels_k.json: holds measured-EELS k-factors .* this needs FEFF-intensity k-factors"):
        read_k_factors(eels)
    with pytest.raises(InputError, match=r"k_factors.json: holds FEFF-intensity k-factors .*gnnspec data k-factors"):
        read_eels_k_factors(SHIPPED_K_FACTORS)
    assert main(["quantify", str(eels), "--k-factors", str(eels), "--out", str(tmp_path / "q.json")]) == 2
    assert "holds measured-EELS k-factors per element" in capsys.readouterr().err


def test_cli_quantifies_the_raw_spectra_of_an_environment(tmp_path, capsys):
    """k-factors fitted on a dataset, then the raw site spectra of one of its environments, one file per atom."""
    from model_fixtures import write_synthetic_lmdb

    from gnnspec.cli import main
    from gnnspec.data.dataset import LMDBStructureDataset
    from gnnspec.spectra import Spectrum, read_spectra, write_spectra
    from gnnspec.structures.environments import CONTENT_ELEMENTS

    data = write_synthetic_lmdb(tmp_path / "data", splits=("train",) * 3)
    assert main(["data", "k-factors", str(data), "--out", str(tmp_path / "k.json")]) == 0
    ds = LMDBStructureDataset(data, "train")
    g, raw = ds[1], ds.raw_runs(1)
    env = int(np.nonzero(g.env_y_mask.numpy().any(1))[0][0])
    members = g.env_member_index[g.env_member_env == env].tolist()
    files = []
    from gnnspec.channels import assemble_channels

    for m in members:
        runs = {run: (r["energy"], r["intensity"]) for (site, run), r in raw.items() if site == m}
        spectra = [Spectrum(ch, e, y) for ch, (e, y) in assemble_channels(runs, ds.channels).items()]
        files.append(str(write_spectra(tmp_path / f"site{m}.json", spectra)))
    out = tmp_path / "region.json"
    capsys.readouterr()
    assert main(["quantify", *files, "--k-factors", str(tmp_path / "k.json"), "--out", str(out)]) == 0
    assert "atom fractions:" in capsys.readouterr().out
    spectra, meta = read_spectra(out)
    truth = dict(zip(CONTENT_ELEMENTS, g.env_content[env].tolist()))
    total = sum(spectra.quantification.values())
    for element, amount in spectra.quantification.items():
        assert amount / total == pytest.approx(truth[element], rel=0.15), element  # synthetic per-atom spread ~5 %
    assert sum(meta["channels"][c]["spectra"] for c in spectra if c.startswith("O-K")) == 2 * round(truth["O"] * len(members))
    # without k-factors for a channel the command stops with one line
    (tmp_path / "k_o.json").write_text(
        '{"schema": "gnnspec.k_factors/1", "window_eV": 50.0, "channels": {"O-K-eels": {"k": 1.0}}}'
    )
    assert main(["quantify", *files, "--k-factors", str(tmp_path / "k_o.json"), "--out", str(out)]) == 2
    assert "no k-factor for channel" in capsys.readouterr().err
