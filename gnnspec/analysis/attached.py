"""Arrays fitted after training, kept inside the checkpoint they belong to.

``gnnspec calibrate`` fits two sets of plain arrays for a model: the property-head ensemble with
its calibrated temperatures (:mod:`gnnspec.analysis.uncertainty`) and the training support in
embedding and spectrum space (:mod:`gnnspec.analysis.support`). Each is one checkpoint entry,
``{array name: tensor}`` (:data:`ENSEMBLE`, :data:`SUPPORT`), so a model file copied on its own
keeps its uncertainty and its "I don't know". Models calibrated before this kept them beside the
file as ``<model>.uncertainty.npz`` and ``<model>.support.npz``; those files are still read when
the checkpoint has no entry, and writing an entry removes the stale file.

Reading is cached per file identity (path, modification time, size), so ``gnnspec map`` reads a
checkpoint once for all its pixels and a rewritten file is read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Attachment:
    """A set of arrays a checkpoint carries: its entry name and the suffix of the old sidecar file."""

    entry: str
    sidecar_suffix: str

    def sidecar(self, model_path: str | Path) -> Path:
        p = Path(model_path)
        return p.with_name(p.stem + self.sidecar_suffix)


ENSEMBLE = Attachment("uncertainty_ensemble", ".uncertainty.npz")
SUPPORT = Attachment("training_support", ".support.npz")


def read_arrays(model_path: str | Path, what: Attachment) -> dict[str, np.ndarray] | None:
    """``what``'s arrays: the checkpoint entry, else the old sidecar file, else None (read-only arrays)."""
    path = Path(model_path).resolve()
    sidecar = what.sidecar(path)
    return _read(path, _identity(path), what, _identity(sidecar))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=8)
def _read(path: Path, identity, what: Attachment, sidecar_identity) -> dict[str, np.ndarray] | None:
    from gnnspec.models.factory import read_checkpoint

    entry = read_checkpoint(path).get(what.entry)
    if entry:
        arrays = {name: t.numpy() for name, t in entry.items()}
    elif sidecar_identity is not None:
        with np.load(what.sidecar(path), allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    else:
        return None
    for a in arrays.values():
        a.flags.writeable = False  # shared by every caller of the cache
    return arrays


def write_arrays(model_path: str | Path, what: Attachment, arrays: dict[str, np.ndarray]) -> None:
    """Set ``what``'s checkpoint entry to ``arrays`` (every other entry unchanged) and remove the
    old sidecar file, which would now be stale."""
    from gnnspec.models.factory import write_checkpoint_entry

    tensors = {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}  # a copy: cached arrays are read-only
    write_checkpoint_entry(model_path, what.entry, tensors)
    what.sidecar(model_path).unlink(missing_ok=True)
