"""The structure-side support check (gnnspec.models.structure_support): unseen elements within the
cutoff, the nearest-training-environment cosine against the validation 1st percentile, where the
record lives (inside the checkpoint) and how predict, explain and library add report it."""

from __future__ import annotations

import json

import pytest
import torch
from model_fixtures import write_synthetic_lmdb
from pymatgen.core import Lattice, Structure
from test_library_helpers import make_lmdb, save_model, tiny_model

from gnnspec.analysis.calibration import calibrate_structure_support, split_table
from gnnspec.cli import main
from gnnspec.data.dataset import structure_graph
from gnnspec.data.store import SpectraStore
from gnnspec.library import Library
from gnnspec.models import structure_support as ss
from gnnspec.models.factory import DEFAULT_MODEL, load_checkpoint, load_model, read_checkpoint, write_checkpoint_entry
from gnnspec.structures.nmc import NMCParams, generate_nmc
from gnnspec.train.checkpoint import save_checkpoint

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def uo2():
    """Fluorite UO2, a = 5.47 Angstrom: 4 U then 8 O."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.47), ["U", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]])


@pytest.fixture(scope="module")
def shipped():
    return load_model(None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny model's checkpoint with the structure support fitted here on a small NMC dataset."""
    root = tmp_path_factory.mktemp("support")
    data = make_lmdb(root / "ds", n=6)  # 2 supercells per split
    model = tiny_model()
    ckpt = save_model(model, root / "model.pt")
    report = calibrate_structure_support(model, ckpt, data=str(data))
    return {"root": root, "data": data, "ckpt": ckpt, "model": model, "report": report}


def _compressed(structure: Structure, site: int, factor: float, radius: float = 3.2) -> Structure:
    """``structure`` with every atom within ``radius`` Angstrom of ``site`` moved to ``factor`` of its distance."""
    s = structure.copy()
    centre = s[site].coords
    for nb in s.get_neighbors(s[site], radius):
        s.replace(nb.index, s[nb.index].species, coords=centre + factor * (nb.coords - centre), coords_are_cartesian=True)
    return s


def _o_site(structure: Structure) -> int:
    return next(i for i, site in enumerate(structure) if site.specie.symbol == "O")


# -- the shipped model ---------------------------------------------------------------------
def test_shipped_checkpoint_carries_a_usable_structure_support(shipped):
    entry = read_checkpoint(DEFAULT_MODEL)[ss.ENTRY]
    assert entry["elements"] == ["Li", "O", "Mn", "Co", "Ni"]
    emb = entry["embedding"]
    assert emb["train"].dtype == torch.float16 and emb["train"].shape == (min(ss.MAX_REFERENCES, emb["n_training_environments"]), 128)
    assert emb["weights"] == ss.embedding_fingerprint(shipped)  # fitted for the weights it ships with
    assert 0 < emb["val_quantiles"][0] <= emb["val_quantiles"][1] <= emb["val_quantiles"][2] <= 1


def test_uo2_oxygen_site_reports_unseen_uranium(shipped, uo2):
    o = _o_site(uo2)
    report = shipped.structure_support(uo2, [o])
    (site,) = report["sites"]
    assert site["unseen_elements"] == ["U"] and site["elements_within_cutoff"] == ["O", "U"]
    assert site["in_distribution"] is False and any("U within" in why for why in site["why"])
    assert report["environment_check"]["available"] and report["elements_source"] != ss.FROM_CONTENT
    json.dumps(report, allow_nan=False)  # plain JSON


def test_licoo2_sites_have_no_unseen_elements(shipped, licoo2):
    report = shipped.structure_support(licoo2, list(range(len(licoo2))))
    assert all(r["unseen_elements"] == [] for r in report["sites"])
    # the Li and O environments of ideal LiCoO2 sit among the NMC training environments
    assert all(r["in_distribution"] for r in report["sites"] if r["element"] in ("Li", "O"))


def test_compressed_oxygen_environments_are_flagged(shipped):
    s = generate_nmc(NMCParams(seed=9, li_content=0.8, n_o_vacancies=1)).structure
    pristine = shipped.structure_support(s, list(range(len(s))))["sites"]
    assert sum(not r["in_distribution"] for r in pristine) <= 0.05 * len(s)
    oxygens = [i for i, site in enumerate(s) if site.specie.symbol == "O"][:3]
    for i in oxygens:
        (r,) = shipped.structure_support(_compressed(s, i, 0.7), [i])["sites"]
        assert r["unseen_elements"] == [] and r["environment_in_distribution"] is False
        assert r["nearest_training_cosine"] < pristine[i]["nearest_training_cosine"]


