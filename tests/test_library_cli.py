"""The library as a user drives it: ``gnnspec library build|add|info`` and ``gnnspec query``, tiny real model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_library_helpers import make_lmdb, save_model, tiny_model, write_grid_spectra

from gnnspec.channels import CHANNELS
from gnnspec.cli import main
from gnnspec.library import Library, model_hash
from gnnspec.library.query import hit_spectra
from gnnspec.spectra import Spectrum, spectra_to_dict, write_spectra, write_spectra_batch


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, a dataset, a library built through the CLI and a query made from one of its entries."""
    tmp = tmp_path_factory.mktemp("cli")
    model = tiny_model()
    ckpt = save_model(model, tmp / "model.pt")
    lmdb = make_lmdb(tmp / "ds")
    lib_path = tmp / "lib"
    args = [
        "library",
        "build",
        "--data",
        str(lmdb),
        "--model",
        str(ckpt),
        "--out",
        str(lib_path),
        "--vectors",
        "predicted",
        "--bulk",
    ]
    assert main(args) == 0
    lib = Library.open(lib_path)
    vectors = np.asarray(lib.vectors, dtype=np.float64)
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -2.0)
    target = int(np.argmax(1.0 - gram.max(axis=1)))
    entry = lib.entries.get([target])[0]
    entry["structure"] = lib.structures.get([entry["structure_row"]])[0]["structure"]
    spectra = hit_spectra(model, entry)
    return {"tmp": tmp, "model": model, "ckpt": ckpt, "lmdb": lmdb, "lib": lib_path, "target": target, "spectra": spectra}


