"""Held-out evaluation: holdout, k-fold cross-validation and a time-ordered split.

Every split fits its own model on the training rows and scores it on the test rows,
so the metrics are an estimate of how the model does on rows it has not seen. The
model that `train` returns is then refit on all rows; it is not any of these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.errors import MlcycleError, TrainingError
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.train._util import describe, n_rows, plain, take
from mlcycle.train.metrics import n_classes, resolve_scorers, score

if TYPE_CHECKING:
    import numpy as np

    from mlcycle.spec.model import EvaluationSpec

SPLITS = ("holdout", "cross-validation", "time")

Fit = Callable[[Any, Any], Any]
"""Fits a model on (X, y) and returns it: a fresh clone, or a warm-started copy."""


@dataclass(frozen=True)
class EvaluationResult:
    """Held-out metrics and how they were obtained.

    `metrics` are means over the folds for cross-validation. `n_train`/`n_test` are
    the rows of the one split (holdout, time) or the mean fold sizes (cross-validation).
    `test_index` holds the positions of the test rows for holdout and time splits.
    """

    split: str
    metrics: Mapping[str, float]
    n_train: int
    n_test: int
    folds: int
    fold_metrics: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    stratified: bool = False
    test_index: tuple[int, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (without the test row positions)."""
        return {
            "split": self.split,
            "metrics": plain(dict(self.metrics)),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "folds": self.folds,
            "fold_metrics": plain({k: list(v) for k, v in self.fold_metrics.items()}),
            "stratified": self.stratified,
        }


def evaluate(
    estimator: Any,
    X: Any,
    y: Any,
    evaluation: EvaluationSpec,
    *,
    task: str,
    seed: int,
    ordinal: Any = None,
    metrics: Sequence[str],
    progress: Progress = NULL_PROGRESS,
) -> EvaluationResult:
    """Held-out metrics of `estimator` (unfitted); each split fits a fresh clone.

    `ordinal` (a Series or array aligned with X by position) orders the rows for the
    time split. Raises TrainingError for an unknown metric or split, or a failed fit.
    """
    from sklearn.base import clone

    def fit(X_train: Any, y_train: Any) -> Any:
        return fit_checked(clone(estimator), X_train, y_train)

    return evaluate_with(
        fit,
        X,
        y,
        evaluation,
        task=task,
        seed=seed,
        ordinal=ordinal,
        metrics=metrics,
        progress=progress,
    )


def evaluate_with(
    fit: Fit,
    X: Any,
    y: Any,
    evaluation: EvaluationSpec,
    *,
    task: str,
    seed: int,
    ordinal: Any = None,
    metrics: Sequence[str],
    progress: Progress = NULL_PROGRESS,
) -> EvaluationResult:
    """Like `evaluate`, with `fit(X_train, y_train)` making each split's model."""
    import numpy as np

    resolve_scorers(metrics)  # unknown names fail before any fitting
    folds, stratified = splits(X, y, evaluation, task=task, seed=seed, ordinal=ordinal)
    label = {"holdout": "holdout", "time": "time split", "cross-validation": "cross-validation"}
    description = f"evaluate: {label[evaluation.split]}" + (
        f", {len(folds)} folds" if evaluation.split == "cross-validation" else ""
    )
    per_fold: dict[str, list[float]] = {name: [] for name in metrics}
    with step(progress, description, total=len(folds)):
        for number, (train_idx, test_idx) in enumerate(folds, start=1):
            y_train = take(y, train_idx)
            if task == "classification" and n_classes(y_train) < 2:
                part = "training rows" if len(folds) == 1 else f"training rows of fold {number}"
                raise TrainingError(
                    f"evaluation ({evaluation.split}): the {part} hold a single class",
                    hint="use more data, a smaller evaluation.test_size, or another split",
                )
            model = fit(take(X, train_idx), y_train)
            test_scores = score(model, take(X, test_idx), take(y, test_idx), metrics)
            for name, value in test_scores.items():
                per_fold[name].append(value)
            progress.advance()
    means = {name: float(np.mean(values)) for name, values in per_fold.items()}
    n_train = round(float(np.mean([len(tr) for tr, _ in folds])))
    n_test = round(float(np.mean([len(te) for _, te in folds])))
    cross = evaluation.split == "cross-validation"
    return EvaluationResult(
        split=evaluation.split,
        metrics=means,
        n_train=n_train,
        n_test=n_test,
        folds=len(folds),
        fold_metrics={k: tuple(v) for k, v in per_fold.items()} if cross else {},
        stratified=stratified,
        test_index=() if cross else tuple(int(i) for i in folds[0][1]),
    )


