"""Retention of the prediction log (issue 10.6), on real SQLite files and PostgreSQL.

`store.retention`: by age, every prediction older than the window goes with its
outcome, and the ones younger stay (a prediction waiting for its outcome inside the
window is never lost); by rows, the oldest predictions that have their outcome go
first (with their shadows), and the ones still waiting go only when no age is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle.spec.model import Retention
from mlcycle.store.log import PredictionLog
from mlcycle.store.predictions import (
    ArmTotals,
    PredictionRecord,
    PredictionStore,
    shadow_id,
)

NOW = 1_000_000.0
DAY = 86_400


def _record(pid: str, created_at: float) -> PredictionRecord:
    return PredictionRecord(
        id=pid,
        model="churn",
        release="1.0.0",
        generation=1,
        created_at=created_at,
        inputs={"a": 1.0},
        prediction=1,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionStore]:
    """An empty store on a SQLite file, or on a database of its own on a real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = PredictionStore(url)
    try:
        yield opened
    finally:
        opened.close()


def _fill(store: PredictionStore) -> None:
    """Ten predictions a day apart (p0 oldest, 9.5 days ago); even ones have outcomes."""
    store.log_predictions([_record(f"p{i}", NOW - (9.5 - i) * DAY) for i in range(10)])
    store.record_outcomes([(f"p{i}", 1) for i in range(0, 10, 2)])


def _ids(store: PredictionStore) -> list[str]:
    return [r.id for r in store.joined(with_outcome=False)]


def test_by_age_old_rows_go_and_young_pending_ones_stay(store: PredictionStore) -> None:
    _fill(store)
    report = store.prune(Retention(age=5 * DAY), now=NOW)
    # p0..p4 are older than 5 days (p4: 5.5 days): gone, with their 3 outcomes.
    assert _ids(store) == ["p5", "p6", "p7", "p8", "p9"]
    assert (report.predictions, report.outcomes, report.kept_pending) == (5, 3, 0)
    assert [r.id for r in store.joined()] == ["p6", "p8"]
    assert store.prune(Retention(age=5 * DAY), now=NOW).predictions == 0


def test_by_rows_answered_ones_go_first_and_pending_ones_stay_in_the_window(
    store: PredictionStore,
) -> None:
    _fill(store)
    report = store.prune(Retention(age=30 * DAY, rows=4), now=NOW)
    # Every prediction is inside the 30-day window: the 5 with outcomes go, oldest first,
    # and the 5 still waiting for one stay, over the cap (and reported as such).
    assert _ids(store) == ["p1", "p3", "p5", "p7", "p9"]
    assert (report.predictions, report.outcomes, report.kept_pending) == (5, 5, 1)


def test_by_rows_only_the_oldest_answered_ones_go_when_that_is_enough(
    store: PredictionStore,
) -> None:
    _fill(store)
    report = store.prune(Retention(age=30 * DAY, rows=7), now=NOW)
    assert _ids(store) == ["p1", "p3", "p5", "p6", "p7", "p8", "p9"]
    assert (report.predictions, report.kept_pending) == (3, 0)


def test_by_rows_without_an_age_the_cap_holds(store: PredictionStore) -> None:
    _fill(store)
    report = store.prune(Retention(rows=3), now=NOW)
    # Answered ones first (all 5), then the oldest of those still waiting.
    assert _ids(store) == ["p5", "p7", "p9"]
    assert (report.predictions, report.kept_pending) == (7, 0)


def test_shadow_rows_go_with_their_prediction(store: PredictionStore) -> None:
    _fill(store)
    store.log_predictions(
        [_record(shadow_id(f"p{i}", 1), NOW - (9.5 - i) * DAY + 1) for i in range(10)]
    )
    report = store.prune(Retention(age=30 * DAY, rows=10), now=NOW)
    pending = [f"p{i}" for i in range(1, 10, 2)]
    assert set(_ids(store)) == {*pending, *(shadow_id(p, 1) for p in pending)}
    assert report.predictions == 10


def test_outcomes_the_bandit_has_not_counted_keep_their_predictions(
    store: PredictionStore,
) -> None:
    _fill(store)
    counted = store.joined()[:2]  # p0 and p2: the reward totals reach this far
    assert store.add_rewards(
        [ArmTotals("churn/1.0.0/1", "churn", "1.0.0", 1, 2, 2.0)],
        old=None,
        new=(float(counted[-1].recorded_at or 0), counted[-1].id),
    )
    # The oldest prediction, its outcome recorded after the cursor: not counted yet
    # (a selector's refresher will read it), so the rows limit does not take it.
    store.log_predictions([_record("late", NOW - 20 * DAY)])
    time.sleep(0.01)
    store.record_outcomes([("late", 0)])
    report = store.prune(Retention(age=30 * DAY, rows=3), now=NOW)
    # p0 and p2 were counted and go; p4, p6, p8 (recorded with p2, after it in the
    # cursor's order) and "late" were not, and stay.
    assert _ids(store) == ["late", "p1", *(f"p{i}" for i in range(3, 10))]
    assert (report.predictions, report.kept_pending) == (2, 6)


def test_nothing_is_pruned_without_a_policy(store: PredictionStore) -> None:
    _fill(store)
    assert store.prune(Retention(), now=NOW).predictions == 0
    assert len(_ids(store)) == 10


def test_the_log_writer_prunes_in_the_background(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seeded = PredictionStore(url)
    old = time.time() - 10 * DAY
    seeded.log_predictions([_record(f"old{i}", old) for i in range(50)])
    seeded.record_outcomes([("old0", 1)])
    log = PredictionLog(url, interval=0.05, retention=Retention(age=DAY), prune_every=0.2)
    log.start()
    try:
        index = log.register(1, name="churn", release="1.0.0", generation=1, features=["a"])
        rows = np.ones((3, 1))
        log.put(index, ["n1", "n2", "n3"], rows, np.array([1, 0, 1]), None, time.time())
        assert log.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_ids(seeded)) != 3:
            time.sleep(0.1)
        assert _ids(seeded) == ["n1", "n2", "n3"]
        assert seeded.counts().outcomes == 0
    finally:
        log.close()
        seeded.close()
