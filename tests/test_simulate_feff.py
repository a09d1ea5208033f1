"""Real FEFF10 runs on small clusters (a few seconds each), and the FEFF input they start from."""

import importlib.util
import json

import numpy as np
import pytest

from gnnspec.cli import main
from gnnspec.errors import InputError
from gnnspec.simulate.feff_input import build_feff_input
from gnnspec.simulate.presets import PRESETS, get_preset, preset_hash
from gnnspec.simulate.runner import run_feff_site

#: On the tests that run FEFF; the input writer, the presets and the checks before a run need no FEFF.
needs_feff = pytest.mark.skipif(importlib.util.find_spec("feff10") is None, reason="feff10 (feff10-rs) not installed")


def _site(structure, symbol):
    return next(i for i, s in enumerate(structure) if s.specie.symbol == symbol)


def test_feff_input_has_one_potential_per_present_element(licoo2):
    text = build_feff_input(licoo2, _site(licoo2, "Co"), "K", "xanes", PRESETS["fast"])
    pots = text.split("POTENTIALS")[1].split("ATOMS")[0]
    rows = [line.split() for line in pots.strip().splitlines()[1:] if line.strip()]
    assert [(r[0], r[2]) for r in rows] == [("0", "Co"), ("1", "Li"), ("2", "O"), ("3", "Co")]
    for card in ("EDGE K", "S02 1.0", "CONTROL 1 1 1 1 1 1", "PRINT 0 0 0 0 0 0", "FMS 4.0 0", "EXCHANGE 0 0 0", "COREHOLE FSR", "XANES 4.0 0.07 0.0"):
        assert card in text
    assert "SCF" not in text


def _cards(text: str) -> list[str]:
    return [line.strip() for line in text.split("POTENTIALS")[0].splitlines()[1:] if line.strip()]


def test_both_tiers_write_exactly_their_cards(licoo2):
    """The tiers' cards, line by line: the scf tier is fixed so spectra stay comparable."""
    elnes = ["ELNES 4.0 0.07 0.0", "300 1 0 1", "2.4 0.0", "5 3", "0 0"]
    common = ["S02 1.0", "CONTROL 1 1 1 1 1 1", "PRINT 0 0 0 0 0 0", "FMS 4.0 0", "EXCHANGE 0 0 0"]
    co = _site(licoo2, "Co")
    assert _cards(build_feff_input(licoo2, co, "L2", "elnes", PRESETS["scf"])) == [
        "EDGE L2", *common, "COREHOLE RPA", "SCF 4.0 0 30 0.1 1", *elnes
    ]
    assert _cards(build_feff_input(licoo2, co, "L3", "elnes", PRESETS["fast"])) == ["EDGE L3", *common, "COREHOLE FSR", *elnes]
    assert _cards(build_feff_input(licoo2, co, "K", "xanes", PRESETS["scf"])) == [
        "EDGE K", *common, "COREHOLE RPA", "SCF 4.0 0 30 0.1 1", "XANES 4.0 0.07 0.0"
    ]
    assert PRESETS["scf"].screened_core_hole and not PRESETS["fast"].screened_core_hole
    assert preset_hash(PRESETS["scf"]) == "d88a09c59a2fb407"
    # scf6, the converged reference beside scf: only the SCF and FMS radii differ
    wide = [c if c != "FMS 4.0 0" else "FMS 6.0 0" for c in common]
    assert _cards(build_feff_input(licoo2, co, "L3", "elnes", PRESETS["scf6"])) == ["EDGE L3", *wide, "COREHOLE RPA", "SCF 5.0 0 30 0.1 1", *elnes]
    assert PRESETS["scf6"].shares_ground_state and preset_hash(PRESETS["scf6"]) not in {preset_hash(PRESETS[t]) for t in ("fast", "scf")}


