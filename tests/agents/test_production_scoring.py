"""`evaluate --production` skips nothing silently (issue 10.5) and applies retention (10.6).

A store written before outcomes were checked may hold outcomes no metric can use
(an object, a list, a string for a 0/1 model, -1e308): those rows are counted and
explained per model, the others still give figures, and no sklearn message shows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mlcycle.store.predictions import PredictionRecord, PredictionStore
from tests.spec.helpers import cli, spec_text, write_spec

BODY = """\
data:
  source: {path: d.csv, ordinal: ts}
  label: y
model:
  task: classification
  pipeline: [sklearn.linear_model.LogisticRegression]
evaluation:
  metrics: [accuracy, f1]
  gate: ["accuracy >= 0.5"]
store:
  url: sqlite:///store.db
  retention: {age: 30d}
"""

BAD = [{"x": [1]}, [1, 2], -1e308, "x" * 100_000, "yes"]


def _project(tmp_path: Path) -> PredictionStore:
    write_spec(tmp_path, spec_text(BODY))
    (tmp_path / "d.csv").write_text("ts,a,y\n1,0.5,1\n")
    store = PredictionStore(f"sqlite:///{tmp_path / 'store.db'}")
    now = time.time()
    records = [
        PredictionRecord(
            id=f"p{i:03d}",
            model="t",
            release="0.1.0",
            generation=1,
            created_at=now - 100 + i,
            inputs={"a": 0.5},
            prediction=i % 2,
        )
        for i in range(40)
    ]
    # Two predictions from before the 30-day window: retention takes them first.
    records += [
        PredictionRecord(
            id=f"old{i}",
            model="t",
            release="0.1.0",
            generation=1,
            created_at=now - 40 * 86_400,
            inputs={"a": 0.5},
            prediction=0,
        )
        for i in range(2)
    ]
    store.log_predictions(records)
    # 35 outcomes that score (all right: the prediction itself; p001 as 1.0), and the
    # 5 misfits an older mlcycle accepted, stored straight into the store.
    good = [(f"p{i:03d}", i % 2) for i in range(35)]
    good[1] = ("p001", 1.0)
    bad = [(f"p{35 + i:03d}", value) for i, value in enumerate(BAD)]
    report = store.record_outcomes([*good, *bad])
    assert len(report.accepted) == 40
    return store


def test_unscorable_outcomes_are_counted_and_the_rest_scored(tmp_path: Path) -> None:
    store = _project(tmp_path)
    try:
        result = cli("evaluate", "--production", "--json", cwd=tmp_path)
        assert result.code == 0, result.output
        data = json.loads(result.stdout)
        (overall,) = data["overall"]
        assert overall["model"] == "0.1.0/1"
        assert overall["predictions"] == 40
        assert overall["outcomes"] == 35
        assert overall["unscorable"] == 5
        assert overall["metrics"] == {"accuracy": 1.0, "f1": 1.0}
        assert overall["reliable"] is True
        (note,) = overall["notes"]
        assert note.startswith("5 outcome(s) cannot be scored and are left out (")
        assert "2 × the outcome is a string; the model's labels are numbers" in note
        assert "1 × the outcome is a list, not a single value" in note
        assert "1 × the outcome is not one of the model's (whole number) labels" in note
        assert data["unscorable"] == 5
        # Retention ran first: the two predictions older than 30 days are gone.
        assert data["pruned"] == {"predictions": 2, "outcomes": 0, "kept_pending": 0}
        assert store.counts().predictions == 40

        table = cli("evaluate", "--production", cwd=tmp_path)
        assert table.code == 0, table.output
        assert "unscorable" in table.stdout
        assert "5 outcome(s) cannot be scored" in table.stderr
        assert "Traceback" not in table.output
    finally:
        store.close()


def test_undefined_metrics_say_why_in_our_words(tmp_path: Path) -> None:
    write_spec(
        tmp_path,
        spec_text(BODY.replace("[accuracy, f1]", "[accuracy, f1, roc_auc]")),
    )
    (tmp_path / "d.csv").write_text("ts,a,y\n1,0.5,1\n")
    store = PredictionStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.log_predictions(
            PredictionRecord(
                id=f"p{i}",
                model="t",
                release="0.1.0",
                generation=1,
                created_at=time.time(),
                inputs={"a": 0.5},
                prediction=i % 3,
                probabilities=[0.5, 0.5],
            )
            for i in range(6)
        )
        store.record_outcomes([(f"p{i}", 1) for i in range(6)])
    finally:
        store.close()
    result = cli("evaluate", "--production", "--json", cwd=tmp_path)
    assert result.code == 0, result.output
    notes = json.loads(result.stdout)["overall"][0]["notes"]
    assert (
        "f1: needs two classes; outcomes and predictions hold 3 (f1_macro works for several)"
        in notes
    )
    assert "roc_auc: undefined while the outcomes hold one class only" in notes
    for note in notes:
        assert "Target is" not in note and "y_true" not in note and "average=" not in note
