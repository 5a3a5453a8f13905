"""The drift and metric triggers fired end to end: a released adaptive project served by
the real `mlcycle serve`, predictions and feedback over HTTP, then `mlcycle update --once`.

One server for the module. The spec serves the newest gated generation (`selector:
latest`) and retrains on every row (`update.data: all`), so each test works on whatever
generation is current when it starts: the previous test's update published the next
one, and the engine swaps it in by itself. The figures the triggers decide on are
computed here again from what was served, by code of this module (PSI over the deciles
of the training values) and by scikit-learn's own scorer (roc_auc).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle import api
from tests.deploy.test_deploy_cli import free_port, request, wait_ready
from tests.spec.helpers import cli

DRIFT_LIMIT = 0.25
SERVED = 120  # drift is judged over >= 100 served inputs (MIN_DRIFT_ROWS)


@dataclass(frozen=True)
class Live:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def live(_released_adaptive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("triggers") / "live"
    shutil.copytree(_released_adaptive, root, symlinks=True)
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    for old, new in (
        ("    new_rows: 100", f"    new_rows: 100\n    drift: {DRIFT_LIMIT}"),
        ("  data: increment", "  data: all"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    # The newest gated generation answers every request (not a bandit's choice).
    text, count = re.subn(
        r"    kind: epsilon-greedy.*?\n  serve:", "    kind: latest\n  serve:", text, flags=re.S
    )
    assert count == 1
    spec.write_text(text)
    # Triggers, update data and serving are no part of the release's recipe.
    subprocess.run(["git", "commit", "-qam", "drift trigger; serve latest"], cwd=root, check=True)
    deployed = cli("deploy", cwd=root)
    assert deployed.code == 0, deployed.output
    port = free_port()
    log = root.parent / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port)],
            cwd=root,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(port, process, log)
        yield Live(root, port, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert "Traceback" not in log.read_text()


def events(root: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(root / "data" / "events.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY seq")]


def features(live: Live) -> list[str]:
    return [f["name"] for f in request(live.port, "GET", "/v1/model")[1]["features"]]


def serving_current(live: Live) -> tuple[str, int]:
    """The current model, once the engine serves it (it swaps a new generation in itself)."""
    current = api.models(live.root).current
    assert current is not None and current.generation is not None
    deadline = time.monotonic() + 60
    while True:
        model = request(live.port, "GET", "/v1/model")[1]
        if (model["release"], model["generation"]) == (current.release, current.generation):
            return str(current), current.generation
        assert time.monotonic() < deadline, f"still serving {model}:\n{live.log.read_text()}"
        time.sleep(0.1)


def predict(live: Live, instances: list[dict[str, float]], generation: int) -> list[str]:
    """Serve `instances` in requests of 20; the ids, once the engine logged them all."""
    ids: list[str] = []
    for start in range(0, len(instances), 20):
        status, answer = request(
            live.port, "POST", "/v1/predict", {"instances": instances[start : start + 20]}
        )
        assert status == 200, answer
        assert answer["model"]["generation"] == generation
        ids += answer["ids"]
    deadline = time.monotonic() + 60
    while logged(live.root, ids) < len(ids):  # the log is written in the background
        assert time.monotonic() < deadline, live.log.read_text()
        time.sleep(0.1)
    return ids


def logged(root: Path, ids: Sequence[str]) -> int:
    marks = ", ".join("?" for _ in ids)
    with sqlite3.connect(root / ".mlcycle" / "store.db") as db:
        query = f"SELECT count(*) FROM predictions WHERE id IN ({marks})"
        return int(db.execute(query, list(ids)).fetchone()[0])


def psi(training: Sequence[float], served: Sequence[float]) -> float:
    """PSI = Σ (a − e) · ln(a / e) over the deciles of the training values (bins [lo, hi),
    open at both ends; shares floored at 1e-4), written out here, not imported."""
    inner = sorted(set(np.quantile(np.asarray(training, dtype=float), np.linspace(0, 1, 11))))
    inner = inner[1:-1]

    def shares(values: Sequence[float]) -> list[float]:
        counts = [0] * (len(inner) + 1)
        for v in values:
            counts[bisect.bisect_right(inner, v)] += 1
        return [max(c / len(values), 1e-4) for c in counts]

    expected, actual = shares(training), shares(served)
    return sum((a - e) * math.log(a / e) for a, e in zip(actual, expected, strict=True))


def worst_psi(rows: list[dict[str, Any]], served: list[dict[str, float]]) -> tuple[str, float]:
    figures = {name: psi([r[name] for r in rows], [s[name] for s in served]) for name in served[0]}
    return max(figures.items(), key=lambda item: item[1])


def update(live: Live) -> tuple[str, dict[str, Any]]:
    """`mlcycle update --once`: what it printed, and the new entry's record of why."""
    before = {str(e.ref) for e in api.models(live.root).entries}
    ran = cli("update", "--once", cwd=live.root)
    assert ran.code == 0, ran.output
    (new,) = [e for e in api.models(live.root).entries if str(e.ref) not in before]
    return " ".join(ran.stdout.split()), {"ref": str(new.ref), **new.extra["update"]}