@needs_feff
def test_l23_channel_runs_l3_and_l2_and_sums_them(licoo2, tmp_path):
    """gnnspec simulate of an L2,3 channel: two FEFF runs, FEFF's absolute axes, the raw sum written."""
    from gnnspec.channels import CHANNELS
    from gnnspec.simulate.runner import assemble_site

    co = _site(licoo2, "Co")
    raw = run_feff_site(licoo2, co, ["Co-L23-eels", "Co-L23-xas"])
    assert set(raw) == {"Co-L3-eels", "Co-L3-xas", "Co-L2-eels", "Co-L2-xas"}
    l3, l2 = raw["Co-L3-xas"], raw["Co-L2-xas"]
    assert 13.0 < l2.energy[0] - l3.energy[0] < 17.0  # Co 2p spin-orbit splitting, from FEFF's own energies
    grid, y = assemble_site(["Co-L23-xas"], raw)["Co-L23-xas"]
    assert np.array_equal(grid, CHANNELS["Co-L23-xas"].grid)
    assert np.allclose(y, np.interp(grid, l3.energy, l3.intensity) + np.interp(grid, l2.energy, l2.intensity, left=0.0))


def test_preset_hash_tells_presets_apart():
    assert preset_hash(PRESETS["fast"]) != preset_hash(PRESETS["scf"])
    with pytest.raises(KeyError, match="fast"):
        get_preset("slow")


@needs_feff
def test_xanes_run_gives_k_edge_xas(licoo2):
    out = run_feff_site(licoo2, _site(licoo2, "Co"), ["Co-K-xas"])
    sp = out["Co-K-xas"]
    assert sp.preset == "fast" and sp.feff_version.startswith("feff10")
    assert np.all(np.diff(sp.energy) > 0) and np.all(np.isfinite(sp.intensity))
    assert 7690 < sp.energy[0] < 7712 and sp.energy[-1] > 7760  # absolute eV around the Co K edge
    assert sp.intensity.max() > 0


@needs_feff
def test_elnes_run_gives_eels_and_xas_at_once(licoo2):
    out = run_feff_site(licoo2, _site(licoo2, "O"), ["O-K-xas", "O-K-eels"])
    assert set(out) == {"O-K-xas", "O-K-eels"}
    assert out["O-K-xas"].seconds == out["O-K-eels"].seconds  # one run
    for sp in out.values():
        assert 520 < sp.energy[0] < 535 and sp.energy[-1] > 580
        assert np.all(np.isfinite(sp.intensity)) and sp.intensity.max() > 0


def test_bad_inputs_are_clear(licoo2):
    with pytest.raises(InputError, match="needs a Ni absorber"):
        run_feff_site(licoo2, _site(licoo2, "Co"), ["Ni-K-xas"])
    with pytest.raises(InputError, match="out of range"):
        run_feff_site(licoo2, 99, ["Co-K-xas"])
    with pytest.raises(KeyError, match="unknown channel"):
        run_feff_site(licoo2, 0, ["Co-M-xas"])


def test_too_close_atoms_never_reach_feff(licoo2):
    s = licoo2.copy()
    co = _site(s, "Co")
    s.append("O", s[co].coords + np.array([0.0, 0.0, 0.3]), coords_are_cartesian=True)
    with pytest.raises(InputError, match="0.300 A apart"):
        build_feff_input(s, co, "K", "xanes", PRESETS["fast"])


