"""An adaptive project whose prediction store is a real PostgreSQL database, end to end:
two serving workers log to it, feedback lands in it, each worker's bandit counts every
outcome once from it, and the production evaluation reads it."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.test_deploy_cli import free_port, request, wait_ready
from tests.learn.conftest import mlcycle

pytestmark = pytest.mark.slow


def arm_evaluated(port: int) -> float:
    """Outcomes counted for the arms, as one worker's /metrics reports them."""
    status, text = request(port, "GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith("mlcycle_arm_evaluated_predictions{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_serving_feedback_and_evaluation_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    import sqlalchemy as sa

    root = tmp_path / "pg"
    assert mlcycle("init", "pg", "--pattern", "adaptive", "-d", root).code == 0
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    assert "url: sqlite:///.mlcycle/store.db" in text
    spec.write_text(text.replace("url: sqlite:///.mlcycle/store.db", f"url: {postgres_url}"))
    subprocess.run(["git", "commit", "-qam", "store on PostgreSQL"], cwd=root, check=True)
    assert mlcycle("validate", cwd=root).code == 0
    released = mlcycle("release", cwd=root)
    assert released.code == 0, released.err
    assert mlcycle("deploy", cwd=root).code == 0

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), "--workers", "2"],
            cwd=root,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(port, server, log)
        features = [f["name"] for f in request(port, "GET", "/v1/model")[1]["features"]]
        with sqlite3.connect(root / "data" / "events.db") as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM events ORDER BY seq LIMIT 60")]
        ids, feedback = [], []
        for start in range(0, 60, 6):  # several requests: both workers answer some
            part = rows[start : start + 6]
            status, answer = request(
                port,
                "POST",
                "/v1/predict",
                {"instances": [{f: r[f] for f in features} for r in part]},
            )
            assert status == 200, answer
            ids += answer["ids"]
            feedback += [
                {"id": pid, "outcome": int(r["malignant"])}
                for pid, r in zip(answer["ids"], part, strict=True)
            ]
        status, report = request(port, "POST", "/v1/feedback", feedback)
        assert status == 200 and report["accepted"] == ids, report

        # Every worker's bandit reads the totals from PostgreSQL: all 60 counted, once.
        deadline = time.monotonic() + 30
        while arm_evaluated(port) < 60:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert arm_evaluated(port) == 60
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert "Traceback" not in log.read_text()

    result = mlcycle("evaluate", "--production", "--json", cwd=root)
    assert result.code == 0, result.err
    overall = result.json()["overall"][0]
    assert overall["predictions"] == 60 and overall["outcomes"] == 60
    assert overall["metrics"]["accuracy"] > 0.8  # the true labels, joined in PostgreSQL

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT id, inputs FROM predictions")).all()
            outcomes = conn.execute(sa.text("SELECT count(*) FROM outcomes")).scalar()
    finally:
        engine.dispose()
    assert sorted(r.id for r in stored) == sorted(ids)
    assert set(json.loads(stored[0].inputs)) == set(features)
    assert outcomes == 60
