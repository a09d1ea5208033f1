"""Elemental quantification of EELS edges: hydrogenic cross-sections, edge integration, ``gnnspec convert --quantify``."""

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from ase.data import atomic_numbers
from fixtures.synthetic import power_law, write_msa

from gnnspec.errors import InputError
from gnnspec.measured import cross_sections as xs
from gnnspec.measured.commands import add_parsers
from gnnspec.measured.convert import convert_measured
from gnnspec.measured.quantify import QuantifyRequest
from gnnspec.measured.readers import read_msa
from gnnspec.quantification.k_factors import read_eels_k_factors
from gnnspec.spectra import read_spectra

EXPERIMENTAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_eels_nmc"
needs_experimental = pytest.mark.skipif(not EXPERIMENTAL.is_dir(), reason="shared experimental EELS data absent")
#: Atoms per formula unit of the synthetic sample, and the edge (channel, shell, edge energy) of each element.
ATOMS = {"O": 2.0, "Mn": 0.3, "Co": 0.2, "Ni": 0.5}
EDGES = {"O": ("O-K-eels", "K", 532.0), "Mn": ("Mn-L23-eels", "L23", 640.0), "Co": ("Co-L23-eels", "L23", 779.0), "Ni": ("Ni-L23-eels", "L23", 855.0)}  # fmt: skip


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnnspec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_k_shell_continuum_oscillator_strength_is_the_hydrogen_value():
    """At Q -> 0 the hydrogenic 1s continuum holds 0.4350 of oscillator strength per electron (Bethe-Salpeter)."""
    for z, electrons in ((1, 1), (8, 2)):
        zs = 1.0 if z == 1 else z - 0.5
        k = np.logspace(-4, 3.5, 100001)
        energy = xs.RYDBERG_EV * zs**2 * (1 + k**2)
        total = np.trapezoid(xs.gos_k(z, energy, np.zeros_like(energy)), energy)
        assert total == pytest.approx(0.4350 * electrons, rel=2e-3)


def test_small_collection_angle_gives_the_dipole_limit():
    """For beta << the Bethe-ridge angle the angular integral is df/dE(Q->0) * ln(1 + beta^2 / theta_E^2)."""
    beam, beta = 200e3, 0.5e-3
    energy = np.array([540.0, 560.0])
    gamma = 1 + beam / xs.ELECTRON_REST_EV
    t_ev = xs.ELECTRON_REST_EV * (1 - 1 / gamma**2) / 2
    theta_e = energy / (2 * gamma * t_ev)
    optical = xs.gos_k(8, energy, np.zeros_like(energy))
    dipole = (
        xs.FOUR_PI_A0_SQ_BARN * (xs.RYDBERG_EV / energy) * (xs.RYDBERG_EV / t_ev) * optical * np.log(1 + (beta / theta_e) ** 2)
    )
    assert xs.differential_cross_section(8, "K", energy, beam, beta) == pytest.approx(dipole, rel=0.01)


def test_cross_sections_grow_with_angle_and_window_and_fall_with_beam_energy():
    o_k = [xs.partial_cross_section(8, "K", 532.0, 50.0, 200e3, b * 1e-3) for b in (5, 10, 20, 50)]
    assert all(a < b for a, b in zip(o_k, o_k[1:]))
    assert xs.partial_cross_section(28, "L23", 855.0, 60.0, 200e3, 0.02) > xs.partial_cross_section(
        28, "L23", 855.0, 30.0, 200e3, 0.02
    )
    assert xs.partial_cross_section(25, "L23", 640.0, 50.0, 300e3, 0.02) < xs.partial_cross_section(
        25, "L23", 640.0, 50.0, 100e3, 0.02
    )
    with pytest.raises(ValueError, match="no L2,3 model"):
        xs.gos_l23(3, np.array([60.0]), np.array([1.0]), 55.0)


def test_collection_efficiency_accepts_the_whole_cone_when_integrated():
    """Overlap areas over all displacements sum to the product of the disc areas (divided by the smaller)."""
    theta = np.linspace(0, 0.05, 20001)
    for alpha, beta in ((0.01, 0.025), (0.025, 0.01), (0.02, 0.02)):
        eff = xs.collection_efficiency(theta, alpha, beta)
        assert eff[0] == 1.0 and eff[-1] == 0.0 and np.all(np.diff(eff) <= 1e-12)
        assert np.trapezoid(eff * 2 * np.pi * theta, theta) == pytest.approx(np.pi * max(alpha, beta) ** 2, rel=1e-3)
    parallel = xs.collection_efficiency(theta, 0.0, 0.02)
    assert parallel[theta <= 0.02].min() == 1.0 and parallel[theta > 0.02].max() == 0.0


