"""``gnnspec library evaluate``: label-match hit@k of a library for a dataset's FEFF-style spectra."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.data import chemical_symbols
from model_fixtures import write_synthetic_lmdb
from test_library_helpers import save_model, tiny_model

from gnnspec.cli import main
from gnnspec.data.dataset import LMDBStructureDataset
from gnnspec.library import Library
from gnnspec.structures.environments import CONTENT_ELEMENTS, DEFECTS, labels_match

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    data = write_synthetic_lmdb(tmp / "synthetic", splits=("train",) * 3 + ("test",) * 2)
    model = tiny_model()
    ckpt = save_model(model, tmp / "model.pt")
    lib = tmp / "lib"
    assert main(["library", "build", "--data", str(data), "--split", "train", "--model", str(ckpt), "--out", str(lib)]) == 0
    return {"tmp": tmp, "data": data, "model": model, "ckpt": ckpt, "lib": lib}


def brute_force_hit_at_1(
    model,
    lib: Library,
    data,
    split: str,
    quantified: bool = False,
    centre_known: bool = False,
    k_factors: dict | None = None,
    env_spectra: np.ndarray | None = None,
) -> tuple[float, int]:
    """The same number computed the long way: exact cosine search over the stored vectors
    (``quantified``: each query with its environment's exact elemental quantification;
    ``centre_known``: only entries centred on the query's centre element; ``k_factors``: each
    query with the amounts computed here from its own raw site spectra; ``env_spectra``: every
    environment's spectra [n, C, K] in dataset order, used in place of FEFF's on FEFF's channels)."""
    from gnnspec.quantification.intensities import environment_amounts, site_integrals

    vectors = np.asarray(lib.vectors, dtype=np.float64)
    entries = lib.entries.all()
    content = np.array([[e["composition"].get(el, 0.0) for el in CONTENT_ELEMENTS] for e in entries])
    defects = np.array([[float(e["defects"][d]) for d in DEFECTS] for e in entries])
    ds = LMDBStructureDataset(data, split)
    hits = []
    row = 0
    for i in range(len(ds)):
        g = ds[i]
        y = g.env_y.double().numpy() if env_spectra is None else env_spectra[row : row + g.env_y.shape[0]]
        row += g.env_y.shape[0]
        integrals = site_integrals(ds.raw_runs(i)) if k_factors is not None else None
        for e in np.nonzero(g.env_y_mask.numpy().any(1))[0]:
            spectra = {name: y[e, c] for c, name in enumerate(ds.channels) if g.env_y_mask[e, c]}
            quant = dict(zip(CONTENT_ELEMENTS, g.env_content[e].tolist())) if quantified else None
            if k_factors is not None:
                quant = environment_amounts(integrals, g.env_member_index[g.env_member_env == e].numpy(), spectra, k_factors)
            scores = vectors @ (model.embed_spectra(spectra) if quant is None else model.embed_spectra(spectra, quantification=quant))
            if centre_known:
                centre = chemical_symbols[int(g.z[g.env_centre_index[e]])]
                scores = np.where([entry["element"] == centre for entry in entries], scores, -np.inf)
            best = int(np.argmax(scores))
            hits.append(
                bool(
                    labels_match(
                        content[best], defects[best], g.env_content[e].double().numpy(), g.env_defects[e].double().numpy()
                    )
                )
            )
    return float(np.mean(hits)), len(hits)


def test_report_matches_an_exact_search_and_flags_seen_structures(setup, capsys):
    s = setup
    out = s["tmp"] / "report.json"
    argv = ["library", "evaluate", str(s["lib"]), "--data", str(s["data"]), "--split", "test", "--model", str(s["ckpt"])]
    assert main([*argv, "-k", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    expected, n_queries = brute_force_hit_at_1(s["model"], Library.open(s["lib"], model=s["ckpt"]), s["data"], "test")
    assert report["queries"] == n_queries > 0 and report["query_structures"] == 2
    assert report["hit@1"] == pytest.approx(expected)
    assert report["hit@1"] <= report["hit@3"] <= 1.0
    assert sum(v["queries"] for v in report["hit@1_by_centre"].values()) == n_queries
    assert sum(v["queries"] for v in report["hit@1_by_defects"].values()) == n_queries
    assert report["query_structures_in_library"] == 0 and "WARNING" not in printed and "hit@1" in printed
    # consensus ranking reported beside cosine, over the same queries; its alternatives make hit@k at least hit@1
    consensus = report["consensus"]
    pool = round(Library.open(s["lib"]).count ** 0.5)  # the default: square root of the library size
    assert consensus["pool"] == pool and consensus["hit@1"] <= consensus["hit@3"] <= 1.0
    assert sum(v["queries"] for v in consensus["hit@1_by_defects"].values()) == n_queries
    assert f"consensus (pool {pool})" in printed
    # the library's own structures as queries: counted and flagged
    assert (
        main(["library", "evaluate", str(s["lib"]), "--data", str(s["data"]), "--split", "train", "--model", str(s["ckpt"])]) == 0
    )
    assert "3 query structures are in the library" in capsys.readouterr().out


def test_queries_can_be_restricted_to_their_centre_element(setup, tmp_path, capsys):
    s = setup
    out = tmp_path / "centre.json"
    argv = ["library", "evaluate", str(s["lib"]), "--data", str(s["data"]), "--split", "test", "--model", str(s["ckpt"])]
    assert main([*argv, "--centre-known", "--out", str(out)]) == 0
    assert "centred on its own centre element" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["centre_known"] is True
    expected, _ = brute_force_hit_at_1(s["model"], Library.open(s["lib"], model=s["ckpt"]), s["data"], "test", centre_known=True)
    assert report["hit@1"] == pytest.approx(expected)


def test_queries_can_carry_their_elemental_quantification(setup, tmp_path, capsys):
    s = setup
    model = tiny_model(quantification=True)
    ckpt = save_model(model, tmp_path / "quantified.pt")
    lib = tmp_path / "lib"
    assert main(["library", "build", "--data", str(s["data"]), "--split", "train", "--model", str(ckpt), "--out", str(lib)]) == 0
    reports = {}
    for error in (None, 0.0, 0.2):
        out = tmp_path / f"report-{error}.json"
        extra = [] if error is None else ["--quantification-error", str(error)]
        argv = ["library", "evaluate", str(lib), "--data", str(s["data"]), "--split", "test", "--model", str(ckpt), "--out", str(out)]
        assert main(argv + extra) == 0
        reports[error] = json.loads(out.read_text())
    assert reports[None]["quantification"] is None and reports[0.2]["quantification"]["relative_error"] == 0.2
    assert "relative error 0.2" in capsys.readouterr().out
    for error, quantified in ((None, False), (0.0, True)):
        expected, _ = brute_force_hit_at_1(model, Library.open(lib, model=ckpt), s["data"], "test", quantified=quantified)
        assert reports[error]["hit@1"] == pytest.approx(expected)
    # a model without the input refuses quantified queries in one line
    argv = ["library", "evaluate", str(s["lib"]), "--data", str(s["data"]), "--split", "test", "--model", str(s["ckpt"])]
    assert main([*argv, "--quantification-error", "0"]) == 2
    assert "without an elemental-quantification input" in capsys.readouterr().err


def test_bad_arguments_exit_2_with_one_line(setup, tmp_path, capsys):
    s = setup
    cases = [
        (["--data", str(s["data"]), "--split", "holdout"], "unknown split"),
        (["--data", str(tmp_path)], "not a gnnspec LMDB dataset"),
        (["--data", str(s["data"]), "-k", "0"], "k must be at least 1"),
        (["--data", str(s["data"]), "--split", "test", "--pool", "0"], "consensus pool must hold at least 1"),
        (["--data", str(s["data"]), "--split", "test", "--quantification-error", "-1"], "quantification error must be"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main(["library", "evaluate", str(s["lib"]), "--model", str(s["ckpt"]), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_queries_can_carry_the_quantification_their_own_intensities_hold(setup, tmp_path, capsys):
    """k-factors from the train split; each test query's amounts from its own raw site spectra, no labels."""
    from gnnspec.quantification.intensities import fit_k_factors, site_integrals

    s = setup
    model = tiny_model(quantification=True)
    ckpt = save_model(model, tmp_path / "quantified.pt")
    lib = tmp_path / "lib"
    assert main(["library", "build", "--data", str(s["data"]), "--split", "train", "--model", str(ckpt), "--out", str(lib)]) == 0
    out = tmp_path / "report.json"
    assert main(["data", "k-factors", str(s["data"]), "--split", "train", "--out", str(tmp_path / "k.json")]) == 0
    argv = ["library", "evaluate", str(lib), "--data", str(s["data"]), "--split", "test", "--model", str(ckpt), "--out", str(out)]
    assert main([*argv, "--intensity-quantification", str(tmp_path / "k.json")]) == 0
    assert "from its own spectra's intensities" in capsys.readouterr().out
    report = json.loads(out.read_text())
    train = LMDBStructureDataset(s["data"], "train")
    k_factors = fit_k_factors(site_integrals(train.raw_runs(i)) for i in range(len(train)))
    assert report["quantification"]["k_factors_file"] == str(tmp_path / "k.json")
    assert all(report["quantification"]["k_factors"][c]["k"] == pytest.approx(k_factors[c]["k"]) for c in k_factors)
    # the same hit@1 the long way, with the amounts computed here from the raw spectra
    expected, _ = brute_force_hit_at_1(model, Library.open(lib, model=ckpt), s["data"], "test", k_factors=k_factors)
    assert report["hit@1"] == pytest.approx(expected)
    # both sources at once are refused
    assert main([*argv, "--intensity-quantification", str(tmp_path / "k.json"), "--quantification-error", "0.1"]) == 2
    assert "not both" in capsys.readouterr().err


def test_queries_can_carry_the_forward_models_spectra(setup, tmp_path):
    """``--spectra model``: the same environments and channels as FEFF's, with the model's own
    spectra (what an encoder aligned on a forward-model tier learned); ``auto`` keeps FEFF's for
    a model whose encoder learned FEFF's."""
    from gnnspec.models.environment_table import simulated_set

    s = setup
    argv = ["library", "evaluate", str(s["lib"]), "--data", str(s["data"]), "--split", "test", "--model", str(s["ckpt"])]
    reports = {}
    for choice in ("auto", "model"):
        out = tmp_path / f"{choice}.json"
        assert main([*argv, "--spectra", choice, "--out", str(out)]) == 0
        reports[choice] = json.loads(out.read_text())
    assert reports["auto"]["query_spectra"] == "FEFF (dataset base tier)"
    assert reports["model"]["query_spectra"] == "forward model, tier fast"
    assert reports["model"]["queries"] == reports["auto"]["queries"]
    lib = Library.open(s["lib"], model=s["ckpt"])
    ds = LMDBStructureDataset(s["data"], "test", cutoff=lib.model.cfg.backbone.cutoff, channels=lib.model.cfg.channels)
    predicted = simulated_set(lib.model, ds, "fast").y
    expected, _ = brute_force_hit_at_1(lib.model, lib, s["data"], "test", env_spectra=predicted)
    assert reports["model"]["hit@1"] == pytest.approx(expected)
    feff, _ = brute_force_hit_at_1(lib.model, lib, s["data"], "test")
    assert reports["auto"]["hit@1"] == pytest.approx(feff)
    first, present = ds[0].env_y.double().numpy(), ds[0].env_y_mask.numpy()
    assert not np.allclose(predicted[: len(first)][present], first[present])  # the model's spectra, not FEFF's


def test_one_rule_names_the_spectra_an_encoder_learned():
    """The shipped encoder was aligned on the forward model's scf spectra: ``auto`` and ``model``
    name that tier, ``feff`` the dataset's FEFF spectra; an encoder that learned FEFF's spectra
    gets them under ``auto`` and its model's base tier under ``model``."""
    from gnnspec.models.environment_table import encoder_learned_tier
    from gnnspec.models.factory import DEFAULT_MODEL, load_checkpoint

    model = load_checkpoint(DEFAULT_MODEL)
    assert model.encoder_spectra_tier == "scf"
    assert [encoder_learned_tier(model, s) for s in ("auto", "model", "feff")] == ["scf", "scf", None]
    model.encoder_spectra_tier = None
    assert [encoder_learned_tier(model, s) for s in ("auto", "model", "feff")] == [None, "fast", None]
    with pytest.raises(ValueError, match="unknown spectra source"):
        encoder_learned_tier(model, "measured")
