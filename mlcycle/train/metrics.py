"""Metrics: scikit-learn scorer names, their defaults per task, and scoring a fitted model."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from mlcycle.errors import TrainingError
from mlcycle.train._util import did_you_mean, n_rows


def default_metrics(task: str, y: Any) -> tuple[str, ...]:
    """The metrics used when the spec declares none.

    Classification: `accuracy`, plus `roc_auc` when the label is binary;
    regression: `r2` and `neg_mean_absolute_error` (scikit-learn negates errors so
    that greater is always better).
    """
    if task == "classification":
        return ("accuracy", "roc_auc") if n_classes(y) == 2 else ("accuracy",)
    if task == "regression":
        return ("r2", "neg_mean_absolute_error")
    raise TrainingError(f"unknown task '{task}'; expected classification or regression")


def n_classes(y: Any) -> int:
    """The number of distinct non-missing labels."""
    import pandas as pd

    return int(pd.Series(y).dropna().nunique())


def resolve_scorers(names: Sequence[str], *, where: str = "evaluation.metrics") -> dict[str, Any]:
    """The scikit-learn scorer of each name; unknown names raise TrainingError with a suggestion."""
    from sklearn.metrics import get_scorer, get_scorer_names

    scorers: dict[str, Any] = {}
    for name in names:
        try:
            scorers[name] = get_scorer(name)
        except (ValueError, TypeError) as e:
            raise TrainingError(
                f"{where}: unknown metric '{name}';{did_you_mean(name, get_scorer_names())}".rstrip(
                    ";"
                ),
                hint="metrics are scikit-learn scorer names; "
                "`python -c 'import sklearn.metrics as m; print(m.get_scorer_names())'` lists them",
            ) from e
    return scorers


def score(model: Any, X: Any, y: Any, metrics: Sequence[str]) -> dict[str, float]:
    """Each metric of the fitted `model` on `X`, `y` (used by `mlcycle evaluate REF` too)."""
    scores: dict[str, float] = {}
    for name, scorer in resolve_scorers(metrics).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = float(scorer(model, X, y))
            except (ValueError, TypeError, AttributeError) as e:
                raise TrainingError(
                    f"metric '{name}' could not be computed: {e}", hint=_METRIC_HINT
                ) from e
        if math.isnan(value):
            # scikit-learn answers NaN (with a warning) where a metric is undefined; a NaN
            # would pass silently into gates and the registry.
            why = "; ".join(str(w.message) for w in caught) or "the scorer returned NaN"
            raise TrainingError(
                f"metric '{name}' is undefined on these {n_rows(y)} rows: {why}", hint=_METRIC_HINT
            )
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        scores[name] = value
    return scores


_METRIC_HINT = (
    "choose metrics that fit the task and the model (roc_auc needs both classes among the "
    "test rows, and a model with predict_proba or decision_function)"
)