def _survey(path: Path, beam_kev: float, beta_mrad: float, atoms: dict | None = None, strength: dict | None = None) -> None:
    """A survey whose edges are ``atoms[el] * strength[el] * dsigma/dE`` (the hydrogenic model; ``strength``
    defaults to 1, more emulates the white lines the model lacks) on a power-law background."""
    energy = np.arange(440.0, 1000.0, 0.25)
    total = power_law(energy, amplitude=2e13, r=3.0)
    for element, (_, shell, edge) in EDGES.items():
        above = energy >= edge
        dsde = xs.differential_cross_section(
            atomic_numbers[element], shell, energy[above], beam_kev * 1e3, beta_mrad * 1e-3, edge_energy=edge
        )
        total[above] += 2e3 * (atoms or ATOMS)[element] * (strength or {}).get(element, 1.0) * dsde
    write_msa(path, energy, total, header={"BEAMKV -kV": beam_kev, "COLLANGLE-mR": beta_mrad})


def test_cli_quantifies_a_survey_with_known_atom_ratios(tmp_path, capsys):
    _survey(tmp_path / "survey.msa", 200.0, 25.0)
    assert read_msa(tmp_path / "survey.msa").meta["optics"] == {"beam_energy_kev": 200.0, "collection_mrad": 25.0}
    out = tmp_path / "q.json"
    assert _cli(["convert", str(tmp_path / "survey.msa"), "--survey", "--quantify", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "quantification (200 keV, collection 25 mrad" in printed and "Ni L23 from Ni-L23-eels" in printed
    spectra, meta = read_spectra(out)
    expected = {el: n / sum(ATOMS.values()) for el, n in ATOMS.items()}
    assert set(spectra.quantification) == set(expected)
    # within 8 %: each single power law fitted before an L edge also fits the previous edge's tail,
    # which it extrapolates slightly wrong under the edge (the method's own error, not the test's)
    for element, fraction in expected.items():
        assert spectra.quantification[element] == pytest.approx(fraction, rel=0.08), element
    record = meta["quantification"]
    assert record["optics"] == {"beam_energy_kev": 200.0, "collection_mrad": 25.0, "convergence_mrad": 0.0}
    assert all(abs(e["window_ev"] - 50.0) < 1e-9 for e in record["edges"].values())
    # wrong optics change the answer: the cross-sections are not a constant factor
    _, meta_wrong = convert_measured(
        [(tmp_path / "survey.msa", "survey")], quantify=QuantifyRequest(beam_energy_kev=60.0, collection_mrad=2.0)
    )
    assert abs(meta_wrong["quantification"]["fractions"]["O"] - expected["O"]) > 0.01


def test_k_factors_from_a_standard_correct_the_cross_sections(tmp_path, capsys):
    """Edges 1.2-1.6 times stronger than the hydrogenic model (as white lines make them): a standard of
    known composition recorded alike gives k-factors that remove the bias from a sample's quantification."""
    strength = {"O": 1.0, "Mn": 1.6, "Co": 1.4, "Ni": 1.2}
    standard = {"O": 2.0, "Mn": 1 / 3, "Co": 1 / 3, "Ni": 1 / 3}
    _survey(tmp_path / "standard.msa", 200.0, 25.0, standard, strength)
    _survey(tmp_path / "sample.msa", 200.0, 25.0, ATOMS, strength)
    k_file = tmp_path / "k.json"
    argv = ["convert", str(tmp_path / "standard.msa"), "--survey", "--quantify", "--out", str(tmp_path / "std.json")]
    assert _cli([*argv, "--standard", "O=2,Mn=0.333333,Co=0.333333,Ni=0.333333", "--write-k-factors", str(k_file)]) == 0
    assert "k-factors from the standard: O" in capsys.readouterr().out
    k = read_eels_k_factors(k_file)
    # the factors carry the edge strengths, and the background errors a standard shares with a similar sample
    assert k["Mn"] / k["O"] > 1.3 and k["Co"] / k["O"] > 1.1
    expected = {el: n / sum(ATOMS.values()) for el, n in ATOMS.items()}
    results = {}
    for name, extra in (("hydrogenic", []), ("k-factors", ["--k-factors", str(k_file)])):
        out = tmp_path / f"{name}.json"
        assert _cli(["convert", str(tmp_path / "sample.msa"), "--survey", "--quantify", "--out", str(out), *extra]) == 0
        results[name] = read_spectra(out)[0].quantification
    assert abs(results["hydrogenic"]["Mn"] / expected["Mn"] - 1) > 0.3  # the bias the white lines cause
    for element, fraction in expected.items():  # back within the background fits' own 8 % (see above)
        assert results["k-factors"][element] == pytest.approx(fraction, rel=0.08), element
    sample = ["convert", str(tmp_path / "sample.msa"), "--survey", "--quantify", "--out", str(tmp_path / "x.json")]
    with pytest.raises(InputError, match="needs --standard"):
        _cli([*sample, "--write-k-factors", str(k_file)])
    (tmp_path / "bad_k.json").write_text('{"schema": "gnnspec.eels_k_factors/1", "elements": {"O": 1.0}}')
    with pytest.raises(InputError, match="no factor for Mn"):
        _cli([*sample, "--k-factors", str(tmp_path / "bad_k.json")])


def test_window_stops_before_the_next_edge(tmp_path):
    _survey(tmp_path / "survey.msa", 200.0, 25.0)
    _, meta = convert_measured([(tmp_path / "survey.msa", "survey")], quantify=QuantifyRequest(window_ev=150.0))
    edges = meta["quantification"]["edges"]
    o_k, mn, ni = edges["O-K-eels"], edges["Mn-L23-eels"], edges["Ni-L23-eels"]
    assert o_k["start_ev"] + o_k["window_ev"] == pytest.approx(mn["start_ev"] - 5.0)
    assert ni["start_ev"] + ni["window_ev"] == pytest.approx(999.75)  # the last data point


def test_quantification_requests_that_cannot_be_met_are_refused(tmp_path):
    energy = np.arange(440.0, 1000.0, 0.25)
    _survey(tmp_path / "survey.msa", 200.0, 25.0)
    write_msa(tmp_path / "bare.msa", energy, power_law(energy, amplitude=2e13) + 3e4 * (energy > 532))
    with pytest.raises(InputError, match=r"bare.msa: quantification needs the collection semi-angle, .*--collection-angle"):
        convert_measured([(tmp_path / "bare.msa", "O-K-eels")], quantify=QuantifyRequest(beam_energy_kev=200.0))
    with pytest.raises(InputError, match="several files"):
        convert_measured(
            [(tmp_path / "survey.msa", "Mn-L23-eels"), (tmp_path / "bare.msa", "O-K-eels")], quantify=QuantifyRequest()
        )
    with pytest.raises(InputError, match="at least two edges"):
        convert_measured([(tmp_path / "survey.msa", "O-K-eels")], quantify=QuantifyRequest())
    with pytest.raises(InputError, match="not both"):
        convert_measured([(tmp_path / "survey.msa", "survey")], quantification={"O": 1.0}, quantify=QuantifyRequest())
    with pytest.raises(InputError, match="collection semi-angle 900 mrad is outside"):
        convert_measured([(tmp_path / "survey.msa", "survey")], quantify=QuantifyRequest(collection_mrad=900.0))
    with pytest.raises(InputError, match="add --quantify"):
        _cli(["convert", str(tmp_path / "survey.msa"), "--survey", "--collection-angle", "20", "--out", str(tmp_path / "x.json")])


@needs_experimental
def test_measured_nmc_survey_gives_a_layered_oxide_oxygen_to_metal_ratio(tmp_path):
    """LiTMO2 has 2 O per transition-metal atom; hydrogenic L2,3 cross-sections are good to 10-20 %."""
    out = tmp_path / "nmc.json"
    assert _cli(["convert", f"{EXPERIMENTAL / 'tm_o_survey.msa'}:survey", "--zero-loss", str(EXPERIMENTAL / "zero_loss.msa"), "--quantify", "--collection-angle", "30", "--out", str(out)]) == 0  # fmt: skip
    spectra, meta = read_spectra(out)
    q = spectra.quantification
    assert set(q) == {"O", "Mn", "Co", "Ni"}
    assert meta["quantification"]["optics"]["beam_energy_kev"] == 300.0  # the file's #BEAMKV (written in volts)
    assert 1.5 < q["O"] / (q["Mn"] + q["Co"] + q["Ni"]) < 2.5
    assert math.isclose(sum(q.values()), 1.0)
    # the shipped model reads the measured quantification with the spectra
    import gnnspec

    result = gnnspec.load_model().infer(spectra, spectra.quantification)
    assert result["quantification_used"] and result["channels_used"] == ["O-K-eels", "Mn-L23-eels", "Co-L23-eels", "Ni-L23-eels"]
