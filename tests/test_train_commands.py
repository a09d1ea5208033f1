"""The train/evaluate/predict/infer commands, driven the way a user runs them."""

import json

import pytest
import torch
from model_fixtures import SMOKE_CONFIG, write_synthetic_lmdb

from gnnspec.cli import build_parser
from gnnspec.errors import InputError
from gnnspec.structures.nmc import NMCParams, generate_nmc

torch.set_num_threads(1)


def run(*argv) -> int:
    """The command's handler, called as the CLI does but letting an InputError through."""
    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = write_synthetic_lmdb(root / "data")
    assert run("train", SMOKE_CONFIG, "--data", data, "--out", root / "run") == 0
    return root, data


@pytest.fixture(scope="module")
def structure_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "POSCAR"
    generate_nmc(NMCParams(seed=4, supercell=(2, 1, 1))).structure.to(filename=str(path), fmt="poscar")
    return path


def test_train_prints_metrics_and_paths(trained, capsys):
    root, data = trained
    # the module fixture already trained; a second run into a fresh folder shows the output
    assert run("train", SMOKE_CONFIG, "--data", data, "--out", root / "run2") == 0
    out = capsys.readouterr().out
    assert "test metrics" in out and "run folder:" in out and "TensorBoard:" in out and "checkpoint:" in out
    assert (root / "run2" / "best.pt").exists()


def test_evaluate_writes_json(trained, capsys):
    root, data = trained
    out = root / "metrics.json"
    assert run("evaluate", root / "run" / "best.pt", "--data", data, "--split", "val", "--out", out) == 0
    m = json.loads(out.read_text())
    assert m["split"] == "val" and m["n_structures"] == 2 and "Ni-K-xas" in m["channels"]
    # the smoke model reads an elemental quantification: scored with the exact one as well
    assert set(m["defect_auroc"]) == {"structure", "spectra", "spectra_quantified"} and "spectra_quantified" in m["content_mae"]
    assert "R2" in capsys.readouterr().out


def test_predict_then_infer_round_trip(trained, structure_file, tmp_path):
    root, _ = trained
    model = root / "run" / "best.pt"
    spectra = tmp_path / "site0.json"
    assert run("predict", structure_file, "--site", 0, "--model", model, "--out", spectra) == 0
    doc = json.loads(spectra.read_text())
    assert doc["schema"] == "gnnspec.spectra/1" and doc["meta"]["site"] == 0
    el = doc["meta"]["element"]
    assert all(name.startswith(el + "-") for name in doc["channels"])
    ch = next(iter(doc["channels"].values()))
    assert len(ch["energy"]) == len(ch["intensity"]) == 121 and ch["energy"][0] > 50  # absolute eV
    result = tmp_path / "infer.json"
    assert run("infer", spectra, "--model", model, "--out", result) == 0
    r = json.loads(result.read_text())
    assert set(r["element_content"]) == {"Li", "Ni", "Mn", "Co", "O"}
    assert set(r["defects"]) == {"o_vacancy", "antisite"}
    assert r["channels_used"] == sorted(doc["channels"], key=list(doc["channels"]).index)
    assert r["quantification_used"] is False
    # the smoke model reads an elemental quantification: from the command line or from the file
    assert run("infer", spectra, "--model", model, "--quantification", f"{el}=1,O=2", "--out", result) == 0
    with_cli = json.loads(result.read_text())
    assert with_cli["quantification_used"] is True and with_cli["defects"] != r["defects"]
    doc["quantification"] = {el: 1.0}
    quantified = tmp_path / "quantified.json"
    quantified.write_text(json.dumps(doc))
    assert run("infer", quantified, "--model", model, "--out", result) == 0
    assert json.loads(result.read_text()) == with_cli  # only the present elements' ratios count
    missing = "Li" if el != "Li" else "O"
    with pytest.raises(InputError, match=f"no positive amount for {el}"):
        run("infer", spectra, "--model", model, "--quantification", f"{missing}=1", "--out", result)
    with pytest.raises(SystemExit):  # argparse: a malformed value exits 2 with the reason
        run("infer", spectra, "--model", model, "--quantification", "Ni:1", "--out", result)


