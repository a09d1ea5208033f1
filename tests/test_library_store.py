"""Library files: create/add/query round trip, manifest checks, damaged files, model hash refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_library_helpers import FakeEmbedder  # noqa: F401  (sets single-threaded torch/faiss)

from gnnspec.errors import InputError
from gnnspec.library import Library, model_hash
from gnnspec.library import store as st

DIM = 8


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _entries(n: int, structure: dict | None, offset: int = 0) -> list[dict]:
    return [
        {
            "structure_id": f"s{(offset + i) // 4}",
            "site": i % 4,
            "element": "Co",
            "composition": {"Li": 0.3, "Ni": 0.0, "Mn": 0.0, "Co": 0.2, "O": 0.5},
            "defects": {"o_vacancy": False, "antisite": None},
            "split": "train",
            "source": "unit-test",
            "structure": structure,
        }
        for i in range(n)
    ]


@pytest.fixture
def lib(tmp_path, licoo2):
    lib = Library.create(tmp_path / "lib", "hash-a", DIM)
    lib.add(_unit(40, 0), _entries(40, licoo2.as_dict()), source={"path": "unit-test"})
    return lib


def test_round_trip_exact_vector_returns_its_entry(lib, licoo2):
    reopened = Library.open(lib.path)
    assert reopened.count == 40 and reopened.dim == DIM and reopened.index_kind == "exact"
    vectors = _unit(40, 0)
    hits = reopened.query_vectors(vectors[[7, 23]], k=5)
    for want, h in zip((7, 23), hits):
        assert h[0]["id"] == want and h[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert len(h) == 5 and all(h[j]["score"] >= h[j + 1]["score"] for j in range(4))
    first = hits[0][0]
    assert set(first) == {
        "id",
        "score",
        "composition",
        "defects",
        "split",
        "structure_id",
        "site",
        "element",
        "source",
        "structure",
    }
    assert first["structure"] == json.loads(json.dumps(licoo2.as_dict()))
    assert first["defects"] == {"o_vacancy": False, "antisite": None} and first["site"] == 7 % 4
    # the structure is stored once, not per entry
    assert reopened.manifest["n_structures"] == 1


def test_manifest_describes_every_file(lib):
    m = json.loads((lib.path / st.MANIFEST).read_text())
    assert m["format"] == "gnnspec.library/1" and m["dim"] == DIM and m["count"] == 40 and m["model_hash"] == "hash-a"
    assert m["index"]["kind"] == "exact" and m["index"]["requested"] == "auto" and m["metric"] == "inner_product"
    for name in st.DATA_FILES:
        assert m["files"][name] == {"sha256": st.sha256_of(lib.path / name), "bytes": (lib.path / name).stat().st_size}
    assert m["sources"][0]["entries"] == 40
    vectors = np.load(lib.path / st.VECTORS)
    assert vectors.dtype == np.float32 and vectors.shape == (40, DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_add_appends_vectors_and_keeps_old_hits(lib, licoo2):
    other = licoo2.copy()
    other.replace(0, "Na")
    ids = lib.add(_unit(10, 1), _entries(10, other.as_dict(), offset=40))
    assert ids == list(range(40, 50))
    reopened = Library.open(lib.path)
    assert reopened.count == 50 and reopened.manifest["n_structures"] == 2 and len(reopened.manifest["sources"]) == 1
    assert reopened.query_vectors(_unit(10, 1)[3], k=1)[0][0]["id"] == 43
    assert reopened.query_vectors(_unit(40, 0)[5], k=1)[0][0]["id"] == 5
    assert not [p for p in lib.path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_truncated_vectors_are_refused(lib):
    path = lib.path / st.VECTORS
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(InputError, match=r"vectors\.npy: .*truncated"):
        Library.open(lib.path)


def test_corrupted_entries_are_refused(lib):
    path = lib.path / st.ENTRIES
    raw = bytearray(path.read_bytes())
    raw[10] = ord("X") if raw[10] != ord("X") else ord("Y")  # same size, other bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"entries\.jsonl: sha256 differs"):
        Library.open(lib.path)
    Library.open(lib.path, verify=False)  # sizes alone cannot see it; that is what verify is for


def test_missing_file_and_foreign_folder_are_refused(lib, tmp_path):
    (lib.path / st.INDEX).unlink()
    with pytest.raises(InputError, match=r"index\.faiss: missing"):
        Library.open(lib.path)
    with pytest.raises(InputError, match="not a gnnspec library"):
        Library.open(tmp_path)


def test_model_of_another_hash_is_refused(lib):
    fake = FakeEmbedder(DIM)
    with pytest.raises(InputError) as err:
        Library.open(lib.path, model=fake)
    assert "hash-a" in str(err.value) and model_hash(fake) in str(err.value)


def test_bad_vectors_and_entries_are_refused(lib, tmp_path):
    with pytest.raises(InputError, match="unit rows"):
        lib.add(_unit(2, 3) * 2.0, _entries(2, None))
    with pytest.raises(InputError, match=r"expected \[n, 8\]"):
        lib.add(np.ones((2, 4), dtype=np.float32) / 2.0, _entries(2, None))
    bad = _entries(1, None)
    del bad[0]["defects"]
    with pytest.raises(InputError, match="lacks defects"):
        lib.add(_unit(1, 4), bad)
    with pytest.raises(InputError, match="already holds a library"):
        Library.create(lib.path, "hash-a", DIM)
    assert Library.open(lib.path).count == 40  # refused adds changed nothing
    empty = Library.create(tmp_path / "empty", "hash-a", DIM)
    with pytest.raises(InputError, match="empty"):
        empty.query_vectors(_unit(1, 0), k=1)
