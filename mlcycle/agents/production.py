"""The production evaluation agent: served predictions scored against true outcomes.

The serving engine logs every prediction (with the model that made it) to the
store, and true outcomes arrive through the feedback route. This agent joins
the two and computes the spec's metrics per model and per time window, stores
the figures (table `production_metrics`, beside the prediction log) so the
report can draw them over time, and measures data drift: the population
stability index (PSI) of each feature between the training data and the
inputs served recently.

Only metrics computable from logged answers are supported (see `METRICS`):
a served prediction has its label and probabilities, not the estimator.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from mlcycle.data import fetch_outcomes
from mlcycle.errors import UsageError
from mlcycle.store.outcomes import scoring_problem
from mlcycle.store.predictions import PredictionStore
from mlcycle.train.metrics import default_metrics

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mlcycle.spec.model import RecentWindow, Spec
    from mlcycle.store.predictions import JoinedRow, PruneReport

# Fewer outcomes than this make a metric too noisy to act on (triggers ignore it).
MIN_OUTCOMES: Final = 30
PSI_BINS: Final = 10
MIN_DRIFT_ROWS: Final = 100
"""Served inputs below which drift is not judged. PSI over `PSI_BINS` deciles of a
sample of N inputs that did not drift is about (bins - 1) / N from sampling alone:
1.5 at 6 inputs (far above the usual limit of 0.25), 0.09 at 100 (below the 0.1
that PSI practice reads as "no change"); 100 is also 10 expected inputs per bin."""


def _labels(rows: Sequence[JoinedRow]) -> tuple[list[Any], list[Any]]:
    return [r.outcome for r in rows], [r.prediction for r in rows]


def _positive_scores(rows: Sequence[JoinedRow]) -> tuple[list[Any], list[float]]:
    y, scores = [], []
    for r in rows:
        if not r.probabilities or len(r.probabilities) != 2:
            # Undefined here, not a usage error: `_undefined` says why.
            raise ValueError("roc_auc needs the probabilities of a binary model")
        y.append(r.outcome)
        scores.append(float(r.probabilities[1]))
    return y, scores


def _metric(name: str) -> Callable[[Sequence[JoinedRow]], float]:
    from sklearn import metrics as m

    def labels(fn: Callable[..., float], **kw: Any) -> Callable[[Sequence[JoinedRow]], float]:
        return lambda rows: float(fn(*_labels(rows), **kw))

    table: dict[str, Callable[[Sequence[JoinedRow]], float]] = {
        "accuracy": labels(m.accuracy_score),
        "balanced_accuracy": labels(m.balanced_accuracy_score),
        "f1": labels(m.f1_score, zero_division=0),
        "precision": labels(m.precision_score, zero_division=0),
        "recall": labels(m.recall_score, zero_division=0),
        "f1_macro": labels(m.f1_score, average="macro", zero_division=0),
        "f1_micro": labels(m.f1_score, average="micro", zero_division=0),
        "f1_weighted": labels(m.f1_score, average="weighted", zero_division=0),
        "precision_macro": labels(m.precision_score, average="macro", zero_division=0),
        "precision_weighted": labels(m.precision_score, average="weighted", zero_division=0),
        "recall_macro": labels(m.recall_score, average="macro", zero_division=0),
        "recall_weighted": labels(m.recall_score, average="weighted", zero_division=0),
        "roc_auc": lambda rows: float(m.roc_auc_score(*_positive_scores(rows))),
        "r2": labels(m.r2_score),
        "explained_variance": labels(m.explained_variance_score),
        "neg_mean_absolute_error": lambda rows: -float(m.mean_absolute_error(*_labels(rows))),
        "neg_median_absolute_error": lambda rows: -float(m.median_absolute_error(*_labels(rows))),
        "neg_mean_squared_error": lambda rows: -float(m.mean_squared_error(*_labels(rows))),
        "neg_root_mean_squared_error": lambda rows: (
            -math.sqrt(m.mean_squared_error(*_labels(rows)))
        ),
    }
    if name not in table:
        raise UsageError(
            f"metric '{name}' cannot be computed from served predictions",
            hint=f"production metrics: {', '.join(sorted(table))}",
        )
    return table[name]


METRICS: Final = (
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "precision_macro",
    "precision_weighted",
    "recall_macro",
    "recall_weighted",
    "roc_auc",
    "r2",
    "explained_variance",
    "neg_mean_absolute_error",
    "neg_median_absolute_error",
    "neg_mean_squared_error",
    "neg_root_mean_squared_error",
)


@dataclass(frozen=True)
class WindowMetrics:
    """Metrics of one model over one time window of served predictions."""

    model: str  # RELEASE/GENERATION
    start: float
    end: float
    predictions: int
    outcomes: int
    metrics: Mapping[str, float | None]
    notes: tuple[str, ...] = ()
    unscorable: int = 0
    """Outcomes that arrived but cannot be scored (not a label or number of this model);
    left out of `outcomes` and of the metrics, and explained in `notes`."""
    drift: Drift | None = None
    """PSI of the inputs served in this window (a window of the series only)."""

    @property
    def reliable(self) -> bool:
        """Whether enough outcomes arrived to act on these figures."""
        return self.outcomes >= MIN_OUTCOMES

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row (times as epoch seconds)."""
        return {
            "model": self.model,
            "start": self.start,
            "end": self.end,
            "predictions": self.predictions,
            "outcomes": self.outcomes,
            "unscorable": self.unscorable,
            "metrics": dict(self.metrics),
            "reliable": self.reliable,
            "notes": list(self.notes),
            **({"drift": self.drift.as_dict()} if self.drift is not None else {}),
        }


