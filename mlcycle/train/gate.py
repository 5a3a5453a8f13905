"""The validation gate: conditions a model's metrics must meet to become current."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlcycle.errors import GateFailure, GateRejectedError, TrainingError
from mlcycle.spec.model import Condition
from mlcycle.train._util import listing


@dataclass(frozen=True)
class GateCheck:
    """One condition checked: the value, the threshold it was held to, and by how much it missed.

    `threshold` and `baseline` are None for a relative condition when there is no
    current model yet (the condition holds then). `shortfall` is 0 when passed,
    else how far the value is from the threshold (NaN when the value is NaN).
    """

    condition: str
    metric: str
    value: float
    threshold: float | None
    baseline: float | None
    passed: bool
    shortfall: float
    relative: bool = False

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row (NaN becomes null)."""
        return {
            "condition": self.condition,
            "metric": self.metric,
            "value": _json_number(self.value),
            "threshold": _json_number(self.threshold),
            "baseline": _json_number(self.baseline),
            "passed": self.passed,
            "shortfall": _json_number(self.shortfall),
            "relative": self.relative,
        }


@dataclass(frozen=True)
class GateResult:
    """Whether every condition held, with one check per condition in declaration order."""

    passed: bool
    checks: tuple[GateCheck, ...]

    def failures(self) -> list[GateFailure]:
        """The failed checks as `GateFailure`s, ready for `GateRejectedError`."""
        return [
            GateFailure(
                condition=c.condition,
                metric=c.metric,
                value=c.value,
                # A failed check always has a threshold: relative ones without baseline pass.
                threshold=c.threshold if c.threshold is not None else math.nan,
                shortfall=c.shortfall,
            )
            for c in self.checks
            if not c.passed
        ]

    def raise_if_rejected(self) -> None:
        """Raise `GateRejectedError` (exit code 3) when a condition failed."""
        if not self.passed:
            raise GateRejectedError(failures=self.failures())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}


def check_gate(
    conditions: Sequence[Condition],
    metrics: Mapping[str, float],
    baseline: Mapping[str, float] | None,
) -> GateResult:
    """Check each condition against `metrics`; relative ones against `baseline`.

    `baseline` holds the metrics of the model now current, or None when there is
    none; a relative condition holds when there is no baseline value for its metric
    (the first model has nothing to be worse than). A condition on a metric that was
    not computed raises TrainingError.
    """
    missing = [c for c in conditions if c.metric not in metrics]
    if missing:
        first = missing[0]
        raise TrainingError(
            f"evaluation.gate: '{first}' uses the metric '{first.metric}', which was not "
            f"computed; computed: {listing(metrics) or 'none'}",
            hint=f"add '{first.metric}' to evaluation.metrics",
        )
    checks = []
    for condition in conditions:
        value = float(metrics[condition.metric])
        base = None
        if condition.relative and baseline is not None and condition.metric in baseline:
            base = float(baseline[condition.metric])
        threshold = condition.threshold(base)
        passed = condition.holds(value, base)
        checks.append(
            GateCheck(
                condition=str(condition),
                metric=condition.metric,
                value=value,
                threshold=threshold,
                baseline=base,
                passed=passed,
                shortfall=_shortfall(condition.op, value, threshold, passed),
                relative=condition.relative,
            )
        )
    return GateResult(passed=all(c.passed for c in checks), checks=tuple(checks))


def _shortfall(op: str, value: float, threshold: float | None, passed: bool) -> float:
    if passed or threshold is None:
        return 0.0
    if math.isnan(value):
        return math.nan
    # A strict comparison missed exactly at the threshold has a shortfall of 0.
    return max(0.0, threshold - value) if op in (">=", ">") else max(0.0, value - threshold)


def _json_number(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return value
