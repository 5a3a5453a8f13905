"""`train`: build → (tune) → evaluate on held-out rows → refit on all rows, or continue.

The metrics a `TrainResult` carries are the held-out estimate from the declared
split; the model it carries is fitted on *all* rows given (the usual practice: the
estimate says how a model trained this way does on unseen rows, and the final
model should learn from every row there is). With a previous model and warm
start, each split continues a copy of the previous model on its training rows,
and the returned model continues it on all rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.errors import TrainingError
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.train._util import listing, n_rows, plain, take
from mlcycle.train.estimator import build_estimator, infer_task
from mlcycle.train.evaluation import EvaluationResult, Fit, evaluate_with, fit_checked, splits
from mlcycle.train.metrics import default_metrics, n_classes, resolve_scorers
from mlcycle.train.tuning import TuningResult, tune
from mlcycle.train.warmstart import (
    ContinuationError,
    continue_fit,
    warm_start_blocker,
    warm_start_description,
)

if TYPE_CHECKING:
    from mlcycle.spec.model import Spec


@dataclass(frozen=True)
class TrainResult:
    """A trained model and how it came to be.

    `model` is fitted on all `n_rows` rows; `metrics` (= `evaluation.metrics`) are
    the held-out estimate. `warm_start_note` says how the previous model was
    continued, or why it was not (None when no previous model was offered).
    `fit_seconds` times the final fit only.
    """

    model: Any
    task: str
    metrics: Mapping[str, float]
    evaluation: EvaluationResult
    tuning: TuningResult | None
    warm_started: bool
    warm_start_note: str | None
    n_rows: int
    fit_seconds: float
    steps: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, without the model itself."""
        return {
            "task": self.task,
            "metrics": plain(dict(self.metrics)),
            "evaluation": self.evaluation.as_dict(),
            "tuning": self.tuning.as_dict() if self.tuning else None,
            "warm_started": self.warm_started,
            "warm_start_note": self.warm_start_note,
            "n_rows": self.n_rows,
            "fit_seconds": self.fit_seconds,
            "steps": list(self.steps),
        }


def train(
    spec: Spec,
    X: Any,
    y: Any,
    *,
    ordinal: Any = None,
    previous_model: Any = None,
    progress: Progress = NULL_PROGRESS,
) -> TrainResult:
    """Train the spec's model on (X, y): build, tune, evaluate held out, then fit on all rows.

    `ordinal` orders the rows for a time split (aligned with X by position).
    `previous_model` is the current generation's fitted model: when
    `update.warm_start` is on and the final estimator supports it, training
    continues from it (tuning is skipped: the previous generation's parameters
    are kept); otherwise the model is refit from scratch and the result says why.
    Raises TrainingError on anything that prevents a trustworthy model.
    """
    with step(progress, "build the pipeline"):
        estimator = build_estimator(spec.model, root=spec.root)
        task = infer_task(estimator, spec.model)
    _check_data(X, y, task=task, ordinal=ordinal)
    metrics = spec.evaluation.metrics or default_metrics(task, y)
    resolve_scorers(metrics)
    missing = [c for c in spec.evaluation.gate if c.metric not in metrics]
    if missing:
        raise TrainingError(
            f"evaluation.gate: '{missing[0]}' uses the metric '{missing[0].metric}', which is "
            f"not computed; computed: {listing(metrics)}",
            hint=f"add '{missing[0].metric}' to evaluation.metrics",
        )
    seed = spec.model.seed
    from sklearn.base import clone

    def evaluate_and_fit(fit: Fit) -> tuple[EvaluationResult, Any, float]:
        evaluation = evaluate_with(
            fit,
            X,
            y,
            spec.evaluation,
            task=task,
            seed=seed,
            ordinal=ordinal,
            metrics=metrics,
            progress=progress,
        )
        with step(progress, f"fit on all {n_rows(X)} rows", total=1):
            started = time.perf_counter()
            model = fit(X, y)
            seconds = time.perf_counter() - started
            progress.advance()
        return evaluation, model, seconds

    note: str | None = None
    if previous_model is not None:
        if not spec.update.warm_start:
            note = "update.warm_start is false; refit from scratch"
        else:
            note = warm_start_blocker(previous_model, estimator, X, y, task=task)
        if note is None:

            def continue_previous(X_part: Any, y_part: Any) -> Any:
                return continue_fit(previous_model, X_part, y_part, spec_estimator=estimator)

            try:
                evaluation, model, seconds = evaluate_and_fit(continue_previous)
            except ContinuationError as e:
                note = f"continuing the previous model failed ({e}); refit from scratch"
            else:
                warm_note = warm_start_description(model)
                if spec.model.tuning is not None:
                    warm_note += "; tuning skipped, the previous generation's parameters kept"
                return TrainResult(
                    model=model,
                    task=task,
                    metrics=evaluation.metrics,
                    evaluation=evaluation,
                    tuning=None,
                    warm_started=True,
                    warm_start_note=warm_note,
                    n_rows=n_rows(X),
                    fit_seconds=seconds,
                    steps=_steps(spec),
                )

    tuning = None
    if spec.model.tuning is not None:
        tuning_spec = spec.model.tuning
        scoring = tuning_spec.scoring or metrics[0]
        if spec.evaluation.split in ("holdout", "time"):
            # Tune on the training rows only, so the test rows judge the choice unseen.
            ((train_idx, _),), _ = splits(
                X, y, spec.evaluation, task=task, seed=seed, ordinal=ordinal
            )
            X_tune, y_tune = take(X, train_idx), take(y, train_idx)
        else:
            X_tune, y_tune = X, y
        best, tuning = tune(
            estimator, X_tune, y_tune, tuning_spec, scoring=scoring, seed=seed, progress=progress
        )
        estimator = clone(best)

    def refit(X_part: Any, y_part: Any) -> Any:
        return fit_checked(clone(estimator), X_part, y_part)

    evaluation, model, seconds = evaluate_and_fit(refit)
    return TrainResult(
        model=model,
        task=task,
        metrics=evaluation.metrics,
        evaluation=evaluation,
        tuning=tuning,
        warm_started=False,
        warm_start_note=note,
        n_rows=n_rows(X),
        fit_seconds=seconds,
        steps=_steps(spec),
    )


def _steps(spec: Spec) -> tuple[str, ...]:
    if spec.model.entrypoint:
        return (spec.model.entrypoint,)
    return tuple(s.class_path for s in spec.model.pipeline)


def _check_data(X: Any, y: Any, *, task: str, ordinal: Any) -> None:
    import pandas as pd

    rows = n_rows(X)
    if rows == 0:
        raise TrainingError("there are no rows to train on", hint="check the data source")
    if n_rows(y) != rows:
        raise TrainingError(f"the label has {n_rows(y)} rows but the features have {rows}")
    if ordinal is not None and n_rows(ordinal) != rows:
        raise TrainingError(f"the ordinal column has {n_rows(ordinal)} rows but there are {rows}")
    labels = pd.Series(y)
    missing = int(labels.isna().sum())
    if missing:
        raise TrainingError(
            f"the label has {missing} missing value{'s' if missing != 1 else ''} in {rows} rows",
            hint="drop those rows or fill the label before training",
        )
    if task == "classification" and n_classes(labels) < 2:
        only = labels.iloc[0] if rows else None
        raise TrainingError(
            f"the label has a single class ({plain(only)!r}) in all {rows} rows; "
            "a classifier needs at least two",
            hint="check data.label and the data window: every row has the same outcome",
        )
