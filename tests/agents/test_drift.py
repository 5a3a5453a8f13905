"""Drift over categorical and missing values (issue 13.4), in process on a real registry."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mlcycle import api
from mlcycle.agents import procure
from mlcycle.agents.production import measure_drift
from mlcycle.registry import open_registry
from mlcycle.spec import load_spec
from mlcycle.store.predictions import JoinedRow, PredictionRecord, PredictionStore
from tests.spec.helpers import spec_text, write_spec

SITES = ("east", "west", "north")

BODY = """\
data:
  source: {path: d.csv, ordinal: ts}
  label: y
model:
  task: classification
  pipeline:
    - sklearn.preprocessing.OneHotEncoder: {handle_unknown: ignore}
    - sklearn.linear_model.LogisticRegression
evaluation:
  metrics: [accuracy]
  gate: ["accuracy >= 0.5"]
store:
  url: sqlite:///store.db
"""


def site_project(tmp_path: Path) -> Path:
    """A project whose feature `site` is text; its first release registered as current."""
    rng = np.random.default_rng(0)
    lines = ["ts,site,level,y"]
    for i in range(300):
        site = SITES[i % 3]
        lines.append(f"{i},{site},{int(rng.integers(0, 4))},{int(site == 'east')}")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    spec = load_spec(write_spec(tmp_path, spec_text(BODY)))
    procure(spec, open_registry(spec), release="0.1.0", make_current=True)
    return tmp_path


def serve(root: Path, inputs: list[dict[str, object]]) -> None:
    store = PredictionStore(f"sqlite:///{root / 'store.db'}")
    now = time.time()
    store.log_predictions(
        [
            PredictionRecord(
                id=f"p{i}",
                model="t",
                release="0.1.0",
                generation=1,
                created_at=now - len(inputs) + i,
                inputs=row,
                prediction=0,
                probabilities=[1.0, 0.0],
            )
            for i, row in enumerate(inputs)
        ]
    )
    store.close()


def test_text_features_drift_by_category_frequency(tmp_path: Path) -> None:
    root = site_project(tmp_path)
    # Served traffic comes from one site only, and a site training never saw.
    serve(root, [{"site": "east" if i % 2 else "south", "level": i % 4} for i in range(200)])
    report = api.evaluate_production(root, record=False)
    psi = report.drift[0].psi
    # Training: a third each of east, west, north; served: half east, half unseen.
    third, floor = 1 / 3, 1e-4
    expected = (
        (0.5 - third) * np.log(0.5 / third)  # east
        + 2 * (floor - third) * np.log(floor / third)  # west, north: gone
        + (0.5 - floor) * np.log(0.5 / floor)  # (unseen): south
    )
    assert psi["site"] == pytest.approx(expected, rel=1e-6)
    assert psi["level"] < 0.1  # numbers in the same range as training: stable


def test_missing_values_are_a_bucket_of_their_own() -> None:
    import pandas as pd

    reference = pd.DataFrame({"site": ["east", "west"] * 50, "x": [float(i) for i in range(100)]})
    same = [{"site": "east" if i % 2 else "west", "x": float(i)} for i in range(100)]
    empty = [{"site": None, "x": None} for _ in range(50)] + same[:50]

    def rows(inputs: list[dict[str, object]]) -> list[JoinedRow]:
        return [
            JoinedRow(
                id=str(i),
                model="t",
                release="0.1.0",
                generation=1,
                created_at=0.0,
                inputs=x,
                prediction=0,
                probabilities=None,
            )
            for i, x in enumerate(inputs)
        ]

    stable = measure_drift("0.1.0/1", reference, rows(same)).psi
    assert stable == {"site": pytest.approx(0.0, abs=1e-9), "x": pytest.approx(0.0, abs=1e-9)}
    drifted = measure_drift("0.1.0/1", reference, rows(empty)).psi
    # Half of the served values are missing, a bucket training left empty; the other
    # half is a quarter each of east and west (training: half each).
    half_missing = (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    assert drifted["site"] == pytest.approx(half_missing + 2 * 0.25 * np.log(2), rel=1e-9)
    assert drifted["x"] > half_missing  # and the present half is from the lower half only


def test_a_numeric_feature_served_as_text_or_nan_drifts_into_its_own_buckets() -> None:
    import pandas as pd

    reference = pd.DataFrame({"x": [float(i) for i in range(100)]})
    # Numbers sent as JSON text are numbers; text that is no number is a category training
    # never saw; NaN is missing. The numbers: every other training value, 5 per decile.
    served: list[object] = ["n/a"] * 40 + [float("nan")] * 10
    served += [str(float(i)) if i % 4 else float(i) for i in range(0, 100, 2)]
    rows = [
        JoinedRow(
            id=str(i),
            model="t",
            release="0.1.0",
            generation=1,
            created_at=0.0,
            inputs={"x": x},
            prediction=0,
            probabilities=None,
        )
        for i, x in enumerate(served)
    ]
    floor = 1e-4
    expected = (
        10 * (0.05 - 0.1) * np.log(0.05 / 0.1)  # the deciles, at half their share
        + (0.1 - floor) * np.log(0.1 / floor)  # missing
        + (0.4 - floor) * np.log(0.4 / floor)  # unseen
    )
    assert measure_drift("0.1.0/1", reference, rows).psi == {"x": pytest.approx(expected, rel=1e-9)}


def test_drift_is_not_judged_on_too_few_served_inputs(tmp_path: Path) -> None:
    """The PSI of six inputs is mostly sampling noise (see MIN_DRIFT_ROWS): not judged."""
    from mlcycle.agents.production import MIN_DRIFT_ROWS
    from tests.learn.conftest import mlcycle

    root = site_project(tmp_path)
    serve(root, [{"site": SITES[i % 3], "level": i % 4} for i in range(6)])
    drift = api.evaluate_production(root, record=False).drift[0]
    assert drift.served_rows == 6 and set(drift.psi) == {"site", "level"}  # kept in --json
    assert drift.worst is None
    assert drift.note == f"too few rows for drift (6 < {MIN_DRIFT_ROWS})"
    assert drift.as_dict()["note"] == drift.note and drift.as_dict()["worst"] is None
    shown = mlcycle("evaluate", "--production", cwd=root)
    assert shown.code == 0, shown.err
    assert f"too few rows for drift (6 < {MIN_DRIFT_ROWS})" in " ".join(shown.err.split())

    # Ids p0..p99: the first six are those already logged.
    serve(root, [{"site": SITES[i % 3], "level": i % 4} for i in range(MIN_DRIFT_ROWS)])
    judged = api.evaluate_production(root, record=False).drift[0]
    assert judged.note is None and judged.worst is not None
