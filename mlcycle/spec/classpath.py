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
    try:
        top = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        top = None
    if top is None:
        return Unresolved(f"the package '{parts[0]}' is not installed here")
    locations = [Path(p) for p in (top.submodule_search_locations or [])]
    file = Path(top.origin) if top.origin and top.origin not in ("built-in", "frozen") else None
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


# --- internals ------------------------------------------------------------------------


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
