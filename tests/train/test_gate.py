"""The validation gate: absolute and relative conditions, with and without a baseline."""

from __future__ import annotations

import json

import pytest

from mlcycle.errors import ExitCode, GateFailure, GateRejectedError, TrainingError
from mlcycle.spec.model import Condition
from mlcycle.train import check_gate


def conditions(*texts: str) -> list[Condition]:
    return [Condition.parse(t) for t in texts]


METRICS = {"roc_auc": 0.85, "accuracy": 0.80, "neg_log_loss": -0.40}


def test_absolute_conditions_pass() -> None:
    result = check_gate(conditions("roc_auc >= 0.8", "accuracy > 0.75"), METRICS, None)
    assert result.passed
    assert [c.passed for c in result.checks] == [True, True]
    first = result.checks[0]
    assert (first.condition, first.metric, first.value, first.threshold) == (
        "roc_auc >= 0.8",
        "roc_auc",
        0.85,
        0.8,
    )
    assert (first.shortfall, first.relative, first.baseline) == (0.0, False, None)
    assert result.failures() == []
    result.raise_if_rejected()


def test_absolute_condition_fails_with_its_shortfall() -> None:
    result = check_gate(conditions("roc_auc >= 0.9", "neg_log_loss >= -0.5"), METRICS, None)
    assert not result.passed
    failed, held = result.checks
    assert (failed.passed, held.passed) == (False, True)
    assert failed.shortfall == pytest.approx(0.05)
    assert result.failures() == [
        GateFailure(
            condition="roc_auc >= 0.9",
            metric="roc_auc",
            value=0.85,
            threshold=0.9,
            shortfall=pytest.approx(0.05),  # type: ignore[arg-type]
        )
    ]


def test_upper_bound_condition_shortfall_counts_downwards() -> None:
    result = check_gate(conditions("accuracy <= 0.7"), METRICS, None)
    assert not result.passed
    assert result.checks[0].shortfall == pytest.approx(0.10)


def test_relative_condition_against_a_baseline() -> None:
    gate = conditions("roc_auc >= baseline - 0.02")
    held = check_gate(gate, METRICS, {"roc_auc": 0.86})
    assert held.passed
    check = held.checks[0]
    assert check.relative and check.baseline == 0.86
    assert check.threshold == pytest.approx(0.84)
    failed = check_gate(gate, METRICS, {"roc_auc": 0.90})
    assert not failed.passed
    assert failed.checks[0].threshold == pytest.approx(0.88)
    assert failed.checks[0].shortfall == pytest.approx(0.03)
    assert failed.checks[0].condition == "roc_auc >= baseline - 0.02"


def test_relative_condition_without_a_baseline_passes() -> None:
    gate = conditions("roc_auc >= baseline")
    for baseline in (None, {"accuracy": 0.99}):  # no current model, or one without the metric
        result = check_gate(gate, METRICS, baseline)
        assert result.passed
        check = result.checks[0]
        assert (check.threshold, check.baseline, check.shortfall) == (None, None, 0.0)


def test_mixed_gate_rejects_with_exit_code_three() -> None:
    gate = conditions("roc_auc >= 0.8", "accuracy >= baseline + 0.01")
    result = check_gate(gate, METRICS, {"accuracy": 0.80, "roc_auc": 0.5})
    assert [c.passed for c in result.checks] == [True, False]
    with pytest.raises(GateRejectedError) as info:
        result.raise_if_rejected()
    assert info.value.exit_code == ExitCode.GATE_REJECTED
    assert str(info.value) == (
        "the validation gate rejected the model: accuracy >= baseline + 0.01"
    )
    assert info.value.failures[0].threshold == pytest.approx(0.81)


def test_condition_on_a_metric_not_computed_is_a_training_error() -> None:
    with pytest.raises(TrainingError) as info:
        check_gate(conditions("f1 >= 0.5"), METRICS, None)
    assert str(info.value) == (
        "evaluation.gate: 'f1 >= 0.5' uses the metric 'f1', which was not computed; "
        "computed: roc_auc, accuracy, neg_log_loss"
    )
    assert info.value.hint == "add 'f1' to evaluation.metrics"


def test_nan_metric_fails_and_serialises_as_null() -> None:
    result = check_gate(conditions("roc_auc >= 0.5"), {"roc_auc": float("nan")}, None)
    assert not result.passed
    row = json.loads(json.dumps(result.as_dict(), allow_nan=False))["checks"][0]
    assert row["value"] is None and row["shortfall"] is None and row["passed"] is False


def test_as_dict_is_json_ready() -> None:
    result = check_gate(conditions("roc_auc >= baseline - 0.02"), METRICS, {"roc_auc": 0.9})
    data = json.loads(json.dumps(result.as_dict()))
    assert data["passed"] is False
    assert data["checks"][0] == {
        "condition": "roc_auc >= baseline - 0.02",
        "metric": "roc_auc",
        "value": 0.85,
        "threshold": pytest.approx(0.88),
        "baseline": 0.9,
        "passed": False,
        "shortfall": pytest.approx(0.03),
        "relative": True,
    }


def test_empty_gate_passes() -> None:
    assert check_gate([], METRICS, None).passed