def spread(rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, float]]:
    """SERVED training rows from across the table (every 4th), features only."""
    return [{n: float(r[n]) for n in names} for r in rows[::4][:SERVED]]


def test_served_inputs_that_drift_fire_the_drift_trigger(live: Live) -> None:
    rows = events(live.root)
    names = features(live)
    current, generation = serving_current(live)
    # One feature moves far above anything training saw; the others are training's own.
    moved = names[0]
    top = max(float(r[moved]) for r in rows)
    served = [{**s, moved: 2 * top + i} for i, s in enumerate(spread(rows, names))]
    predict(live, served, generation)
    feature, expected = worst_psi(rows, served)
    assert feature == moved and expected > DRIFT_LIMIT

    printed, record = update(live)
    detail = (
        f"largest PSI {expected:.3f} on {moved} over {SERVED} served inputs (limit {DRIFT_LIMIT:g})"
    )
    assert f"trained {record['ref']} (drift: {detail}) on 569 rows (all)" in printed
    assert f"published {record['ref']} as the current model" in printed
    (fired,) = record["reason"]  # only the drift trigger fired
    assert (fired["trigger"], fired["fired"], fired["detail"]) == ("drift", True, detail)
    assert fired["value"] == pytest.approx(expected, rel=1e-12)
    assert fired["threshold"] == DRIFT_LIMIT
    assert record["forced"] is False
    assert str(api.models(live.root).current) == record["ref"] != current


def test_outcomes_that_make_the_metric_fall_fire_the_metric_trigger(live: Live) -> None:
    from sklearn.metrics import roc_auc_score

    rows = events(live.root)
    names = features(live)
    current, generation = serving_current(live)
    served = spread(rows, names)  # inputs as in training: no drift
    ids = predict(live, served, generation)
    # Every outcome the opposite of the truth: the model in service looks terrible.
    truth = [int(r["malignant"]) for r in rows[::4][:SERVED]]
    outcomes = [1 - t for t in truth]
    status, report = request(
        live.port,
        "POST",
        "/v1/feedback",
        [{"id": i, "outcome": o} for i, o in zip(ids, outcomes, strict=True)],
    )
    assert status == 200 and report["accepted"] == ids, report
    # roc_auc by scikit-learn, over the probabilities the engine logged for these ids.
    marks = ", ".join("?" for _ in ids)
    with sqlite3.connect(live.root / ".mlcycle" / "store.db") as db:
        logged_p = dict(
            db.execute(f"SELECT id, probabilities FROM predictions WHERE id IN ({marks})", ids)
        )
    scores = [json.loads(logged_p[i])[1] for i in ids]
    expected_auc = float(roc_auc_score(outcomes, scores))
    assert expected_auc < 0.9
    feature, calm = worst_psi(rows, served)
    assert calm < DRIFT_LIMIT

    printed, record = update(live)
    detail = f"production roc_auc {expected_auc:.4f} on {SERVED} outcomes (meets 'roc_auc < 0.9')"
    assert f"trained {record['ref']} (metric: {detail}) on 569 rows (all)" in printed
    assert f"published {record['ref']} as the current model" in printed
    (fired,) = record["reason"]  # only the metric trigger fired: the inputs did not drift
    assert (fired["trigger"], fired["fired"], fired["detail"]) == ("metric", True, detail)
    assert fired["value"] == pytest.approx(expected_auc, rel=1e-12)
    assert fired["threshold"] == "roc_auc < 0.9"
    # The drift trigger judged the same served inputs and found them calm.
    drift_row = f"largest PSI {calm:.3f} on {feature} over {SERVED} served inputs"
    assert drift_row in printed
    assert str(api.models(live.root).current) == record["ref"] != current
