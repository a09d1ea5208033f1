import argparse
from pathlib import Path

import numpy as np
import pytest
from fixtures.synthetic import eels_survey, write_msa, zero_loss

from gnnspec.errors import InputError
from gnnspec.measured.alignment import expected_onset
from gnnspec.measured.commands import add_parsers
from gnnspec.measured.convert import convert_measured, parse_input
from gnnspec.spectra import read_spectra, spectra_on_grids

FIXTURES = Path(__file__).parent / "fixtures"
EXPERIMENTAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_eels_nmc"
needs_experimental = pytest.mark.skipif(not EXPERIMENTAL.is_dir(), reason="shared experimental EELS data absent")
EELS = ("O-K-eels", "Mn-L23-eels", "Co-L23-eels", "Ni-L23-eels")


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gnnspec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def measured(tmp_path):
    """A synthetic survey recorded 6 eV low with its ZLP at -2.5 eV: files as a microscope writes them."""
    energy = np.arange(440.0, 1000.0, 0.3)
    survey = eels_survey(energy, {name: expected_onset(name) - 6.0 - 2.5 for name in EELS}, seed=5)
    write_msa(tmp_path / "survey.msa", energy, survey)
    e_zlp = np.arange(-60.0, 100.0, 0.3)
    write_msa(tmp_path / "zlp.msa", e_zlp, zero_loss(e_zlp, -2.5))
    return tmp_path


def test_parse_input():
    assert parse_input("a/b.msa:Ni-L23-eels") == (Path("a/b.msa"), "Ni-L23-eels")
    assert parse_input("b.msa:survey") == (Path("b.msa"), "survey")
    assert parse_input("b.msa", survey=True) == (Path("b.msa"), "survey")
    assert parse_input(r"C:\data\b.msa", survey=True) == (Path(r"C:\data\b.msa"), "survey")
    with pytest.raises(InputError, match="unknown channel 'Ni-L2-eels'"):
        parse_input("b.msa:Ni-L2-eels")
    with pytest.raises(InputError, match="name the channel"):
        parse_input("b.msa")


def test_cli_convert_survey_with_zero_loss_and_plot(measured, capsys):
    out, png = measured / "spectra.json", measured / "check.png"
    code = _cli(
        [
            "convert",
            str(measured / "survey.msa"),
            "--survey",
            "--zero-loss",
            str(measured / "zlp.msa"),
            "--out",
            str(out),
            "--plot",
            str(png),
            "--quantification",
            "O=55,Ni=20,Mn=7,Co=7",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "zero-loss peak at -2.50 eV" in printed and "Ni-L23-eels" in printed
    spectra, meta = read_spectra(out)
    assert list(spectra) == list(EELS)
    assert spectra.quantification == {"O": 55.0, "Ni": 20.0, "Mn": 7.0, "Co": 7.0}  # written for models that read one
    assert meta["zero_loss"]["centre_eV"] == pytest.approx(-2.5, abs=0.05)
    for name in EELS:
        info = meta["channels"][name]
        assert info["file"].endswith("survey.msa")
        assert info["total_shift_eV"] == pytest.approx(info["zero_loss_shift_eV"] + info["alignment"]["shift_eV"])
        assert info["background"]["kind"] == "power-law"
    grids, mask = spectra_on_grids(spectra)
    assert mask.sum() == 4
    assert png.stat().st_size > 10_000


def test_reference_alignment_through_the_api(measured, tmp_path):
    reference, _ = convert_measured([(measured / "survey.msa", "survey")], zero_loss=measured / "zlp.msa")
    energy = np.arange(440.0, 1000.0, 0.3)
    moved = eels_survey(energy, {name: expected_onset(name) - 6.0 - 2.5 + 3.0 for name in EELS}, seed=6)
    write_msa(tmp_path / "moved.msa", energy, moved)
    out = tmp_path / "aligned.json"
    spectra, meta = convert_measured(
        [(tmp_path / "moved.msa", "Mn-L23-eels")], zero_loss=measured / "zlp.msa", out=out, references=reference
    )
    align = meta["channels"]["Mn-L23-eels"]["alignment"]
    assert align["method"] == "reference" and align["score"] > 0.99
    ref_shift = convert_measured([(measured / "survey.msa", "Mn-L23-eels")], zero_loss=measured / "zlp.msa")[1]["channels"][
        "Mn-L23-eels"
    ]
    assert align["shift_eV"] - ref_shift["alignment"]["shift_eV"] == pytest.approx(-3.0, abs=0.1)
    assert read_spectra(out)[0]["Mn-L23-eels"].energy.size == spectra["Mn-L23-eels"].energy.size


def test_xas_text_input(tmp_path):
    energy = np.arange(8300.0, 8420.0, 0.5)
    mu = 1.0 / (1.0 + np.exp(-(energy - 8338.0) / 0.8)) + 0.5 * np.exp(-0.5 * ((energy - 8342.0) / 1.5) ** 2)
    (tmp_path / "ni.csv").write_text("energy,mu\n" + "\n".join(f"{e},{y}" for e, y in zip(energy, mu)))
    spectra, meta = convert_measured([(tmp_path / "ni.csv", "Ni-K-xas")], zero_loss=None)
    info = meta["channels"]["Ni-K-xas"]
    assert info["zero_loss_shift_eV"] == 0.0 and info["background"]["kind"] == "linear"
    assert abs(info["alignment"]["shift_eV"]) < 3.0


def test_a_channel_given_twice_is_refused(measured):
    with pytest.raises(InputError, match="channel Mn-L23-eels was already taken from"):
        convert_measured([(measured / "survey.msa", "survey"), (measured / "survey.msa", "Mn-L23-eels")])


@needs_experimental
def test_cli_on_the_measured_nmc_files(tmp_path, capsys):
    out = tmp_path / "nmc.json"
    inputs = [
        f"{EXPERIMENTAL / 'oxygen_edge.msa'}:O-K-eels",
        f"{EXPERIMENTAL / 'Mn_edge.msa'}:Mn-L23-eels",
        f"{EXPERIMENTAL / 'Ni_edge.msa'}:Ni-L23-eels",
    ]
    assert _cli(["convert", *inputs, "--zero-loss", str(EXPERIMENTAL / "zero_loss.msa"), "--out", str(out)]) == 0
    spectra, meta = read_spectra(out)
    assert list(spectra) == ["O-K-eels", "Mn-L23-eels", "Ni-L23-eels"]
    assert all("background-subtracted" in " ".join(meta["channels"][n]["notes"]) for n in spectra)
    with pytest.raises(InputError, match="Co_edge.msa .*the edge is not in this file"):
        _cli(["convert", f"{EXPERIMENTAL / 'Co_edge.msa'}:Co-L23-eels", "--out", str(tmp_path / "co.json")])
