"""What `validate` can tell about class paths and metric names without running anything.

A pipeline step's class path is resolved the cheap way: `importlib.util.find_spec`
on the top-level package (which imports nothing), then the submodules' files are
found on disk and the last one is parsed with `ast` for the names it defines,
imports or lists in `__all__`. No package `__init__` runs, so `validate` stays
fast and never executes a model library; `train` does the real import later.

Metric names are scikit-learn's scorer names, kept here as data (a test compares
the table with `sklearn.metrics.get_scorer_names()`), split by the task they fit.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

ALLOWED_PREFIXES: Final = ("sklearn", "xgboost", "lightgbm", "catboost", "imblearn")
"""Top-level packages whose classes may appear as pipeline steps (train/estimator.py)."""

_AVERAGES = ("", "_macro", "_micro", "_samples", "_weighted")
CLASSIFICATION_METRICS: Final = frozenset(
    {
        "accuracy",
        "average_precision",
        "balanced_accuracy",
        "d2_brier_score",
        "d2_log_loss_score",
        "matthews_corrcoef",
        "neg_brier_score",
        "neg_log_loss",
        "neg_negative_likelihood_ratio",
        "positive_likelihood_ratio",
        "roc_auc",
        "roc_auc_ovo",
        "roc_auc_ovo_weighted",
        "roc_auc_ovr",
        "roc_auc_ovr_weighted",
        "top_k_accuracy",
        *(f"{base}{avg}" for base in ("f1", "precision", "recall", "jaccard") for avg in _AVERAGES),
    }
)
REGRESSION_METRICS: Final = frozenset(
    {
        "d2_absolute_error_score",
        "explained_variance",
        "neg_max_error",
        "neg_mean_absolute_error",
        "neg_mean_absolute_percentage_error",
        "neg_mean_gamma_deviance",
        "neg_mean_poisson_deviance",
        "neg_mean_squared_error",
        "neg_mean_squared_log_error",
        "neg_median_absolute_error",
        "neg_root_mean_squared_error",
        "neg_root_mean_squared_log_error",
        "r2",
    }
)
CLUSTERING_METRICS: Final = frozenset(
    {
        "adjusted_mutual_info_score",
        "adjusted_rand_score",
        "completeness_score",
        "fowlkes_mallows_score",
        "homogeneity_score",
        "mutual_info_score",
        "normalized_mutual_info_score",
        "rand_score",
        "v_measure_score",
    }
)
METRICS_BY_TASK: Final = {
    "classification": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
}
ALL_METRICS: Final = CLASSIFICATION_METRICS | REGRESSION_METRICS | CLUSTERING_METRICS


@dataclass(frozen=True)
class Unresolved:
    """Why a class path does not resolve, and a close name when there is one."""

    message: str
    suggestion: str | None = None


def check_class_path(class_path: str) -> Unresolved | None:
    """None when `class_path` names something its module defines or imports; else why not.

    Only packages in ALLOWED_PREFIXES are looked at (others are refused before
    this). A module written in C, or one that builds its names at run time
    (a module `__getattr__`), is given the benefit of the doubt.
    """
    module_name, _, attr = class_path.rpartition(".")
    parts = module_name.split(".")
    found_top = _top_package(parts[0])
    if found_top is None:
        return Unresolved(f"the package '{parts[0]}' is not installed here")
    file, locations = found_top
    for depth, part in enumerate(parts[1:], start=1):
        found = _submodule(locations, part)
        if found is None:
            parent = ".".join(parts[:depth])
            close = _close(part, _submodules(locations))
            return Unresolved(
                f"there is no module '{parent}.{part}'",
                f"{parent}.{close}.{attr}" if close else None,
            )
        file, locations = found
    if file is None or file.suffix != ".py":
        return None
    names, dynamic = _module_names(str(file))
    if attr in names or dynamic:
        return None
    close = _close(attr, [n for n in names if not n.startswith("_")])
    return Unresolved(f"{module_name} has no '{attr}'", f"{module_name}.{close}" if close else None)


def constructor_params(class_path: str, *, file: Path | None = None) -> frozenset[str] | None:
    """The parameter names `class_path`'s constructor takes, read from source; None if unknown.

    The class is found as `check_class_path` finds it, following the re-exports
    of package `__init__` files (`from ._logistic import LogisticRegression`)
    and, when the class defines no `__init__`, its bases. These names are what
    scikit-learn's `get_params()` returns. Unknown (None) when anything on the
    way is not plain Python source, or the constructor takes `**kwargs`: then
    any name may be right and the check is left to `train`. `file` is the
    module's source when it is not installed (the project's model code).
    """
    module_name, _, attr = class_path.rpartition(".")
    file = file or _module_file(module_name)
    return None if file is None else _class_params(str(file), attr, _MAX_HOPS)


# --- internals ------------------------------------------------------------------------

# Re-exports and base classes followed before giving up (sklearn needs about 4).
_MAX_HOPS: Final = 12


def _top_package(name: str) -> tuple[Path | None, list[Path]] | None:
    """The top-level package's file and search locations, found without importing it."""
    try:
        top = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        top = None
    if top is None:
        return None
    locations = [Path(p) for p in (top.submodule_search_locations or [])]
    file = Path(top.origin) if top.origin and top.origin not in ("built-in", "frozen") else None
    return file, locations


