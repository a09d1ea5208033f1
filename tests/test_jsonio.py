"""The one JSON sanitiser and writer (gnnspec.jsonio)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from gnnspec.jsonio import json_default, to_jsonable, write_json


def test_numpy_paths_tuples_and_keys_become_plain_json():
    value = {"a": np.float32(1.5), "b": np.arange(3), "p": Path("/x/y"), 3: (np.int64(4), [np.bool_(True)]), "m": np.eye(2)}
    out = to_jsonable(value)
    assert out == {"a": 1.5, "b": [0, 1, 2], "p": "/x/y", "3": [4, [True]], "m": [[1.0, 0.0], [0.0, 1.0]]}
    assert type(out["a"]) is float and type(out["3"][0]) is int and type(out["3"][1][0]) is bool


def test_non_finite_numbers_become_null_or_are_refused():
    value = {"nan": float("nan"), "inf": [np.float64("inf")], "neg": (-math.inf,), "ok": 1.0}
    assert to_jsonable(value) == {"nan": None, "inf": [None], "neg": [None], "ok": 1.0}
    with pytest.raises(ValueError, match=r"non-finite number \(nan\)"):
        to_jsonable(value, nonfinite="raise")


def test_json_default_hook_matches_the_walk():
    value = {"v": np.array([1.0, 2.0]), "i": np.int64(7), "p": Path("a")}
    assert json.loads(json.dumps(value, default=json_default)) == to_jsonable(value)
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        json.dumps({"s": {1}}, default=json_default)


def test_write_json_makes_folders_and_ends_with_a_newline(tmp_path):
    path = write_json(tmp_path / "deep" / "m.json", {"r2": float("nan"), "n": np.int64(2)})
    assert path.read_text() == '{\n  "r2": null,\n  "n": 2\n}\n'
    one_line = write_json(tmp_path / "s.json", {"x": [1, 2]}, indent=None)
    assert one_line.read_text() == '{"x": [1, 2]}\n'
    with pytest.raises(ValueError):
        write_json(tmp_path / "bad.json", {"x": float("inf")}, nonfinite="raise")
