"""Plain JSON out of gnnspec's values: one sanitiser and one writer for every JSON file it writes.

:func:`to_jsonable` turns numpy arrays and scalars into Python lists and numbers, paths into
strings, tuples into lists and mapping keys into strings; a non-finite float (NaN, infinity)
becomes ``None`` (JSON ``null``), or is refused with ``nonfinite="raise"``. :func:`json_default`
is the same numpy and path conversion as a ``json.dumps(default=...)`` hook, for compact writers
that leave the walk to :mod:`json`. :func:`write_json` writes a sanitised value with a trailing
newline. (Records inside LMDB and the FEFF farm are msgpack: :mod:`gnnspec.codec`.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

NonFinite = Literal["null", "raise"]


def to_jsonable(value: Any, nonfinite: NonFinite = "null") -> Any:
    """``value`` as plain JSON data (module docstring); ``nonfinite="raise"``: a NaN or infinity
    raises :class:`ValueError` instead of becoming ``None``."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, nonfinite) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), nonfinite)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), nonfinite)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        if nonfinite == "raise":
            raise ValueError(f"a non-finite number ({value}); JSON cannot store it")
        return None
    return value


def json_default(obj: Any) -> Any:
    """``json.dumps(default=json_default)``: numpy arrays to lists, numpy scalars to numbers, paths to strings."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj: Any, indent: int | None = 2, nonfinite: NonFinite = "null") -> Path:
    """Write :func:`to_jsonable` of ``obj`` to ``path`` (parent folders made), newline-terminated; returns the path.

    ``indent``: spaces per level, ``None`` for one line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj, nonfinite), indent=indent, allow_nan=False) + "\n")
    return path
