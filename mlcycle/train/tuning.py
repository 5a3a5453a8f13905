"""Hyperparameter tuning: grid, random or successive-halving search with cross-validation.

Parameters are lists of candidate values or distributions (`log-uniform`, `uniform`,
`int`) that random and halving search sample from. Every candidate the search tried
is kept (`TuningResult.trials`: its parameters, mean and spread of its fold scores,
its mean fit time, and for halving the round and the rows it was given), so a team
can see what tuning did, not only what it chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlcycle.errors import MlcycleError, TrainingError
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.spec.model import Distribution, DistributionKind
from mlcycle.train._util import did_you_mean, listing, plain
from mlcycle.train.estimator import validation_problem
from mlcycle.train.metrics import resolve_scorers

if TYPE_CHECKING:
    from mlcycle.spec.model import TuningSpec

SEARCHES = ("grid", "random", "halving")


@dataclass(frozen=True)
class Trial:
    """One candidate the search cross-validated.

    `mean_score`/`std_score` over the folds (by the tuning's scorer), `fit_seconds`
    the mean time to fit one fold, `rank` 1 for the best. For successive halving,
    `round` (0 first) and `resources` (rows it was trained on); a candidate that
    went on to later rounds appears once per round.
    """

    params: Mapping[str, Any]
    mean_score: float
    std_score: float
    fit_seconds: float = field(compare=False)  # timing varies; equal searches stay equal
    rank: int = 0
    round: int | None = None
    resources: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "params": plain(dict(self.params)),
            "mean_score": plain(self.mean_score),
            "std_score": plain(self.std_score),
            "fit_seconds": self.fit_seconds,
            "rank": self.rank,
            **(
                {"round": self.round, "resources": self.resources} if self.round is not None else {}
            ),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Trial:
        """Rebuild from `as_dict`'s output (null scores become NaN)."""
        return cls(
            params=dict(raw.get("params") or {}),
            mean_score=_float(raw.get("mean_score")),
            std_score=_float(raw.get("std_score")),
            fit_seconds=float(raw.get("fit_seconds") or 0.0),
            rank=int(raw.get("rank") or 0),
            round=raw.get("round"),
            resources=raw.get("resources"),
        )


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


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
    trials: tuple[Trial, ...] = ()

    @property
    def fits(self) -> int:
        """Models fitted by the search, not counting the final refit."""
        if self.trials:  # halving fits a candidate once per round it reaches
            return len(self.trials) * self.folds
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
            "trials": [t.as_dict() for t in self.trials],
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
        for value in _probes(values):
            candidate = clone(estimator).set_params(**{name: value})
            problem = validation_problem(candidate)
            if problem is not None:
                raise TrainingError(f"model.tuning.params: {name} = {value!r}: {problem}")


def _probes(values: Any) -> list[Any]:
    """Values that stand for a parameter's space in the up-front check: the list
    itself, or a distribution's two ends."""
    if isinstance(values, Distribution):
        if values.kind is DistributionKind.INT:
            return [int(values.low), int(values.high)]
        return [values.low, values.high]
    return list(values)


def sampler(space: tuple[Any, ...] | Distribution) -> Any:
    """What scikit-learn samples a parameter from: the list, or a scipy distribution."""
    if not isinstance(space, Distribution):
        return list(space)
    from scipy import stats

    if space.low >= space.high:
        raise TrainingError(
            f"model.tuning.params: low ({space.low:g}) must be below high ({space.high:g})"
        )
    if space.kind is DistributionKind.LOG_UNIFORM:
        if space.low <= 0:
            raise TrainingError("model.tuning.params: a log-uniform distribution needs low > 0")
        return stats.loguniform(space.low, space.high)
    if space.kind is DistributionKind.INT:
        return stats.randint(int(space.low), int(space.high) + 1)  # both ends included
    return stats.uniform(space.low, space.high - space.low)


def count_candidates(tuning: TuningSpec) -> int:
    """Candidates the search draws: the whole grid, or min(iterations, grid size) when
    every parameter is a list, or `iterations` when some are distributions. Successive
    halving then fits the survivors again in each later round."""
    from sklearn.model_selection import ParameterGrid

    if tuning.has_distributions:
        return tuning.iterations
    size = len(ParameterGrid({name: list(values) for name, values in tuning.params.items()}))  # type: ignore[arg-type]
    return size if tuning.search == "grid" else min(tuning.iterations, size)


def make_search(estimator: Any, tuning: TuningSpec, *, scoring: str, seed: int) -> Any:
    """The unfitted `GridSearchCV`, `RandomizedSearchCV` or `HalvingRandomSearchCV`.

    Folds are shuffled with `seed` (stratified for classifiers); random search
    samples min(iterations, grid size) candidates without replacement from lists,
    `iterations` candidates when some parameter is a distribution. Halving draws
    `iterations` candidates and keeps the best 1/factor at each round.
    """
    from sklearn.base import is_classifier
    from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, StratifiedKFold

    if tuning.search not in SEARCHES:
        raise TrainingError(
            f"model.tuning.search: '{tuning.search}' is not one of {', '.join(SEARCHES)}"
        )
    if tuning.search == "grid" and tuning.has_distributions:
        raise TrainingError(
            "model.tuning.params: grid search tries listed values only; distributions need "
            "random or halving search",
            hint="set model.tuning.search to random or halving",
        )
    resolve_scorers([scoring], where="model.tuning.scoring")
    check_tuning_params(estimator, tuning.params)
    space = {name: sampler(values) for name, values in tuning.params.items()}
    if is_classifier(estimator):
        cv: Any = StratifiedKFold(n_splits=tuning.cv, shuffle=True, random_state=seed)
    else:
        cv = KFold(n_splits=tuning.cv, shuffle=True, random_state=seed)
    common = {"scoring": scoring, "cv": cv, "n_jobs": tuning.n_jobs, "error_score": "raise"}
    if tuning.search == "grid":
        return GridSearchCV(estimator, space, **common)
    if tuning.search == "halving":
        # Importing this module is what makes scikit-learn's halving search importable.
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingRandomSearchCV

        return HalvingRandomSearchCV(
            estimator,
            space,
            n_candidates=count_candidates(tuning),
            factor=tuning.factor,
            # The last round gets all rows, the first as many as that leaves: scikit-learn's
            # default ("smallest") starts on a handful of rows, where a fold may hold one
            # class and every score is NaN.
            min_resources="exhaust",
            random_state=seed,
            **common,
        )
    return RandomizedSearchCV(
        estimator, space, n_iter=count_candidates(tuning), random_state=seed, **common
    )


def trials(search: Any) -> tuple[Trial, ...]:
    """Every candidate a fitted search tried, from its `cv_results_`, in the order tried."""
    results = search.cv_results_
    halving = "iter" in results
    return tuple(
        Trial(
            params=dict(params),
            mean_score=float(results["mean_test_score"][i]),
            std_score=float(results["std_test_score"][i]),
            fit_seconds=float(results["mean_fit_time"][i]),
            rank=int(results["rank_test_score"][i]),
            round=int(results["iter"][i]) if halving else None,
            resources=int(results["n_resources"][i]) if halving else None,
        )
        for i, params in enumerate(results["params"])
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
    if tuning.search == "halving":
        # How many rounds the survivors reach is known only as the search runs.
        task = step(progress, f"tune: {candidates} candidates, halving × {folds} folds")
    else:
        task = step(
            progress, f"tune: {candidates} candidates × {folds} folds", total=candidates * folds
        )
    with task:
        if tuning.n_jobs == 1:
            # In-process fits can report each finished fold; parallel workers cannot.
            scorer = _CountingScorer(resolve_scorers([scoring])[scoring], progress)
            search.set_params(scoring=scorer)
        try:
            search.fit(X, y)
        except MlcycleError:
            raise
        except (ValueError, TypeError, ArithmeticError) as e:
            raise TrainingError(f"tuning failed: {e}") from e
        else:
            if tuning.n_jobs != 1 and tuning.search != "halving":
                progress.advance(candidates * folds)
    result = TuningResult(
        best_params=dict(search.best_params_),
        best_score=float(search.best_score_),
        scoring=scoring,
        candidates=candidates,
        folds=folds,
        search=tuning.search,
        n_jobs=tuning.n_jobs,
        trials=trials(search),
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
