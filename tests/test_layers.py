"""The layer order of ``ARCHITECTURE.md``, checked on the source: no import cycles, nothing
imported from a higher layer, and no fcdd import inside a function (except optional extras)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import fcdd

SRC = Path(fcdd.__file__).resolve().parent

#: module prefix -> rank; a module may import only modules of its own rank or lower. Within
#: the data package the readers come before the noise sources built on them, and those before
#: the supervision and the data sets made from noise.
LAYERS = {
    "fcdd.registry": 0, "fcdd.io": 0, "fcdd.runtime": 0,
    "fcdd.presets": 1, "fcdd.config": 1,
    "fcdd.data.shape": 1.8,  # the input shape (square or the data's aspect), below everything that resizes
    "fcdd.data.cache": 1.9,  # the decoded-image cache below the image sets that hold its views
    "fcdd.data.base": 2.0, "fcdd.data.transforms": 2.0, "fcdd.data.download": 2.0,
    "fcdd.data": 2.1,  # readers of the layouts
    "fcdd.data.noise": 2.2,
    "fcdd.data.supervision": 2.3, "fcdd.data.corrupted": 2.3,
    "fcdd.data.prepare": 2.4, "fcdd.data.__init__": 2.4,
    "fcdd.models": 3, "fcdd.models.pretrained_unet": 3, "fcdd.neighbours": 3.5,
    "fcdd.explain": 4,
    "fcdd.methods": 5,
    "fcdd.metrics": 6, "fcdd.evaluation": 6,
    "fcdd.calibration": 7,
    "fcdd.rundir": 8,
    "fcdd.tracking": 8.5,  # experiment trackers: config, run-folder history, runtime versions
    "fcdd.training": 9,
    "fcdd.report": 10,
    "fcdd.detector": 11, "fcdd.preprocess": 11, "fcdd.overlay": 11, "fcdd.predict": 11,
    "fcdd.__init__": 12, "fcdd.__main__": 12, "fcdd.api": 12, "fcdd.runner": 12, "fcdd.compare": 12,
    "fcdd.export": 12, "fcdd.serve": 12, "fcdd.cli": 12, "fcdd.commands": 12, "fcdd.demo": 12,
    "fcdd.evaluate_run": 12, "fcdd.runs_index": 12, "fcdd.executors": 12,
}
#: fcdd modules that need an optional extra, so they are imported where they are used
OPTIONAL = {"fcdd.serve.app"}


def module_name(path: Path) -> str:
    parts = ("fcdd", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts)  # packages keep their ``__init__`` so they rank on their own


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def rank(module: str) -> float:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} has no layer; add it to LAYERS here and to ARCHITECTURE.md")
    return LAYERS[best]


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module file an imported name runs: a module, or a package's ``__init__``."""
    if name in known:
        return name
    if f"{name}.__init__" in known:
        return f"{name}.__init__"
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported fcdd module, line, inside a function?) for every import statement."""
    package = module.rsplit(".", 1)[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue  # annotations only, never executed
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [base] + [f"{base}.{alias.name}" for alias in child.names]
            for name in names:
                target = resolve(name, known) if name.startswith("fcdd") else None
                if target is not None and target != module:
                    found.append((target, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, bool]]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_has_a_layer():
    for module in modules():
        rank(module)


def test_no_import_goes_up_the_layers(graph):
    upward = [f"{m}:{line} imports {t} (layer {rank(t)} above {rank(m)})" for m, edges in graph.items()
              for t, line, _ in edges if rank(t) > rank(m)]
    assert not upward, "\n".join(upward)


def test_no_fcdd_import_inside_functions(graph):
    inner = [f"{m}:{line} imports {t} inside a function" for m, edges in graph.items()
             for t, line, in_function in edges if in_function and t not in OPTIONAL]
    assert not inner, "\n".join(inner)


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components over every import, top-level or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w, _, _ in graph.get(v, []):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_checker_sees_cycles_and_upward_imports(tmp_path):
    """The checks above can fail: a made-up pair of modules that import each other, one from
    inside a function and one from a higher layer."""
    known = {"fcdd.data.base": tmp_path / "a.py", "fcdd.rundir": tmp_path / "b.py"}
    known["fcdd.data.base"].write_text("def f():\n    from fcdd.rundir import Run\n")
    known["fcdd.rundir"].write_text("from fcdd.data.base import ImageSet\n")
    edges = {m: imports(m, p, known) for m, p in known.items()}
    assert edges["fcdd.data.base"] == [("fcdd.rundir", 2, True)]
    assert edges["fcdd.rundir"] == [("fcdd.data.base", 1, False)]
    assert rank("fcdd.rundir") > rank("fcdd.data.base")


def test_fcdd_train_is_the_function_and_no_module_is_hidden():
    assert callable(fcdd.train) and fcdd.train.__module__ == "fcdd.api"
    assert fcdd.load.__module__ == "fcdd.api"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("fcdd.train")
