"""The prediction store on real SQLite files and PostgreSQL databases, and the log writer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle.errors import ServingError
from mlcycle.serve.ids import IdGenerator, is_wellformed, issued_at
from mlcycle.store.log import PredictionLog
from mlcycle.store.predictions import PredictionRecord, PredictionStore


def _record(pid: str, created_at: float = 100.0, **changes: object) -> PredictionRecord:
    fields: dict[str, object] = {
        "id": pid,
        "model": "churn",
        "release": "1.0.0",
        "generation": 1,
        "created_at": created_at,
        "inputs": {"a": 1.5, "plan": "gold"},
        "prediction": 1,
        "probabilities": [0.25, 0.75],
    }
    fields.update(changes)
    return PredictionRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionStore]:
    """An empty store on a SQLite file, or on a database of its own on a real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'deep' / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = PredictionStore(url)
    try:
        yield opened
    finally:
        opened.close()


def test_outcomes_are_accepted_unknown_or_duplicate(store: PredictionStore) -> None:
    store.log_predictions([_record("p1"), _record("p2"), _record("p3")])

    first = store.record_outcomes([("p1", 1), ("nope", 0), ("p2", 0), ("p2", 1)])
    assert first.accepted == ("p1", "p2")
    assert first.unknown == ("nope",)
    assert first.duplicate == ("p2",)
    assert not first.ok

    second = store.record_outcomes([("p1", 0), ("p3", 1)])
    assert second.accepted == ("p3",)
    assert second.duplicate == ("p1",)
    assert second.as_dict() == {
        "ok": False,
        "accepted": ["p3"],
        "unknown": [],
        "duplicate": ["p1"],
    }


def test_joined_rows_carry_prediction_and_first_outcome(store: PredictionStore) -> None:
    store.log_predictions([_record("p1", 10.0), _record("p2", 20.0, release="2.0.0")])
    store.record_outcomes([("p2", "yes")])
    store.record_outcomes([("p2", "no")])

    joined = store.joined()
    assert [(r.id, r.outcome) for r in joined] == [("p2", "yes")]
    row = joined[0]
    assert row.inputs == {"a": 1.5, "plan": "gold"}
    assert row.prediction == 1 and row.probabilities == [0.25, 0.75]
    assert row.release == "2.0.0" and row.recorded_at is not None

    everything = store.joined(with_outcome=False)
    assert [(r.id, r.outcome) for r in everything] == [("p1", None), ("p2", "yes")]
    assert [r.id for r in store.joined(with_outcome=False, since=15.0)] == ["p2"]
    assert [r.id for r in store.joined(with_outcome=False, until=15.0)] == ["p1"]
    assert store.joined(release="1.0.0") == []
    assert store.counts() == store.counts(model="churn")
    assert (store.counts().predictions, store.counts().outcomes) == (2, 1)
    assert store.counts(release="1.0.0").outcomes == 0


def test_a_repeated_prediction_id_is_written_once(store: PredictionStore) -> None:
    assert store.log_predictions([_record("p1")]) == 1
    assert store.log_predictions([_record("p1"), _record("p2")]) == 1
    assert store.counts().predictions == 2


def test_an_unusable_url_is_a_serving_error(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="cannot open the prediction store"):
        PredictionStore("nosuchdialect://x")


def test_the_log_writer_process_writes_what_was_put(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    PredictionStore(url).close()
    log = PredictionLog(url, interval=0.05)
    log.start()
    try:
        index = log.register(1, name="m", release="1.0.0", generation=2, features=["a", "b"])
        ids = IdGenerator().take(3)
        rows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        log.put(index, ids[:2], rows[:2], np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), 5.0)
        log.put(index, ids[2:], rows[2:], np.array(["x"], dtype=object), None, 6.0)
        assert log.flush(timeout=30)
        store = PredictionStore(url)
        rows_written = store.joined(with_outcome=False)
        assert [r.id for r in rows_written] == ids
        assert rows_written[0].inputs == {"a": 1.0, "b": 2.0}
        assert rows_written[1].probabilities == [0.2, 0.8]
        assert rows_written[2].prediction == "x" and rows_written[2].probabilities is None
        assert rows_written[0].generation == 2
        assert log.written == 3
    finally:
        log.close(timeout=30)
    assert log.dropped == 0