def test_build_info_and_single_query(setup, capsys):
    s = setup
    capsys.readouterr()
    assert main(["library", "info", str(s["lib"])]) == 0
    info = capsys.readouterr().out
    assert model_hash(s["model"]) in info and "files verified" in info and "predicted embeddings" in info
    query = write_grid_spectra(s["tmp"] / "query.json", s["spectra"])
    out, png = s["tmp"] / "hits.json", s["tmp"] / "hits.png"
    assert (
        main(["query", str(s["lib"]), str(query), "-k", "3", "--model", str(s["ckpt"]), "--out", str(out), "--plot", str(png)])
        == 0
    )
    result = json.loads(out.read_text())
    assert result["channels_used"] == list(s["spectra"])
    hits = result["hits"]
    assert len(hits) == 3 and hits[0]["id"] == s["target"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert {"id", "score", "composition", "defects", "structure"} <= set(hits[0]) and hits[0]["structure"][
        "@class"
    ] == "Structure"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the query's K edges, placed as infer places them
    from gnnspec.edge_position import STEP_EDGE_CHANNELS

    assert set(result["edges"]) == {c for c in s["spectra"] if c in STEP_EDGE_CHANNELS}
    assert main(["infer", str(query), "--model", str(s["ckpt"]), "--out", str(s["tmp"] / "answer.json")]) == 0
    assert json.loads((s["tmp"] / "answer.json").read_text())["edges"] == result["edges"]
    # without --out the same JSON goes to stdout
    capsys.readouterr()
    assert main(["query", str(s["lib"]), str(query), "-k", "1", "--model", str(s["ckpt"])]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == s["target"]
    # consensus ranking: every hit carries its label support, the first hit the highest
    assert (
        main(["query", str(s["lib"]), str(query), "-k", "3", "--rank", "consensus", "--pool", "8", "--model", str(s["ckpt"])])
        == 0
    )
    ranked = json.loads(capsys.readouterr().out)["hits"]
    supports = [h["support"] for h in ranked]
    assert len(ranked) == 3 and 0.0 < supports[0] <= 1.0 and supports[0] >= max(supports)


def test_batch_queries_jsonl_and_folder(setup):
    s = setup
    one = {c: Spectrum(c, CHANNELS[c].grid, y) for c, y in s["spectra"].items()}
    first = next(iter(s["spectra"]))
    part = {first: one[first]}  # a subset of the channels
    jsonl = write_spectra_batch(s["tmp"] / "batch.jsonl", [("full", one), ("part", part)])
    out, png = s["tmp"] / "batch.json", s["tmp"] / "batch.png"
    assert (
        main(["query", str(s["lib"]), str(jsonl), "-k", "2", "--model", str(s["ckpt"]), "--out", str(out), "--plot", str(png)])
        == 0
    )
    results = json.loads(out.read_text())
    assert [r["id"] for r in results] == ["full", "part"]
    assert results[0]["hits"][0]["id"] == s["target"] and results[1]["channels_used"] == [first]
    assert (s["tmp"] / "batch-full.png").exists() and (s["tmp"] / "batch-part.png").exists()
    folder = s["tmp"] / "queries"
    folder.mkdir()
    write_grid_spectra(folder / "a.json", s["spectra"])
    assert main(["query", str(s["lib"]), str(folder), "--model", str(s["ckpt"]), "--out", str(out)]) == 0
    assert [r["id"] for r in json.loads(out.read_text())] == ["a"]


def test_add_structure_files(setup, tmp_path, licoo2, capsys):
    s = setup
    lib = tmp_path / "lib"
    assert (
        main(
            [
                "library",
                "build",
                "--data",
                str(s["lmdb"]),
                "--model",
                str(s["ckpt"]),
                "--out",
                str(lib),
                "--split",
                "train",
                "--index",
                "hnsw",
            ]
        )
        == 0
    )
    before = Library.open(lib).count
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    licoo2.to(filename=str(cifs / "LiCoO2.cif"))
    assert main(["library", "add", str(lib), "--data", str(cifs), "--model", str(s["ckpt"])]) == 0
    after = Library.open(lib)
    assert after.count == before + len(licoo2) and after.index_kind == "hnsw"
    assert main(["library", "info", str(lib), "--json"]) == 0
    assert '"kind": "hnsw"' in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(setup, tmp_path, capsys):
    s = setup
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "gnnspec.spectra/1", "channels": {"Ni-K-xas": {"energy": [1, 2], "intensity": [1]}}}')
    other = save_model(tiny_model(seed=3), tmp_path / "other.pt")
    good = write_grid_spectra(tmp_path / "good.json", s["spectra"])
    cases = [
        (["query", str(s["lib"]), str(bad), "--model", str(s["ckpt"])], "equal lengths"),
        (["query", str(s["lib"]), str(good), "--model", str(other)], model_hash(s["model"])),
        (["query", str(s["lib"]), str(good), "-k", "0", "--model", str(s["ckpt"])], "-k must be at least 1"),
        (["query", str(tmp_path), str(good), "--model", str(s["ckpt"])], "not a gnnspec library"),
        (["query", str(s["lib"]), str(good), "--centre", "Xe", "--model", str(s["ckpt"])], "no entry is centred on 'Xe'"),
        (
            ["library", "build", "--data", str(tmp_path / "nothing"), "--model", str(s["ckpt"]), "--out", str(tmp_path / "l")],
            "no such dataset",
        ),
        (
            ["library", "build", "--data", str(s["lmdb"]), "--model", str(s["ckpt"]), "--out", str(s["lib"])],
            "already holds a library",
        ),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    # no --model: the default model must exist and match the library
    capsys.readouterr()
    assert main(["query", str(s["lib"]), str(good)]) == 2
    err = capsys.readouterr().err
    assert "no default model" in err or model_hash(s["model"]) in err
    # a damaged library: entries.jsonl cut short
    damaged = tmp_path / "damaged"
    assert (
        main(["library", "build", "--data", str(s["lmdb"]), "--model", str(s["ckpt"]), "--out", str(damaged), "--split", "val"])
        == 0
    )
    entries = damaged / "entries.jsonl"
    entries.write_bytes(entries.read_bytes()[:-100])
    capsys.readouterr()
    assert main(["library", "info", str(damaged)]) == 2
    assert "entries.jsonl" in capsys.readouterr().err


def test_a_query_file_carries_its_quantification_to_a_model_that_reads_one(setup, tmp_path, capsys):
    s = setup
    model = tiny_model(quantification=True)
    ckpt = save_model(model, tmp_path / "quantified.pt")
    lib = tmp_path / "lib"
    assert main(["library", "build", "--data", str(s["lmdb"]), "--model", str(ckpt), "--out", str(lib)]) == 0
    elements = {CHANNELS[c].element: float(i + 1) for i, c in enumerate(s["spectra"])}
    plain = write_grid_spectra(tmp_path / "plain.json", s["spectra"])
    spectra = [Spectrum(c, CHANNELS[c].grid, y) for c, y in s["spectra"].items()]
    quantified = write_spectra(tmp_path / "quantified.json", spectra, quantification=elements)
    results = {}
    for name, path in (("plain", plain), ("quantified", quantified)):
        capsys.readouterr()
        assert main(["query", str(lib), str(path), "-k", "3", "--model", str(ckpt)]) == 0
        results[name] = json.loads(capsys.readouterr().out)
    assert results["plain"]["quantification"] is None and results["quantified"]["quantification"] == elements
    assert [h["score"] for h in results["plain"]["hits"]] != [h["score"] for h in results["quantified"]["hits"]]
    # the API gives the same hits, from the file's own quantification or from an explicit one
    library = Library.open(lib, model=ckpt)
    for hits in (library.query(quantified, k=3), library.query(plain, k=3, quantification=elements)):
        assert [h["id"] for h in hits] == [h["id"] for h in results["quantified"]["hits"]]
        assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in results["quantified"]["hits"]])