@dataclass(frozen=True)
class Drift:
    """Population stability index per feature, training data vs served inputs."""

    model: str
    served_rows: int
    psi: Mapping[str, float]

    @property
    def enough(self) -> bool:
        """Whether enough inputs were served for the PSI to mean drift (`MIN_DRIFT_ROWS`)."""
        return self.served_rows >= MIN_DRIFT_ROWS

    @property
    def note(self) -> str | None:
        """Why the PSI is not judged, when it is not."""
        if self.enough:
            return None
        return f"too few rows for drift ({self.served_rows} < {MIN_DRIFT_ROWS})"

    @property
    def worst(self) -> tuple[str, float] | None:
        """The feature that moved most, and its PSI; None when nothing can be judged
        (no feature, or too few rows: the PSI is then sampling noise)."""
        if not self.psi or not self.enough:
            return None
        name = max(self.psi, key=lambda k: self.psi[k])
        return name, self.psi[name]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        worst = self.worst
        return {
            "model": self.model,
            "served_rows": self.served_rows,
            "psi": dict(self.psi),
            "worst": None if worst is None else {"feature": worst[0], "psi": worst[1]},
            "note": self.note,
        }


@dataclass(frozen=True)
class ProductionReport:
    """Production metrics per model (overall and per window), and drift."""

    project: str
    metrics: tuple[str, ...]
    overall: tuple[WindowMetrics, ...]
    windows: tuple[WindowMetrics, ...]
    drift: tuple[Drift, ...] = field(default=())
    imported_outcomes: int = 0
    """Outcomes taken from the spec's outcomes source before scoring."""
    pruned: PruneReport | None = None
    """What the store's retention policy removed before scoring (None: no policy)."""
    recent: RecentWindow | None = None
    """The recent window `overall` and `drift` were limited to (None: every prediction)."""

    @property
    def unscorable(self) -> int:
        """Outcomes left out of every model's figures because they cannot be scored."""
        return sum(w.unscorable for w in self.overall)

    def for_model(self, ref: str) -> WindowMetrics | None:
        """The overall figures of model `ref`."""
        return next((w for w in self.overall if w.model == ref), None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "project": self.project,
            "metrics": list(self.metrics),
            "overall": [w.as_dict() for w in self.overall],
            "windows": [w.as_dict() for w in self.windows],
            "drift": [d.as_dict() for d in self.drift],
            "imported_outcomes": self.imported_outcomes,
            "unscorable": self.unscorable,
            "pruned": None if self.pruned is None else self.pruned.as_dict(),
            "recent": None if self.recent is None else _recent_dict(self.recent),
        }


def _recent_dict(recent: RecentWindow) -> dict[str, Any]:
    return {"seconds": recent.seconds, "predictions": recent.predictions, "text": str(recent)}


