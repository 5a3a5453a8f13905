"""Reproduction of research's results, the release check of the dual liaison.

In a dual lifecycle research hands engineering a specification: reference
cases, the predictions research's model made on them, and the metrics it
measured. Engineering's production implementation must reproduce both within a
tolerance before it may be released. This module compares; the caller reads
the files (this layer never reads data sources).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import DataError, GateFailure, GateRejectedError, TrainingError, UsageError
from mlcycle.progress import Progress, step
from mlcycle.train.metrics import score

if TYPE_CHECKING:
    from mlcycle.spec.model import Spec

# How many of the largest prediction differences a report lists.
WORST_SHOWN = 5


@dataclass(frozen=True)
class Difference:
    """One compared value: research's, ours, and the absolute difference."""

    what: str
    expected: float
    actual: float

    @property
    def delta(self) -> float:
        """|actual - expected| (inf when either is NaN)."""
        value = abs(self.actual - self.expected)
        return math.inf if math.isnan(value) else value

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row."""
        return {
            "what": self.what,
            "expected": self.expected,
            "actual": self.actual,
            "delta": None if math.isinf(self.delta) else self.delta,
        }


@dataclass(frozen=True)
class Reproduction:
    """The comparison: every metric, and the predictions' largest differences."""

    tolerance: float
    metrics: tuple[Difference, ...]
    predictions_compared: int
    worst: tuple[Difference, ...] = field(default=())

    @property
    def failures(self) -> list[Difference]:
        """Compared values further apart than the tolerance."""
        return [d for d in (*self.metrics, *self.worst) if d.delta > self.tolerance]

    @property
    def passed(self) -> bool:
        """Whether everything was reproduced within the tolerance."""
        return not self.failures

    @property
    def max_prediction_delta(self) -> float | None:
        """The largest prediction difference, None when no predictions were compared."""
        return self.worst[0].delta if self.worst else None

    def raise_if_failed(self) -> None:
        """GateRejectedError (exit 3) listing what differs beyond the tolerance."""
        if self.passed:
            return
        failures = [
            GateFailure(
                condition=f"{d.what} reproduces {d.expected:.6g} ±{self.tolerance:g}",
                metric=d.what,
                value=d.actual,
                threshold=d.expected,
                shortfall=d.delta - self.tolerance,
            )
            for d in self.failures
        ]
        worst = max(self.failures, key=lambda d: d.delta)
        raise GateRejectedError(
            failures=failures,
            message=(
                f"the model does not reproduce research's results: {len(failures)} value(s) "
                f"differ by more than {self.tolerance:g}; largest: {worst.what} "
                f"(research {worst.expected:.6g}, ours {worst.actual:.6g})"
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready report."""
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "metrics": [d.as_dict() for d in self.metrics],
            "predictions_compared": self.predictions_compared,
            "max_prediction_delta": self.max_prediction_delta,
            "worst_predictions": [d.as_dict() for d in self.worst],
        }


def reproduce(
    model: Any,
    X: Any,
    y: Any | None,
    *,
    keys: Any,
    predictions: Mapping[Any, float] | None,
    metrics: Mapping[str, float],
    tolerance: float,
) -> Reproduction:
    """Compare `model` on the reference rows with research's predictions and metrics.

    `predictions` maps a reference key to research's prediction: the probability
    of the positive class for a binary classifier, else the predicted value.
    Metrics need the labels `y`. Raises TrainingError when the reference does not
    fit the model (missing keys, a metric without labels).
    """
    metric_rows: list[Difference] = []
    if metrics:
        if y is None:
            raise TrainingError(
                "release.research.metrics: the reference data has no label column to "
                "compute metrics on",
                hint="add the label column to release.research.data",
            )
        ours = score(model, X, y, list(metrics))
        metric_rows = [
            Difference(what=name, expected=float(expected), actual=ours[name])
            for name, expected in metrics.items()
        ]
    worst: list[Difference] = []
    compared = 0
    if predictions:
        key_list = list(keys)
        missing = [k for k in predictions if k not in set(key_list)]
        if missing:
            raise TrainingError(
                f"release.research.predictions: {len(missing)} key(s) are not in the "
                f"reference data, e.g. {missing[0]!r}",
                hint="the predictions file must be about the reference data's cases",
            )
        ours_all = _predict(model, X)
        position = {k: i for i, k in enumerate(key_list)}
        rows = [
            Difference(
                what=f"prediction {k}", expected=float(v), actual=float(ours_all[position[k]])
            )
            for k, v in predictions.items()
        ]
        compared = len(rows)
        rows.sort(key=lambda d: d.delta, reverse=True)
        worst = rows[:WORST_SHOWN]
    return Reproduction(
        tolerance=tolerance,
        metrics=tuple(metric_rows),
        predictions_compared=compared,
        worst=tuple(worst),
    )


def _predict(model: Any, X: Any) -> Any:
    """Positive-class probability for a binary classifier, else `predict`."""
    proba = getattr(model, "predict_proba", None)
    classes = getattr(model, "classes_", None)
    if proba is not None and classes is not None and len(classes) == 2:
        return proba(X)[:, 1]
    return model.predict(X)


def reproduce_research(spec: Spec, model: Any, progress: Progress) -> Reproduction | None:
    """Compare `model` with research's specification (release.research); None without one."""
    import pandas as pd

    research = spec.release.research
    if research is None:
        return None
    if research.data is None:
        raise UsageError(
            "release.research names no reference data (research.data)",
            hint="add the reference cases research used: release.research.data: FILE.csv",
        )
    reference_path = spec.resolve(research.data)
    with step(progress, "reproduce research's results"):
        reference = _read_table(reference_path, pd)
        names_in = getattr(model, "feature_names_in_", None)
        features = [str(n) for n in names_in] if names_in is not None else []
        if not features:
            features = [c for c in reference.columns if c not in (spec.data.label, spec.data.key)]
        missing = [c for c in features if c not in reference.columns]
        if missing:
            raise DataError(
                f"{reference_path}: the reference data lacks the model's feature(s) "
                f"{', '.join(missing[:5])}"
            )
        label = spec.data.label if spec.data.label in reference.columns else None
        key = spec.data.key
        predictions: dict[Any, float] | None = None
        if research.predictions is not None:
            if key is None or key not in reference.columns:
                raise DataError(
                    f"{reference_path}: comparing predictions needs the key column "
                    f"{key!r} in the reference data",
                    hint="declare data.key and keep it in the reference file",
                )
            pred_path = spec.resolve(research.predictions)
            frame = _read_table(pred_path, pd)
            value_column = "prediction" if "prediction" in frame.columns else frame.columns[-1]
            if key not in frame.columns:
                raise DataError(f"{pred_path}: no key column {key!r}")
            predictions = dict(
                zip(frame[key].tolist(), frame[value_column].astype(float), strict=True)
            )
        return reproduce(
            model,
            reference[features],
            reference[label] if label else None,
            keys=reference[key] if key in reference.columns else range(len(reference)),
            predictions=predictions,
            metrics=dict(research.metrics),
            tolerance=research.tolerance,
        )


def _read_table(path: Path, pd: Any) -> Any:
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (named in release.research)") from None
    except Exception as e:
        raise DataError(f"{path}: cannot read it ({type(e).__name__}: {e})") from None
