"""The on-disk format ``gnnspec.library/1``: a folder a user can copy, no pickles.

=====================  ===================================================================
file                   contents
=====================  ===================================================================
``manifest.json``      format, dimension, count, index kind and parameters, the hash of
                       the model that made the vectors, sha256 and size of every file
``vectors.npy``        float32 ``[count, dim]``, unit rows; row i is entry i
``entries.jsonl``      one JSON object per line, line i is entry i (see :data:`ENTRY_KEYS`)
``structures.jsonl``   one JSON object per structure (``row``, ``hash``, ``structure_id``,
                       ``source``, ``structure`` as a pymatgen dict); entries refer to it by
                       ``structure_row``
``index.faiss``        the FAISS index of the vectors (``faiss.write_index``)
=====================  ===================================================================

Opening checks every file's size and sha256 against the manifest, so a truncated or altered
file is refused with an :class:`InputError` naming it before anything is half-read. Writers put
each new file beside the old one under a temporary name, rename it into place, and write the
manifest last (temp file, fsync, rename): a reader never sees a manifest that describes files
that are not there yet, and a crash between renames is detected as a hash mismatch.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from gnnspec.errors import InputError
from gnnspec.jsonio import json_default, write_json

FORMAT = "gnnspec.library/1"
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
ENTRIES = "entries.jsonl"
STRUCTURES = "structures.jsonl"
INDEX = "index.faiss"
DATA_FILES = (VECTORS, ENTRIES, STRUCTURES, INDEX)

#: Keys of every line of ``entries.jsonl``.
ENTRY_KEYS = ("id", "structure_id", "structure_row", "site", "element", "composition", "defects", "split", "source")
#: Keys of every line of ``structures.jsonl``.
STRUCTURE_KEYS = ("row", "hash", "structure_id", "source", "structure")
#: Tolerance on the Euclidean norm of a stored vector.
UNIT_TOLERANCE = 1e-3

_CHUNK = 1 << 22  # bytes read at a time when hashing


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: Path) -> dict:
    """``{"sha256", "bytes"}`` of a file, as the manifest stores it."""
    return {"sha256": sha256_of(path), "bytes": path.stat().st_size}


def structure_hash(structure: dict) -> str:
    """sha256 of a pymatgen structure dict in canonical JSON (sorted keys): the identity of a structure."""
    text = json.dumps(structure, sort_keys=True, separators=(",", ":"), allow_nan=False, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def temp_path(path: Path) -> Path:
    """The temporary name a new version of ``path`` is written under before the rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def replace_file(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk and rename it over ``final`` (atomic on one filesystem)."""
    fsync_file(tmp)
    os.replace(tmp, final)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file, fsync it and rename it over ``path``."""
    tmp = write_json(temp_path(path), obj, indent=2, nonfinite="raise")
    replace_file(tmp, path)


def json_line(obj: dict) -> bytes:
    """One compact JSON line (newline included); NaN and infinities are refused."""
    try:
        return (json.dumps(obj, separators=(",", ":"), allow_nan=False, default=json_default) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise InputError(f"library record cannot be stored as JSON ({exc})") from None


# ---------------------------------------------------------------------------------------
# reading, with checks
def read_manifest(folder: Path) -> dict:
    """The manifest of a library folder, checked for format and required keys."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(f"{folder}: no such library folder")
    if not path.exists():
        raise InputError(f"{folder}: not a gnnspec library (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{path}: format is {found!r}, expected {FORMAT!r}")
    missing = [k for k in ("dim", "count", "n_structures", "model_hash", "index", "files") if k not in manifest]
    if missing:
        raise InputError(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest


def verify_files(folder: Path, manifest: dict, hashes: bool = True) -> None:
    """Refuse a missing, resized or (with ``hashes``) altered data file, naming it."""
    for name in DATA_FILES:
        rec = manifest["files"].get(name)
        path = folder / name
        if rec is None:
            raise InputError(f"{folder / MANIFEST}: no entry for {name}")
        if not path.exists():
            raise InputError(f"{path}: missing; the library is incomplete")
        size = path.stat().st_size
        if size != rec["bytes"]:
            raise InputError(
                f"{path}: {size} bytes, but the manifest says {rec['bytes']} (truncated or replaced); the library is damaged, rebuild it"
            )
        if hashes and sha256_of(path) != rec["sha256"]:
            raise InputError(
                f"{path}: sha256 differs from the manifest (file altered or corrupted); the library is damaged, rebuild it"
            )


def load_vectors(folder: Path, manifest: dict) -> np.ndarray:
    """``vectors.npy`` memory-mapped read-only, checked for dtype and shape ``[count, dim]``."""
    path = folder / VECTORS
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    expected = (manifest["count"], manifest["dim"])
    if vectors.dtype != np.float32 or vectors.shape != expected:
        raise InputError(f"{path}: {vectors.dtype} {list(vectors.shape)}, expected float32 {list(expected)}")
    return vectors


class JsonLines:
    """Random access to the lines of a JSON-lines file: offsets found once, lines parsed on demand."""

    def __init__(self, path: Path, expected: int):
        self.path = path
        size = path.stat().st_size
        if size == 0:
            ends = np.zeros(0, dtype=np.int64)
        else:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                ends = np.flatnonzero(np.frombuffer(mm, dtype=np.uint8) == 10).astype(np.int64)
            if ends.size == 0 or ends[-1] != size - 1:
                raise InputError(f"{path}: last line is not terminated (file truncated)")
        if ends.size != expected:
            raise InputError(f"{path}: {ends.size} lines, but the manifest counts {expected}")
        self.starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if ends.size else ends
        self.ends = ends

    def __len__(self) -> int:
        return int(self.ends.size)

    def get(self, rows: list[int]) -> list[dict]:
        """Parsed lines ``rows`` (in the order given)."""
        out = []
        with self.path.open("rb") as f:
            for r in rows:
                if not 0 <= r < len(self):
                    raise InputError(f"{self.path}: no line {r} (the file has {len(self)})")
                f.seek(int(self.starts[r]))
                raw = f.read(int(self.ends[r] - self.starts[r]))
                try:
                    out.append(json.loads(raw))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{self.path}: line {r + 1} is not valid JSON ({exc.msg})") from None
        return out

    def all(self) -> list[dict]:
        return self.get(list(range(len(self))))


def check_entry(entry: dict, where: str) -> None:
    """Refuse an entry without the keys of :data:`ENTRY_KEYS` (``id`` and ``structure_row`` are assigned on add)."""
    need = [k for k in ENTRY_KEYS if k not in ("id", "structure_row", "element") and k not in entry]
    if need:
        raise InputError(f"{where}: entry lacks {', '.join(need)}")
    if not isinstance(entry["composition"], dict) or not isinstance(entry["defects"], dict):
        raise InputError(f"{where}: 'composition' and 'defects' must be dicts")
    if not isinstance(entry["site"], int):
        raise InputError(f"{where}: 'site' must be an integer (-1 for the bulk), got {entry['site']!r}")


def check_unit_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Vectors as contiguous float32 ``[n, dim]``; refuse other shapes, non-finite or non-unit rows."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] != dim:
        raise InputError(f"vectors of shape {list(np.shape(vectors))}; expected [n, {dim}]")
    if not np.all(np.isfinite(v)):
        raise InputError("vectors hold non-finite values")
    norms = np.linalg.norm(v.astype(np.float64), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
    if bad.size:
        raise InputError(f"vectors must be unit rows; row {bad[0]} has norm {norms[bad[0]]:.6f} ({bad.size} such rows)")
    return np.ascontiguousarray(v)
