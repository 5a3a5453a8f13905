"""The update triggers, decided on fabricated registry entries and production reports."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from mlcycle.agents.production import Drift, ProductionReport, WindowMetrics
from mlcycle.agents.update import check_triggers
from mlcycle.spec import load_spec
from mlcycle.spec.model import Spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adaptive"


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    shutil.copytree(EXAMPLE, tmp_path / "adaptive")
    path = tmp_path / "adaptive" / "lifecycle.yaml"
    path.write_text(path.read_text().replace("new_rows: 100", "new_rows: 100\n    drift: 0.25"))
    return load_spec(path)


class FakeEntry:
    """The few fields of a registry entry the triggers read."""

    def __init__(self, *, age_days: float, watermark: int) -> None:
        created = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
        self.created_at = created.isoformat(timespec="seconds").replace("+00:00", "Z")
        self.data = {"watermark": watermark, "ordinal": "seq"}
        self.ref = "0.1.0/1"


def report(value: float | None, outcomes: int, psi: float | None = None) -> ProductionReport:
    window = WindowMetrics(
        model="0.1.0/1",
        start=0,
        end=1,
        predictions=outcomes,
        outcomes=outcomes,
        metrics={"roc_auc": value},
    )
    drift = () if psi is None else (Drift(model="0.1.0/1", served_rows=100, psi={"x": psi}),)
    return ProductionReport(
        project="p", metrics=("roc_auc",), overall=(window,), windows=(), drift=drift
    )


def fired(checks: tuple, name: str) -> bool:  # type: ignore[type-arg]
    return next(c for c in checks if c.name == name).fired


def test_schedule_fires_for_an_old_model(spec: Spec) -> None:
    young = check_triggers(spec, FakeEntry(age_days=1, watermark=569), production=None)  # type: ignore[arg-type]
    old = check_triggers(spec, FakeEntry(age_days=8, watermark=569), production=None)  # type: ignore[arg-type]
    assert not fired(young, "every") and fired(old, "every")


def test_new_rows_count_after_the_watermark(spec: Spec) -> None:
    few = check_triggers(spec, FakeEntry(age_days=0, watermark=500), production=None)  # type: ignore[arg-type]
    many = check_triggers(spec, FakeEntry(age_days=0, watermark=400), production=None)  # type: ignore[arg-type]
    assert not fired(few, "new_rows") and fired(many, "new_rows")
    assert next(c for c in many if c.name == "new_rows").value == 169


@pytest.mark.parametrize(
    ("value", "outcomes", "expected"),
    [(0.95, 500, False), (0.80, 500, True), (0.80, 10, False), (None, 0, False)],
)
def test_metric_fires_below_the_threshold_on_enough_outcomes(
    spec: Spec, value: float | None, outcomes: int, expected: bool
) -> None:
    checks = check_triggers(
        spec,
        FakeEntry(age_days=0, watermark=569),  # type: ignore[arg-type]
        production=lambda: report(value, outcomes),
    )
    assert fired(checks, "metric") is expected


def test_drift_fires_above_the_psi_limit(spec: Spec) -> None:
    calm = check_triggers(
        spec,
        FakeEntry(age_days=0, watermark=569),  # type: ignore[arg-type]
        production=lambda: report(0.95, 500, psi=0.05),
    )
    moved = check_triggers(
        spec,
        FakeEntry(age_days=0, watermark=569),  # type: ignore[arg-type]
        production=lambda: report(0.95, 500, psi=0.6),
    )
    assert not fired(calm, "drift") and fired(moved, "drift")


def test_drift_does_not_fire_on_too_few_served_inputs(spec: Spec) -> None:
    few = report(0.95, 500, psi=1.5)
    few = replace(few, drift=(replace(few.drift[0], served_rows=6),))
    checks = check_triggers(
        spec,
        FakeEntry(age_days=0, watermark=569),  # type: ignore[arg-type]
        production=lambda: few,
    )
    drift = next(c for c in checks if c.name == "drift")
    assert not drift.fired
    assert drift.detail.startswith("too few rows for drift (6 < 100)")
    assert drift.detail.endswith(": not judged")