def import_outcomes(spec: Spec, store_url: str) -> int:
    """Take true outcomes from the spec's outcomes source for predictions sent with keys.

    A request may carry `keys` (one event key per row); once the case's outcome
    lands in `data.outcomes` (key → outcome), this records it for the prediction,
    exactly as the feedback route would. Returns how many outcomes were recorded;
    0 when the spec declares no outcomes source.
    """
    if spec.data.outcomes is None:
        return 0
    store = PredictionStore(store_url)
    try:
        pending = store.unmatched_keys()
        if not pending:
            return 0
        keys = sorted({key for _, key in pending})
        # Keys travel as text; a source keyed by integers is asked in integers.
        typed = [int(k) if k.lstrip("-").isdigit() else k for k in keys]
        frame = fetch_outcomes(spec, typed)
        found: dict[str, Any] = {}
        for key, outcome in zip(frame["key"], frame["outcome"], strict=True):
            value = outcome.item() if hasattr(outcome, "item") else outcome
            found.setdefault(str(key), value)  # the first outcome reported stays
        matched = [(pid, found[key]) for pid, key in pending if key in found]
        if not matched:
            return 0
        return len(store.record_outcomes(matched).accepted)
    finally:
        store.close()


def score_rows(
    rows: Sequence[JoinedRow],
    metrics: Sequence[str],
    *,
    model: str,
    start: float,
    end: float,
    predictions: int,
    task: str = "classification",
) -> WindowMetrics:
    """The metrics of `rows` (predictions with outcomes); None for one that is undefined.

    Rows whose outcome cannot be scored against their prediction (see
    `mlcycle.store.outcomes.scoring_problem`: a store may hold outcomes from before
    feedback was checked) are left out, counted in `unscorable` and explained in
    the notes, so the others still give figures. A metric that is undefined on
    these rows says why in our words, never in sklearn's.
    """
    scorable: list[JoinedRow] = []
    problems: dict[str, int] = {}
    for row in rows:
        problem = scoring_problem(row.outcome, row.prediction, task)
        if problem is None:
            scorable.append(row)
        else:
            problems[problem] = problems.get(problem, 0) + 1
    values: dict[str, float | None] = {}
    notes = []
    if problems:
        skipped = sum(problems.values())
        reasons = "; ".join(f"{n} × {why}" for why, n in problems.items())
        notes.append(f"{skipped} outcome(s) cannot be scored and are left out ({reasons})")
    for name in metrics:
        if not scorable:
            values[name] = None
            continue
        try:
            # sklearn warns (and returns NaN) or raises where a metric is undefined, e.g.
            # one class only among the outcomes: either way we say why in our words.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = _metric(name)(scorable)
        except (ValueError, TypeError) as e:
            log.debug("%s on %s: %s", name, model, e)
            value = math.nan
        if math.isnan(value):
            values[name] = None
            notes.append(_undefined(name, scorable))
        else:
            values[name] = value
    if 0 < len(scorable) < MIN_OUTCOMES:
        notes.append(f"only {len(scorable)} outcomes: too few to act on (need {MIN_OUTCOMES})")
    return WindowMetrics(
        model=model,
        start=start,
        end=end,
        predictions=predictions,
        outcomes=len(scorable),
        metrics=values,
        notes=tuple(notes),
        unscorable=len(rows) - len(scorable),
    )


_BINARY_METRICS: Final = ("f1", "precision", "recall", "roc_auc")


def _undefined(name: str, rows: Sequence[JoinedRow]) -> str:
    """Why metric `name` has no value on `rows`, in the terms of the product."""
    outcomes = {_hashable(r.outcome) for r in rows}
    labels = outcomes | {_hashable(r.prediction) for r in rows}
    if name == "roc_auc" and len(outcomes) < 2:
        return "roc_auc: undefined while the outcomes hold one class only"
    if name == "roc_auc" and any(not r.probabilities or len(r.probabilities) != 2 for r in rows):
        return "roc_auc: needs the probabilities of two classes, and these predictions have none"
    if name in _BINARY_METRICS and len(labels) > 2:
        hint = " (f1_macro works for several)" if name == "f1" else ""
        return f"{name}: needs two classes; outcomes and predictions hold {len(labels)}{hint}"
    if name in _BINARY_METRICS and 1 not in labels:
        return f"{name}: counts the class 1 as positive, and the labels here are not 0/1"
    return f"{name}: cannot be computed on these {len(rows)} outcomes"


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else repr(value)


