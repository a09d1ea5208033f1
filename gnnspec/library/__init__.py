"""Embedding library and nearest-structure retrieval.

A library folder (format ``gnnspec.library/1``, see :mod:`gnnspec.library.store`) holds one unit
vector per structure environment, its labels (composition, defects, split) and structure, and a
FAISS inner-product index (:mod:`gnnspec.library.index`). Spectra are embedded with the model that
built the library (checked by hash) and matched to their nearest environments.

The names below are imported on first use, so ``gnnspec --help`` (which imports
:mod:`gnnspec.library.commands`) loads neither FAISS nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gnnspec.library.build import add_to_library, build_library
    from gnnspec.library.embed import DEFAULT_MODEL, Embedder, ForwardModel, model_hash
    from gnnspec.library.library import Library
    from gnnspec.library.query import embed_query, run_queries

_EXPORTS = {
    "Library": "gnnspec.library.library",
    "build_library": "gnnspec.library.build",
    "add_to_library": "gnnspec.library.build",
    "DEFAULT_MODEL": "gnnspec.library.embed",
    "Embedder": "gnnspec.library.embed",
    "ForwardModel": "gnnspec.library.embed",
    "model_hash": "gnnspec.library.embed",
    "embed_query": "gnnspec.library.query",
    "run_queries": "gnnspec.library.query",
}

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "ForwardModel",
    "Library",
    "add_to_library",
    "build_library",
    "embed_query",
    "model_hash",
    "run_queries",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gnnspec.library' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