# -- fitting, the checkpoint round trip, the fallback ----------------------------------------
def test_fit_matches_the_check_on_the_validation_split(fitted):
    """The threshold is the 1st percentile of the very statistic the check computes: rebuilt through
    model.structure_support, about 1 % of the validation sites fall below it (1 of 92 here)."""
    model, data = load_checkpoint(fitted["ckpt"]), fitted["data"]
    assert model.structure_support_record["elements_source"] == f"training split of {data}"
    store = SpectraStore(data)
    flagged = n = 0
    for sid in store.structure_ids():
        rec = store.structure(sid)
        if rec["split"] == "val":
            st = Structure.from_dict(rec["structure"])
            rows = model.structure_support(st, list(range(len(st))))["sites"]
            flagged += sum(not r["in_distribution"] for r in rows)
            n += len(rows)
    assert n == fitted["report"]["validation_environments"] == len(split_table(model, str(data), "val", need_spectra=False))
    assert 1 <= flagged <= 2


def test_checkpoint_round_trip_keeps_the_entry(fitted, uo2, licoo2, tmp_path):
    fresh = load_checkpoint(fitted["ckpt"])
    assert fresh.structure_support_record["embedding"]["train"].dtype == torch.float16
    for s in (uo2, licoo2):
        sites = list(range(len(s)))
        assert fresh.structure_support(s, sites) == fitted["model"].structure_support(s, sites)
    # a checkpoint re-saved from the loaded model (or copied alone) still carries it
    again = save_model(fresh, tmp_path / "copy.pt")
    copy = load_checkpoint(again)
    assert copy.structure_support(licoo2, [0]) == fresh.structure_support(licoo2, [0])
    assert copy.structure_support(licoo2, [0])["environment_check"]["available"]


def test_fallback_for_a_checkpoint_without_the_record(uo2, licoo2, tmp_path):
    model = load_checkpoint(save_model(tiny_model(), tmp_path / "old.pt"))
    assert model.structure_support_record is None
    report = model.structure_support(uo2, [_o_site(uo2)])
    assert report["elements_source"] == "model content elements (checkpoint predates the record)"
    assert report["trained_elements"] == ["Li", "O", "Mn", "Co", "Ni"]  # content elements plus channel elements
    assert report["environment_check"]["available"] is False and "gnnspec calibrate" in report["environment_check"]["reason"]
    assert report["sites"][0]["unseen_elements"] == ["U"] and report["sites"][0]["in_distribution"] is False
    r = model.structure_support(licoo2, [0])["sites"][0]
    assert r["in_distribution"] is True and r["environment_in_distribution"] is None and r["nearest_training_cosine"] is None


def test_support_fitted_for_other_weights_is_not_used(fitted, licoo2):
    model = load_checkpoint(fitted["ckpt"])
    with torch.no_grad():
        model.env_embedding.project[0].weight.mul_(1.5)
    check = model.structure_support(licoo2, [0])["environment_check"]
    assert check["available"] is False and "other weights" in check["reason"]


def test_training_checkpoint_records_the_training_elements(licoo2, tmp_path):
    """What the training loop stores: the elements of its training graphs (here LiCoO2 alone, so Ni is unseen)."""
    model = tiny_model()
    record = ss.element_record([structure_graph(licoo2, model.cfg.backbone.cutoff, channels=tuple(model.cfg.channels))], None)
    assert record == {"version": ss.VERSION, "elements": ["Li", "O", "Co"], "elements_source": ss.FROM_TRAINING}
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, opt, sched, epoch=1, step=1, batch_in_epoch=0, best_metric=None, train_config={}, structure_support=record)
    loaded = load_checkpoint(path)
    nmc = generate_nmc(NMCParams(seed=1, supercell=(1, 1, 1))).structure
    ni = next(i for i, site in enumerate(nmc) if site.specie.symbol == "Ni")
    r = loaded.structure_support(nmc, [ni])
    assert r["elements_source"] == ss.FROM_TRAINING and "Ni" in r["sites"][0]["unseen_elements"]
    assert loaded.structure_support(licoo2, [0])["sites"][0]["unseen_elements"] == []


