"""The architecture's one rule (docs/architecture.md, Layers): a layer imports only from below it.

Every `import mlcycle.X` / `from mlcycle.X import ...` in the package, including
the lazy ones inside functions and under TYPE_CHECKING, is checked against the
order below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlcycle"
# Bottom to top. Modules at the package root (errors, redact, progress, resources,
# faults, extras) are foundations every layer may use: redact masks credentials in the
# messages and records of every layer, so it sits with errors, below spec.
LAYERS = (
    "spec",
    "data",
    # The prediction store sits below everything that reads or writes served
    # predictions (serve writes them, agents score them, api reports on them) and
    # below registry, so a shared SQL registry can open its tables the same way.
    "store",
    # Formats of other tools (MLflow model directories): plain inputs in, files out, so
    # that training (runs logged to MLflow), agents and api can all use it.
    "interop",
    "train",
    "scaffold",  # builds example projects; the dual template trains research's model
    "registry",
    "gitops",
    "package",
    "deploy",
    "serve",
    "agents",
    "api",
    "cli",
)
FOUNDATIONS = {
    "errors",
    "redact",
    "progress",
    "resources",
    "faults",
    "extras",
    "__init__",
    "__main__",
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "mlcycle" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_from_below(layer: str) -> None:
    rank = LAYERS.index(layer)
    problems = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, module in imports(path):
            other = layer_of(module)
            if other is not None and LAYERS.index(other) > rank:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert problems == []


# Layers that sit side by side although one is listed above the other: the agents
# reach served predictions through the store, never through the serving engine.
APART = {"agents": "serve"}


@pytest.mark.parametrize(("layer", "other"), sorted(APART.items()))
def test_layers_apart_do_not_import_each_other(layer: str, other: str) -> None:
    problems = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        for line, module in imports(path):
            if layer_of(module) == other:
                problems.append(f"mlcycle/{name}:{line} imports {module}")
    assert problems == []


# SpecError carries Diagnostics: named for the type checker only (under TYPE_CHECKING).
ALLOWED = {("errors", "mlcycle.spec.diagnostics")}


def test_foundations_import_no_layer() -> None:
    for name in FOUNDATIONS:
        path = PACKAGE / f"{name}.py"
        if not path.exists() or name in ("__init__", "__main__"):
            continue
        found = [m for _, m in imports(path) if layer_of(m) and (name, m) not in ALLOWED]
        assert found == [], name


def module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycles() -> list[set[str]]:
    """The groups of modules that import each other, lazy and TYPE_CHECKING imports
    included (a cycle there is still two modules that cannot be read apart)."""
    modules = {module_of(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    reach = {name: _reachable(graph, name) for name in graph}
    groups = {frozenset({m for m in reach[name] if name in reach[m]}) for name in graph}
    return [set(g) for g in groups if len(g) > 1]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# The feature schema, the ONNX form, the served model and its predictor: each readable
# on its own.
ACYCLIC = (
    "mlcycle.registry.features",
    "mlcycle.registry.onnx",
    "mlcycle.serve.model",
    "mlcycle.serve.predictor",
)


@pytest.mark.parametrize("module", ACYCLIC)
def test_module_is_in_no_import_cycle(module: str) -> None:
    assert [sorted(g) for g in import_cycles() if module in g] == []
