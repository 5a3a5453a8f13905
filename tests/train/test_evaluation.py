"""Evaluation: the three splits, default metrics, scorer names, scoring a fitted model."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import TrainingError
from mlcycle.spec.model import EvaluationSpec
from mlcycle.train import default_metrics, evaluate, score, splits


def logit() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression())


def ridge() -> Any:
    from sklearn.linear_model import Ridge

    return Ridge()


# --- metric names ---------------------------------------------------------------------------


def test_default_metrics_per_task(cancer: Any, iris: Any, diabetes: Any) -> None:
    assert default_metrics("classification", cancer[1]) == ("accuracy", "roc_auc")
    assert default_metrics("classification", iris[1]) == ("accuracy",)
    assert default_metrics("regression", diabetes[1]) == ("r2", "neg_mean_absolute_error")


def test_unknown_scorer_suggests_the_right_name(cancer: Any) -> None:
    X, y = cancer
    with pytest.raises(TrainingError) as info:
        evaluate(
            logit(),
            X,
            y,
            EvaluationSpec(),
            task="classification",
            seed=0,
            metrics=["accuracy", "roc-auc"],
        )
    assert str(info.value).startswith(
        "evaluation.metrics: unknown metric 'roc-auc'; did you mean 'roc_auc'"
    )
    assert info.value.hint is not None and "get_scorer_names" in info.value.hint


def test_score_of_a_fitted_model(cancer: Any) -> None:
    X, y = cancer
    model = logit().fit(X, y)
    scores = score(model, X, y, ["accuracy", "roc_auc", "f1"])
    # Exactly what scikit-learn's own metrics say on the same rows, not just "plausible".
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    assert scores == pytest.approx(
        {
            "accuracy": accuracy_score(y, model.predict(X)),
            "roc_auc": roc_auc_score(y, model.predict_proba(X)[:, 1]),
            "f1": f1_score(y, model.predict(X)),
        },
        rel=1e-12,
    )
    assert all(isinstance(v, float) for v in scores.values())


def test_a_metric_the_data_cannot_give_is_a_training_error(cancer: Any) -> None:
    X, y = cancer
    model = logit().fit(X, y)
    only_one_class = y == 1
    with pytest.raises(
        TrainingError, match="metric 'roc_auc' is undefined on these 357 rows: Only one class"
    ):
        score(model, X[only_one_class], y[only_one_class], ["roc_auc"])


# --- holdout --------------------------------------------------------------------------------


def test_holdout_is_stratified_for_classification(cancer: Any) -> None:
    X, y = cancer
    spec = EvaluationSpec(split="holdout", test_size=0.25)
    result = evaluate(logit(), X, y, spec, task="classification", seed=1, metrics=["accuracy"])
    assert (result.split, result.folds, result.stratified) == ("holdout", 1, True)
    assert result.n_test == len(result.test_index) == 143
    assert result.n_train + result.n_test == len(X)
    test_share = y.iloc[list(result.test_index)].mean()
    assert abs(test_share - y.mean()) < 0.01
    # The reported score is the held-out score: refit on the other rows, score the test rows.
    test = list(result.test_index)
    train = sorted(set(range(len(X))) - set(test))
    refit = logit().fit(X.iloc[train], y.iloc[train])
    assert result.metrics["accuracy"] == pytest.approx(
        (refit.predict(X.iloc[test]) == y.iloc[test]).mean(), rel=1e-12
    )


def test_holdout_of_a_regression_is_plain_random(diabetes: Any) -> None:
    X, y = diabetes
    result = evaluate(
        ridge(),
        X,
        y,
        EvaluationSpec(),
        task="regression",
        seed=0,
        metrics=default_metrics("regression", y),
    )
    assert result.stratified is False
    test = list(result.test_index)
    rest = sorted(set(range(len(X))) - set(test))
    predicted = ridge().fit(X.iloc[rest], y.iloc[rest]).predict(X.iloc[test])
    from sklearn.metrics import mean_absolute_error, r2_score

    assert result.metrics == pytest.approx(
        {
            "r2": r2_score(y.iloc[test], predicted),
            "neg_mean_absolute_error": -mean_absolute_error(y.iloc[test], predicted),
        },
        rel=1e-12,
    )


def test_holdout_falls_back_to_unstratified_when_a_class_is_too_small() -> None:
    X = pd.DataFrame({"x": np.arange(20.0)})
    y = pd.Series([0] * 10 + [1] * 9 + [2])
    ((train_idx, test_idx),), stratified = splits(
        X, y, EvaluationSpec(test_size=0.3), task="classification", seed=0
    )
    assert stratified is False
    assert sorted([*train_idx, *test_idx]) == list(range(20))


def test_evaluate_fits_clones_and_leaves_the_estimator_unfitted(cancer: Any) -> None:
    from sklearn.utils.validation import check_is_fitted

    X, y = cancer
    estimator = logit()
    evaluate(estimator, X, y, EvaluationSpec(), task="classification", seed=0, metrics=["accuracy"])
    with pytest.raises(Exception, match="not fitted"):
        check_is_fitted(estimator)


# --- cross-validation -------------------------------------------------------------------------


def test_cross_validation_averages_k_folds(iris: Any) -> None:
    X, y = iris
    spec = EvaluationSpec(split="cross-validation", folds=4)
    result = evaluate(logit(), X, y, spec, task="classification", seed=0, metrics=["accuracy"])
    assert (result.split, result.folds, result.stratified) == ("cross-validation", 4, True)
    per_fold = result.fold_metrics["accuracy"]
    assert len(per_fold) == 4
    assert result.metrics["accuracy"] == pytest.approx(np.mean(per_fold))
    assert (result.n_train, result.n_test) == (112, 38)  # 150 rows in 4 folds
    assert result.test_index == ()
    json.dumps(result.as_dict())


def test_cross_validation_folds_cover_every_row_once(diabetes: Any) -> None:
    X, y = diabetes
    folds, _ = splits(
        X, y, EvaluationSpec(split="cross-validation", folds=5), task="regression", seed=0
    )
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(X)))


def test_more_folds_than_rows_is_an_error() -> None:
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    y = pd.Series([1.0, 2.0, 3.0])
    with pytest.raises(TrainingError, match=r"evaluation\.folds is 5 but there are only 3 rows"):
        splits(X, y, EvaluationSpec(split="cross-validation"), task="regression", seed=0)


# --- time -------------------------------------------------------------------------------------


def shuffled_times(n: int, seed: int = 0) -> pd.Series:
    """Timestamps one hour apart, in a shuffled row order."""
    times = pd.date_range("2026-01-01", periods=n, freq="h")
    return pd.Series(np.random.default_rng(seed).permutation(times))


def test_time_split_tests_on_the_most_recent_rows(cancer: Any) -> None:
    X, y = cancer
    ordinal = shuffled_times(len(X))
    spec = EvaluationSpec(split="time", test_size=0.2)
    result = evaluate(
        logit(),
        X,
        y,
        spec,
        task="classification",
        seed=0,
        ordinal=ordinal,
        metrics=["accuracy"],
    )
    latest = ordinal.sort_values().index[-114:]  # ceil(0.2 * 569) most recent rows
    assert sorted(result.test_index) == sorted(latest.tolist())
    assert (result.n_train, result.n_test) == (455, 114)
    train_times = ordinal.drop(index=list(result.test_index))
    assert train_times.max() < ordinal.iloc[list(result.test_index)].min()


def test_time_split_keeps_rows_of_one_instant_together() -> None:
    X = pd.DataFrame({"x": np.arange(10.0)})
    y = pd.Series(np.arange(10.0))
    ordinal = pd.Series([1, 2, 3, 4, 5, 6, 7, 8, 8, 8])  # 20% would cut the 8s apart
    ((train_idx, test_idx),), _ = splits(
        X,
        y,
        EvaluationSpec(split="time", test_size=0.2),
        task="regression",
        seed=0,
        ordinal=ordinal,
    )
    assert test_idx.tolist() == [7, 8, 9]
    assert train_idx.tolist() == list(range(7))


def test_time_split_needs_an_ordinal(cancer: Any) -> None:
    X, y = cancer
    with pytest.raises(TrainingError) as info:
        evaluate(
            logit(),
            X,
            y,
            EvaluationSpec(split="time"),
            task="classification",
            seed=0,
            metrics=["accuracy"],
        )
    assert "no ordinal column" in str(info.value)
    assert info.value.hint is not None and "data.source.ordinal" in info.value.hint


def test_time_split_whose_past_has_a_single_class_says_so() -> None:
    X = pd.DataFrame({"x": np.arange(10.0)})
    y = pd.Series([0] * 7 + [1] * 3)
    with pytest.raises(TrainingError, match="the training rows hold a single class"):
        evaluate(
            logit(),
            X,
            y,
            EvaluationSpec(split="time", test_size=0.3),
            task="classification",
            seed=0,
            ordinal=pd.Series(range(10)),
            metrics=["accuracy"],
        )


def test_time_split_on_a_constant_ordinal_is_an_error() -> None:
    X = pd.DataFrame({"x": np.arange(10.0)})
    y = pd.Series(np.arange(10.0))
    with pytest.raises(TrainingError, match="every row has the same ordinal value"):
        splits(
            X,
            y,
            EvaluationSpec(split="time"),
            task="regression",
            seed=0,
            ordinal=pd.Series([5] * 10),
        )
