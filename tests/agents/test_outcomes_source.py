"""True outcomes from the spec's outcomes source, joined through the keys a request sends."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.store.predictions import PredictionStore
from tests.deploy.test_deploy_cli import free_port, request, wait_ready
from tests.learn.conftest import mlcycle


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The open template released and served (once for this module); yields (root, port)."""
    root = tmp_path_factory.mktemp("served") / "keyed"
    assert mlcycle("init", "keyed", "--pattern", "open", "-d", root).code == 0
    assert mlcycle("release", cwd=root).code == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcycle", "serve", "--port", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(port, process)
    try:
        yield root, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
def test_keys_join_outcomes_from_the_source(served: tuple[Path, int]) -> None:
    root, port = served
    features = [f["name"] for f in request(port, "GET", "/v1/model")[1]["features"]]
    with sqlite3.connect(root / "data" / "events.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM events ORDER BY seq LIMIT 60")]
    body = {
        "instances": [{f: r[f] for f in features} for r in rows],
        "keys": [r["id"] for r in rows],
    }
    status, answer = request(port, "POST", "/v1/predict", body)
    assert status == 200, answer
    # One prediction also gets feedback directly: the source must not count it twice.
    status, report = request(port, "POST", "/v1/feedback", {"id": answer["ids"][0], "outcome": 1})
    assert status == 200 and report["accepted"] == answer["ids"][:1]

    result = mlcycle("evaluate", "--production", "--json", cwd=root)
    assert result.code == 0, result.err
    data = result.json()
    assert data["imported_outcomes"] == 59
    overall = data["overall"][0]
    assert overall["predictions"] == 60 and overall["outcomes"] == 60
    # scikit-learn's accuracy on the same pairs: the source's outcome for every row but the
    # first, whose feedback (1) arrived first and stays.
    from sklearn.metrics import accuracy_score

    with sqlite3.connect(root / "data" / "events.db") as db:
        truth = dict(db.execute("SELECT id, outcome FROM outcomes"))
    expected = [1] + [truth[r["id"]] for r in rows[1:]]
    assert overall["metrics"]["accuracy"] == pytest.approx(
        accuracy_score(expected, answer["predictions"]), rel=1e-12
    )

    again = mlcycle("evaluate", "--production", "--json", cwd=root).json()
    assert again["imported_outcomes"] == 0  # nothing left to match


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("abc", "'keys' must be a list"),
        ([1, 2], "'keys' has 2 entries for 1 rows"),
        ([None], "keys[0] must be a string"),
        ([True], "keys[0] must be a string"),
        (["x" * 201], "keys[0] must be a string of 1 to 200"),
    ],
)
def test_bad_keys_are_a_400(served: tuple[Path, int], keys: object, message: str) -> None:
    _, port = served
    features = [f["name"] for f in request(port, "GET", "/v1/model")[1]["features"]]
    body = {"instances": [dict.fromkeys(features, 1.0)], "keys": keys}
    status, answer = request(port, "POST", "/v1/predict", body)
    assert status == 400
    assert message in answer["error"] if isinstance(answer, dict) else message in str(answer)


def test_an_older_store_gains_the_event_key_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE predictions (id VARCHAR(40) PRIMARY KEY, model VARCHAR(200) NOT NULL,"
            " release VARCHAR(100), generation INTEGER, created_at FLOAT NOT NULL,"
            " inputs TEXT NOT NULL, prediction TEXT NOT NULL, probabilities TEXT)"
        )
        db.execute("INSERT INTO predictions VALUES ('p1','m','1.0.0',1,1.0,'{}','0',NULL)")
    store = PredictionStore(f"sqlite:///{path}")
    try:
        assert store.unmatched_keys() == []
        assert len(store.joined(with_outcome=False)) == 1  # old rows still read
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(predictions)")]
    assert "event_key" in columns


def test_an_older_postgresql_store_gains_the_event_key_column(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE predictions (id VARCHAR(40) PRIMARY KEY, model VARCHAR(200) "
                    "NOT NULL, release VARCHAR(100), generation INTEGER, created_at FLOAT NOT "
                    "NULL, inputs TEXT NOT NULL, prediction TEXT NOT NULL, probabilities TEXT)"
                )
            )
            conn.execute(
                sa.text("INSERT INTO predictions VALUES ('p1','m','1.0.0',1,1.0,'{}','0',NULL)")
            )
        store = PredictionStore(postgres_url)
        try:
            assert store.unmatched_keys() == []
            assert len(store.joined(with_outcome=False)) == 1  # old rows still read
        finally:
            store.close()
        columns = [c["name"] for c in sa.inspect(engine).get_columns("predictions")]
        assert "event_key" in columns
    finally:
        engine.dispose()
