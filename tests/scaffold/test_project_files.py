"""What a rendered project holds: CI files, example data with the declared columns, research."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pandas as pd
import pytest
import skops.io
import yaml

import mlcycle
from mlcycle.errors import RuntimeFailure
from mlcycle.scaffold import PATTERNS, InitResult, datasets
from mlcycle.scaffold.datasets import breast_cancer_events, feature_names
from mlcycle.spec import load_spec
from mlcycle.spec.model import Spec

ROWS = 569


@pytest.mark.parametrize("pattern", PATTERNS)
def test_github_workflow_is_valid_yaml_running_validate(
    projects: dict[str, InitResult], pattern: str
) -> None:
    path = projects[pattern].directory / ".github" / "workflows" / "mlcycle.yml"
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    assert set(workflow) == {"name", True, "permissions", "jobs"}
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert "mlcycle validate" in steps
    assert all("runs-on" in job for job in workflow["jobs"].values())
    assert any(step.startswith("mlcycle release") for step in steps)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_github_workflow_asks_for_least_privilege(
    projects: dict[str, InitResult], pattern: str
) -> None:
    path = projects[pattern].directory / ".github" / "workflows" / "mlcycle.yml"
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Without `permissions:` a job gets the repository's default token, often read-write.
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        pushes = any("git push" in step.get("run", "") for step in job["steps"])
        wanted = {"contents": "write"} if pushes else None
        assert job.get("permissions") == wanted, name


@pytest.mark.parametrize("pattern", PATTERNS)
def test_gitlab_ci_is_valid_yaml_running_validate(
    projects: dict[str, InitResult], pattern: str
) -> None:
    path = projects[pattern].directory / ".gitlab-ci.yml"
    pipeline = yaml.safe_load(path.read_text(encoding="utf-8"))
    stages = pipeline["stages"]
    jobs = {k: v for k, v in pipeline.items() if isinstance(v, dict) and "script" in v}
    assert jobs["validate"]["script"][0] == "mlcycle validate"
    assert all(job["stage"] in stages for job in jobs.values())
    scripts = [line for job in jobs.values() for line in job["script"]]
    assert any(line.startswith("mlcycle release") for line in scripts)
    if pattern == "adaptive":
        assert "mlcycle update" in scripts


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_ci_job_installs_exactly_this_mlcycle(
    projects: dict[str, InitResult], pattern: str
) -> None:
    # `mlcycle` on the package index is an unrelated project without our command.
    directory = projects[pattern].directory
    workflow = yaml.safe_load((directory / ".github/workflows/mlcycle.yml").read_text())
    pipeline = yaml.safe_load((directory / ".gitlab-ci.yml").read_text())
    github_jobs = [[s.get("run", "") for s in job["steps"]] for job in workflow["jobs"].values()]
    # GitLab jobs share the default before_script.
    gitlab_jobs = [pipeline["default"]["before_script"]]
    wanted = f'"mlcycle-cli=={mlcycle.__version__}"'
    for steps in github_jobs + gitlab_jobs:
        installs = [step for step in steps if step.startswith("pip install")]
        assert len(installs) == 1, steps
        assert wanted in installs[0].split(), installs
        assert installs[0].replace(wanted, "").count("mlcycle") == 0, installs
    assert mlcycle.requirement() == wanted.strip('"')


def test_example_data_is_scikit_learns_breast_cancer_set_made_event_like() -> None:
    # The example data is read from scikit-learn's CSV without importing it (init stays
    # fast); here it is checked against scikit-learn's own loader, value by value.
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    assert list(bunch.feature_names) == list(datasets.FEATURES)
    events = breast_cancer_events()
    assert [e[1] for e in events] == list(range(1, len(bunch.target) + 1))  # seq
    assert sorted(e[0] for e in events) == list(range(1, len(bunch.target) + 1))  # id
    for event in events:
        row = event[0] - 1  # id: the row in scikit-learn's copy, 1-based
        assert list(event[2:-1]) == bunch.data[row].tolist()
        assert event[-1] == 1 - bunch.target[row]  # malignant: 1 (scikit-learn: 0)


def test_example_data_that_is_not_the_known_set_is_refused_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another of scikit-learn's bundled files: readable, but not the breast cancer set.
    monkeypatch.setattr(datasets, "SKLEARN_CSV", ("datasets", "data", "iris.csv"))
    with pytest.raises(RuntimeFailure, match="is not the breast cancer data set"):
        datasets.breast_cancer_events()
    monkeypatch.setattr(datasets, "SKLEARN_CSV", ("datasets", "data", "missing.csv"))
    with pytest.raises(RuntimeFailure, match="cannot read the example data"):
        datasets.breast_cancer_events()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_example_data_has_the_declared_columns(
    projects: dict[str, InitResult], pattern: str
) -> None:
    spec = load_spec(projects[pattern].directory / "lifecycle.yaml")
    data = _training_data(spec)
    declared = {spec.data.label, spec.data.key}
    if spec.data.source is not None and spec.data.source.ordinal:
        declared.add(spec.data.source.ordinal)
    assert declared <= set(data.columns)
    features = [c for c in data.columns if c not in declared]
    assert features == feature_names()
    assert features[:3] == ["mean_radius", "mean_texture", "mean_perimeter"]
    assert len(data) == ROWS
    assert data[spec.data.key].is_unique
    assert set(data[spec.data.label]) == {0, 1}
    assert data[spec.data.label].sum() == 212  # malignant cases in scikit-learn's copy
    if spec.data.source is not None:
        ordinal = data[spec.data.source.ordinal]
        assert ordinal.tolist() == list(range(1, ROWS + 1))


@pytest.mark.parametrize("pattern", ["open", "adaptive"])
def test_outcomes_table_has_the_declared_key_and_outcome(
    projects: dict[str, InitResult], pattern: str
) -> None:
    spec = load_spec(projects[pattern].directory / "lifecycle.yaml")
    outcomes = spec.data.outcomes
    assert outcomes is not None and outcomes.source.url is not None
    with sqlite3.connect(_sqlite_file(spec, outcomes.source.url)) as connection:
        frame = pd.read_sql_query(f"SELECT * FROM {outcomes.source.table}", connection)
        events = pd.read_sql_query("SELECT id, malignant FROM events", connection)
    assert list(frame.columns) == [outcomes.key, outcomes.outcome]
    joined = events.merge(frame, left_on="id", right_on=outcomes.key)
    assert len(joined) == ROWS
    assert (joined["malignant"] == joined[outcomes.outcome]).all()


def test_example_data_is_deterministic(
    projects: dict[str, InitResult], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mlcycle.scaffold.datasets import same_data, write_events_csv

    again = tmp_path_factory.mktemp("again")
    write_events_csv(again)
    first = projects["dual"].directory / "data" / "events.csv"
    assert same_data(first, again / "data" / "events.csv")
    assert (again / "data" / "events.csv").read_bytes() == first.read_bytes()


def test_dual_research_files_reproduce(projects: dict[str, InitResult]) -> None:
    from mlcycle.train import train

    root = projects["dual"].directory
    spec = load_spec(root / "lifecycle.yaml")
    research = spec.release.research
    assert research is not None and research.data and research.predictions
    reference = pd.read_csv(spec.resolve(research.data))
    predictions = pd.read_csv(spec.resolve(research.predictions))
    assert len(predictions) == len(reference) == int(ROWS / 5)
    assert list(predictions.columns) == ["id", "prediction"]
    assert predictions["id"].tolist() == reference["id"].tolist()
    assert set(research.metrics) == {"roc_auc", "accuracy"}

    # What engineering does: train the declared model with mlcycle on the source...
    assert spec.data.source is not None and spec.data.source.path
    events = pd.read_csv(spec.resolve(spec.data.source.path))
    features = [c for c in events.columns if c not in ("id", "seq", "malignant")]
    trained = train(spec, events[features], events["malignant"], ordinal=events["seq"])
    # ...and compare with what research handed over.
    probability = trained.model.predict_proba(reference[features])[:, 1]
    assert abs(probability - predictions["prediction"].to_numpy()).max() <= research.tolerance
    from sklearn.metrics import accuracy_score, roc_auc_score

    measured = {
        "roc_auc": roc_auc_score(reference["malignant"], probability),
        "accuracy": accuracy_score(
            reference["malignant"], trained.model.predict(reference[features])
        ),
    }
    for metric, expected in research.metrics.items():
        assert abs(measured[metric] - expected) <= research.tolerance, metric


def test_interactive_train_by_hand_saves_a_safe_model(projects: dict[str, InitResult]) -> None:
    root = projects["interactive"].directory
    result = subprocess.run(
        [sys.executable, "train_by_hand.py"], cwd=root, capture_output=True, text=True, check=False
    )
    try:
        assert result.returncode == 0, result.stderr
        assert "accuracy on 114 held-out rows" in result.stdout
        spec = load_spec(root / "lifecycle.yaml")
        assert spec.release.model == "model.skops"
        model_file = spec.resolve(spec.release.model)
        assert skops.io.get_untrusted_types(file=model_file) == []
        model = skops.io.load(model_file)
        data = pd.read_csv(root / "data" / "train.csv")
        assert (model.predict(data[feature_names()]) == data["malignant"]).mean() > 0.95
    finally:
        (root / "model.skops").unlink(missing_ok=True)  # keep the shared project's tree clean


def _training_data(spec: Spec) -> pd.DataFrame:
    if spec.data.dump:
        return pd.read_csv(spec.resolve(spec.data.dump))
    source = spec.data.source
    assert source is not None
    if source.url:
        with sqlite3.connect(_sqlite_file(spec, source.url)) as connection:
            return pd.read_sql_query(
                f"SELECT * FROM {source.table} ORDER BY {source.ordinal}", connection
            )
    assert source.path
    path = spec.resolve(source.path)
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def _sqlite_file(spec: Spec, url: str) -> str:
    assert url.startswith("sqlite:///")
    return str(spec.resolve(url.removeprefix("sqlite:///")))


def test_dual_feature_code_is_validated_trained_and_served(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The template's example of project feature code (issue 13, "Done when"): research's
    # features.py, declared in model.code and used as the first pipeline step.
    import asyncio

    from mlcycle import api
    from mlcycle.api.serving import serve_target
    from mlcycle.registry import open_registry
    from mlcycle.scaffold import init_project
    from mlcycle.serve.app import ServeOptions, create_app
    from tests.serve.test_app import _call

    root = tmp_path_factory.mktemp("coded") / "shapes"
    init_project("shapes", pattern="dual", directory=root)
    spec = load_spec(root / "lifecycle.yaml")
    assert spec.model.code == ("features.py",)
    assert spec.model.pipeline[0].class_path == "features.ShapeFeatures"
    checked = api.validate(root)  # class paths, files and model code included
    assert checked.ok, [d.format() for d in checked.diagnostics]

    released = api.release(root)
    entry = released.entry
    assert set(entry.code) == {"features.py"}
    model = open_registry(spec).load_model(entry)
    assert type(model.steps[0][1]).__name__ == "ShapeFeatures"
    events = pd.read_csv(root / "data" / "events.csv")
    features = [c for c in events.columns if c not in ("id", "seq", "malignant")]
    # The two derived columns reach the scaler: 30 measurements in, 32 features out.
    assert model.steps[1][1].n_features_in_ == 32

    async def serve() -> tuple[dict, dict]:
        target = serve_target(root, no_store=True)
        app = create_app(target.loader, options=ServeOptions())
        await app.startup()
        try:
            _, info = await _call(app, "GET", "/v1/model")
            rows = events[features].head(20).to_dict("records")
            _, answer = await _call(app, "POST", "/v1/predict", {"instances": rows})
            return info, answer
        finally:
            await app.shutdown()

    info, answer = asyncio.run(serve())
    # Project code does not convert to ONNX: served by sklearn, and /v1/model says so.
    assert info["backend"] == "sklearn"
    assert answer["predictions"] == model.predict(events[features].head(20)).tolist()
