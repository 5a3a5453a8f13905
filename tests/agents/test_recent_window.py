"""Drift and metric triggers on a recent window (issue 14.5), in process on real projects."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.store.predictions import PredictionRecord, PredictionStore
from tests.agents.conftest import feature_rows
from tests.agents.test_update_and_production import append_rows
from tests.spec.helpers import cli, spec_text, write_spec


def with_triggers(root: Path, lines: str) -> None:
    """Replace the spec's triggers by `lines` (indented under `triggers:`)."""
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    start = text.index("  triggers:\n") + len("  triggers:\n")
    end = text.index("  data: increment")
    spec.write_text(text[:start] + lines + text[end:])


def log_served(root: Path, inputs: list[dict[str, float]], start: float, step: float) -> None:
    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}")
    store.log_predictions(
        [
            PredictionRecord(
                id=f"p{start}-{i}",
                model="live",
                release="0.1.0",
                generation=1,
                created_at=start + i * step,
                inputs=row,
                prediction=0,
                probabilities=[0.9, 0.1],
            )
            for i, row in enumerate(inputs)
        ]
    )
    store.close()


def shifted(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v * 3 for k, v in row.items()} for row in rows]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "update.triggers.window must be at least 1 (got 0)"),
        ("soon", "update.triggers.window must be"),
        ("1.5", "update.triggers.window must be"),
    ],
)
def test_the_window_is_validated_where_it_is_written(
    tmp_path: Path, value: str, message: str
) -> None:
    body = (
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        "model:\n  pipeline: [sklearn.linear_model.LogisticRegression]\n"
        "update:\n  triggers:\n    drift: 0.25\n    window: " + value + "\n"
    )
    text = spec_text(body, update="autonomous", deployment="dynamic")
    write_spec(tmp_path, text)
    result = cli("validate", cwd=tmp_path)
    assert result.code == 2
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "window:" in t)
    assert f"lifecycle.yaml:{line}:13: error: {message}" in result.stderr


@pytest.mark.parametrize(
    ("window", "label"), [("100", "the last 100 predictions"), ("1h", "the last 1h")]
)
def test_a_recent_shift_fires_the_drift_trigger_only_within_the_window(
    adaptive: Callable[[], Path], window: str, label: str
) -> None:
    root = adaptive()
    normal = feature_rows(root, 500)
    now = time.time()
    # 1000 ordinary inputs served over the last day, then 100 with every feature × 3.
    log_served(root, normal + normal, now - 86400, 80)
    log_served(root, shifted(normal[:100]), now - 100, 1)
    append_rows(root, 50)  # something new to learn from when a trigger fires

    with_triggers(root, "    new_rows: 1000\n    drift: 0.25\n")
    diluted = api.update(root)
    check = {c.name: c for c in diluted.checks}["drift"]
    assert check.fired is False and not diluted.retrained
    assert check.value < 0.25  # the shift is lost among 1100 inputs
    assert check.detail.endswith("over 1100 served inputs (limit 0.25)")

    with_triggers(root, f"    new_rows: 1000\n    drift: 0.25\n    window: {window}\n")
    result = api.update(root)
    check = {c.name: c for c in result.checks}["drift"]
    assert check.fired is True
    assert check.value > 5  # every recent input lies far outside the training data
    assert check.detail.endswith(f"over 100 served inputs in {label} (limit 0.25)")
    assert result.reason.startswith("drift: largest PSI")
    assert result.procured is not None and result.procured.entry is not None
    assert str(result.procured.entry.ref) == "0.1.0/2"


def test_the_series_shows_metrics_and_drift_per_window(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    normal = feature_rows(root, 120)
    hour = 3600
    base = math.floor(time.time() / hour) * hour - 2 * hour
    log_served(root, normal, base, 25)  # the first hour: as in training
    log_served(root, shifted(normal), base + hour, 25)  # the second: shifted
    report = api.evaluate_production(root, window="1h", record=False)
    windows = report.as_dict()["windows"]
    assert [(w["start"], w["predictions"]) for w in windows] == [
        (base, 120),
        (base + hour, 120),
    ]
    first, second = (w["drift"]["worst"]["psi"] for w in windows)
    assert first < 0.1 < 5 < second

    shown = cli("evaluate", "--production", "--window", "1h", cwd=root)
    assert shown.code == 0, shown.output
    assert "largest PSI" in shown.stdout.split("per window")[1]


def test_the_metric_trigger_judges_the_recent_outcomes(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    now = time.time()
    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}")
    records, outcomes = [], []
    for i in range(660):
        truth = i % 2
        right = i < 600  # 600 right answers, then 60 wrong ones
        p1 = 0.9 if (truth == 1) == right else 0.1
        records.append(
            PredictionRecord(
                id=f"m{i}",
                model="live",
                release="0.1.0",
                generation=1,
                created_at=now - 660 + i,
                inputs={"mean_radius": 14.0},
                prediction=int(p1 > 0.5),
                probabilities=[1 - p1, p1],
            )
        )
        outcomes.append((f"m{i}", truth))
    store.log_predictions(records)
    store.record_outcomes(outcomes)
    store.close()
    append_rows(root, 50)

    with_triggers(root, "    new_rows: 1000\n    metric: roc_auc < 0.9\n")
    overall = api.update(root)
    check = {c.name: c for c in overall.checks}["metric"]
    assert check.fired is False and check.value == pytest.approx(600 / 660)
    assert check.detail.startswith("production roc_auc 0.9091 on 660 outcomes (does not meet")

    with_triggers(root, "    new_rows: 1000\n    metric: roc_auc < 0.9\n    window: 60\n")
    recent = api.update(root)
    check = {c.name: c for c in recent.checks}["metric"]
    assert check.fired is True and check.value == 0.0
    assert check.detail.startswith(
        "production roc_auc 0.0000 on 60 outcomes in the last 60 predictions (meets"
    )
    assert recent.retrained