def test_bad_input_is_an_input_error(trained, structure_file, tmp_path, monkeypatch):
    root, _ = trained
    model = root / "run" / "best.pt"
    with pytest.raises(InputError, match="out of range"):
        run("predict", structure_file, "--site", 9999, "--model", model, "--out", tmp_path / "x.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "gnnspec.spectra/1", "channels": {"Ni-K-xas": {"energy": [1, 2], "intensity": [1, 1]}}}))
    with pytest.raises(InputError, match="channel grid"):
        run("infer", bad, "--model", model, "--out", tmp_path / "y.json")
    bad.write_text("{not json")
    with pytest.raises(InputError):
        run("infer", bad, "--model", model, "--out", tmp_path / "y.json")
    from gnnspec.models import factory

    monkeypatch.setattr(factory, "DEFAULT_MODEL", tmp_path / "missing.pt")  # where every command finds the default
    with pytest.raises(InputError, match="no default model"):
        run("predict", structure_file, "--site", 0, "--out", tmp_path / "z.json")
    with pytest.raises(InputError, match="no such dataset"):
        run("train", SMOKE_CONFIG, "--data", tmp_path / "nowhere", "--out", tmp_path / "r")


def test_gnnspec_cli_has_the_commands(capsys):
    from gnnspec.cli import main

    for command in ("train", "evaluate", "predict", "infer"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: gnnspec " + command in capsys.readouterr().out
    assert main(["train", "no-such-config.yaml"]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_calibrate_covers_both_ways_of_querying_a_quantified_model(trained, structure_file, tmp_path, capsys):
    from gnnspec.cli import main

    root, data = trained
    model = tmp_path / "model.pt"
    model.write_bytes((root / "run" / "best.pt").read_bytes())
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--members", "2"]) == 0
    report = json.loads((tmp_path / "model.calibration.json").read_text())
    assert report["inputs"] == "spectra alone and with the exact elemental quantification"
    from gnnspec.analysis.calibration import spectrum_embeddings_of_split
    from gnnspec.models.factory import load_model

    n_val = len(spectrum_embeddings_of_split(load_model(model), str(data), "val")[0])
    assert report["defects"]["o_vacancy"]["n"] == 2 * n_val > 0  # every validation environment, without and with it
    spectra = tmp_path / "site.json"
    assert run("predict", structure_file, "--site", 0, "--model", model, "--out", spectra) == 0
    el = json.loads(spectra.read_text())["meta"]["element"]
    out = tmp_path / "answer.json"
    assert run("infer", spectra, "--model", model, "--quantification", f"{el}=1", "--out", out) == 0
    answer = json.loads(out.read_text())
    assert answer["quantification_used"] and answer["uncertainty"] is not None and "support" in answer
    # the spectrum-space check covers each channel given, and the verdict needs both checks
    channels = answer["support"]["channels"]
    assert channels
    assert set(channels) == set(json.loads(spectra.read_text())["channels"]) & set(report["support"]["channels_validation_p01_correlation"])
    reconstruction = answer["support"]["reconstruction"]  # the training environments it is placed among, compared with it
    assert set(reconstruction) == set(channels) and all(c["reconstruction_correlation"] is not None for c in reconstruction.values())
    assert answer["support"]["in_distribution"] == (
        answer["support"]["embedding_in_distribution"]
        and all(c["in_distribution"] for c in channels.values())
        and all(c["in_distribution"] for c in reconstruction.values())
    )
    # what calibrate fitted lives inside the model file: a copy of the file alone answers the same
    assert not (tmp_path / "model.uncertainty.npz").exists() and not (tmp_path / "model.support.npz").exists()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "copy.pt").write_bytes(model.read_bytes())
    again = moved / "answer.json"
    assert run("infer", spectra, "--model", moved / "copy.pt", "--quantification", f"{el}=1", "--out", again) == 0
    assert json.loads(again.read_text()) | {"model": None} == answer | {"model": None}


def test_a_model_calibrated_before_keeps_its_files_beside_it(trained, structure_file, tmp_path):
    """Older models kept the ensemble and support in .npz files beside the checkpoint: still read;
    calibrating again moves them into the checkpoint and removes the stale files."""
    import numpy as np

    from gnnspec.analysis.attached import ENSEMBLE, SUPPORT, read_arrays
    from gnnspec.models.factory import read_checkpoint, write_checkpoint_entry

    root, data = trained
    model = tmp_path / "model.pt"
    model.write_bytes((root / "run" / "best.pt").read_bytes())
    assert run("calibrate", "--model", model, "--data", data, "--members", "2") == 0
    spectra = tmp_path / "site.json"
    assert run("predict", structure_file, "--site", 0, "--model", model, "--out", spectra) == 0
    new = tmp_path / "new.json"
    assert run("infer", spectra, "--model", model, "--out", new) == 0
    old = tmp_path / "old.pt"
    old.write_bytes(model.read_bytes())
    for what in (ENSEMBLE, SUPPORT):
        np.savez(what.sidecar(old), **read_arrays(model, what))
        write_checkpoint_entry(old, what.entry, {})  # an old checkpoint: no entry
    assert not read_checkpoint(old)[ENSEMBLE.entry]
    answer = tmp_path / "old.json"
    assert run("infer", spectra, "--model", old, "--out", answer) == 0
    a, b = json.loads(new.read_text()), json.loads(answer.read_text())
    assert a["uncertainty"] is not None and a | {"model": None} == b | {"model": None}
    assert run("calibrate", "--model", old, "--data", data, "--members", "2") == 0
    assert not ENSEMBLE.sidecar(old).exists() and not SUPPORT.sidecar(old).exists()
    assert read_checkpoint(old)[SUPPORT.entry]
