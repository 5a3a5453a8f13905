"""Hyperparameter tuning: grid or random search with cross-validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.errors import MlcycleError, TrainingError
from mlcycle.progress import NULL_PROGRESS, Progress
from mlcycle.train._util import did_you_mean, listing, plain
from mlcycle.train.estimator import validation_problem
from mlcycle.train.metrics import resolve_scorers

if TYPE_CHECKING:
    from mlcycle.spec.model import TuningSpec

SEARCHES = ("grid", "random")


@dataclass(frozen=True)
class TuningResult:
    """What the search found: the best parameters, their cross-validated score, its size."""

    best_params: Mapping[str, Any]
    best_score: float
    scoring: str
    candidates: int
    folds: int
    search: str = "grid"
    n_jobs: int = 1

    @property
    def fits(self) -> int:
        """Models fitted by the search, not counting the final refit."""
        return self.candidates * self.folds

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "best_params": plain(dict(self.best_params)),
            "best_score": self.best_score,
            "scoring": self.scoring,
            "candidates": self.candidates,
            "folds": self.folds,
            "search": self.search,
            "n_jobs": self.n_jobs,
        }


def check_tuning_params(estimator: Any, params: Mapping[str, Any]) -> None:
    """Every tuned name exists in `estimator` and every candidate value is acceptable."""
    from sklearn.base import clone

    valid = estimator.get_params(deep=True)
    for name, values in params.items():
        if name not in valid:
            # `C` for `logisticregression__C` is the usual slip: suggest by suffix too.
            by_suffix = [v for v in valid if v.rpartition("__")[2] == name]
            # Whole steps are also parameters, but never what a grid of plain values means.
            tunable = sorted(v for v in valid if "__" in v) or sorted(valid)
            hint = (
                " did you mean " + " or ".join(f"'{v}'" for v in by_suffix) + "?"
                if by_suffix
                else did_you_mean(name, tunable)
            )
            raise TrainingError(
                f"model.tuning.params: '{name}' is not a parameter of the pipeline;{hint} "
                f"valid names: {listing(tunable)}",
                hint="tuned parameters are named STEP__PARAM, STEP being the class name in "
                "lower case",
            )
        for value in values:
            candidate = clone(estimator).set_params(**{name: value})
            problem = validation_problem(candidate)
            if problem is not None:
                raise TrainingError(f"model.tuning.params: {name} = {value!r}: {problem}")


def count_candidates(tuning: TuningSpec) -> int:
    """Candidates the search tries: the whole grid, or min(iterations, grid size)."""
    from sklearn.model_selection import ParameterGrid

    size = len(ParameterGrid({name: list(values) for name, values in tuning.params.items()}))
    return size if tuning.search == "grid" else min(tuning.iterations, size)


def make_search(estimator: Any, tuning: TuningSpec, *, scoring: str, seed: int) -> Any:
    """The unfitted `GridSearchCV` or `RandomizedSearchCV` that `tune` runs.

    Folds are shuffled with `seed` (stratified for classifiers); random search
    samples min(iterations, grid size) candidates without replacement.
    """
    from sklearn.base import is_classifier
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold

    if tuning.search not in SEARCHES:
        raise TrainingError(
            f"model.tuning.search: '{tuning.search}' is not one of {', '.join(SEARCHES)}"
        )
    resolve_scorers([scoring], where="model.tuning.scoring")
    check_tuning_params(estimator, tuning.params)
    grid = {name: list(values) for name, values in tuning.params.items()}
    if is_classifier(estimator):
        cv: Any = StratifiedKFold(n_splits=tuning.cv, shuffle=True, random_state=seed)
    else:
        cv = KFold(n_splits=tuning.cv, shuffle=True, random_state=seed)
    common = {"scoring": scoring, "cv": cv, "n_jobs": tuning.n_jobs, "error_score": "raise"}
    if tuning.search == "grid":
        return GridSearchCV(estimator, grid, **common)
    return RandomizedSearchCV(
        estimator, grid, n_iter=count_candidates(tuning), random_state=seed, **common
    )


def tune(
    estimator: Any,
    X: Any,
    y: Any,
    tuning: TuningSpec,
    *,
    scoring: str,
    seed: int,
    progress: Progress = NULL_PROGRESS,
) -> tuple[Any, TuningResult]:
    """Search `tuning.params` by cross-validation; return the best estimator, refit on X.

    Raises TrainingError for a parameter the pipeline does not have (listing the
    valid names), an unknown scorer, or a candidate that fails to fit.
    """
    search = make_search(estimator, tuning, scoring=scoring, seed=seed)
    candidates = count_candidates(tuning)
    folds = tuning.cv
    progress.start(f"tune: {candidates} candidates × {folds} folds", total=candidates * folds)
    if tuning.n_jobs == 1:
        # In-process fits can report each finished fold; parallel workers cannot.
        search.set_params(scoring=_CountingScorer(resolve_scorers([scoring])[scoring], progress))
    try:
        search.fit(X, y)
    except MlcycleError:
        raise
    except (ValueError, TypeError, ArithmeticError) as e:
        raise TrainingError(f"tuning failed: {e}") from e
    else:
        if tuning.n_jobs != 1:
            progress.advance(candidates * folds)
    finally:
        progress.done()
    result = TuningResult(
        best_params=dict(search.best_params_),
        best_score=float(search.best_score_),
        scoring=scoring,
        candidates=candidates,
        folds=folds,
        search=tuning.search,
        n_jobs=tuning.n_jobs,
    )
    return search.best_estimator_, result


class _CountingScorer:
    """A scorer that reports one step of progress per call (one per fitted fold)."""

    def __init__(self, scorer: Any, progress: Progress) -> None:
        self._scorer = scorer
        self._progress = progress

    def __call__(self, estimator: Any, X: Any, y: Any, **kwargs: Any) -> float:
        value = self._scorer(estimator, X, y, **kwargs)
        self._progress.advance()
        return float(value)