def test_two_processes_write_to_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    PredictionStore(url).close()
    logs = [PredictionLog(url, interval=0.01) for _ in range(2)]
    generator = IdGenerator()
    issued = []
    for log in logs:
        log.start()
    try:
        for _ in range(50):
            for log in logs:
                index = log.register(1, name="m", release=None, generation=None, features=["a"])
                ids = generator.take(20)
                issued += ids
                log.put(index, ids, np.ones((20, 1)), np.zeros(20, dtype=np.int64), None, 1.0)
    finally:
        for log in logs:
            log.close(timeout=60)
    assert sum(log.written for log in logs) == 2000
    assert PredictionStore(url).counts().predictions == 2000


def test_ids_are_unique_ordered_and_carry_their_time() -> None:
    generator = IdGenerator()
    before = time.time()
    ids = generator.take(1000) + generator.take(1)
    assert len(set(ids)) == len(ids)
    assert all(is_wellformed(i) for i in ids)
    stamp = issued_at(ids[0])
    assert stamp is not None and before - 1 <= stamp <= time.time() + 1
    assert IdGenerator().take(1)[0] != ids[0]
    assert issued_at("not-an-id") is None
    time.sleep(0.005)
    assert generator.take(1)[0] > max(ids)


def test_a_full_log_queue_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'store.db'}", max_pending=1)
    index = log.register(1, name="m", release=None, generation=None, features=["a"])
    rows, labels = np.ones((3, 1)), np.zeros(3, dtype=np.int64)
    assert log.put(index, ["a", "b", "c"], rows, labels, None, 1.0)
    assert not log.put(index, ["d", "e", "f"], rows, labels, None, 1.0)
    assert log.dropped == 3


def _started_log(tmp_path: Path) -> tuple[PredictionLog, int]:
    """A started log writer on a fresh SQLite store, and the index of its one model."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    PredictionStore(url).close()
    log = PredictionLog(url, interval=0.05)
    log.start()
    index = log.register(1, name="m", release="1.0.0", generation=1, features=["a"])
    return log, index


def test_predictions_the_store_refuses_are_dropped_and_counted(tmp_path: Path) -> None:
    import sqlite3

    log, index = _started_log(tmp_path)
    try:
        assert log.flush(timeout=30)  # the writer has opened the store
        with sqlite3.connect(tmp_path / "store.db") as db:
            db.execute("ALTER TABLE predictions RENAME TO taken_away")
        log.put(index, ["a", "b"], np.ones((2, 1)), np.zeros(2, dtype=np.int64), None, 1.0)
        assert log.flush(timeout=30)  # answered after three attempts
        assert (log.written, log.dropped) == (0, 2)
    finally:
        log.close(timeout=30)


def test_a_writer_that_died_is_reported_and_close_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, index = _started_log(tmp_path)
    process = log._process
    process.kill()  # the OOM killer, say
    process.join(30)
    log.put(index, ["a"], np.ones((1, 1)), np.zeros(1, dtype=np.int64), None, 1.0)
    assert not log.flush(timeout=30)
    log.close(timeout=30)
    assert "the prediction log writer is gone" in caplog.text
    assert log._process is None


def test_close_stops_a_writer_that_does_not_answer(tmp_path: Path) -> None:
    # A writer stuck in the store (a lock wait, a dead network) ignores SIGTERM like every
    # writer does (the engine decides when it stops); close must still end it, or the
    # engine's exit waits on it forever (multiprocessing joins its children at exit).
    import os
    import signal

    log, _ = _started_log(tmp_path)
    process = log._process
    os.kill(process.pid, signal.SIGSTOP)
    try:
        log.close(timeout=0.2)
        assert not process.is_alive()
    finally:
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
            process.join(30)