@cache
def _module_file(module_name: str) -> Path | None:
    """The `.py` file of an (unimported) module, or None when there is none."""
    parts = module_name.split(".")
    found = _top_package(parts[0])
    if found is None:
        return None
    file, locations = found
    for part in parts[1:]:
        sub = _submodule(locations, part)
        if sub is None:
            return None
        file, locations = sub
    return file if file is not None and file.suffix == ".py" else None


@cache
def _tree(file: str) -> ast.Module | None:
    try:
        return ast.parse(Path(file).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None


def _package_of(file: str) -> str | None:
    """The dotted name of the package `file` belongs to, from the folders holding `__init__`."""
    path = Path(file).parent
    parts: list[str] = []
    while (path / "__init__.py").is_file():
        parts.insert(0, path.name)
        path = path.parent
    return ".".join(parts) or None


def _imported_from(file: str, node: ast.ImportFrom) -> Path | None:
    """The file of the module a `from ... import` in `file` reads."""
    if node.level == 0:
        return _module_file(node.module or "")
    package = _package_of(file)
    if package is None:
        return None
    base = package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    if not base:
        return None
    return _module_file(".".join([*base, *([node.module] if node.module else [])]))


def _class_def(file: str, name: str) -> ast.ClassDef | None:
    """The top-level class `name` of `file`, parsing only its lines when they stand alone.

    Parsing a whole model module costs ~20 ms; the class alone, a fraction.
    """
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    start = re.search(rf"^class {re.escape(name)}\b", text, re.MULTILINE)
    if start is None:
        return None
    # The class ends at the next line that starts a top-level statement.
    end = re.compile(r"^[A-Za-z_@]", re.MULTILINE).search(text, text.find("\n", start.end()) + 1)
    try:
        snippet = ast.parse(text[start.start() : end.start() if end else len(text)])
    except SyntaxError:  # e.g. a string literal with lines at column 0: read it all
        tree = _tree(file)
        snippet = tree if tree is not None else ast.Module(body=[], type_ignores=[])
    return next((n for n in snippet.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def _class_params(file: str, name: str, hops: int) -> frozenset[str] | None:
    if hops <= 0:
        return None
    found = _class_def(file, name)
    if found is not None:
        return _params_of(file, found, hops)
    tree = _tree(file)
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    source = _imported_from(file, node)
                    return (
                        None if source is None else _class_params(str(source), alias.name, hops - 1)
                    )
    return None


def _params_of(file: str, cls: ast.ClassDef, hops: int) -> frozenset[str] | None:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            if args.vararg is not None or args.kwarg is not None:
                return None
            positional = [*args.posonlyargs, *args.args][1:]  # without self
            return frozenset(a.arg for a in [*positional, *args.kwonlyargs])
    # No __init__ of its own: the first base (in MRO order, for single chains) that has one.
    for base in cls.bases:
        if not isinstance(base, ast.Name):
            return None
        if base.id == "object":
            continue
        params = _class_params(file, base.id, hops - 1)
        if params is None:
            return None
        if params:
            return params
    return frozenset()


def _submodule(locations: list[Path], part: str) -> tuple[Path | None, list[Path]] | None:
    for location in locations:
        package = location / part
        if (package / "__init__.py").is_file():
            return package / "__init__.py", [package]
        if (location / f"{part}.py").is_file():
            return location / f"{part}.py", []
        if package.is_dir():  # a namespace package
            return None, [package]
        if any(location.glob(f"{part}.*.so")) or any(location.glob(f"{part}.*.pyd")):
            return None, []
    return None


def _submodules(locations: list[Path]) -> list[str]:
    names: set[str] = set()
    for location in locations:
        try:
            for child in location.iterdir():
                stem = child.name.split(".")[0]
                if stem.isidentifier() and not stem.startswith("_"):
                    names.add(stem)
        except OSError:
            continue
    return sorted(names)


@cache
def _module_names(file: str) -> tuple[frozenset[str], bool]:
    """Names a module file binds at its top level, and whether it has a `__getattr__`."""
    try:
        tree = ast.parse(Path(file).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return frozenset(), True
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                and isinstance(node.value, ast.List | ast.Tuple)
            ):
                names.update(
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
    return frozenset(names), "__getattr__" in names or "*" in names


def _close(word: str, candidates: list[str]) -> str | None:
    exact = [c for c in candidates if c.lower() == word.lower()]
    if exact:
        return exact[0]
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.75)
    return close[0] if close else None
