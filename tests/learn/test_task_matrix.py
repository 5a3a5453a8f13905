"""Every task, feature kind and kind of model code through the whole lifecycle (issue 13.5).

task (binary, multi-class, regression) × features (numeric, categorical strings,
missing values) × model code (built-in steps, a project transformer class, a project
function): each cell is a real project (git repo, CSV data, registry, store) taken
in-process through `mlcycle.api` along
`train → release → deploy → serve → feedback → evaluate --production → update → report`.
Serving runs the engine's ASGI app on the loader `serve_target` returns (what
`mlcycle serve` runs); the real-server and image paths are covered by
tests/serve/test_lifecycle.py, tests/learn/test_model_code.py and the scaffold tests.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle import api
from mlcycle.api.serving import serve_target
from mlcycle.serve.app import ServeOptions, create_app
from tests.conftest import build_file_tree
from tests.serve.test_app import _call

pytestmark = pytest.mark.slow  # about 15 s a cell

TASKS = ("binary", "multiclass", "regression")
FEATURES = ("numeric", "categorical", "missing")
CODE = ("builtin", "project-class", "project-function")

ROWS = 300
"""Rows at release; the update sees 120 more."""

SITES = ("east", "west", "north")

# The team's feature engineering: one class that learns (categories, means), one
# function that needs nothing learnt. Both take a DataFrame (training) or the engine's
# matrix of rows (serving), columns in feature order, strings and missing values included.
FEATURES_PY = '''"""The project's feature engineering."""

import math
import zlib

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def _is_number(value):
    return value is None or isinstance(value, (int, float, np.integer, np.floating))


class Encode(BaseEstimator, TransformerMixin):
    """Numbers: the value (missing: the training mean) and a missing flag; text: one-hot."""

    def __init__(self, flag_missing=True):
        self.flag_missing = flag_missing

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=object)
        self.kinds_ = []
        for j in range(X.shape[1]):
            column = X[:, j]
            if all(_is_number(v) for v in column):
                values = np.array([np.nan if v is None else v for v in column], dtype=float)
                self.kinds_.append(("number", float(np.nanmean(values))))
            else:
                self.kinds_.append(("text", sorted({str(v) for v in column if v is not None})))
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=object)
        out = []
        for j, (kind, learnt) in enumerate(self.kinds_):
            column = X[:, j]
            if kind == "number":
                values = np.array([np.nan if v is None else v for v in column], dtype=float)
                missing = np.isnan(values)
                out.append(np.where(missing, learnt, values))
                if self.flag_missing:
                    out.append(missing.astype(float))
            else:
                for category in learnt:
                    out.append(np.array([str(v) == category for v in column], dtype=float))
        return np.column_stack(out)


def encode(X):
    """Stateless: numbers (missing: 0, and a flag), text hashed into 6 buckets."""
    X = np.asarray(X, dtype=object)
    out = []
    for j in range(X.shape[1]):
        column = X[:, j]
        if all(_is_number(v) for v in column) and not all(v is None for v in column):
            values = np.array([np.nan if v is None else v for v in column], dtype=float)
            missing = np.isnan(values)
            out += [np.where(missing, 0.0, values), missing.astype(float)]
        else:
            buckets = [zlib.crc32(str(v).encode()) % 6 for v in column]
            out += [np.array([b == k for b in buckets], dtype=float) for k in range(6)]
    return np.column_stack(out)


def build_classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(encode), LogisticRegression(max_iter=1000))


