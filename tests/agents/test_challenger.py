"""The gate compares the challenger with the current model on the same rows (issue 14.3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from mlcycle import api
from mlcycle.agents import ProcurementRejected, ProcureResult
from mlcycle.api.project import open_project
from tests.agents.test_update_and_production import append_rows
from tests.spec.helpers import cli


def events(root: Path) -> pd.DataFrame:
    with sqlite3.connect(root / "data" / "events.db") as db:
        return pd.read_sql("SELECT * FROM events ORDER BY seq", db)


def trained(root: Path) -> ProcureResult:
    """`api.train`'s result, passed or rejected."""
    try:
        return api.train(root)
    except ProcurementRejected as rejected:
        return rejected.result


def test_the_current_model_is_scored_on_the_challengers_held_out_rows(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    append_rows(root, 150)
    # Against 0.1.0/1's registered roc_auc (0.9926, on other rows) the new generation's
    # 0.9569 failed `roc_auc >= baseline - 0.02`; on the same rows 0.1.0/1 does worse.
    procured = api.update(root).procured
    assert procured is not None and procured.passed
    result = procured
    assert result.baseline is not None
    comparison = result.comparison
    assert comparison is not None
    assert comparison.ref == "0.1.0/1" and comparison.same_rows and comparison.rows == 30

    # The same figure, computed by scikit-learn on the newest 30 rows (the time split's
    # test rows of the 150-row increment) with the registered model 0.1.0/1.
    frame = events(root).tail(30)
    model = open_project(root).registry.load_model(result.baseline)
    X, y = frame.drop(columns=["id", "seq", "malignant"]), frame["malignant"]
    expected_auc = roc_auc_score(y, model.predict_proba(X)[:, 1])
    assert comparison.metrics["roc_auc"] == pytest.approx(expected_auc, abs=1e-12)
    assert comparison.metrics["accuracy"] == pytest.approx(accuracy_score(y, model.predict(X)))
    assert comparison.registered["roc_auc"] == result.baseline.metrics["roc_auc"]
    assert comparison.registered["roc_auc"] > result.training.metrics["roc_auc"] + 0.02
    assert expected_auc < result.training.metrics["roc_auc"]
    # The relative condition was held against that figure, not the registered one.
    relative = next(c for c in result.gate.checks if c.relative)
    assert relative.baseline == pytest.approx(expected_auc, abs=1e-12)
    assert relative.threshold == pytest.approx(expected_auc - 0.02, abs=1e-12)
    document = result.as_dict()["comparison"]
    assert document["same_rows"] is True and document["rows"] == 30
    assert document["metrics"]["roc_auc"] == pytest.approx(expected_auc, abs=1e-12)


def test_the_gate_table_shows_both_scores(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    append_rows(root, 150)
    shown = cli("update", cwd=root)
    assert shown.code == 0, shown.output
    assert "validation gate (both on the same 30 held-out rows)" in shown.stdout
    header = next(line for line in shown.stdout.splitlines() if line.startswith("condition"))
    assert header.split() == ["condition", "new", "0.1.0/1", "threshold", "result"]


def test_a_current_model_that_cannot_score_the_rows_falls_back_visibly(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    append_rows(root, 150)  # the newest 20% of the rows are now unseen by 0.1.0/1
    spec = root / "lifecycle.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  # features: [mean_radius, mean_texture]", "  features: [mean_radius, mean_texture]"
        )
    )
    result = trained(root)
    comparison = result.comparison
    assert comparison is not None and comparison.same_rows is False
    assert comparison.note is not None
    assert comparison.note.startswith("0.1.0/1 cannot be scored on these rows (")
    assert comparison.note.endswith(
        "the gate compares with 0.1.0/1's registered figures, measured on other rows"
    )
    assert comparison.metrics == comparison.registered

    shown = cli("train", cwd=root)
    assert "validation gate (0.1.0/1: its registered figures)" in shown.stdout
    assert "0.1.0/1 cannot be scored on these rows" in shown.stderr


def test_rows_the_current_model_was_trained_on_are_not_used_to_judge_it(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    result = trained(root)  # dev/1 on the same 569 rows as 0.1.0/1
    comparison = result.comparison
    assert comparison is not None and comparison.same_rows is False
    assert comparison.note == (
        "0.1.0/1 was trained on 114 of the 114 held-out rows (its score on them would be "
        "flattered); the gate compares with 0.1.0/1's registered figures, measured on other rows"
    )