@needs_feff
def test_simulate_cli_end_to_end(tmp_path, licoo2, capsys):
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    out = tmp_path / "co.json"
    code = main(["simulate", str(cif), "--site", str(_site(licoo2, "Co")), "--channel", "Co-L23-eels", "--channel", "Co-L3-xas", "--out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["schema"] == "gnnspec.spectra/1"
    assert set(data["channels"]) == {"Co-L23-eels", "Co-L3-xas"}
    assert data["meta"]["tier"] == data["meta"]["preset"] == "fast"
    assert set(data["meta"]["runs"]) == {"Co-L3-eels", "Co-L3-xas", "Co-L2-eels"}
    assert not any("core_hole_screening" in run for run in data["meta"]["runs"].values())  # no RPA in fast
    e = data["channels"]["Co-L3-xas"]["energy"]
    assert 770 < e[0] < 780
    from gnnspec.channels import CHANNELS

    assert np.allclose(data["channels"]["Co-L23-eels"]["energy"], CHANNELS["Co-L23-eels"].grid)
    assert "FEFF" not in capsys.readouterr().out.replace("FEFF log", "")  # FEFF's console went to the log


def test_simulate_cli_bad_input_exit_2(tmp_path, licoo2, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif at all")
    assert main(["simulate", str(bad), "--site", "0", "--channel", "Co-K-xas", "--out", str(tmp_path / "x.json")]) == 2
    assert "bad.cif" in capsys.readouterr().err
    cif = tmp_path / "ok.cif"
    licoo2.to(filename=str(cif))
    assert main(["simulate", str(cif), "--site", "0", "--channel", "Fe-K-xas", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["simulate", str(cif), "--site", "0", "--channel", "Li-K-xas", "--preset", "nope", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown channel" in err and "unknown FEFF preset" in err


@needs_feff
def test_shipped_k_factors_count_the_atoms_of_fresh_feff_runs(tmp_path, licoo2, capsys):
    """Raw spectra from gnnspec simulate, quantified with the shipped k-factors (fitted on NMC): about one atom each."""
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    files = []
    for symbol, channel in (("O", "O-K-eels"), ("Co", "Co-L3-eels")):
        files.append(str(tmp_path / f"{symbol}.json"))
        assert main(["simulate", str(cif), "--site", str(_site(licoo2, symbol)), "--channel", channel, "--out", files[-1]]) == 0
    out = tmp_path / "region.json"
    assert main(["quantify", *files, "--out", str(out)]) == 0
    channels = json.loads(out.read_text())["meta"]["channels"]
    assert channels["O-K-eels"]["amount"] == pytest.approx(1.0, rel=0.1)
    assert channels["Co-L3-eels"]["amount"] == pytest.approx(1.0, rel=0.1)


@pytest.mark.slow
@needs_feff
def test_scf_tier_real_run(tmp_path, licoo2):
    """One real scf-tier run (SCF 4.0 A, RPA core hole; 1.5-3 minutes): it records its tier and
    differs from the fast tier's spectrum of the same site."""
    o = _site(licoo2, "O")
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    out = tmp_path / "o.json"
    assert main(["simulate", str(cif), "--site", str(o), "--channel", "O-K-eels", "--preset", "scf", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["tier"] == "scf" and data["meta"]["preset_hash"] == preset_hash(PRESETS["scf"])
    scf = data["channels"]["O-K-eels"]
    fast = run_feff_site(licoo2, o, ["O-K-eels"])["O-K-eels"]
    y = np.interp(fast.energy, scf["energy"], scf["intensity"])
    cosine = float(y @ fast.intensity / np.linalg.norm(y) / np.linalg.norm(fast.intensity))
    assert cosine < 0.999


@pytest.mark.slow
@needs_feff
def test_scf_tier_site_shares_one_scf(tmp_path, licoo2):
    """`simulate --preset scf` with a Co site's L2,3 and K channels: the first run (L3) computes
    the SCF, the L2 and K runs take it, as the meta says (1.5-3 minutes)."""
    co = _site(licoo2, "Co")
    cif = tmp_path / "licoo2.cif"
    licoo2.to(filename=str(cif))
    out = tmp_path / "co.json"
    args = ["simulate", str(cif), "--site", str(co), "--channel", "Co-L23-eels", "--channel", "Co-K-xas", "--preset", "scf", "--out", str(out)]
    assert main(args) == 0
    data = json.loads(out.read_text())
    runs = data["meta"]["runs"]
    assert "potentials_from" not in runs["Co-L3-eels"]
    assert runs["Co-L2-eels"]["potentials_from"] == runs["Co-K-xas"]["potentials_from"] == "Co-L3-elnes"
    assert runs["Co-K-xas"]["seconds"] < runs["Co-L3-eels"]["seconds"] / 3
    assert all(0.0 < run["core_hole_screening"] < 1.0 for run in runs.values())  # RPA: every run screened
    assert set(data["channels"]) == {"Co-L23-eels", "Co-K-xas"}