def evaluate_production(
    spec: Spec,
    store_url: str,
    *,
    window: int | None = None,
    since: float | None = None,
    recent: RecentWindow | None = None,
    training_data: Callable[[str], Any] | None = None,
    record: bool = True,
    now: float | None = None,
) -> ProductionReport:
    """Score served predictions against their outcomes, per model and per `window` seconds.

    `recent` limits each model's overall figures and drift to its recent predictions
    (the last N, or those of the last duration before `now`): what the metric and drift
    triggers act on, so that a recent shift is not diluted by everything served before.
    `training_data(ref)` returns the feature frame a model was trained on, for
    drift (None: no drift figures); each window of the series gets its drift too. With
    `record`, the store's retention policy (`store.retention`) is applied first and the
    overall figures are appended to the store's `production_metrics` table; without it,
    nothing in the store changes.
    """
    declared = tuple(m for m in spec.evaluation.metrics if m in METRICS)
    retention = spec.store.retention
    now = time.time() if now is None else now
    if recent is not None and recent.seconds is not None:
        since = max(since or -math.inf, now - recent.seconds)
    pruned = None
    store = PredictionStore(store_url)
    try:
        if record and retention.active:
            pruned = store.prune(retention)
        served = store.joined(since=since, with_outcome=False)
    finally:
        store.close()
    task = _task(spec, declared, served)
    metrics = declared if spec.evaluation.metrics else _default(task, served)
    by_model: dict[str, list[JoinedRow]] = {}
    for row in served:
        ref = f"{row.release or 'unreleased'}/{row.generation or 1}"
        by_model.setdefault(ref, []).append(row)
    if recent is not None and recent.predictions is not None:
        by_model = {ref: rows[-recent.predictions :] for ref, rows in by_model.items()}
    overall, windows, drift = [], [], []
    for ref, rows in by_model.items():
        reference = training_data(ref) if training_data is not None else None
        with_outcome = [r for r in rows if r.outcome is not None]
        start, end = rows[0].created_at, rows[-1].created_at
        overall.append(
            score_rows(
                with_outcome,
                metrics,
                model=ref,
                start=start,
                end=end,
                predictions=len(rows),
                task=task,
            )
        )
        if window:
            for lo in _window_starts(start, end, window):
                in_window = [r for r in rows if lo <= r.created_at < lo + window]
                figures = score_rows(
                    [r for r in in_window if r.outcome is not None],
                    metrics,
                    model=ref,
                    start=lo,
                    end=lo + window,
                    predictions=len(in_window),
                    task=task,
                )
                if reference is not None and in_window:
                    figures = replace(figures, drift=measure_drift(ref, reference, in_window))
                windows.append(figures)
        if reference is not None:
            drift.append(measure_drift(ref, reference, rows))
    report = ProductionReport(
        project=spec.name,
        metrics=metrics,
        overall=tuple(overall),
        windows=tuple(windows),
        drift=tuple(drift),
        pruned=pruned,
        recent=recent,
    )
    if record and overall:
        _record(store_url, report)
    return report


def _default(task: str, served: Sequence[JoinedRow]) -> tuple[str, ...]:
    """The metrics training reports when the spec declares none (`default_metrics`).

    Binary or not is read from the outcomes that arrived, as training reads it from
    the label column.
    """
    outcomes = [r.outcome for r in served if r.outcome is not None]
    if task == "classification" and len({_hashable(o) for o in outcomes}) != 2:
        return ("accuracy",)
    return default_metrics(task, outcomes)


_REGRESSION_METRICS: Final = (
    "r2",
    "explained_variance",
    "neg_mean_absolute_error",
    "neg_median_absolute_error",
    "neg_mean_squared_error",
    "neg_root_mean_squared_error",
)


def _task(spec: Spec, metrics: Sequence[str], served: Sequence[JoinedRow] = ()) -> str:
    """The spec's task, else what its metrics imply, else what was served.

    Regression metrics only: regression; no metrics: regression when a served value
    is a number with a fraction (labels are text or whole numbers).
    """
    if spec.model.task is not None:
        return spec.model.task
    if metrics and all(m in _REGRESSION_METRICS for m in metrics):
        return "regression"
    if not metrics and any(
        isinstance(r.prediction, float) and not r.prediction.is_integer() for r in served
    ):
        return "regression"
    return "classification"


