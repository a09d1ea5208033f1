"""Batched forward prediction over many structures equals one structure at a time."""

import numpy as np
import pytest

from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.models.factory import build_model
from gnnspec.structures.nmc import NMCParams, generate_nmc
from tests.model_fixtures import tiny_model_config


@pytest.fixture(scope="module")
def model():
    return build_model(tiny_model_config()).double().eval()


@pytest.fixture(scope="module")
def structures():
    return [
        generate_nmc(NMCParams(seed=3, li_content=0.8, n_o_vacancies=1)).structure,
        generate_nmc(NMCParams(seed=5, li_content=1.0)).structure,
        generate_nmc(NMCParams(seed=7, li_content=0.9, n_antisites=1)).structure,
    ]


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_batched_prediction_equals_one_structure_at_a_time(model, structures, batch_size):
    sites = [[0, 5, 11], None, [len(structures[2]) - 1]]
    got = model.predict_many(structures, sites, batch_size=batch_size)
    assert len(got) == len(structures)
    for s, want_sites, item in zip(structures, sites, got):
        ref_sites = want_sites if want_sites is not None else sorted(item)
        ref = model.predict_site_spectra(s, ref_sites)
        assert sorted(item) == sorted(ref)
        for site in ref:
            assert sorted(item[site]) == sorted(ref[site])
            for channel, (energy, intensity) in ref[site].items():
                np.testing.assert_array_equal(item[site][channel][0], energy)
                np.testing.assert_allclose(item[site][channel][1], intensity, rtol=1e-9, atol=1e-12)


def test_default_sites_are_every_atom_with_a_channel(model, structures):
    item = model.predict_many(structures[:1])[0]
    s = structures[0]
    have = {CHANNELS[name].element for name in model.cfg.channels}
    assert sorted(item) == [i for i, site in enumerate(s) if site.specie.symbol in have]


def test_bad_sites_and_batch_sizes_are_refused(model, structures):
    with pytest.raises(InputError, match="out of range or has no channel"):
        model.predict_many(structures[:1], [[10_000]])
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        model.predict_many(structures[:1], batch_size=0)
    with pytest.raises(InputError, match="2 structures but 1 site lists"):
        model.predict_many(structures[:2], [[0]])


def test_predict_command_over_a_folder_writes_json_lines_that_read_back(structures, tmp_path, capsys):
    from test_library_helpers import save_model, tiny_model

    from gnnspec.cli import main
    from gnnspec.models.factory import load_model
    from gnnspec.spectra import read_spectra, read_spectra_records

    ckpt = save_model(tiny_model(), tmp_path / "model.pt")
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(structures[:2]):
        s.to(filename=str(folder / f"s{i}.cif"))
    (folder / "notes.txt").write_text("not a structure")
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(folder), "--model", str(ckpt), "--batch-size", "2", "--out", str(out)]) == 0
    records = read_spectra_records(out)
    from gnnspec.structures import read_structure

    model = load_model(ckpt)
    read_back = [read_structure(folder / f"s{i}.cif") for i in range(2)]  # a CIF may order the sites its own way
    expected = [model.predict_site_spectra(s, sorted(model.predict_many([s])[0])) for s in read_back]
    assert [r[0] for r in records] == [f"s{i}:{site}" for i, e in enumerate(expected) for site in sorted(e)]
    for obj_id, spectra, meta in records:
        i, site = int(obj_id[1]), int(obj_id.split(":")[1])
        assert meta["structure"] == str(folder / f"s{i}.cif") and meta["site"] == site
        assert meta["structure_support"]["sites"][0]["site"] == site and meta["source"] == "gnnspec predict"
        assert sorted(spectra) == sorted(expected[i][site])
        for channel, (_, intensity) in expected[i][site].items():
            np.testing.assert_allclose(spectra[channel].intensity, intensity, rtol=1e-5, atol=1e-6)
    assert "site spectra sets of 2 structures" in capsys.readouterr().out

    # one structure and one site: the single-file format, as before
    one = tmp_path / "one.json"
    assert main(["predict", str(folder / "s0.cif"), "--site", "0", "--model", str(ckpt), "--out", str(one)]) == 0
    spectra, meta = read_spectra(one)
    assert meta["site"] == 0 and sorted(spectra) == sorted(expected[0][0])


def test_predict_command_refuses_a_json_file_for_many_records(structures, tmp_path, capsys):
    from test_library_helpers import save_model, tiny_model

    from gnnspec.cli import main

    ckpt = save_model(tiny_model(), tmp_path / "model.pt")
    cif = tmp_path / "s.cif"
    structures[0].to(filename=str(cif))
    assert main(["predict", str(cif), "--model", str(ckpt), "--out", str(tmp_path / "x.json")]) == 2
    assert "name the output *.jsonl" in capsys.readouterr().err
    assert main(["predict", str(cif), "--site", "9999", "--model", str(ckpt), "--out", str(tmp_path / "x.json")]) == 2
    assert "site 9999 is out of range" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing"), "--model", str(ckpt), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "no such structure file or folder" in capsys.readouterr().err


def test_the_inference_benchmark_measures_both_ways_and_reports_them(structures, tmp_path):
    from test_library_helpers import save_model, tiny_model

    from gnnspec.bench.__main__ import inference_rows
    from gnnspec.bench.gpu import inference_throughput

    ckpt = save_model(tiny_model(), tmp_path / "model.pt")
    result = inference_throughput(str(ckpt), structures[:2], batch_size=2)
    assert result["structures"] == 2 and result["atoms"] == len(structures[0]) + len(structures[1])
    cpu = result["devices"]["cpu"]
    assert cpu["per_structure_spectra_per_s"] > 0 and cpu["batched_spectra_per_s"] > 0
    assert cpu["batched_speedup"] == pytest.approx(cpu["batched_spectra_per_s"] / cpu["per_structure_spectra_per_s"])
    (row,) = inference_rows(result)
    assert row.startswith("| inference, cpu") and "predict_many" in row
    assert inference_rows(None) == []
