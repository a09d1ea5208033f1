"""The embedding library: unit vectors of environments, their labels and structures, a FAISS index.

>>> lib = Library.open("libs/nmc")                      # checks sizes and sha256 of every file
>>> lib.query_vectors(v, k=5)                           # [[hit, ...]] per query row
>>> lib.query(read_spectra("ni_k.json")[0], k=5)        # spectra -> model embedding -> hits
>>> lib.query(spectra, k=5, rank="consensus")           # most probable labels first (consensus.py)

A hit is ``{"id", "score", "composition", "defects", "split", "structure_id", "site",
"element", "source", "structure"}``; ``score`` is the inner product of unit vectors (cosine
similarity, at most 1), ``site`` the environment's centre (``-1``: the whole structure),
``structure`` the pymatgen dict; consensus ranking adds ``support``. File layout and checks:
:mod:`gnnspec.library.store`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gnnspec.errors import InputError
from gnnspec.library import consensus
from gnnspec.library import index as ix
from gnnspec.library import store as st
from gnnspec.library.embed import VECTOR_SOURCES, model_hash, resolve_model

_COPY_ROWS = 65_536  # rows copied at a time when vectors.npy grows
_HASH = re.compile(rb'"hash":"([0-9a-f]{64})"')


class Library:
    """An opened library folder; make one with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, manifest: dict, model: Any = None):
        self.path = path
        self.manifest = manifest
        self._model = model
        self._load()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        model_hash: str,
        dim: int,
        index: str = "auto",
        thresholds: dict | None = None,
        index_params: dict | None = None,
        vector_source: str = "structure",
        overwrite: bool = False,
    ) -> Library:
        """Create an empty library in folder ``path`` for ``dim``-dimensional vectors of one model.

        ``index``: ``auto`` (by size, see :mod:`gnnspec.library.index`), ``exact``, ``hnsw`` or
        ``ivfpq``; ``thresholds`` overrides the auto sizes, ``index_params`` the index parameters.
        A folder that already holds a library is refused unless ``overwrite``.
        """
        path = Path(path)
        if index != "auto" and index not in ix.INDEX_KINDS:
            raise InputError(f"unknown index kind {index!r}; valid: auto, {', '.join(ix.INDEX_KINDS)}")
        if vector_source not in VECTOR_SOURCES:
            raise InputError(f"unknown vector source {vector_source!r}; valid: {', '.join(VECTOR_SOURCES)}")
        if int(dim) < 1:
            raise InputError(f"dimension must be positive, got {dim}")
        if (path / st.MANIFEST).exists() and not overwrite:
            raise InputError(f"{path}: already holds a library; use `gnnspec library add` to extend it, or another folder")
        if path.exists() and not path.is_dir():
            raise InputError(f"{path}: exists and is not a folder")
        path.mkdir(parents=True, exist_ok=True)
        thresholds = {**ix.DEFAULT_THRESHOLDS, **(thresholds or {})}
        kind = ix.choose_kind(0, index, thresholds)
        if kind == "ivfpq":
            kind = "exact"  # nothing to train on yet; the first add builds the IVF-PQ index
        np.save(path / st.VECTORS, np.zeros((0, int(dim)), dtype=np.float32))
        (path / st.ENTRIES).write_bytes(b"")
        (path / st.STRUCTURES).write_bytes(b"")
        ix.write_index(
            ix.build_index(kind, np.zeros((0, int(dim)), dtype=np.float32), ix.resolve_params(kind, 0, dim, index_params)),
            path / st.INDEX,
        )
        manifest = {
            "format": st.FORMAT,
            "created": st.now(),
            "updated": st.now(),
            "dim": int(dim),
            "count": 0,
            "n_structures": 0,
            "model_hash": str(model_hash),
            "vector_source": vector_source,
            "metric": "inner_product",
            "index": {
                "kind": kind,
                "requested": index,
                "params": ix.resolve_params(kind, 0, dim, index_params),
                "param_overrides": dict(index_params or {}),
                "thresholds": thresholds,
            },
            "sources": [],
            "files": {name: st.file_record(path / name) for name in st.DATA_FILES},
        }
        st.write_json_atomic(path / st.MANIFEST, manifest)
        return cls(path, manifest)

    @classmethod
    def open(cls, path: str | Path, model: Any = None, verify: bool = True) -> Library:
        """Open a library, checking every file against the manifest (sizes always, sha256 with ``verify``).

        ``model`` (a model object or checkpoint path) is checked against the manifest's model
        hash at once; when ``None``, a spectra query loads the default model and checks it then.
        """
        path = Path(path)
        manifest = st.read_manifest(path)
        st.verify_files(path, manifest, hashes=verify)
        lib = cls(path, manifest)
        if model is not None:
            lib.set_model(model)
        return lib

    def _load(self) -> None:
        m = self.manifest
        self._centres: np.ndarray | None = None  # centre element of every entry, read on first use
        self.vectors = st.load_vectors(self.path, m)
        self.entries = st.JsonLines(self.path / st.ENTRIES, m["count"])
        self.structures = st.JsonLines(self.path / st.STRUCTURES, m["n_structures"])
        self.index = ix.read_index(self.path / st.INDEX, m["index"]["kind"], m["index"]["params"])
        if self.index.ntotal != m["count"] or self.index.d != m["dim"]:
            raise InputError(
                f"{self.path / st.INDEX}: holds {self.index.ntotal} vectors of dimension {self.index.d}, "
                f"the manifest says {m['count']} of {m['dim']}"
            )

    # -- properties --------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def model_hash(self) -> str:
        return str(self.manifest["model_hash"])

    @property
    def index_kind(self) -> str:
        return str(self.manifest["index"]["kind"])

    def __len__(self) -> int:
        return self.count

    # -- the model ---------------------------------------------------------------------
    def check_model_hash(self, other: str) -> None:
        """Refuse vectors or a model of another model, naming both hashes."""
        if other != self.model_hash:
            raise InputError(
                f"{self.path}: the library's vectors were made by model {self.model_hash}, "
                f"but the model given is {other}; query with the model that built the library, or rebuild it"
            )

    def set_model(self, model: Any) -> None:
        """Use ``model`` (object or checkpoint path) for spectra queries, after checking its hash."""
        model = resolve_model(model)
        self.check_model_hash(model_hash(model))
        self._model = model

    @property
    def model(self) -> Any:
        """The model of spectra queries: the one given, else the default model (loaded and checked once)."""
        if self._model is None:
            self.set_model(None)
        return self._model

    # -- queries -----------------------------------------------------------------------
    def centre_ids(self, element: str) -> np.ndarray:
        """Ids of the entries centred on an atom of ``element`` (whole-structure entries have no centre)."""
        if self._centres is None:
            self._centres = np.array([e["element"] or "" for e in self.entries.get(list(range(self.count)))], dtype=object)
        ids = np.flatnonzero(self._centres == element)
        if ids.size == 0:
            known = sorted(set(self._centres.tolist()) - {""})
            raise InputError(f"{self.path}: no entry is centred on {element!r}; centre elements here: {', '.join(known)}")
        return ids

    def _search(self, q: np.ndarray, n: int, centres: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` (scores, ids) of each row of ``q``; a row with a centre element searches the
        entries centred on it, exactly (inner products with the stored vectors), whatever the index."""
        scores = np.full((len(q), n), -np.inf, dtype=np.float32)
        ids = np.full((len(q), n), -1, dtype=np.int64)
        plain = [r for r, c in enumerate(centres) if c is None]
        if plain:
            found = self._rescored(q[plain], n) if self.index_kind == "ivfpq" else ix.search(self.index, q[plain], n)
            scores[plain], ids[plain] = found
        for element in sorted({c for c in centres if c is not None}):
            rows = [r for r, c in enumerate(centres) if c == element]
            allowed = self.centre_ids(element)
            exact = q[rows] @ np.asarray(self.vectors[allowed], dtype=np.float32).T
            top = np.argsort(-exact, axis=1, kind="stable")[:, :n]
            scores[rows, : top.shape[1]] = np.take_along_axis(exact, top, axis=1)
            ids[rows, : top.shape[1]] = allowed[top]
        return scores, ids

    def query_vectors(
        self,
        vectors: np.ndarray,
        k: int = 5,
        rank: str = "cosine",
        pool: int | None = None,
        centre: str | Sequence[str | None] | None = None,
    ) -> list[list[dict]]:
        """The ``k`` best entries of each query vector (rows normalised here), best first.

        ``rank``: ``cosine`` (nearest first) or ``consensus`` (the ``pool`` nearest, by default the
        square root of the library size, re-ranked by how many of them share each entry's labels;
        hits gain ``support``, see :mod:`gnnspec.library.consensus`). ``centre``: an element
        symbol (or one per query, None for no filter) to which the hits' centre atom is
        restricted: "which Ni environments explain these spectra".
        """
        if int(k) < 1:
            raise InputError(f"k must be at least 1, got {k}")
        consensus.check_ranking(rank, pool)
        if self.count == 0:
            raise InputError(f"{self.path}: the library is empty")
        q = np.asarray(vectors, dtype=np.float64)
        q = q[None, :] if q.ndim == 1 else q
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query vectors of shape {list(np.shape(vectors))}; the library holds dimension {self.dim}")
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        if not np.all(np.isfinite(q)) or np.any(norms == 0):
            raise InputError("query vectors must be finite and non-zero")
        q = (q / norms).astype(np.float32)
        centres = [centre] * len(q) if centre is None or isinstance(centre, str) else list(centre)
        if len(centres) != len(q):
            raise InputError(f"{len(centres)} centre elements for {len(q)} query vectors")
        k = min(int(k), self.count)
        n = k if rank == "cosine" else max(consensus.pool_size(self.count, pool), k)
        scores, ids = self._search(q, n, centres)
        if rank == "cosine":
            return [self._hits(s, i) for s, i in zip(scores, ids)]
        pooled = sorted({int(i) for i in ids.reshape(-1) if i >= 0})
        content, defects = consensus.entry_labels(self.entries.get(pooled))
        labels = {i: (c, d) for i, c, d in zip(pooled, content, defects)}
        out = []
        for s, i in zip(scores, ids):
            s, i, sup = consensus.consensus_order(s, i, labels, k)
            hits = self._hits(s, i)
            for hit, value in zip(hits, sup):
                hit["support"] = float(value)
            out.append(hits)
        return out

    def _rescored(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ candidates (``rerank`` x ``k``) re-scored exactly with the stored vectors."""
        return ix.rescored_search(self.index, self.vectors, q, k, int(self.manifest["index"]["params"]["rerank"]))

    def query(
        self,
        spectra: Any,
        k: int = 5,
        rank: str = "cosine",
        pool: int | None = None,
        quantification: Mapping[str, float] | None = None,
        centre: str | None = None,
    ) -> list[dict]:
        """The ``k`` best environments of one set of spectra (a ``gnnspec.spectra/1`` file, dict or
        ``{channel: Spectrum}``), embedded by the library's model; ``rank``/``pool``/``centre``: see
        :meth:`query_vectors`.

        ``quantification``: the sample's elemental quantification ``{element: amount}``, for models
        that read one (overrides one in the spectra file; :mod:`gnnspec.quantification`)."""
        from gnnspec.library.query import embed_query

        vector, _ = embed_query(self.model, spectra, quantification)
        return self.query_vectors(vector, k, rank, pool, centre)[0]

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[dict]:
        keep = [(float(s), int(i)) for s, i in zip(scores, ids) if i >= 0]
        entries = self.entries.get([i for _, i in keep])
        rows = sorted({e["structure_row"] for e in entries if e["structure_row"] is not None})
        structures = dict(zip(rows, (s["structure"] for s in self.structures.get(rows))))
        hits = []
        for (score, _), e in zip(keep, entries):
            hit = {key: e[key] for key in ("id", "composition", "defects", "split", "structure_id", "site", "element", "source")}
            hit["score"] = score
            hit["structure"] = structures.get(e["structure_row"])
            hits.append(hit)
        return hits

    # -- growing -----------------------------------------------------------------------
    def structure_hashes(self) -> dict[str, int]:
        """``{hash: row}`` of the structures already in the library (see :func:`store.structure_hash`).

        Reads only the start of each line of ``structures.jsonl`` (``row`` and ``hash`` come first).
        """
        out = {}
        with (self.path / st.STRUCTURES).open("rb") as f:
            for row, start in enumerate(self.structures.starts.tolist()):
                f.seek(start)
                found = _HASH.search(f.read(160))
                if found is None:
                    raise InputError(f"{self.path / st.STRUCTURES}: line {row + 1} does not start with its row and hash")
                out[found.group(1).decode()] = row
        return out

    def add(self, vectors: np.ndarray, entries: Sequence[Mapping], source: Mapping | None = None) -> list[int]:
        """Append ``vectors`` (float32-able ``[n, dim]``, unit rows) and their ``entries``; returns the new ids.

        Each entry needs ``structure_id``, ``site``, ``composition``, ``defects``, ``split`` and
        ``source``, and may carry ``element`` and ``structure`` (pymatgen dict, stored once per
        distinct structure). ``source`` (provenance) is appended to the manifest's ``sources``.
        The index grows in place, or is rebuilt when an ``auto`` library crosses a size threshold.
        """
        new = st.check_unit_rows(vectors, self.dim)
        if len(new) != len(entries):
            raise InputError(f"{len(new)} vectors but {len(entries)} entries")
        if not len(new):
            return []
        m = self.manifest
        known = self.structure_hashes()
        n_old, n_struct = self.count, int(m["n_structures"])
        entry_lines, structure_lines, by_object = [], [], {}
        for j, entry in enumerate(entries):
            st.check_entry(entry, f"entry {j}")
            row = None
            if entry.get("structure") is not None:
                obj = entry["structure"]
                h = by_object.get(id(obj)) or st.structure_hash(obj)
                by_object[id(obj)] = h
                if h not in known:
                    known[h] = n_struct + len(structure_lines)
                    rec = {
                        "row": known[h],
                        "hash": h,
                        "structure_id": entry["structure_id"],
                        "source": entry["source"],
                        "structure": obj,
                    }
                    structure_lines.append(st.json_line(rec))
                row = known[h]
            rec = {key: entry.get(key) for key in st.ENTRY_KEYS}
            rec.update(id=n_old + j, structure_row=row)
            entry_lines.append(st.json_line(rec))
        n_new = n_old + len(new)
        tmp = {name: st.temp_path(self.path / name) for name in st.DATA_FILES}
        try:
            vectors_all = self._write_vectors(tmp[st.VECTORS], new)
            for name, lines in ((st.ENTRIES, entry_lines), (st.STRUCTURES, structure_lines)):
                shutil.copyfile(self.path / name, tmp[name])
                with tmp[name].open("ab") as f:
                    f.writelines(lines)
            index_block = self._write_index(tmp[st.INDEX], vectors_all, new, n_new)
            del vectors_all
            for name in st.DATA_FILES:
                st.replace_file(tmp[name], self.path / name)
        except BaseException:
            self.index = ix.read_index(self.path / st.INDEX, m["index"]["kind"], m["index"]["params"])  # undo the in-memory add
            raise
        finally:
            for p in tmp.values():
                p.unlink(missing_ok=True)
        m = {**m, "count": n_new, "n_structures": n_struct + len(structure_lines), "index": index_block, "updated": st.now()}
        if source is not None:
            m["sources"] = [
                *m.get("sources", []),
                {**dict(source), "entries": len(new), "structures": len(structure_lines), "added": st.now()},
            ]
        m["files"] = {name: st.file_record(self.path / name) for name in st.DATA_FILES}
        st.write_json_atomic(self.path / st.MANIFEST, m)
        self.manifest = m
        self._load()
        return list(range(n_old, n_new))

    def _write_vectors(self, tmp: Path, new: np.ndarray) -> np.ndarray:
        """Write old + new rows to ``tmp`` (chunked copy); returns the new file memory-mapped."""
        n_old = self.count
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_old + len(new), self.dim))
        for start in range(0, n_old, _COPY_ROWS):
            stop = min(start + _COPY_ROWS, n_old)
            out[start:stop] = self.vectors[start:stop]
        out[n_old:] = new
        out.flush()
        return out

    def _write_index(self, tmp: Path, vectors_all: np.ndarray, new: np.ndarray, n_new: int) -> dict:
        """Grow the current index, or rebuild it when the chosen kind changes; returns the manifest block."""
        block = dict(self.manifest["index"])
        kind = ix.choose_kind(n_new, block["requested"], block["thresholds"])
        if kind == block["kind"]:
            ix.add_vectors(self.index, new)
            index = self.index
        else:
            block["kind"] = kind
            block["params"] = ix.resolve_params(kind, n_new, self.dim, block.get("param_overrides"))
            index = ix.build_index(kind, vectors_all, block["params"])
        ix.write_index(index, tmp)
        return block
