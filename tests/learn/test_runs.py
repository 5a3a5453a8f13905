"""Run records (issue 16, item 2): every training run is recorded, whatever came of it,
`mlcycle runs` lists and compares them, and a declared MLflow server receives them.

The MLflow tests start a real `mlflow server` (SQLite backend, local artifact root)
and read what was logged through its REST API (tests/mlflow_server.py).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.agents import ProcurementRejected
from mlcycle.errors import DataError
from mlcycle.registry.runs import Outcome
from tests.mlflow_server import MlflowServer
from tests.serve.conftest import free_port
from tests.spec.helpers import assert_clean_failure_output, cli

Example = Callable[[str], Path]

# Random search over distributions, small enough to be quick.
TUNING = """\
  tuning:
    search: random
    iterations: 3
    cv: 2
    params:
      logisticregression__C: {distribution: log-uniform, low: 0.01, high: 10}
"""


def project(example: Example, *, tracking: str | None = None, gate: str | None = None) -> Path:
    root = example("open")
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    start = text.index("  tuning:")
    end = text.index("\n\n", start)
    text = text[:start] + TUNING.rstrip("\n") + text[end:]
    if gate:
        text = text.replace("    - accuracy >= 0.9", f"    - {gate}")
    if tracking:
        text += f"\ntracking:\n  mlflow: {tracking}\n"
    spec.write_text(text)
    return root


def test_every_run_is_recorded_whatever_came_of_it(example: Example) -> None:
    root = project(example)
    trained = api.train(root)
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("- accuracy >= 0.9", "- accuracy >= 0.9999"))
    with pytest.raises(ProcurementRejected):
        api.train(root)
    # A data source that cannot be read: the run failed before anything was trained.
    shutil.move(root / "data" / "events.db", root / "data" / "elsewhere.db")
    with pytest.raises(DataError):
        api.train(root)
    shutil.move(root / "data" / "elsewhere.db", root / "data" / "events.db")

    listing = api.runs(root)
    assert [r.outcome for r in listing.runs] == [
        Outcome.REGISTERED,
        Outcome.REJECTED,
        Outcome.FAILED,
    ]
    ok, rejected, failed = listing.runs
    assert trained.run is not None and ok.id == trained.run.id
    assert (ok.release, ok.generation, ok.ref, ok.purpose) == ("dev", 1, "dev/1", "train")
    assert ok.metrics == dict(trained.training.metrics)
    assert ok.spec_hash and ok.data["rows"] == 569 and ok.data["window"]
    assert ok.fit_seconds and ok.fit_seconds > 0
    assert ok.params["logisticregression__max_iter"] == 1000  # declared in the spec
    tuned = ok.params["logisticregression__C"]
    assert 0.01 <= tuned <= 10  # the chosen candidate, over the declared parameters
    trials = ok.tuning["trials"] if ok.tuning else []
    assert len(trials) == 3 and ok.candidates == 3
    assert {"params", "mean_score", "std_score", "fit_seconds", "rank"} <= set(trials[0])
    # a rejected model kept for inspection is a generation too; its run says so
    assert rejected.ref == "dev/2" and rejected.gate and rejected.gate["passed"] is False
    assert failed.generation is None and failed.metrics == {}
    assert failed.error and failed.spec_hash == rejected.spec_hash

    # the generation keeps its candidates too: `models show` lists them
    detail = api.model("dev/1", root)
    assert len(detail.trials) == 3
    assert min(detail.trials, key=lambda t: t.rank).params == dict(
        trained.training.tuning.best_params if trained.training.tuning else {}
    )


def test_runs_cli_json_table_and_comparison(example: Example) -> None:
    root = project(example)
    api.train(root)
    api.train(root, upper="400")

    document = cli("runs", "--json", "-C", str(root))
    assert document.code == 0, document.stderr
    parsed = json.loads(document.stdout)
    assert parsed["format"] == "mlcycle/runs@1"
    assert parsed["total"] == 2 and [r["ref"] for r in parsed["runs"]] == ["dev/1", "dev/2"]
    ids = [r["id"] for r in parsed["runs"]]

    table = cli("runs", "-C", str(root))  # COLUMNS=80 (tests/conftest.py)
    assert table.code == 0, table.stderr
    for run_id in ids:
        assert run_id in table.stdout  # whole: never cut to fit 80 columns
    assert "registered" in table.stdout and "roc_auc" in table.stdout

    last = json.loads(cli("runs", "--json", "--last", "1", "-C", str(root)).stdout)
    assert [r["id"] for r in last["runs"]] == ids[1:] and last["total"] == 2

    compared = cli("runs", ids[0][:-2], ids[1], "-C", str(root))
    assert compared.code == 0, compared.stderr
    assert "logisticregression__C" in compared.stdout and "dev/2" in compared.stdout

    unknown = cli("runs", "nosuchrun", "-C", str(root))
    assert unknown.code == 2
    assert_clean_failure_output(unknown)
    assert "matches no run" in unknown.stderr

    shown = cli("models", "show", "dev/1", "--json", "-C", str(root))
    assert shown.code == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["format"] == "mlcycle/model@1" and len(detail["tuning"]["trials"]) == 3
    human = cli("models", "show", "dev/1", "-C", str(root))
    assert "tuning candidates" in human.stdout and "cv score" in human.stdout
    assert cli("models", "-C", str(root)).code == 0  # the listing is unchanged

    # the HTML report has a runs view, each tuned run opening onto its candidates
    page = api.report(root).path.read_text()
    assert "<table id='runs'>" in page
    assert all(run_id in page for run_id in ids)
    assert page.count("<summary>3 candidates</summary>") == 2


def test_the_report_escapes_what_a_run_holds() -> None:
    from mlcycle.agents.production import ProductionReport
    from mlcycle.api.report import render_html
    from mlcycle.registry.runs import Run

    hostile = "<script>alert(1)</script>"
    run = Run(
        id=hostile,
        project="p",
        purpose=hostile,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
        outcome=Outcome.FAILED,
        error=hostile,
        tuning={"trials": [{"params": {hostile: hostile}, "mean_score": 0.5, "rank": 1}]},
    )
    page = render_html(
        title="p",
        pattern="open",
        entries=[],
        current=None,
        production=ProductionReport(project="p", metrics=(), overall=(), windows=()),
        runs=[run],
    )
    assert "<script>" not in page and "&lt;script&gt;" in page


# --- MLflow ---------------------------------------------------------------------------


def test_runs_are_logged_to_the_declared_mlflow_server(
    example: Example, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    root = project(example, tracking=mlflow_server.url)
    trained = api.train(root)
    assert trained.warnings == ()
    record = api.runs(root).runs[-1]
    answer = record.tracking["mlflow"]
    assert "error" not in answer, answer

    experiment = mlflow_server.api("experiments/get-by-name", experiment_name="cancer-open")
    experiment_id = experiment["experiment"]["experiment_id"]
    run = mlflow_server.api("runs/get", run_id=answer["run_id"])["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert run["info"]["status"] == "FINISHED"
    assert tags["mlcycle.run_id"] == record.id
    assert tags["mlcycle.release"] == "dev" and tags["mlcycle.generation"] == "1"
    assert tags["mlcycle.outcome"] == "registered"
    assert tags["mlcycle.spec_hash"] == record.spec_hash
    assert json.loads(tags["mlcycle.data_window"]) == record.data["window"]
    assert params["logisticregression__max_iter"] == "1000"
    assert float(params["logisticregression__C"]) == pytest.approx(
        record.params["logisticregression__C"]
    )
    assert metrics["roc_auc"] == pytest.approx(record.metrics["roc_auc"])
    assert "fit_seconds" in metrics and "tuning_best_score" in metrics

    # every tuning candidate is a child run with its cross-validated scores
    children = mlflow_server.post(
        "runs/search",
        {
            "experiment_ids": [experiment_id],
            "filter": f"tags.mlflow.parentRunId = '{answer['run_id']}'",
        },
    )["runs"]
    assert len(children) == 3
    for child in children:
        child_metrics = {m["key"] for m in child["data"]["metrics"]}
        assert {"cv_mean_score", "cv_std_score", "fit_seconds"} <= child_metrics
        assert "logisticregression__C" in {p["key"] for p in child["data"]["params"]}

    # the model is an MLflow model (sklearn flavor, skops) that pyfunc loads and runs
    files = mlflow_server.api("artifacts/list", run_id=answer["run_id"], path="model")["files"]
    assert "model/MLmodel" in {f["path"] for f in files}
    import mlflow.artifacts
    import mlflow.pyfunc
    import pandas as pd

    local = mlflow.artifacts.download_artifacts(
        artifact_uri=answer["model_uri"], tracking_uri=mlflow_server.url, dst_path=str(tmp_path)
    )
    assert "serialization_format: skops" in (Path(local) / "MLmodel").read_text()
    loaded = mlflow.pyfunc.load_model(local)
    with sqlite3.connect(root / "data" / "events.db") as db:
        rows = pd.read_sql("SELECT * FROM events LIMIT 5", db)
    features = rows.drop(columns=["id", "seq", "malignant"])
    served = api.model("dev/1", root)  # the registered generation predicts the same
    from mlcycle.api.project import open_project

    registry = open_project(root).registry
    expected = registry.load_model(served.entry).predict(features)
    assert list(loaded.predict(features)) == list(expected)
    # One MLflow-model writer: what the run logged is what `export --format mlflow` writes.
    exported = api.export(root, ref="dev/1", format="mlflow", directory=tmp_path / "exported")
    for name in ("requirements.txt", "python_env.yaml"):
        assert (Path(local) / name).read_text() == (exported.directory / name).read_text()


def test_a_rejected_run_is_logged_with_its_outcome(
    example: Example, mlflow_server: MlflowServer
) -> None:
    root = project(example, tracking=mlflow_server.url, gate="accuracy >= 0.9999")
    result = cli("train", "--json", "-C", str(root))
    assert result.code == 3, result.stderr
    document = json.loads(result.stdout)  # MLflow's client printed nothing on stdout
    assert document["status"] == "rejected" and document["warnings"] == []
    answer = document["tracking"]["mlflow"]
    run = mlflow_server.api("runs/get", run_id=answer["run_id"])["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlcycle.outcome"] == "rejected"


def test_a_tracking_server_that_is_down_loses_no_run_and_fails_no_training(
    example: Example, caplog: pytest.LogCaptureFixture
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    root = project(example, tracking=down)
    result = cli("train", "-C", str(root))
    assert result.code == 0, result.stderr  # the model is registered all the same
    assert "warning:" in result.stderr and "not in MLflow" in result.stderr
    # Said once: a log record of it too reached the terminal bare, before the progress
    # lines, through Python's last-resort handler (the CLI configures no logging).
    assert result.stderr.count("not in MLflow") == 1
    assert not [r for r in caplog.records if "not in MLflow" in r.getMessage()]
    (run,) = api.runs(root).runs
    assert run.outcome is Outcome.REGISTERED and run.ref == "dev/1"
    assert "unreachable" in run.tracking["mlflow"]["error"]
    listed = cli("runs", "-C", str(root))
    assert "not in MLflow" in listed.stderr


def test_tracking_without_the_extra_is_refused_before_training(
    example: Example, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    root = project(example, tracking="http://127.0.0.1:1")
    for loaded in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = cli("train", "-C", str(root))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert "tracking.mlflow needs the [mlflow] extra" in result.stderr
    assert 'pip install "mlcycle-cli[mlflow]"' in result.stderr
    assert not (root / ".mlcycle" / "registry" / "cancer-open" / "runs").exists()  # nothing ran
