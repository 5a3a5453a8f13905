"""Tuning: grid and random search, parameter names, n_jobs, progress."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlcycle.errors import TrainingError
from mlcycle.spec.model import TuningSpec
from mlcycle.train import make_search, tune
from tests.train.conftest import RecordingProgress


def logit() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression())


GRID = {
    "logisticregression__C": (0.001, 0.1, 1.0),
    "logisticregression__fit_intercept": (True, False),
}


def test_grid_search_tries_every_combination_and_reports_progress(cancer: Any) -> None:
    X, y = cancer
    progress = RecordingProgress()
    best, result = tune(
        logit(),
        X,
        y,
        TuningSpec(params=GRID, cv=3),
        scoring="roc_auc",
        seed=0,
        progress=progress,
    )
    assert (result.search, result.candidates, result.folds, result.fits) == ("grid", 6, 3, 18)
    assert result.scoring == "roc_auc"
    assert set(result.best_params) == set(GRID)
    assert result.best_params["logisticregression__C"] != 0.001  # far too strong a penalty
    assert 0.95 < result.best_score <= 1.0
    assert best.get_params()["logisticregression__C"] == result.best_params["logisticregression__C"]
    best.predict(X)  # refit on the rows given
    assert progress.starts() == [("tune: 6 candidates × 3 folds", 18)]
    assert progress.advanced() == 18
    assert json.loads(json.dumps(result.as_dict()))["candidates"] == 6


def test_random_search_samples_iterations_candidates_reproducibly(cancer: Any) -> None:
    X, y = cancer
    spec = TuningSpec(
        params={"logisticregression__C": (0.01, 0.1, 1.0, 10.0, 100.0)},
        search="random",
        iterations=3,
        cv=2,
    )
    _, first = tune(logit(), X, y, spec, scoring="accuracy", seed=5)
    _, again = tune(logit(), X, y, spec, scoring="accuracy", seed=5)
    assert (first.search, first.candidates, first.folds) == ("random", 3, 2)
    assert first == again


def test_random_search_never_asks_for_more_candidates_than_the_grid_has() -> None:
    spec = TuningSpec(params={"logisticregression__C": (0.1, 1.0)}, search="random", iterations=10)
    search = make_search(logit(), spec, scoring="accuracy", seed=0)
    assert search.n_iter == 2


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_n_jobs_is_honoured(n_jobs: int) -> None:
    spec = TuningSpec(params={"logisticregression__C": (0.1, 1.0)}, n_jobs=n_jobs)
    search = make_search(logit(), spec, scoring="accuracy", seed=0)
    assert search.n_jobs == n_jobs
    assert search.cv.shuffle is True and search.cv.random_state == 0


@pytest.mark.slow
def test_parallel_search_runs_and_matches_the_serial_one(cancer: Any) -> None:
    X, y = cancer
    params = {"logisticregression__C": (0.01, 1.0)}
    _, serial = tune(logit(), X, y, TuningSpec(params=params), scoring="accuracy", seed=0)
    _, parallel = tune(
        logit(), X, y, TuningSpec(params=params, n_jobs=2), scoring="accuracy", seed=0
    )
    assert parallel.n_jobs == 2
    assert parallel.best_params == serial.best_params
    assert parallel.best_score == pytest.approx(serial.best_score)


def test_a_parameter_the_pipeline_lacks_lists_the_valid_names() -> None:
    spec = TuningSpec(params={"logisticregression__c": (1.0,)})
    with pytest.raises(TrainingError) as info:
        make_search(logit(), spec, scoring="accuracy", seed=0)
    message = str(info.value)
    assert message.startswith(
        "model.tuning.params: 'logisticregression__c' is not a parameter of the pipeline;"
    )
    assert "did you mean 'logisticregression__C'" in message
    assert "valid names: logisticregression__C, " in message
    assert "standardscaler__with_mean" in message


def test_a_bare_parameter_name_suggests_the_step_prefix() -> None:
    with pytest.raises(TrainingError, match="did you mean 'logisticregression__max_iter'"):
        make_search(logit(), TuningSpec(params={"max_iter": (10,)}), scoring="accuracy", seed=0)


def test_a_bad_candidate_value_is_reported_before_searching() -> None:
    spec = TuningSpec(params={"logisticregression__C": (1.0, -1.0)})
    with pytest.raises(TrainingError) as info:
        make_search(logit(), spec, scoring="accuracy", seed=0)
    assert str(info.value).startswith("model.tuning.params: logisticregression__C = -1.0: ")
    assert "must be a float in the range (0.0, inf]" in str(info.value)


def test_unknown_tuning_scorer() -> None:
    spec = TuningSpec(params={"logisticregression__C": (1.0,)})
    with pytest.raises(TrainingError, match=r"model\.tuning\.scoring: unknown metric 'acuracy'"):
        make_search(logit(), spec, scoring="acuracy", seed=0)


# --- issue 13, item 6: distributions, successive halving, every candidate recorded ---


def test_random_search_samples_distributions_and_records_every_trial(cancer: Any) -> None:
    from mlcycle.spec.model import Distribution, DistributionKind

    X, y = cancer
    spec = TuningSpec(
        params={
            "logisticregression__C": Distribution(DistributionKind.LOG_UNIFORM, 0.001, 100.0),
            "logisticregression__max_iter": Distribution(DistributionKind.INT, 50, 200),
            "logisticregression__tol": Distribution(DistributionKind.UNIFORM, 1e-5, 1e-3),
        },
        search="random",
        iterations=7,
        cv=2,
    )
    _, result = tune(logit(), X, y, spec, scoring="roc_auc", seed=0)
    assert (result.candidates, result.fits, len(result.trials)) == (7, 14, 7)
    Cs = [t.params["logisticregression__C"] for t in result.trials]
    assert all(0.001 <= c <= 100.0 for c in Cs) and len(set(Cs)) == 7  # sampled, not listed
    assert all(isinstance(t.params["logisticregression__max_iter"], int) for t in result.trials)
    assert all(50 <= t.params["logisticregression__max_iter"] <= 200 for t in result.trials)
    best = min(result.trials, key=lambda t: t.rank)
    assert best.params == dict(result.best_params)
    assert best.mean_score == pytest.approx(result.best_score)
    assert all(t.fit_seconds > 0 and t.std_score >= 0 for t in result.trials)
    recorded = json.loads(json.dumps(result.as_dict()))["trials"]
    assert [r["rank"] for r in recorded] == [t.rank for t in result.trials]
    assert set(recorded[0]) == {"params", "mean_score", "std_score", "fit_seconds", "rank"}


def test_halving_search_runs_rounds_on_growing_rows(cancer: Any) -> None:
    from mlcycle.spec.model import Distribution, DistributionKind

    X, y = cancer
    spec = TuningSpec(
        params={"logisticregression__C": Distribution(DistributionKind.LOG_UNIFORM, 0.001, 100.0)},
        search="halving",
        iterations=9,
        factor=3,
        cv=2,
    )
    best, result = tune(logit(), X, y, spec, scoring="roc_auc", seed=0)
    rounds = sorted({t.round for t in result.trials})
    assert rounds[0] == 0 and len(rounds) >= 2
    first = [t for t in result.trials if t.round == 0]
    last = [t for t in result.trials if t.round == rounds[-1]]
    assert len(first) == 9 and len(last) < len(first)
    assert last[0].resources is not None and first[0].resources is not None
    assert last[0].resources > first[0].resources
    assert result.search == "halving" and result.fits == len(result.trials) * 2
    assert best.get_params()["logisticregression__C"] == result.best_params["logisticregression__C"]
    assert "round" in json.loads(json.dumps(result.as_dict()))["trials"][0]


def test_grid_search_refuses_a_distribution() -> None:
    from mlcycle.spec.model import Distribution, DistributionKind

    spec = TuningSpec(
        params={"logisticregression__C": Distribution(DistributionKind.UNIFORM, 0.1, 1.0)}
    )
    with pytest.raises(TrainingError, match="grid search tries listed values only"):
        make_search(logit(), spec, scoring="roc_auc", seed=0)