def _window_starts(start: float, end: float, window: int) -> list[float]:
    first = math.floor(start / window) * window
    return [first + i * window for i in range(int((end - first) // window) + 1)]


def measure_drift(ref: str, reference: Any, rows: Sequence[JoinedRow]) -> Drift:
    """PSI of each feature: the training frame `reference` vs the served inputs `rows`.

    A numeric feature is binned at the deciles of its training values; a categorical
    one (text, booleans, a pandas category) is bucketed by category, with one bucket
    for categories training never saw. Either way a missing value (absent, null,
    NaN) is a bucket of its own, so a feature that starts arriving empty drifts too.
    """
    psi: dict[str, float] = {}
    for name in reference.columns:
        # An input logged without this feature says nothing about it (null does).
        served = [r.inputs[name] for r in rows if name in r.inputs]
        if not served or len(reference) == 0:
            continue
        column = reference[name]
        if _is_numeric(column):
            psi[str(name)] = _numeric_psi(column.to_numpy(dtype=float, na_value=math.nan), served)
        else:
            psi[str(name)] = _categorical_psi(column.tolist(), served)
    return Drift(model=ref, served_rows=len(rows), psi=psi)


MISSING: Final = "(missing)"
UNSEEN: Final = "(unseen)"


def _is_numeric(column: Any) -> bool:
    import pandas as pd

    dtype = column.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _numeric_psi(expected: Any, served: Sequence[Any], bins: int = PSI_BINS) -> float:
    """PSI over the deciles of `expected`, plus a missing and an unseen (not a number) bucket."""
    import numpy as np

    present = expected[~np.isnan(expected)]
    actual: list[float] = []
    missing = unseen = 0
    for value in served:
        if _is_missing(value):
            missing += 1
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            unseen += 1  # text where training had numbers
            continue
        if math.isnan(number):
            missing += 1
        else:
            actual.append(number)
    e_counts = [*_bin_counts(present, present, bins), int(expected.size - present.size), 0]
    a_counts = [*_bin_counts(present, np.asarray(actual), bins), missing, unseen]
    return _psi(e_counts, a_counts)


def _bin_counts(reference: Any, values: Any, bins: int) -> list[int]:
    import numpy as np

    if reference.size == 0:
        return [int(values.size)]  # training had no values: one bucket
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # a constant in training: that value, and everything else
        same = int(np.isclose(values, edges[0]).sum()) if values.size else 0
        return [same, int(values.size) - same]
    edges[0], edges[-1] = -np.inf, np.inf
    return [int(c) for c in np.histogram(values, edges)[0]]


def _categorical_psi(expected: Sequence[Any], served: Sequence[Any]) -> float:
    """PSI over the categories of `expected`, plus an unseen and a missing bucket."""
    from collections import Counter

    def bucket(value: Any, known: Any = None) -> str:
        if _is_missing(value) or _is_na(value):
            return MISSING
        label = str(value)
        return label if known is None or label in known else UNSEEN

    e = Counter(bucket(v) for v in expected)
    a = Counter(bucket(v, e) for v in served)
    names = [*(k for k in e if k != MISSING), UNSEEN, MISSING]
    return _psi([e.get(k, 0) for k in names], [a.get(k, 0) for k in names])


def _is_na(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or another container: a value, not NA
        return False


def _psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """PSI = Σ (a − e) · ln(a / e) over bucket shares; empty buckets get a small floor."""
    import numpy as np

    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    floor = 1e-4
    e = np.clip(e / e.sum(), floor, None)
    a = np.clip(a / a.sum(), floor, None)
    return float(np.sum((a - e) * np.log(a / e)))


def population_stability_index(expected: Any, actual: Any, bins: int = PSI_BINS) -> float:
    """PSI = Σ (a − e) · ln(a / e) over quantile bins of `expected` (numbers, no missing).

    Rules of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 large shift.
    Empty bins get a small floor so the logarithm stays finite.
    """
    import numpy as np

    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    return _psi(_bin_counts(expected, expected, bins), _bin_counts(expected, actual, bins))


def _record(store_url: str, report: ProductionReport) -> None:
    now = time.time()
    rows = [
        {
            "evaluated_at": now,
            "model": w.model,
            "window_start": w.start,
            "window_end": w.end,
            "predictions": w.predictions,
            "outcomes": w.outcomes,
            "metric": name,
            "value": value,
        }
        for w in (*report.overall, *report.windows)
        for name, value in w.metrics.items()
    ]
    store = PredictionStore(store_url)
    try:
        store.record_metrics(rows)
    finally:
        store.close()