def test_query_restricted_to_a_centre_element(setup, capsys):
    s = setup
    lib = Library.open(s["lib"], model=s["ckpt"])
    target = lib.entries.get([s["target"]])[0]
    others = sorted({e["element"] for e in lib.entries.all() if e["element"] and e["element"] != target["element"]})
    query = write_grid_spectra(s["tmp"] / "centre.json", s["spectra"])
    for rank in ("cosine", "consensus"):
        capsys.readouterr()
        argv = ["query", str(s["lib"]), str(query), "-k", "4", "--rank", rank, "--model", str(s["ckpt"])]
        assert main([*argv, "--centre", target["element"]]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["centre"] == target["element"]
        assert rank == "consensus" or result["hits"][0]["id"] == s["target"]  # consensus ranks by label support first
        assert all(h["element"] == target["element"] for h in result["hits"])
        assert main([*argv, "--centre", others[0]]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        assert hits and all(h["element"] == others[0] for h in hits) and s["target"] not in [h["id"] for h in hits]
    # the filtered search is exact: the best entry of that element by inner product with the stored vectors
    vector = lib.model.embed_spectra(s["spectra"])
    vectors = np.asarray(lib.vectors, dtype=np.float64)
    allowed = [e["id"] for e in lib.entries.all() if e["element"] == others[0]]
    best = float(np.max(vectors[allowed] @ (vector / np.linalg.norm(vector))))
    hit = lib.query(query, k=1, centre=others[0])[0]
    assert hit["id"] in allowed and hit["score"] == pytest.approx(best, abs=1e-5)  # symmetric sites tie


def test_query_moves_calibrated_energies_onto_the_encoders_feff_scale(setup, tmp_path):
    """A query converted with absolute energies answers as the same spectra on FEFF's scale: its
    TM K channels are moved by minus the shipped edge offset of the encoder's tier, as infer does."""
    from gnnspec.edge_offsets import read_edge_offsets

    s = setup
    offsets = read_edge_offsets()
    spectra = {c: y for c, y in s["spectra"].items() if (c, "fast") in offsets} or pytest.skip("no channel with an offset")
    plain = write_spectra(tmp_path / "feff.json", [Spectrum(c, CHANNELS[c].grid, y) for c, y in spectra.items()])
    calibrated = write_spectra(
        tmp_path / "abs.json",
        [Spectrum(c, CHANNELS[c].grid + offsets[(c, "fast")].offset_eV, y) for c, y in spectra.items()],
        {"channels": {c: {"energy": {"mode": "absolute"}} for c in spectra}},
    )
    answers = []
    for path in (plain, calibrated):
        out = tmp_path / f"{path.stem}.hits.json"
        assert main(["query", str(s["lib"]), str(path), "-k", "3", "--model", str(s["ckpt"]), "--out", str(out)]) == 0
        answers.append(json.loads(out.read_text()))
    a, b = answers
    assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]
    assert [h["score"] for h in a["hits"]] == pytest.approx([h["score"] for h in b["hits"]], abs=1e-5)
    c = next(iter(spectra))
    assert b["energy_scale"]["channels"][c]["shift_eV"] == pytest.approx(-offsets[(c, "fast")].offset_eV)
    assert a["energy_scale"]["channels"][c]["shift_eV"] == 0.0


def test_a_batch_query_moves_each_records_calibrated_energies(setup, tmp_path):
    """In a .jsonl batch each record's own meta decides: the calibrated record is moved onto FEFF's
    scale and answers as the plain one does; the plain record is left alone."""
    from gnnspec.edge_offsets import read_edge_offsets

    s = setup
    offsets = read_edge_offsets()
    spectra = {c: y for c, y in s["spectra"].items() if (c, "fast") in offsets} or pytest.skip("no channel with an offset")
    plain = {"id": "plain", **spectra_to_dict([Spectrum(c, CHANNELS[c].grid, y) for c, y in spectra.items()])}
    calibrated = {
        "id": "calibrated",
        **spectra_to_dict(
            [Spectrum(c, CHANNELS[c].grid + offsets[(c, "fast")].offset_eV, y) for c, y in spectra.items()],
            {"channels": {c: {"energy": {"mode": "absolute"}} for c in spectra}},
        ),
    }
    batch = tmp_path / "queries.jsonl"
    batch.write_text("".join(json.dumps(obj) + "\n" for obj in (plain, calibrated)))
    out = tmp_path / "hits.json"
    assert main(["query", str(s["lib"]), str(batch), "-k", "3", "--model", str(s["ckpt"]), "--out", str(out)]) == 0
    a, b = json.loads(out.read_text())
    assert (a["id"], b["id"]) == ("plain", "calibrated")
    assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]
    assert [h["score"] for h in a["hits"]] == pytest.approx([h["score"] for h in b["hits"]], abs=1e-5)
    c = next(iter(spectra))
    assert b["energy_scale"]["channels"][c]["shift_eV"] == pytest.approx(-offsets[(c, "fast")].offset_eV)
    assert a["energy_scale"]["channels"][c]["shift_eV"] == 0.0
