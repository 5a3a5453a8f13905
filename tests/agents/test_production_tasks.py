"""Production metrics fit the task: regression, multi-class and text labels (issue 13.5)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mlcycle.agents.production import evaluate_production
from mlcycle.spec import load_spec
from mlcycle.store.predictions import PredictionRecord, PredictionStore
from tests.spec.helpers import spec_text, write_spec


def _served(tmp_path: Path, body: str, answers: list[tuple[Any, Any]]) -> Any:
    """A spec and a store holding (prediction, outcome) pairs of one model; the report."""
    spec = load_spec(write_spec(tmp_path, spec_text(body)))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = PredictionStore(url)
    now = time.time()
    store.log_predictions(
        PredictionRecord(f"p{i}", "t", "0.1.0", 1, now - 100 + i, {"x": 1.0}, prediction)
        for i, (prediction, _) in enumerate(answers)
    )
    store.record_outcomes([(f"p{i}", outcome) for i, (_, outcome) in enumerate(answers)])
    store.close()
    return evaluate_production(spec, url, record=False)


def _body(model: str, metrics: str = "") -> str:
    return (
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        f"model:\n{model}"
        + (f"evaluation:\n  metrics: {metrics}\n" if metrics else "")
        + "store:\n  url: sqlite:///store.db\n"
    )


def test_regression_reports_what_training_reports_r2_and_mae(tmp_path: Path) -> None:
    # No metrics declared, no task: the answers are numbers with fractions.
    answers = [(float(i) + 0.5, float(i)) for i in range(40)]
    report = _served(tmp_path, _body("  pipeline: [sklearn.linear_model.Ridge]\n"), answers)
    assert report.metrics == ("r2", "neg_mean_absolute_error")
    (overall,) = report.overall
    assert overall.metrics["neg_mean_absolute_error"] == pytest.approx(-0.5)
    assert overall.metrics["r2"] == pytest.approx(
        1 - 40 * 0.25 / sum((i - 19.5) ** 2 for i in range(40))
    )


def test_multi_class_macro_and_weighted_metrics(tmp_path: Path) -> None:
    classes = ["low", "mid", "high"]
    answers = [(classes[i % 3], classes[i % 3] if i % 5 else "low") for i in range(60)]
    body = _body(
        "  task: classification\n  pipeline: [sklearn.linear_model.LogisticRegression]\n",
        "[accuracy, f1_macro, f1_weighted, precision_macro, recall_macro]",
    )
    report = _served(tmp_path, body, answers)
    from sklearn import metrics as m

    y = [o for _, o in answers]
    p = [a for a, _ in answers]
    expected = {
        "accuracy": m.accuracy_score(y, p),
        "f1_macro": m.f1_score(y, p, average="macro"),
        "f1_weighted": m.f1_score(y, p, average="weighted"),
        "precision_macro": m.precision_score(y, p, average="macro"),
        "recall_macro": m.recall_score(y, p, average="macro"),
    }
    (overall,) = report.overall
    assert report.metrics == tuple(expected)
    assert overall.metrics == pytest.approx(expected)
    assert overall.unscorable == 0 and overall.notes == ()


def test_text_labels_without_declared_metrics(tmp_path: Path) -> None:
    # Two classes among the outcomes: accuracy and roc_auc, as training would report.
    binary = [("yes" if i % 2 else "no", "yes" if i % 3 else "no") for i in range(40)]
    body = _body("  pipeline: [sklearn.linear_model.LogisticRegression]\n")
    report = _served(tmp_path / "binary", body, binary)
    assert report.metrics == ("accuracy", "roc_auc")
    (overall,) = report.overall
    # Logged without probabilities (a model without predict_proba): said, not an error.
    assert overall.metrics["roc_auc"] is None
    assert any("roc_auc: needs the probabilities" in n for n in overall.notes), overall.notes
    many = [(c, c) for c in ["a", "b", "c"] * 14]
    (overall,) = _served(tmp_path / "many", body, many).overall
    assert overall.metrics == {"accuracy": 1.0}
