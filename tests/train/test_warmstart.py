"""Warm start: a new generation continues the previous model's state on the increment."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle.spec.model import ModelSpec, StepSpec
from mlcycle.train import build_estimator, supports_warm_start, train
from tests.train.conftest import make_spec

SCALER = "sklearn.preprocessing.StandardScaler"


def pipeline(final: str, params: dict[str, Any] | None = None, *, scaled: bool = True) -> dict:
    steps: list[Any] = [SCALER] if scaled else []
    steps.append({final: params or {}})
    return {"pipeline": steps, "seed": 0}


def generations(data: tuple[Any, Any], split: int = 300) -> tuple[Any, Any, Any, Any]:
    """The rows of the previous generation and the increment that follows them."""
    X, y = data
    return X.iloc[:split], y.iloc[:split], X.iloc[split:], y.iloc[split:]


def final(model: Any) -> Any:
    return model.steps[-1][1]


# --- partial_fit ------------------------------------------------------------------------------


def test_sgd_continues_with_partial_fit_from_the_previous_state(
    tmp_path: Path, cancer: Any
) -> None:
    spec = make_spec(
        tmp_path, model=pipeline("sklearn.linear_model.SGDClassifier", {"loss": "log_loss"})
    )
    X_old, y_old, X_new, y_new = generations(cancer)
    previous = train(spec, X_old, y_old).model
    before = copy.deepcopy(previous)

    result = train(spec, X_new, y_new, previous_model=previous)

    assert result.warm_started is True
    assert result.warm_start_note == (
        "continued the previous model: SGDClassifier.partial_fit on the new rows"
    )
    continued = result.model
    # The learning schedule carries on from where the previous model stopped...
    assert final(continued).t_ == final(previous).t_ + len(X_new)
    # ...the scaler keeps its statistics and adds the new rows to them...
    assert continued.steps[0][1].n_samples_seen_ == len(X_old) + len(X_new)
    # ...and the weights move from the previous ones, not from a fresh start.
    fresh = train(spec, X_new, y_new).model
    moved = np.linalg.norm(final(continued).coef_ - final(previous).coef_)
    restarted = np.linalg.norm(final(fresh).coef_ - final(previous).coef_)
    assert 0 < moved < restarted
    # The previous model itself is untouched.
    assert final(previous).t_ == final(before).t_
    np.testing.assert_array_equal(final(previous).coef_, final(before).coef_)
    assert set(result.metrics) == {"accuracy", "roc_auc"}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_continues_one_more_epoch(tmp_path: Path, cancer: Any) -> None:
    params = {"hidden_layer_sizes": [8], "max_iter": 20}
    spec = make_spec(tmp_path, model=pipeline("sklearn.neural_network.MLPClassifier", params))
    X_old, y_old, X_new, y_new = generations(cancer)
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new, y_new, previous_model=previous)
    assert result.warm_started
    assert final(result.model).t_ == final(previous).t_ + len(X_new)
    assert len(final(result.model).loss_curve_) == len(final(previous).loss_curve_) + 1


# --- warm_start ------------------------------------------------------------------------------


def test_logistic_regression_restarts_from_its_previous_solution(
    tmp_path: Path, cancer: Any
) -> None:
    spec = make_spec(tmp_path, model=pipeline("sklearn.linear_model.LogisticRegression"))
    X, y = cancer
    previous = train(spec, X, y).model
    fresh_iterations = int(final(previous).n_iter_[0])
    # On the rows it already fitted, a continued model starts at the optimum.
    result = train(spec, X, y, previous_model=previous)
    assert result.warm_started
    assert "LogisticRegression refit from its previous state (warm_start)" in (
        result.warm_start_note or ""
    )
    assert fresh_iterations >= 10
    assert int(final(result.model).n_iter_[0]) <= 2
    np.testing.assert_allclose(final(result.model).coef_, final(previous).coef_, atol=1e-3)
    assert final(previous).warm_start is False


def test_gradient_boosting_grows_trees_and_keeps_the_old_ones(tmp_path: Path, cancer: Any) -> None:
    params = {"n_estimators": 10, "max_depth": 2}
    spec = make_spec(
        tmp_path,
        model=pipeline("sklearn.ensemble.GradientBoostingClassifier", params, scaled=False),
    )
    X_old, y_old, X_new, y_new = generations(cancer)
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new, y_new, previous_model=previous)
    grown = final(result.model)
    assert result.warm_started
    assert result.warm_start_note == (
        "continued the previous model: GradientBoostingClassifier with warm_start, "
        "n_estimators grown"
    )
    assert (grown.n_estimators, grown.estimators_.shape[0]) == (20, 20)
    assert final(previous).estimators_.shape[0] == 10
    for old, kept in zip(final(previous).estimators_[:, 0], grown.estimators_[:10, 0], strict=True):
        np.testing.assert_array_equal(old.tree_.threshold, kept.tree_.threshold)


def test_random_forest_adds_trees_trained_on_the_increment(tmp_path: Path, cancer: Any) -> None:
    params = {"n_estimators": 4, "max_depth": 3}
    spec = make_spec(
        tmp_path, model=pipeline("sklearn.ensemble.RandomForestClassifier", params, scaled=False)
    )
    X_old, y_old, X_new, y_new = generations(cancer)
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new, y_new, previous_model=previous)
    trees = final(result.model).estimators_
    assert len(trees) == 8
    for old, kept in zip(final(previous).estimators_, trees[:4], strict=True):
        np.testing.assert_array_equal(old.tree_.threshold, kept.tree_.threshold)


def test_histogram_boosting_grows_its_iterations(tmp_path: Path, diabetes: Any) -> None:
    params = {"max_iter": 5}
    spec = make_spec(
        tmp_path,
        model=pipeline("sklearn.ensemble.HistGradientBoostingRegressor", params, scaled=False),
    )
    X_old, y_old, X_new, y_new = generations(diabetes, split=250)
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new, y_new, previous_model=previous)
    assert result.warm_started
    assert final(result.model).n_iter_ == 10
    assert final(previous).n_iter_ == 5


# --- falling back to a refit -------------------------------------------------------------------


def test_estimator_without_warm_start_is_refit_and_says_why(tmp_path: Path, cancer: Any) -> None:
    spec = make_spec(tmp_path, model=pipeline("sklearn.neighbors.KNeighborsClassifier"))
    X_old, y_old, X_new, y_new = generations(cancer)
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new, y_new, previous_model=previous)
    assert result.warm_started is False
    assert result.warm_start_note == (
        "KNeighborsClassifier supports neither partial_fit nor warm_start; refit from scratch"
    )
    assert final(result.model).n_samples_fit_ == len(X_new)


def test_no_previous_model_means_no_note(tmp_path: Path, cancer: Any) -> None:
    result = train(make_spec(tmp_path), *cancer)
    assert (result.warm_started, result.warm_start_note) == (False, None)


def test_warm_start_switched_off_in_the_spec(tmp_path: Path, cancer: Any) -> None:
    spec = make_spec(
        tmp_path,
        model=pipeline("sklearn.linear_model.SGDClassifier"),
        update={"warm_start": False},
    )
    X_old, y_old, X_new, y_new = generations(cancer)
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new, y_new, previous_model=previous)
    assert result.warm_started is False
    assert result.warm_start_note == "update.warm_start is false; refit from scratch"
    assert final(result.model).t_ != final(previous).t_ + len(X_new)


def test_previous_model_of_another_pipeline_is_not_continued(tmp_path: Path, cancer: Any) -> None:
    X_old, y_old, X_new, y_new = generations(cancer)
    sgd = make_spec(tmp_path, model=pipeline("sklearn.linear_model.SGDClassifier"))
    logit = make_spec(tmp_path, model=pipeline("sklearn.linear_model.LogisticRegression"))
    previous = train(sgd, X_old, y_old).model
    result = train(logit, X_new, y_new, previous_model=previous)
    assert result.warm_started is False
    assert result.warm_start_note == (
        "the previous model (StandardScaler → SGDClassifier) is not the pipeline the spec "
        "declares (StandardScaler → LogisticRegression); refit from scratch"
    )


def test_new_classes_in_the_increment_force_a_refit(tmp_path: Path, iris: Any) -> None:
    X, y = iris
    spec = make_spec(tmp_path, model=pipeline("sklearn.linear_model.SGDClassifier"))
    seen = y < 2
    previous = train(spec, X[seen], y[seen]).model
    result = train(spec, X, y, previous_model=previous)
    assert result.warm_started is False
    assert "classes the previous model never saw (2)" in (result.warm_start_note or "")
    assert list(final(result.model).classes_) == [0, 1, 2]


def test_changed_columns_force_a_refit(tmp_path: Path, cancer: Any) -> None:
    X_old, y_old, X_new, y_new = generations(cancer)
    spec = make_spec(tmp_path, model=pipeline("sklearn.linear_model.SGDClassifier"))
    previous = train(spec, X_old, y_old).model
    result = train(spec, X_new.iloc[:, :10], y_new, previous_model=previous)
    assert result.warm_started is False
    assert "columns differ" in (result.warm_start_note or "")


def test_failed_continuation_falls_back_to_a_refit(tmp_path: Path, cancer: Any) -> None:
    X, y = (np.asarray(part) for part in cancer)  # no column names to compare
    spec = make_spec(tmp_path, model=pipeline("sklearn.linear_model.SGDClassifier"))
    previous = train(spec, X[:300], y[:300]).model
    result = train(spec, X[300:, :10], y[300:], previous_model=previous)
    assert result.warm_started is False
    assert (result.warm_start_note or "").startswith("continuing the previous model failed (")
    assert result.warm_start_note is not None and "refit from scratch" in result.warm_start_note
    assert final(result.model).n_features_in_ == 10


def test_tuning_is_skipped_when_continuing(tmp_path: Path, cancer: Any) -> None:
    model = pipeline("sklearn.linear_model.SGDClassifier")
    model["tuning"] = {"params": {"sgdclassifier__alpha": [0.0001, 0.01]}, "cv": 2}
    spec = make_spec(tmp_path, model=model)
    X_old, y_old, X_new, y_new = generations(cancer)
    first = train(spec, X_old, y_old)
    assert first.tuning is not None
    result = train(spec, X_new, y_new, previous_model=first.model)
    assert result.warm_started and result.tuning is None
    assert "tuning skipped" in (result.warm_start_note or "")
    assert final(result.model).alpha == first.tuning.best_params["sgdclassifier__alpha"]


# --- supports_warm_start ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("final_step", "expected"),
    [
        ("sklearn.linear_model.SGDClassifier", True),
        ("sklearn.linear_model.SGDRegressor", True),
        ("sklearn.naive_bayes.GaussianNB", True),
        ("sklearn.linear_model.LogisticRegression", True),
        ("sklearn.ensemble.RandomForestRegressor", True),
        ("sklearn.neighbors.KNeighborsClassifier", False),
        ("sklearn.svm.SVC", False),
    ],
)
def test_supports_warm_start(final_step: str, expected: bool) -> None:
    model = ModelSpec(pipeline=(StepSpec(SCALER), StepSpec(final_step)))
    assert supports_warm_start(build_estimator(model, root=Path())) is expected
