"""The layer order: every import of the package, function-local ones included, goes down the list.

``LAYERS`` is the order of ``docs/DESIGN.md``'s table and ``README.md``'s layout paragraph, lowest
first; the tests below check that the three agree and that the code obeys it. A module may import
only modules listed before its own entry (a package such as ``callbacks/`` is one entry, and its
files may import each other, without cycles). A new module gets its place here, in DESIGN and in
the README.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "trainwell"

LAYERS = [
    "_errors", "_registry", "activations", "initializers", "regularizers", "losses", "metrics",
    "schedules", "optimizers", "data", "data_adapters", "layers", "utils", "functional",
    "_container", "_file_checks", "keras_files", "_file_summary", "saving", "callbacks",
    "distributed", "numba_kernels", "fused_layers", "fastpath", "training", "diagnostics", "batched",
    "export",
    "models", "datasets", "csvio", "tabular", "experiments", "report", "pipeline", "sklearn",
    "serve", "cli",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (functions included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = imports_in(path.read_text(encoding="utf-8"), package)
    return {_existing(m) for m in found} - {"trainwell", name}


def imports_in(source: str, package: str) -> set[str]:
    """Dotted names of the ``trainwell`` modules ``source`` (a file of ``package``) imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):  # every node: imports inside functions count too
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "trainwell")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "trainwell":
                continue
            # `from pkg import submodule` imports the submodule; `from mod import name` the module.
            subs = {f"{target}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(subs or {target})
    return found


def _existing(module: str) -> str:
    while module not in MODULES:  # `import trainwell.x.y` of a name that is not a file: its module
        module = module.rpartition(".")[0]
    return module


def layer_of(module: str) -> str:
    return module.split(".")[1]


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_place_in_the_order():
    unplaced = sorted({layer_of(m) for m in MODULES if m != "trainwell"} - set(LAYERS))
    assert unplaced == [], (f"{unplaced} are not in the layer order: add them to LAYERS in "
                            "tests/test_imports.py, to docs/DESIGN.md's table and to README.md's Layout.")
    assert sorted(set(LAYERS)) == sorted(LAYERS)


def test_the_package_root_imports_no_submodule_eagerly():
    # `import trainwell` stays cheap and can sit under every module: its names load on first use.
    assert GRAPH["trainwell"] == set()


def test_imports_go_down_the_order():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = sorted(f"{m} imports {dep}" for m, deps in GRAPH.items() if m != "trainwell" for dep in deps
                    if rank[layer_of(dep)] > rank[layer_of(m)])
    assert upward == []


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_checker_sees_function_local_and_relative_imports():
    # The old saving <-> models circle hid in imports like these, inside functions.
    source = ("import numpy\n"
              "def load():\n    from .. import models\n    from ..callbacks import History\n"
              "class A:\n    def f(self):\n        from .probes import loss_for_probe\n"
              "        import trainwell.report\n")
    assert imports_in(source, "trainwell.diagnostics") == {
        "trainwell.models", "trainwell.callbacks", "trainwell.diagnostics.probes", "trainwell.report"}
    assert "trainwell.saving" in GRAPH["trainwell.callbacks.backup_and_restore"]


def _design_order() -> list[str]:
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    table = text.split("## Layers, lowest first", 1)[1].split("\n## ", 1)[0]
    return [re.sub(r"\.py$|/$", "", m) for m in re.findall(r"^\| `([^`]+)` \|", table, re.M)]


def _readme_order() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return [m.rstrip("/") for m in re.findall(r"`([a-z_]+/?)`", paragraph)]


@pytest.mark.parametrize("source", [_design_order, _readme_order], ids=["DESIGN.md", "README.md"])
def test_the_docs_list_the_same_order(source):
    assert source() == LAYERS
