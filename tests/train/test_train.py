"""`train` end to end: build → tune → evaluate held out → refit on all rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import ExitCode, TrainingError
from mlcycle.train import check_gate, train
from tests.conftest import build_file_tree
from tests.train.conftest import SCALED_LOGIT, RecordingProgress, make_spec


def test_train_evaluates_held_out_and_refits_on_all_rows(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    result = train(make_spec(tmp_path), X, y)
    assert result.task == "classification"
    assert result.metrics == result.evaluation.metrics
    assert set(result.metrics) == {"accuracy", "roc_auc"}
    assert (result.evaluation.split, result.evaluation.n_test) == ("holdout", 114)
    # The held-out figures are scikit-learn's own scorers on the same rows: refit the same
    # pipeline on the other rows, score the test rows.
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, roc_auc_score

    test = list(result.evaluation.test_index)
    rest = sorted(set(range(len(X))) - set(test))
    refit = clone(result.model).fit(X.iloc[rest], y.iloc[rest])
    assert result.metrics == pytest.approx(
        {
            "accuracy": accuracy_score(y.iloc[test], refit.predict(X.iloc[test])),
            "roc_auc": roc_auc_score(y.iloc[test], refit.predict_proba(X.iloc[test])[:, 1]),
        },
        rel=1e-12,
    )
    # The returned model learned from every row, not just the training part of the split.
    assert result.model.steps[0][1].n_samples_seen_ == len(X) == result.n_rows
    assert result.tuning is None and result.fit_seconds > 0
    assert result.steps == tuple(SCALED_LOGIT)
    data = json.loads(json.dumps(result.as_dict()))
    assert "model" not in data
    assert data["evaluation"]["split"] == "holdout"


def test_regression_gets_regression_metrics(tmp_path: Path, diabetes: Any) -> None:
    spec = make_spec(
        tmp_path,
        model={"pipeline": [SCALED_LOGIT[0], {"sklearn.linear_model.Ridge": {"alpha": 1.0}}]},
        evaluation={"split": "cross-validation", "folds": 3},
    )
    result = train(spec, *diabetes)
    assert result.task == "regression"
    assert set(result.metrics) == {"r2", "neg_mean_absolute_error"}
    assert result.evaluation.folds == 3
    # The mean over the same three folds of scikit-learn's own scorers.
    from sklearn.base import clone
    from sklearn.metrics import mean_absolute_error, r2_score

    from mlcycle.train import splits

    X, y = diabetes
    folds, _ = splits(X, y, spec.evaluation, task="regression", seed=spec.model.seed)
    r2, mae = [], []
    for train_rows, test_rows in folds:
        fitted = clone(result.model).fit(X.iloc[train_rows], y.iloc[train_rows])
        predicted = fitted.predict(X.iloc[test_rows])
        r2.append(r2_score(y.iloc[test_rows], predicted))
        mae.append(-mean_absolute_error(y.iloc[test_rows], predicted))
    assert result.metrics == pytest.approx(
        {"r2": float(np.mean(r2)), "neg_mean_absolute_error": float(np.mean(mae))}, rel=1e-12
    )


def test_the_seed_makes_training_reproducible(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer

    def forest(seed: int) -> Any:
        model = {
            "pipeline": [{"sklearn.ensemble.RandomForestClassifier": {"n_estimators": 5}}],
            "seed": seed,
        }
        return train(make_spec(tmp_path, model=model), X, y)

    first, again, other = forest(1), forest(1), forest(2)
    assert first.metrics == again.metrics
    np.testing.assert_array_equal(first.model.predict_proba(X), again.model.predict_proba(X))
    assert first.evaluation.test_index == again.evaluation.test_index
    assert first.evaluation.test_index != other.evaluation.test_index
    assert not np.array_equal(first.model.predict_proba(X), other.model.predict_proba(X))


def test_tuning_scores_with_the_first_metric_and_keeps_the_best(
    tmp_path: Path, cancer: Any
) -> None:
    progress = RecordingProgress()
    model = {
        "pipeline": SCALED_LOGIT,
        "tuning": {"params": {"logisticregression__C": [0.001, 1.0]}, "cv": 2},
    }
    spec = make_spec(tmp_path, model=model, evaluation={"metrics": ["roc_auc", "accuracy"]})
    result = train(spec, *cancer, progress=progress)
    assert result.tuning is not None
    assert result.tuning.scoring == "roc_auc"
    assert result.tuning.candidates == 2
    assert (
        result.model.get_params()["logisticregression__C"]
        == (result.tuning.best_params["logisticregression__C"])
    )
    assert [desc for desc, _ in progress.starts()] == [
        "build the pipeline",
        "tune: 2 candidates × 2 folds",
        "evaluate: holdout",
        "fit on all 569 rows",
    ]
    assert progress.events[-1] == ("done", None)


def test_time_split_through_train(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    ordinal = pd.Series(np.arange(len(X))[::-1])  # the first rows are the most recent
    spec = make_spec(tmp_path, evaluation={"split": "time", "test_size": 0.1})
    result = train(spec, X, y, ordinal=ordinal)
    assert result.evaluation.test_index == tuple(range(57))


def test_entrypoint_model_trains(tmp_path: Path, iris: Any) -> None:
    build_file_tree(
        tmp_path,
        {
            "tr_iris_model.py": (
                "from sklearn.tree import DecisionTreeClassifier\n"
                "def build():\n"
                "    return DecisionTreeClassifier(max_depth=3)\n"
            )
        },
    )
    spec = make_spec(tmp_path, model={"entrypoint": "tr_iris_model:build"})
    result = train(spec, *iris)
    assert set(result.metrics) == {"accuracy"}  # three classes: no roc_auc by default
    assert result.steps == ("tr_iris_model:build",)


def test_single_class_label_is_a_clear_error(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    benign = y == 1
    with pytest.raises(TrainingError) as info:
        train(make_spec(tmp_path), X[benign], y[benign])
    assert str(info.value) == (
        "the label has a single class (1) in all 357 rows; a classifier needs at least two"
    )
    assert info.value.exit_code == ExitCode.RUNTIME


def test_missing_labels_are_reported(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    y = y.astype(float)
    y.iloc[[3, 7]] = np.nan
    with pytest.raises(TrainingError, match="the label has 2 missing values in 569 rows"):
        train(make_spec(tmp_path), X, y)


def test_unknown_metric_fails_before_any_fitting(tmp_path: Path, cancer: Any) -> None:
    progress = RecordingProgress()
    spec = make_spec(tmp_path, evaluation={"metrics": ["accuracy", "f1_scor"]})
    with pytest.raises(TrainingError, match="unknown metric 'f1_scor'; did you mean 'f1"):
        train(spec, *cancer, progress=progress)
    assert [desc for desc, _ in progress.starts()] == ["build the pipeline"]


def test_gate_on_a_metric_not_computed_fails_before_fitting(tmp_path: Path, cancer: Any) -> None:
    spec = make_spec(tmp_path, evaluation={"metrics": ["accuracy"], "gate": ["roc_auc >= 0.8"]})
    with pytest.raises(TrainingError) as info:
        train(spec, *cancer)
    assert "'roc_auc >= 0.8' uses the metric 'roc_auc', which is not computed" in str(info.value)
    assert info.value.hint == "add 'roc_auc' to evaluation.metrics"


def test_bad_data_is_a_training_error_naming_the_pipeline(tmp_path: Path, cancer: Any) -> None:
    X, y = cancer
    X = X.copy()
    X.iloc[0, 0] = np.nan
    progress = RecordingProgress()
    with pytest.raises(TrainingError) as info:
        train(make_spec(tmp_path), X, y, progress=progress)
    assert str(info.value).startswith("fitting StandardScaler → LogisticRegression failed: ")
    assert "NaN" in str(info.value)
    # The stage that failed is closed: a progress display is not left hanging.
    kinds = [kind for kind, _ in progress.events]
    assert kinds.count("start") == kinds.count("done") == 2


def test_result_feeds_the_gate(tmp_path: Path, cancer: Any) -> None:
    spec = make_spec(
        tmp_path, evaluation={"gate": ["roc_auc >= 0.9", "accuracy >= baseline - 0.01"]}
    )
    result = train(spec, *cancer)
    assert check_gate(spec.evaluation.gate, result.metrics, None).passed
    better = {"accuracy": result.metrics["accuracy"] + 0.05}
    gate = check_gate(spec.evaluation.gate, result.metrics, better)
    assert not gate.passed
    assert [f.condition for f in gate.failures()] == ["accuracy >= baseline - 0.01"]
