"""The pickle-free value codec of gnnspec's records: msgpack maps, numpy arrays as raw bytes.

Numpy arrays are stored as ``{"__nd__": dtype, "shape", "data"}`` (raw little-endian bytes);
numpy scalars become Python numbers and tuples lists. Nothing is pickled: decoding never runs
code. The LMDB datasets (:mod:`gnnspec.data.schema`) and the FEFF farm's result files
(:mod:`gnnspec.simulate.farm`) use it; it sits below both.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {"__nd__": arr.dtype.newbyteorder("<").str, "shape": list(arr.shape), "data": arr.astype(arr.dtype.newbyteorder("<")).tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in a gnnspec LMDB record")


def _hook(obj: dict) -> Any:
    if "__nd__" in obj:
        return np.frombuffer(obj["data"], dtype=np.dtype(obj["__nd__"])).reshape(obj["shape"]).copy()
    return obj


def encode(value: Any) -> bytes:
    """Encode a record (dicts, lists, numbers, strings, numpy arrays) without pickle."""
    return msgpack.packb(value, default=_default, use_bin_type=True)


def decode(data: bytes) -> Any:
    """Decode a record written by :func:`encode`."""
    return msgpack.unpackb(data, object_hook=_hook, raw=False, strict_map_key=False)
