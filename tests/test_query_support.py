"""``gnnspec query`` says, per query, whether the spectra are like the model's training spectra:
the same verdict as ``gnnspec infer``, on the real NMC EELS with the shipped (calibrated) model."""

import json

import pytest
from conftest import SHARED_DATA

from gnnspec.cli import main
from gnnspec.structures.nmc import NMCParams, generate_nmc

EELS = SHARED_DATA / "experimental_eels_nmc"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library of one small NMC supercell, embedded by the shipped model."""
    tmp = tmp_path_factory.mktemp("query_support")
    folder = tmp / "structures"
    folder.mkdir()
    generate_nmc(NMCParams(seed=4, supercell=(2, 2, 1), n_o_vacancies=1)).structure.to(filename=str(folder / "nmc.cif"))
    assert main(["library", "build", "--data", str(folder), "--out", str(tmp / "lib")]) == 0
    return tmp / "lib"


@pytest.mark.skipif(not EELS.is_dir(), reason="shared measured EELS not present")
def test_query_flags_the_measured_nmc_eels_as_infer_does(library, tmp_path, capsys):
    spectra = tmp_path / "nmc.json"
    convert = ["convert", f"{EELS / 'oxygen_edge.msa'}:O-K-eels", f"{EELS / 'Mn_edge.msa'}:Mn-L23-eels"]
    assert main([*convert, "--zero-loss", str(EELS / "zero_loss.msa"), "--out", str(spectra)]) == 0
    assert main(["infer", str(spectra), "--out", str(tmp_path / "answer.json")]) == 0
    capsys.readouterr()
    assert main(["query", str(library), str(spectra), "-k", "2", "--out", str(tmp_path / "hits.json")]) == 0
    printed = capsys.readouterr().out
    hits = json.loads((tmp_path / "hits.json").read_text())
    infer_support = json.loads((tmp_path / "answer.json").read_text())["support"]
    assert hits["support"] == infer_support  # one check, whichever command asks
    assert hits["resolution"]["O-K-eels"]["source"] == "the file's zero-loss FWHM"
    support = hits["support"]
    assert set(support["channels"]) == {"O-K-eels", "Mn-L23-eels"}
    assert support["in_distribution"] is False and "Mn-L23-eels" in support["why"]
    assert "out of distribution: " in printed and len(hits["hits"]) == 2


def test_query_of_predicted_spectra_carries_a_support_verdict_per_record(library, tmp_path):
    structure = tmp_path / "nmc.cif"
    generate_nmc(NMCParams(seed=4, supercell=(2, 2, 1), n_o_vacancies=1)).structure.to(filename=str(structure))
    batch = tmp_path / "predicted.jsonl"
    assert main(["predict", str(structure), "--out", str(batch)]) == 0
    assert main(["query", str(library), str(batch), "-k", "1", "--resolution", "1.0", "--out", str(tmp_path / "hits.json")]) == 0
    results = json.loads((tmp_path / "hits.json").read_text())
    assert len(results) > 10
    for res in results:
        support = res["support"]
        assert isinstance(support["in_distribution"], bool) and set(support["channels"]) == set(res["channels_used"])
        assert all(r["source"] == "--resolution" and r["fwhm_ev"] == 1.0 for r in res["resolution"].values())
