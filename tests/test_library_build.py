"""Building libraries from LMDB datasets and structure folders, with a fake embedder and with a tiny real model."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure
from test_library_helpers import FakeEmbedder, make_lmdb, save_model, tiny_model, write_grid_spectra

from gnnspec.data.store import SpectraStore
from gnnspec.errors import InputError
from gnnspec.library import Library, add_to_library, build_library, embed_query, model_hash
from gnnspec.library.query import hit_spectra
from gnnspec.structures.environments import environments


@pytest.fixture(scope="module")
def lmdb(tmp_path_factory):
    return make_lmdb(tmp_path_factory.mktemp("ds") / "ds")


@pytest.fixture(scope="module")
def fake_lib(lmdb, tmp_path_factory):
    return build_library(FakeEmbedder(), lmdb, tmp_path_factory.mktemp("lib") / "lib")


def test_lmdb_build_has_every_environment_with_its_labels(lmdb, fake_lib):
    store = SpectraStore(lmdb)
    records = [store.structure(sid) for sid in store.structure_ids()]
    sizes = [len(r["structure"]["sites"]) for r in records]
    assert fake_lib.count == sum(sizes) and fake_lib.manifest["n_structures"] == 3
    entries = fake_lib.entries.all()
    assert [e["id"] for e in entries] == list(range(fake_lib.count))
    assert {e["split"] for e in entries} == {"train", "val", "test"}
    # labels equal those of gnnspec.structures.environments, vacancies included
    rec = records[1]
    envs = environments(Structure.from_dict(rec["structure"]), rec["vacancies"], include_bulk=False)
    mine = [e for e in entries if e["structure_id"] == 1]
    assert [e["site"] for e in mine] == [env.centre for env in envs]
    for e, env in zip(mine, envs):
        assert [e["composition"][el] for el in ("Li", "Ni", "Mn", "Co", "O")] == pytest.approx(env.content.tolist())
        assert e["defects"] == {"o_vacancy": bool(env.defects[0]), "antisite": bool(env.defects[1])}
    assert any(e["defects"]["o_vacancy"] for e in mine) and any(not e["defects"]["o_vacancy"] for e in mine)


def test_entry_vector_query_returns_that_entry(fake_lib):
    vectors = np.asarray(fake_lib.vectors)
    for i in (0, 60, fake_lib.count - 1):
        hit = fake_lib.query_vectors(vectors[i], k=3)[0][0]
        assert hit["id"] == i and hit["score"] == pytest.approx(1.0, abs=1e-5)
        assert Structure.from_dict(hit["structure"])[hit["site"]].specie.symbol == hit["element"]


def test_split_filter_add_and_duplicates(lmdb, tmp_path):
    lib = build_library(FakeEmbedder(), lmdb, tmp_path / "lib", split="train")
    assert {e["split"] for e in lib.entries.all()} == {"train"}
    n_train = lib.count
    stats = add_to_library(lib, FakeEmbedder(), lmdb)
    assert stats["skipped"] == 1 and stats["structures"] == 2 and lib.count == n_train + stats["entries"]
    again = add_to_library(lib.path, FakeEmbedder(), lmdb)
    assert again == {"structures": 0, "skipped": 3, "entries": 0, "count": lib.count}
    assert Library.open(lib.path).manifest["sources"][1]["skipped"] == 1
    with pytest.raises(InputError, match="fake-embedder-dim8-seed0.*fake-embedder-dim8-seed1"):
        add_to_library(lib, FakeEmbedder(seed=1), lmdb)
    with pytest.raises(InputError, match="unknown split"):
        build_library(FakeEmbedder(), lmdb, tmp_path / "x", split="dev")


def test_structure_folder_marks_unknown_labels(tmp_path, licoo2):
    folder = tmp_path / "cifs"
    folder.mkdir()
    plain = licoo2.copy()
    plain.remove_site_property("site_type")
    plain.to(filename=str(folder / "plain.cif"))
    (folder / "typed.json").write_text(licoo2.to_json())
    (folder / "notes.txt").write_text("not a structure")
    lib = build_library(FakeEmbedder(), folder, tmp_path / "lib", include_bulk=False)
    entries = lib.entries.all()
    assert lib.count == 24 and {e["structure_id"] for e in entries} == {"plain.cif", "typed.json"}
    for e in entries:
        assert e["split"] is None and e["defects"]["o_vacancy"] is None
        assert e["defects"]["antisite"] is (None if e["structure_id"] == "plain.cif" else False)
    with pytest.raises(InputError, match="carry no split"):
        build_library(FakeEmbedder(), folder, tmp_path / "lib2", split="train")
    with pytest.raises(InputError, match="no centre atom.*--vectors predicted"):
        build_library(FakeEmbedder(), folder, tmp_path / "lib3", include_bulk=True)


# -- the real model (tiny, random weights) ------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_model_hash_survives_the_checkpoint(model, tmp_path):
    from gnnspec.models import load_checkpoint

    loaded = load_checkpoint(save_model(model, tmp_path / "m.pt"))
    assert model_hash(loaded) == model_hash(model) and len(model_hash(model)) == 64
    assert model_hash(tiny_model(seed=1)) != model_hash(model)


def test_structure_vectors_of_the_real_model(model, lmdb, tmp_path):
    lib = build_library(model, lmdb, tmp_path / "lib")
    assert lib.dim == 16 and lib.manifest["vector_source"] == "structure" and lib.model_hash == model_hash(model)
    store = SpectraStore(lmdb)
    structure = Structure.from_dict(store.structure(2)["structure"])
    first = next(e["id"] for e in lib.entries.all() if e["structure_id"] == 2)
    site = 5
    hit = lib.query_vectors(model.embed_environments(structure)[site], k=1)[0][0]
    assert hit["id"] == first + site and hit["score"] == pytest.approx(1.0, abs=1e-5)
    # a spectra query goes through the spectrum encoder; scores are its cosines with the library vectors
    spectra = hit_spectra(model, hit)
    lib.set_model(model)
    hits = lib.query(write_grid_spectra(tmp_path / "q.json", spectra), k=4)
    vector, used = embed_query(model, write_grid_spectra(tmp_path / "q.json", spectra))
    assert used == list(spectra)
    cosines = np.asarray(lib.vectors, dtype=np.float64) @ vector
    assert [h["id"] for h in hits] == list(np.argsort(-cosines)[:4])
    assert [h["score"] for h in hits] == pytest.approx(np.sort(cosines)[::-1][:4], abs=1e-5)


def test_exact_spectra_of_an_environment_find_it(model, lmdb, tmp_path):
    """Predicted-spectra vectors: the spectra of a library environment give that environment first."""
    lib = build_library(model, lmdb, tmp_path / "lib", vector_source="predicted", include_bulk=True)
    vectors = np.asarray(lib.vectors, dtype=np.float64)
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -2.0)
    target = int(np.argmax(1.0 - gram.max(axis=1)))  # the entry a random model separates best
    assert 1.0 - gram[target].max() > 1e-3
    entry = lib.entries.get([target])[0]
    entry["structure"] = lib.structures.get([entry["structure_row"]])[0]["structure"]
    query = write_grid_spectra(tmp_path / "q.json", hit_spectra(model, entry))
    hits = Library.open(lib.path, model=model).query(query, k=3)
    assert hits[0]["id"] == target and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert sum(e["site"] == -1 for e in lib.entries.all()) == 3
