"""Data flows one way through gnnspec's folders: a module never imports one of a higher layer."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gnnspec"
#: Lowest first. A module may import its own layer and any lower one.
LAYERS = [
    ("errors", "config", "codec", "jsonio", "labels", "scoring", "assets"),
    ("channels", "edge_offsets", "edge_position"),
    ("spectra", "quantification", "instrument"),
    ("structures", "graphs"),
    ("simulate",),
    ("data",),
    ("nn",),
    ("models",),
    ("measured",),
    ("train",),
    ("library",),
    ("analysis",),
    ("bench",),
    ("cli", "__main__", "__init__"),
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def upward_imports(source: str, layer: str) -> list[str]:
    """``gnnspec.X`` imports in ``source`` whose X sits above ``layer``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "gnnspec" and len(parts) > 1 and LAYER_OF[parts[1]] > LAYER_OF[layer]:
                found.append(name)
    return found


def test_every_folder_is_in_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    assert tops <= set(LAYER_OF), sorted(tops - set(LAYER_OF))


def test_no_module_imports_a_higher_layer():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        offences += [f"{path.relative_to(PACKAGE.parent)} imports {name}" for name in upward_imports(path.read_text(), layer)]
    assert not offences, "\n".join(offences)


def test_the_check_catches_a_forbidden_import():
    assert upward_imports("from gnnspec.data.schema import encode\nimport numpy", "simulate") == ["gnnspec.data.schema"]
    assert upward_imports("def f():\n    from gnnspec.analysis.calibration import x\n", "train") == ["gnnspec.analysis.calibration"]
    assert upward_imports("from gnnspec.channels import CHANNELS", "data") == []


def test_library_code_leaves_the_users_matplotlib_backend_alone():
    """Figures go through matplotlib.figure.Figure: no module switches the backend or uses pyplot's global state."""
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if "matplotlib.use(" in p.read_text() or "pyplot" in p.read_text()]
    assert not offenders, offenders


def test_a_script_guard_is_its_modules_last_statement():
    """``python -m gnnspec.X`` runs the module top to bottom: a function defined below the
    ``if __name__ == "__main__"`` guard does not exist yet when ``main`` calls it."""
    late = []
    for path in PACKAGE.rglob("*.py"):
        body = ast.parse(path.read_text()).body
        guards = [i for i, node in enumerate(body) if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
        late += [str(path.relative_to(PACKAGE.parent)) for i in guards if i != len(body) - 1]
    assert not late, late