# -- the commands ----------------------------------------------------------------------------
def test_calibrate_adds_the_entry_on_the_models_own_training_data(tmp_path, capsys):
    """``gnnspec calibrate`` without --data reads the dataset the checkpoint names and adds the
    structure support (and its other fitted entries) to the checkpoint, every other entry unchanged."""
    data = write_synthetic_lmdb(tmp_path / "data")
    ckpt = save_model(tiny_model(), tmp_path / "model.pt")
    write_checkpoint_entry(ckpt, "train_config", {"data": str(data)})
    before = read_checkpoint(ckpt)
    assert main(["calibrate", "--model", str(ckpt), "--members", "2"]) == 0
    after = read_checkpoint(ckpt)
    # plus the uncertainty ensemble and the training support (gnnspec.analysis.attached)
    assert set(after) == set(before) | {ss.ENTRY, "uncertainty_ensemble", "training_support"}
    assert all(torch.equal(after["model"][k], v) for k, v in before["model"].items()) and after["model_config"] == before["model_config"]
    entry = after[ss.ENTRY]
    assert entry["elements_source"] == f"training split of {data}" and entry["embedding"]["data"] == str(data)
    report = json.loads((tmp_path / "model.calibration.json").read_text())["structure_support"]
    assert report["validation_nearest_cosine"]["p01"] == pytest.approx(entry["embedding"]["val_quantiles"][0])


def test_predict_writes_the_verdict_and_warns(fitted, uo2, licoo2, tmp_path, capsys):
    cif = tmp_path / "UO2.cif"
    uo2.to(filename=str(cif))
    o = _o_site(uo2)
    out = tmp_path / "o.json"
    capsys.readouterr()
    assert main(["predict", str(cif), "--site", str(o), "--model", str(fitted["ckpt"]), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["channels"]) == {"O-K-xas", "O-K-eels"}  # the prediction is still made
    verdict = doc["meta"]["structure_support"]
    assert verdict["sites"][0]["site"] == o and verdict["sites"][0]["unseen_elements"] == ["U"]
    assert verdict["sites"][0]["in_distribution"] is False
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "U within 5 A" in err[0]
    # a Li site of LiCoO2 with a model that has no record: elements only, no warning
    old = save_model(tiny_model(), tmp_path / "old.pt")
    lco = tmp_path / "LiCoO2.cif"
    licoo2.to(filename=str(lco))
    assert main(["predict", str(lco), "--site", "0", "--model", str(old), "--out", str(tmp_path / "li.json")]) == 0
    meta = json.loads((tmp_path / "li.json").read_text())["meta"]["structure_support"]
    assert meta["sites"][0]["in_distribution"] is True and meta["environment_check"]["available"] is False
    assert capsys.readouterr().err == ""


def test_explain_and_library_add_report_the_verdict(fitted, uo2, tmp_path, capsys):
    cif_dir = tmp_path / "cifs"
    cif_dir.mkdir()
    uo2.to(filename=str(cif_dir / "UO2.cif"))
    o = _o_site(uo2)
    ckpt = str(fitted["ckpt"])
    capsys.readouterr()
    argv = ["explain", str(cif_dir / "UO2.cif"), "--site", str(o), "--channel", "O-K-xas", "--model", ckpt, "--out", str(tmp_path / "ex")]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "ex" / "contributions.json").read_text())
    assert doc["structure_support"]["sites"][0]["unseen_elements"] == ["U"]
    assert "U within" in capsys.readouterr().err

    lib = tmp_path / "lib"
    assert main(["library", "build", "--data", str(fitted["data"]), "--model", ckpt, "--out", str(lib), "--split", "train"]) == 0
    assert "warning" not in capsys.readouterr().err.lower()
    assert main(["library", "add", str(lib), "--data", str(cif_dir), "--model", ckpt]) == 0
    err = capsys.readouterr().err
    assert "UO2.cif" in err and "U within 5 A" in err and "12 of 12 sites" in err
    source = Library.open(lib).manifest["sources"][-1]["structure_support"]
    assert source["unseen_elements"] == ["U"] and source["sites_out_of_distribution"] == source["sites_checked"] == 12
    assert [f["structure_id"] for f in source["structures_flagged"]] == ["UO2.cif"]