def splits(
    X: Any,
    y: Any,
    evaluation: EvaluationSpec,
    *,
    task: str,
    seed: int,
    ordinal: Any = None,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """The (train positions, test positions) pairs of the declared split, and if stratified.

    holdout: a random `test_size` fraction, stratified by class for classification
    when every class has at least two rows. cross-validation: `folds` shuffled folds
    (stratified for classification). time: the rows are ordered by `ordinal` and the
    most recent `test_size` fraction is the test set; rows tied with the oldest test
    row join the test set too, so every training row is strictly older than every
    test row.
    """
    import numpy as np

    total = n_rows(X)
    if n_rows(y) != total:
        raise TrainingError(f"the label has {n_rows(y)} rows but the features have {total}")
    positions = np.arange(total)
    if evaluation.split == "holdout":
        return _holdout(positions, y, evaluation.test_size, task=task, seed=seed)
    if evaluation.split == "cross-validation":
        return _kfold(positions, y, evaluation.folds, task=task, seed=seed)
    if evaluation.split == "time":
        return [_time_split(positions, ordinal, evaluation.test_size)], False
    raise TrainingError(f"evaluation.split: '{evaluation.split}' is not one of {', '.join(SPLITS)}")


def fit_checked(estimator: Any, X: Any, y: Any) -> Any:
    """`estimator.fit(X, y)`, with scikit-learn's complaints about the data as TrainingError."""
    try:
        return estimator.fit(X, y)
    except MlcycleError:
        raise
    except (ValueError, TypeError, ArithmeticError) as e:
        raise TrainingError(
            f"fitting {describe(estimator)} failed: {e}",
            hint="check the data (missing values, text in numeric features) and the model's "
            "parameters",
        ) from e


# --- the splits --------------------------------------------------------------------------


def _holdout(
    positions: np.ndarray, y: Any, test_size: float, *, task: str, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    if len(positions) < 2:
        raise TrainingError(f"a holdout split needs at least 2 rows, got {len(positions)}")
    if task == "classification":
        try:
            train, test = train_test_split(
                positions, test_size=test_size, random_state=seed, stratify=np.asarray(y)
            )
            return [(np.sort(train), np.sort(test))], True
        except ValueError:
            pass  # a class too small to stratify: fall back to a plain random split
    train, test = train_test_split(positions, test_size=test_size, random_state=seed)
    return [(np.sort(train), np.sort(test))], False


def _kfold(
    positions: np.ndarray, y: Any, folds: int, *, task: str, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    import warnings

    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise TrainingError(f"evaluation.folds must be at least 2, got {folds}")
    if folds > len(positions):
        raise TrainingError(
            f"evaluation.folds is {folds} but there are only {len(positions)} rows",
            hint="lower evaluation.folds or use more data",
        )
    labels = np.asarray(y)
    if task == "classification":
        counts = np.unique(labels[~_isna(labels)], return_counts=True)[1]
        if counts.size and counts.min() >= folds:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            return [(tr, te) for tr, te in splitter.split(positions, labels)], True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain_splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
        return [(tr, te) for tr, te in plain_splitter.split(positions)], False


def _time_split(
    positions: np.ndarray, ordinal: Any, test_size: float
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    import pandas as pd

    if ordinal is None:
        raise TrainingError(
            "evaluation.split is `time` but there is no ordinal column to order the rows by",
            hint="declare data.source.ordinal (a timestamp or increasing id column)",
        )
    order_values = pd.Series(np.asarray(ordinal))
    if len(order_values) != len(positions):
        raise TrainingError(
            f"the ordinal column has {len(order_values)} rows but the features have "
            f"{len(positions)}"
        )
    if order_values.isna().any():
        raise TrainingError(
            f"the ordinal column has {int(order_values.isna().sum())} missing values; "
            "a time split cannot place those rows",
        )
    if len(positions) < 2:
        raise TrainingError(f"a time split needs at least 2 rows, got {len(positions)}")
    # A stable sort keeps the incoming order among equal ordinals: deterministic.
    ordered = order_values.sort_values(kind="mergesort").index.to_numpy()
    n_test = min(max(1, math.ceil(test_size * len(positions))), len(positions) - 1)
    boundary = order_values.iloc[ordered[-n_test]]
    test_mask = (order_values >= boundary).to_numpy()
    if test_mask.all():
        raise TrainingError(
            "evaluation (time split): every row has the same ordinal value, so there is no "
            "past to train on",
            hint="use a holdout split, or an ordinal column that varies",
        )
    return positions[~test_mask], positions[test_mask]


def _isna(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(values)