def build_regressor():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(encode), Ridge())
'''


def _rows(task: str, features: str, count: int, start: int, rng: Any) -> list[dict[str, Any]]:
    """`count` cases whose label follows from their features (plus a little noise)."""
    rows = []
    for i in range(start, start + count):
        row: dict[str, Any] = {"ts": i, "id": 10_000 + i}
        if features == "categorical":
            site, level = SITES[int(rng.integers(0, 3))], int(rng.integers(0, 4))
            row |= {"site": site, "level": level}
            score = 2.0 * (site == "east") - 1.0 * (site == "north") + level - 1.5
            if rng.random() < 0.1:
                row["site"] = None  # text can be missing too (an empty CSV cell, JSON null)
        else:
            x1, x2 = float(rng.normal()), float(rng.normal())
            row |= {"x1": round(x1, 6), "x2": round(x2, 6)}
            score = 2.0 * x1 - x2
            if features == "missing":
                # A value missing in about one row in six, in each column.
                for name in ("x1", "x2"):
                    if rng.random() < 0.15:
                        row[name] = None
        noise = float(rng.normal(scale=0.3))
        if task == "binary":
            row["y"] = "yes" if score + noise > 0 else "no"
        elif task == "multiclass":
            row["y"] = "low" if score + noise < -1 else ("high" if score + noise > 1 else "mid")
        else:
            row["y"] = round(3.0 * score + 10.0 + noise, 6)
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]], header: bool = True) -> str:
    columns = list(rows[0])
    lines = [",".join(columns)] if header else []
    lines += [",".join("" if r[c] is None else str(r[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def _model(task: str, features: str, code: str) -> str:
    regression = task == "regression"
    if code == "project-function":
        build = "build_regressor" if regression else "build_classifier"
        return f"  code: [features.py]\n  entrypoint: features:{build}\n"
    final = (
        "    - sklearn.linear_model.Ridge\n"
        if regression
        else "    - sklearn.linear_model.LogisticRegression: {max_iter: 1000}\n"
    )
    if code == "project-class":
        return "  code: [features.py]\n  pipeline:\n    - features.Encode\n" + final
    prepare = {
        "numeric": "    - sklearn.preprocessing.StandardScaler\n",
        "categorical": "    - sklearn.preprocessing.OneHotEncoder: {handle_unknown: ignore}\n",
        "missing": "    - sklearn.impute.SimpleImputer\n"
        "    - sklearn.preprocessing.StandardScaler\n",
    }[features]
    return "  pipeline:\n" + prepare + final


METRICS = {
    "binary": ("[accuracy, roc_auc, f1_macro]", "accuracy >= 0.6"),
    "multiclass": ("[accuracy, f1_macro]", "accuracy >= 0.5"),
    "regression": ("[r2, neg_mean_absolute_error]", "r2 >= 0.3"),
}


def _spec(task: str, features: str, code: str) -> str:
    metrics, gate = METRICS[task]
    selector = "    kind: thompson\n    arms: 2\n    seed: 0\n"
    if task == "regression":
        selector += "    reward: {kind: error, scale: 5}\n"
    return f"""\
apiVersion: mlcycle/v1
name: cell
lifecycle:
  data_access: programmatic
  procurement: unattended
  update: autonomous
  deployment: dynamic
  liaison: joint
data:
  source: {{path: data.csv, ordinal: ts}}
  label: y
  key: id
  outcomes: {{path: outcomes.csv, key: id, outcome: outcome}}  # feedback arrives too
model:
  task: {"regression" if task == "regression" else "classification"}
{_model(task, features, code)}  seed: 0
evaluation:
  split: time
  test_size: 0.2
  metrics: {metrics}
  gate: ["{gate}"]
update:
  triggers: {{new_rows: 100}}
  data: all
release:
  tag_format: "{{name}}@v{{version}}"
deployment:
  selector:
{selector}registry:
  backend: local
  path: .mlcycle/registry
store:
  url: sqlite:///.mlcycle/store.db
"""


def make_project(root: Path, task: str, features: str, code: str) -> list[dict[str, Any]]:
    """A committed project of one cell; returns the rows an update will see later."""
    rng = np.random.default_rng(zlib.crc32(f"{task}/{features}/{code}".encode()))
    rows = _rows(task, features, ROWS, 0, rng)
    later = _rows(task, features, 120, ROWS, rng)
    files: dict[str, str] = {
        "lifecycle.yaml": _spec(task, features, code),
        "data.csv": _csv(rows),
        "outcomes.csv": "id,outcome\n",
        ".gitignore": ".mlcycle/\n",
    }
    if code != "builtin":
        files["features.py"] = FEATURES_PY
    build_file_tree(root, files)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "project"], cwd=root, check=True)
    return rows + later


def _instances(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("ts", "id", "y")} for r in rows]


async def _serve_and_feed(root: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Serve the deployed arms in-process: predict every row, send its true outcome."""
    target = serve_target(root)
    app = create_app(target.loader, store_url=target.store_url, options=ServeOptions())
    await app.startup()
    try:
        status, info = await _call(app, "GET", "/v1/model")
        assert status == 200, info
        ids, predictions, probabilities = [], [], []
        for start in range(0, len(rows), 20):
            batch = rows[start : start + 20]
            status, answer = await _call(
                app, "POST", "/v1/predict", {"instances": _instances(batch)}
            )
            assert status == 200, answer
            ids += answer["ids"]
            predictions += answer["predictions"]
            probabilities += answer.get("probabilities") or []
        feedback = [{"id": i, "outcome": r["y"]} for i, r in zip(ids, rows, strict=True)]
        status, report = await _call(app, "POST", "/v1/feedback", feedback)
        assert status == 200, report
        assert len(report["accepted"]) == len(rows), report
        status, metrics = await _call_text(app, "/metrics")
        return {
            "info": info,
            "predictions": predictions,
            "probabilities": probabilities,
            "metrics": metrics,
        }
    finally:
        await app.shutdown()
        target.close()


async def _call_text(app: Any, path: str) -> tuple[int, str]:
    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]).decode()


@pytest.mark.parametrize("code", CODE)
@pytest.mark.parametrize("features", FEATURES)
@pytest.mark.parametrize("task", TASKS)
def test_the_whole_path(tmp_path: Path, task: str, features: str, code: str) -> None:
    root = tmp_path / "cell"
    rows = make_project(root, task, features, code)
    first, later = rows[:ROWS], rows[ROWS:]

    trained = api.train(root)
    assert trained.entry.is_candidate, trained
    released = api.release(root)
    assert str(released.entry.ref) == "0.1.0/1"
    deployed = api.deploy(root)
    assert deployed.arms == ("0.1.0/1",)

    served = asyncio.run(_serve_and_feed(root, first[-100:]))
    backend = served["info"]["backend"]
    # Numbers only and built-in steps: ONNX; strings or project code: sklearn.
    assert backend == ("onnx" if features != "categorical" and code == "builtin" else "sklearn")
    assert f'backend="{backend}"' in served["metrics"]
    predictions = served["predictions"]
    if task == "regression":
        assert all(isinstance(p, float) for p in predictions)
        assert served["probabilities"] == []
    else:
        labels = {"binary": {"yes", "no"}, "multiclass": {"low", "mid", "high"}}[task]
        assert set(predictions) <= labels and len(set(predictions)) > 1
        assert served["info"]["output"]["classes"] == sorted(labels)
        assert all(math.isclose(sum(p), 1.0, abs_tol=1e-6) for p in served["probabilities"])

    production = api.evaluate_production(root)
    (overall,) = production.overall
    assert overall.outcomes == 100 and overall.unscorable == 0, overall
    if task == "regression":
        assert set(overall.metrics) == {"r2", "neg_mean_absolute_error"}
        assert overall.metrics["r2"] is not None and overall.metrics["r2"] > 0.3
        assert overall.metrics["neg_mean_absolute_error"] < 0
    else:
        expected = {"binary": {"accuracy", "roc_auc", "f1_macro"}}.get(
            task, {"accuracy", "f1_macro"}
        )
        assert set(overall.metrics) == expected
        assert all(v is not None and v > 0.5 for v in overall.metrics.values()), overall
    (drift,) = production.drift
    names = {"site", "level"} if features == "categorical" else {"x1", "x2"}
    assert set(drift.psi) == names
    assert all(math.isfinite(v) and v < 0.5 for v in drift.psi.values()), drift.psi

    (root / "data.csv").write_text((root / "data.csv").read_text() + _csv(later, header=False))
    updated = api.update(root)
    assert updated.retrained, updated
    assert updated.procured is not None and str(updated.procured.entry.ref) == "0.1.0/2"

    # The bandit now learns between two arms from the outcomes of what they served.
    again = asyncio.run(_serve_and_feed(root, later[-60:]))
    routing = again["info"]["routing"]
    assert [(a["arm"], a["backend"]) for a in routing["arms"]] == [
        ("0.1.0/2", backend),
        ("0.1.0/1", backend),
    ]
    reward = {"kind": "error", "scale": 5.0} if task == "regression" else None
    assert routing["selector"]["reward"] == reward
    production = api.evaluate_production(root, record=False)
    assert {o.model for o in production.overall} <= {"0.1.0/1", "0.1.0/2"}
    assert sum(o.outcomes for o in production.overall) == 160

    made = api.report(root)
    assert made.path.is_file() and made.models >= 1
    page = made.path.read_text()
    assert "0.1.0/2" in page
