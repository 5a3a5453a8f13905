"""`mlcycle train`, `evaluate` and `models` on the example projects, through the real CLI."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.learn.conftest import mlcycle

Example = Callable[[str], Path]


@pytest.mark.parametrize("name", ["open", "adaptive", "dual"])
def test_train_then_models_shows_the_entry_with_real_metrics(example: Example, name: str) -> None:
    project = example(name)
    trained = mlcycle("train", "--json", cwd=project)
    assert trained.code == 0, trained.err
    result = trained.json()
    assert result["ref"] == "dev/1"
    assert result["passed"] is True
    assert 0.9 <= result["metrics"]["roc_auc"] <= 1.0
    assert result["data"]["rows"] == 569

    listed = mlcycle("models", "--json", "-C", project)
    assert listed.code == 0, listed.err
    entries = listed.json()["entries"]
    assert [e["ref"] for e in entries] == ["dev/1"]
    assert entries[0]["metrics"] == result["metrics"]
    assert entries[0]["status"] == "candidate"
    assert entries[0]["current"] is False  # a development training is never current
    assert entries[0]["data"]["watermark"] == 569

    table = mlcycle("models", cwd=project)
    assert table.code == 0
    assert "dev/1" in table.out and "candidate" in table.out


def test_a_second_training_is_the_next_generation(example: Example) -> None:
    project = example("open")
    assert mlcycle("train", "--upper", "300", cwd=project).code == 0
    second = mlcycle("train", "--json", cwd=project)
    assert second.code == 0, second.err
    assert second.json()["ref"] == "dev/2"
    entries = mlcycle("models", "--json", cwd=project).json()["entries"]
    assert [e["data"]["rows"] for e in entries] == [299, 569]


def test_train_human_output_has_metrics_and_gate(example: Example) -> None:
    result = mlcycle("train", cwd=example("open"))
    assert result.code == 0, result.err
    assert "roc_auc" in result.out
    assert "roc_auc >= 0.9" in result.out and "pass" in result.out
    assert "registered dev/1" in result.out


def test_gate_failure_exits_3_with_a_table_and_keeps_a_rejected_entry(example: Example) -> None:
    project = example("open")
    spec = project / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("roc_auc >= 0.9", "roc_auc >= 0.9999"))
    result = mlcycle("train", cwd=project)
    assert result.code == 3, result.err
    assert re.search(r"roc_auc >= 0\.9999.*FAIL by 0\.0", result.out)
    assert "validation gate rejected the model" in result.err
    assert "kept as rejected dev/1" in result.err
    assert "Traceback" not in result.err
    entries = mlcycle("models", "--json", cwd=project).json()["entries"]
    assert [(e["ref"], e["status"]) for e in entries] == [("dev/1", "rejected")]


def test_discard_rejected_leaves_the_registry_empty(example: Example) -> None:
    project = example("open")
    spec = project / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("accuracy >= 0.9", "accuracy >= 0.9999"))
    result = mlcycle("train", "--discard-rejected", "--json", cwd=project)
    assert result.code == 3
    assert result.json()["ref"] is None
    assert mlcycle("models", "--json", cwd=project).json()["entries"] == []


def test_an_empty_window_is_a_clear_error_and_writes_nothing(example: Example) -> None:
    project = example("open")
    result = mlcycle("train", "--lower", "100000", cwd=project)
    assert result.code == 1
    assert "no rows" in result.err and "Traceback" not in result.err
    assert mlcycle("models", "--json", cwd=project).json()["entries"] == []


def test_a_bad_bound_is_a_clear_error(example: Example) -> None:
    result = mlcycle("train", "--lower", "yesterday", cwd=example("open"))
    assert result.code == 2  # a bad argument is a usage error (README, Exit codes)
    assert "yesterday" in result.err and "Traceback" not in result.err


def test_a_missing_table_names_the_source(example: Example) -> None:
    project = example("open")
    with sqlite3.connect(project / "data" / "events.db") as db:
        db.execute("DROP TABLE events")
    result = mlcycle("train", cwd=project)
    assert result.code == 1
    assert "events" in result.err and "Traceback" not in result.err


def test_interactive_projects_are_not_trained_by_mlcycle(example: Example) -> None:
    result = mlcycle("train", cwd=example("interactive"))
    assert result.code == 2
    assert "procurement: interactive" in result.err
    assert "release --model" in result.err


def test_evaluate_scores_a_registered_model_on_a_window(example: Example) -> None:
    project = example("open")
    assert mlcycle("train", "--upper", "400", cwd=project).code == 0
    report = mlcycle("evaluate", "dev/1", "--lower", "400", "--json", cwd=project)
    assert report.code == 0, report.err
    data = report.json()
    assert data["ref"] == "dev/1"
    assert data["data"]["rows"] == 170
    assert data["seen_rows"] == 0
    # scikit-learn's own scorers on the same 170 rows, with the registered model.
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score

    from mlcycle.api.project import open_project

    registry = open_project(project).registry
    fitted = registry.load_model(registry.get("dev/1"))
    with sqlite3.connect(project / "data" / "events.db") as db:
        rows = pd.read_sql("SELECT * FROM events WHERE seq >= 400 ORDER BY seq", db)
    assert len(rows) == 170
    X, y = rows[list(fitted.feature_names_in_)], rows["malignant"]
    assert data["metrics"] == pytest.approx(
        {
            "roc_auc": roc_auc_score(y, fitted.predict_proba(X)[:, 1]),
            "accuracy": accuracy_score(y, fitted.predict(X)),
        },
        rel=1e-12,
    )

    overlapping = mlcycle("evaluate", cwd=project)
    assert overlapping.code == 0, overlapping.err
    assert "399 of 569 rows were in the model's training data" in overlapping.err


def test_evaluate_check_exits_3_when_the_gate_fails(example: Example) -> None:
    project = example("open")
    assert mlcycle("train", cwd=project).code == 0
    spec = project / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("accuracy >= 0.9", "accuracy >= 0.99999"))
    assert mlcycle("evaluate", "latest", cwd=project).code == 0
    assert mlcycle("evaluate", "latest", "--check", cwd=project).code == 3


def test_evaluate_an_unknown_ref(example: Example) -> None:
    project = example("open")
    result = mlcycle("evaluate", "0.3.0/2", cwd=project)
    assert result.code == 2  # a REF that names nothing: as for deploy and promote
    assert "0.3.0/2 names no model in the registry" in result.err
    bad = mlcycle("evaluate", "v0.3.0", cwd=project)
    assert bad.code == 2
    assert "without the tag's `v`" in bad.err


def test_models_on_an_empty_registry(example: Example) -> None:
    project = example("open")
    result = mlcycle("models", cwd=project)
    assert result.code == 0
    assert "the registry is empty" in result.out


def test_train_on_a_csv_source(example: Example) -> None:
    """The open example with its events exported to CSV: the same rows, the same windows."""
    import pandas as pd

    project = example("open")
    with sqlite3.connect(project / "data" / "events.db") as db:
        pd.read_sql("SELECT * FROM events", db).to_csv(project / "data" / "events.csv", index=False)
    spec = project / "lifecycle.yaml"
    text = spec.read_text().replace(
        "url: sqlite:///data/events.db # any SQLAlchemy URL; relative SQLite paths start here\n"
        "    table: events\n",
        "path: data/events.csv\n",
        1,
    )
    assert "path: data/events.csv" in text
    spec.write_text(text)
    trained = mlcycle("train", "--upper", "500", "--json", cwd=project)
    assert trained.code == 0, trained.err
    data = trained.json()
    assert data["data"]["kind"] == "file" and data["data"]["rows"] == 499
    assert data["metrics"]["roc_auc"] > 0.9
    assert mlcycle("models", "--json", cwd=project).json()["entries"][0]["ref"] == "dev/1"
