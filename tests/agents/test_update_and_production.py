"""The training agent (`mlcycle update`) and production evaluation on real projects."""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlcycle.agents.production import population_stability_index
from tests.learn.conftest import mlcycle


@pytest.fixture
def released(released_project: Callable[..., Path]) -> Callable[..., Path]:
    """A copy of a project released once per session (tests/conftest.py)."""

    def make(pattern: str = "adaptive", name: str = "live") -> Path:
        return released_project(pattern, name)

    return make


def append_rows(root: Path, count: int, *, flip: bool = False) -> None:
    """New events: copies of the first rows with fresh ids and ordinals.

    `flip`: with the opposite label, a batch no model can learn from.
    """
    with sqlite3.connect(root / "data" / "events.db") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(events)")]
        top_seq, top_id = db.execute("SELECT MAX(seq), MAX(id) FROM events").fetchone()
        rows = db.execute(f"SELECT * FROM events ORDER BY seq LIMIT {count}").fetchall()
        for i, row in enumerate(rows, 1):
            values = dict(zip(columns, row, strict=True))
            values["seq"], values["id"] = top_seq + i, top_id + i
            if flip:
                values["malignant"] = 1 - values["malignant"]
            marks = ", ".join("?" for _ in columns)
            db.execute(
                f"INSERT INTO events ({', '.join(columns)}) VALUES ({marks})",
                [values[c] for c in columns],
            )


def test_update_waits_for_a_trigger_then_trains_on_the_increment(
    released: Callable[..., Path],
) -> None:
    root = released()
    idle = mlcycle("update", "--json", cwd=root)
    assert idle.code == 0, idle.err
    data = idle.json()
    assert data["retrained"] is False
    fired = {t["trigger"]: t for t in data["triggers"]}
    assert fired["new_rows"]["fired"] is False and fired["new_rows"]["value"] == 0
    assert fired["every"]["fired"] is False
    assert "no production roc_auc" in fired["metric"]["detail"]
    assert data["reason"] == "no trigger fired"

    append_rows(root, 150)
    busy = mlcycle("update", "--json", cwd=root)
    assert busy.code == 0, busy.err
    data = busy.json()
    assert data["retrained"] is True
    assert data["reason"].startswith("new_rows: 150 new rows")
    result = data["result"]
    assert result["ref"] == "0.1.0/2"
    assert result["data"]["rows"] == 150  # exactly the increment
    assert result["data"]["window"]["lower"] == 569
    assert result["data"]["window"]["lower_inclusive"] is False
    assert result["training"]["warm_started"] is True
    # Judged against 0.1.0/1 on the same 30 held-out rows of the increment.
    assert result["comparison"]["same_rows"] is True and result["comparison"]["rows"] == 30
    models = mlcycle("models", "--json", cwd=root).json()
    assert models["current"] == "0.1.0/2"

    # The next run sees no new rows after the new watermark.
    again = mlcycle("update", "--json", cwd=root).json()
    assert again["retrained"] is False
    assert {t["trigger"]: t for t in again["triggers"]}["new_rows"]["value"] == 0

    # (--force without new rows retrains on every row: tests/agents/test_update_force.py.)

    # A batch with every label wrong: the gate keeps its model out, 0.1.0/2 keeps serving.
    append_rows(root, 150, flip=True)
    rejected = mlcycle("update", cwd=root)
    assert rejected.code == 3, rejected.err
    assert "roc_auc >= 0.9 " in rejected.out and "FAIL by" in rejected.out
    models = mlcycle("models", "--json", cwd=root).json()
    assert models["current"] == "0.1.0/2"
    assert [(e["ref"], e["status"]) for e in models["entries"]][-1] == ("0.1.0/3", "rejected")

    # The trigger still fires, but the same rows would give the same rejected model:
    # the agent waits for new rows instead of adding 0.1.0/4, 0.1.0/5, ... under cron.
    waiting = mlcycle("update", "--json", cwd=root)
    assert waiting.code == 0, waiting.err
    data = waiting.json()
    assert data["retrained"] is False
    assert data["waiting_since_rejection"] == "0.1.0/3"
    assert data["reason"].startswith("waiting for new rows since rejection of 0.1.0/3")
    human = mlcycle("update", cwd=root)
    assert human.code == 0 and "waiting for new rows since rejection of 0.1.0/3" in human.out
    assert len(mlcycle("models", "--json", cwd=root).json()["entries"]) == len(models["entries"])

    # A looser gate is another model policy, the release's: update refuses it.
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("roc_auc >= 0.9\n", "roc_auc >= 0.01\n"))
    refused = mlcycle("update", "--force", cwd=root)
    assert refused.code == 2, refused.out + refused.err
    assert "the spec changes evaluation.gate since release 0.1.0" in refused.err
    assert "this change needs `mlcycle release`" in refused.err
    assert len(mlcycle("models", "--json", cwd=root).json()["entries"]) == len(models["entries"])

    # --force trains on the same rows again, and says what became of it.
    spec.write_text(spec.read_text().replace("roc_auc >= 0.01\n", "roc_auc >= 0.9\n"))
    human = mlcycle("update", "--force", cwd=root)
    assert human.code == 3, human.err
    assert "kept as rejected 0.1.0/4 for inspection" in human.err
    assert mlcycle("models", "--json", cwd=root).json()["current"] == "0.1.0/2"


