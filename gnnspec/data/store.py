"""An LMDB file of structures and site spectra (see :mod:`gnnspec.data.schema`).

The environment is opened lazily, in each process that reads it, so torch DataLoader worker
processes work. Writes are committed one record group at a time: a killed build loses at most
the runs in flight.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from gnnspec.data import schema
from gnnspec.errors import InputError

DEFAULT_MAP_SIZE = 8 * 1024**3  # bytes of address space; the file grows only as data is written
DATA_FILE = "data.mdb"


#: One LMDB environment per folder and process (LMDB refuses a second open in one process).
_ENVS: dict[tuple[str, int], tuple[lmdb.Environment, bool]] = {}


def _open_env(path: Path, readonly: bool, map_size: int) -> lmdb.Environment:
    key = (str(path.resolve()), os.getpid())
    if key in _ENVS:
        env, env_readonly = _ENVS[key]
        if readonly or not env_readonly:
            return env
        env.close()  # reopen for writing; a writable environment serves readers too
        del _ENVS[key]
    if not readonly:
        path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(
        str(path),
        readonly=readonly,
        lock=os.access(path, os.W_OK),  # readers take part in locking so a running build can write beside them
        readahead=False,
        map_size=map_size,
        subdir=True,
        max_readers=256,
    )
    _ENVS[key] = (env, readonly)
    return env


def _close_env(path: Path) -> None:
    key = (str(path.resolve()), os.getpid())
    if key in _ENVS:
        _ENVS.pop(key)[0].close()


class SpectraStore:
    """Read/write access to a gnnspec LMDB dataset folder."""

    def __init__(self, path: str | Path, readonly: bool = True, map_size: int = DEFAULT_MAP_SIZE):
        self.path = Path(path)
        self.readonly = readonly
        self.map_size = map_size
        self._env: lmdb.Environment | None = None
        self._pid: int | None = None
        if readonly:
            if not (self.path / DATA_FILE).exists():
                raise InputError(f"{self.path}: not a gnnspec dataset (no {DATA_FILE})")
            meta = self.metadata()
            if meta is None:
                raise InputError(f"{self.path}: LMDB without a {schema.METADATA_KEY.decode()} record; not a gnnspec dataset")
            if meta.get("schema") == schema.SCHEMA_NAME and meta.get("schema_version") == 1:
                raise InputError(f"{self.path}: schema {schema.SCHEMA_NAME} v1 (before tiers); convert it with `gnnspec data migrate {self.path}`")
            if meta.get("schema") != schema.SCHEMA_NAME or meta.get("schema_version") != schema.SCHEMA_VERSION:
                raise InputError(
                    f"{self.path}: schema {meta.get('schema')} v{meta.get('schema_version')} is not "
                    f"{schema.SCHEMA_NAME} v{schema.SCHEMA_VERSION}"
                )

    # -- environment -------------------------------------------------------------------
    @property
    def env(self) -> lmdb.Environment:
        self._env = _open_env(self.path, self.readonly, self.map_size)
        self._pid = os.getpid()
        return self._env

    def close(self) -> None:
        """Close the environment for every user of this folder in this process."""
        if self._env is not None and self._pid == os.getpid():
            _close_env(self.path)
        self._env = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_env"] = None
        state["_pid"] = None
        return state

    # -- records -----------------------------------------------------------------------
    def get(self, key: bytes) -> Any | None:
        with self.env.begin() as txn:
            raw = txn.get(key)
        return None if raw is None else schema.decode(raw)

    def put_many(self, items: dict[bytes, Any]) -> None:
        """Write several records in one committed transaction."""
        with self.env.begin(write=True) as txn:
            for key, value in items.items():
                txn.put(key, schema.encode(value))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every record whose key starts with ``prefix`` in one committed transaction;
        returns how many there were."""
        keys = list(self.keys(prefix))
        with self.env.begin(write=True) as txn:
            for key in keys:
                txn.delete(key)
        return len(keys)

    def metadata(self) -> dict | None:
        return self.get(schema.METADATA_KEY)

    def keys(self, prefix: str = "") -> Iterator[bytes]:
        pre = prefix.encode()
        with self.env.begin() as txn:
            cur = txn.cursor()
            if not cur.set_range(pre):
                return
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(pre):
                    break
                yield bytes(key)

    def items(self, prefix: str = "") -> Iterator[tuple[bytes, Any]]:
        pre = prefix.encode()
        with self.env.begin() as txn:
            cur = txn.cursor()
            if not cur.set_range(pre):
                return
            for key, raw in cur:
                if not key.startswith(pre):
                    break
                yield bytes(key), schema.decode(raw)

    def structure_ids(self) -> list[int]:
        return [int(schema.parse_key(k)[1]) for k in self.keys("structure/")]

    def structure(self, sid: int) -> dict:
        rec = self.get(schema.structure_key(sid))
        if rec is None:
            raise InputError(f"{self.path}: no structure record {sid}")
        return rec

    def spectra_of(self, sid: int, tier: str = "fast") -> dict[tuple[int, str], dict]:
        """The raw run spectra of structure ``sid`` in ``tier``: ``{(site, run): record}``."""
        out = {}
        for key, rec in self.items(f"spectrum/{sid:06d}/"):
            _, _, site, key_tier, run = schema.parse_key(key)
            if key_tier == tier:
                out[(int(site), run)] = rec
        return out

    def tiers(self) -> list[str]:
        """The tiers that hold at least one spectrum, in the order the metadata lists presets."""
        found = {schema.parse_key(k)[3] for k in self.keys("spectrum/")}
        order = list((self.metadata() or {}).get("presets", {}))
        return sorted(found, key=lambda t: (order.index(t) if t in order else len(order), t))

    def fingerprint(self) -> str:
        """sha256 (hex) over every data record's key and value bytes in key order: structures,
        spectra and failures, not the metadata (whose build timings change with every session).
        Equal fingerprints mean the same data; compaction keeps it."""
        import hashlib

        digest = hashlib.sha256()
        with self.env.begin() as txn:
            for key, raw in txn.cursor():
                if key != schema.METADATA_KEY:
                    digest.update(len(key).to_bytes(4, "little") + key + len(raw).to_bytes(8, "little") + raw)
        return digest.hexdigest()

    def compact_copy(self, dest: str | Path, float32: bool = False) -> int:
        """Write a repacked copy of the database to folder ``dest``: same keys, same value bytes;
        with ``float32``, spectrum records holding float64 arrays are stored again with their
        ``energy`` and ``intensity`` in :data:`gnnspec.data.schema.SPECTRUM_DTYPE` (the
        precision new records are written in). Returns how many records were converted.

        LMDB's own compacting copy only drops free pages; a B-tree filled in build order keeps
        its half-full leaf pages (spectrum records of about 1.3 kB sat 1.7 to a 4 kB page).
        Appending every record in key order into a fresh file fills each leaf page before the
        next one starts, which about halves the file.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for f in (DATA_FILE, "lock.mdb"):
            if (dest / f).exists():
                (dest / f).unlink()
        out = lmdb.open(str(dest), map_size=self.map_size, subdir=True, readahead=False)
        try:
            converted = 0
            with self.env.begin() as src, out.begin(write=True) as txn:
                for key, raw in src.cursor():
                    if float32 and key.startswith(b"spectrum/"):
                        record = schema.decode(raw)
                        if any(np.asarray(record.get(k)).dtype != schema.SPECTRUM_DTYPE for k in ("energy", "intensity")):
                            record.update({k: np.asarray(record[k], schema.SPECTRUM_DTYPE) for k in ("energy", "intensity")})
                            raw, converted = schema.encode(record), converted + 1
                    txn.put(key, raw, append=True)
            out.sync(True)
        finally:
            out.close()
        return converted


def migrate(path: str | Path) -> int:
    """Rewrite a schema v1 dataset (``spectrum/{sid}/{site}/{channel}``, one preset) as v2 in place.

    Every spectrum and failure key gains its tier (the record's ``preset``; for failures the
    build config's); spectrum records gain ``tier``. Returns the number of records rewritten.
    Safe to rerun: a v2 file is left alone.
    """
    store = SpectraStore(path, readonly=False)
    meta = store.metadata()
    if meta is None or meta.get("schema") != schema.SCHEMA_NAME:
        raise InputError(f"{path}: not a gnnspec dataset")
    if meta.get("schema_version") == schema.SCHEMA_VERSION:
        return 0
    if meta.get("schema_version") != 1:
        raise InputError(f"{path}: schema v{meta.get('schema_version')} cannot be migrated to v{schema.SCHEMA_VERSION}")
    default_tier = meta.get("build_config", {}).get("preset", "fast")
    n = 0
    with store.env.begin(write=True) as txn:
        old = [(bytes(k), bytes(v)) for k, v in txn.cursor() if k.startswith((b"spectrum/", b"failure/"))]
        for key, raw in old:
            parts = schema.parse_key(key)
            if len(parts) != 4:
                raise InputError(f"{path}: record {key.decode()} is not a v1 key")
            kind, sid, site, name = parts
            rec = schema.decode(raw)
            tier = rec.get("preset", default_tier) if kind == "spectrum" else default_tier
            if kind == "spectrum":
                rec["tier"] = tier
            txn.delete(key)
            txn.put(f"{kind}/{sid}/{site}/{tier}/{name}".encode(), schema.encode(rec))
            n += 1
        meta["schema_version"] = schema.SCHEMA_VERSION
        txn.put(schema.METADATA_KEY, schema.encode(meta))
    return n