def test_update_is_refused_for_release_forced_lifecycles(
    released: Callable[..., Path],
) -> None:
    root = released("open", "steady")
    result = mlcycle("update", cwd=root)
    assert result.code == 2
    assert "release-forced" in result.err and "mlcycle release" in result.err


def test_production_evaluation_joins_predictions_with_outcomes(
    released: Callable[..., Path],
) -> None:
    from mlcycle.store.predictions import PredictionRecord, PredictionStore

    root = released()
    empty = mlcycle("evaluate", "--production", cwd=root)
    assert empty.code == 0, empty.err
    assert "no served predictions" in empty.out

    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}")
    rng = np.random.default_rng(0)
    # Two whole hours back: predictions every 30 s fill the first hour and 2/3 of the next.
    base = math.floor(time.time() / 3600) * 3600 - 3 * 3600
    records, outcomes = [], []
    for i in range(200):
        truth = int(rng.integers(0, 2))
        right = i % 10 != 0  # 90% correct
        prediction = truth if right else 1 - truth
        p1 = 0.8 if prediction == 1 else 0.2
        records.append(
            PredictionRecord(
                id=f"p{i}",
                model="live",
                release="0.1.0",
                generation=1,
                created_at=base + i * 30,
                inputs={"mean_radius": 10.0 + i % 7},
                prediction=prediction,
                probabilities=[1 - p1, p1],
            )
        )
        outcomes.append((f"p{i}", truth))
    store.log_predictions(records)
    store.record_outcomes(outcomes[:150])
    store.close()

    result = mlcycle("evaluate", "--production", "--window", "1h", "--json", cwd=root)
    assert result.code == 0, result.err
    report = result.json()
    overall = report["overall"][0]
    assert overall["model"] == "0.1.0/1"
    assert overall["predictions"] == 200 and overall["outcomes"] == 150
    assert overall["metrics"]["accuracy"] == pytest.approx(0.9, abs=0.01)
    windows = [(w["start"], w["predictions"], w["outcomes"]) for w in report["windows"]]
    assert windows == [(base, 120, 120), (base + 3600, 80, 30)]
    drift = report["drift"][0]
    assert drift["served_rows"] == 200
    # PSI by hand: the deciles of the training mean_radius, served shares against them.
    with sqlite3.connect(root / "data" / "events.db") as db:
        trained = np.array([r[0] for r in db.execute("SELECT mean_radius FROM events")])
    edges = np.unique(np.quantile(trained, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    served = np.array([10.0 + i % 7 for i in range(200)])
    e = np.clip(np.histogram(trained, edges)[0] / trained.size, 1e-4, None)
    a = np.clip(np.histogram(served, edges)[0] / served.size, 1e-4, None)
    assert drift["psi"]["mean_radius"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert set(drift["psi"]) == {"mean_radius"}  # the only feature the requests carried
    assert drift["worst"]["feature"] == "mean_radius"

    with sqlite3.connect(root / ".mlcycle" / "store.db") as db:
        stored = db.execute(
            "SELECT COUNT(*) FROM production_metrics WHERE model = '0.1.0/1'"
        ).fetchone()[0]
    assert stored == 3 * 2  # overall and two windows, roc_auc and accuracy each


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, 5000)
    assert population_stability_index(reference, rng.normal(0, 1, 5000)) < 0.02
    assert population_stability_index(reference, rng.normal(1.5, 1, 5000)) > 0.5


def _served(root: Path, count: int, right_every: int, prefix: str = "c") -> None:
    """`count` served predictions of 0.1.0/1 with outcomes; one in `right_every` is right."""
    from mlcycle.store.predictions import PredictionRecord, PredictionStore

    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}")
    rng = np.random.default_rng(1)
    records, outcomes = [], []
    for i in range(count):
        truth = int(rng.integers(0, 2))
        prediction = truth if i % right_every == 0 else 1 - truth
        p1 = 0.9 if prediction == 1 else 0.1
        records.append(
            PredictionRecord(
                id=f"{prefix}{i}",
                model="live",
                release="0.1.0",
                generation=1,
                created_at=time.time() - 60 + i * 0.1,
                inputs={"mean_radius": 10.0},
                prediction=prediction,
                probabilities=[1 - p1, p1],
            )
        )
        outcomes.append((f"{prefix}{i}", truth))
    store.log_predictions(records)
    store.record_outcomes(outcomes)
    store.close()


def test_production_check_fails_with_exit_3_when_served_metrics_miss_the_gate(
    released: Callable[..., Path],
) -> None:
    root = released()
    _served(root, 10, right_every=15)  # too few outcomes to judge: not a failure
    few = mlcycle("evaluate", "--production", "--check", cwd=root)
    assert few.code == 0, few.err
    assert "not judged (fewer than 30 outcomes): 0.1.0/1" in few.err

    _served(root, 60, right_every=15, prefix="d")  # 1 in 15 right: roc_auc and accuracy near 0.07
    result = mlcycle("evaluate", "--production", "--check", cwd=root)
    assert result.code == 3, result.out + result.err
    assert "gate on production metrics of 0.1.0/1" in result.out
    # The figure is scikit-learn's roc_auc over the same 70 served rows with outcomes.
    from sklearn.metrics import roc_auc_score

    from mlcycle.store.predictions import PredictionStore

    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}")
    joined = store.joined()
    store.close()
    assert len(joined) == 70
    roc_auc = roc_auc_score([r.outcome for r in joined], [r.probabilities[1] for r in joined])
    row = rf"roc_auc >= 0\.9\W+{roc_auc:.4f}\W+0\.9000\W+FAIL by {0.9 - roc_auc:.4f}"
    assert re.search(row, result.out), result.out
    assert "Traceback" not in result.err

    document = mlcycle("evaluate", "--production", "--check", "--json", cwd=root)
    assert document.code == 3
    gate = document.json()["gate"]
    assert gate["passed"] is False
    checks = {c["condition"]: c for c in gate["models"]["0.1.0/1"]["checks"]}
    assert checks["roc_auc >= 0.9"]["passed"] is False
    assert checks["roc_auc >= 0.9"]["value"] == pytest.approx(roc_auc, rel=1e-12)
    # The relative condition compares production with the model's registered figure.
    assert checks["roc_auc >= baseline - 0.02"]["baseline"] is not None


def test_production_check_passes_when_served_metrics_hold(
    released: Callable[..., Path],
) -> None:
    root = released()
    _served(root, 60, right_every=1)  # every prediction right
    result = mlcycle("evaluate", "--production", "--check", "--json", cwd=root)
    assert result.code == 0, result.err
    assert result.json()["gate"]["passed"] is True
