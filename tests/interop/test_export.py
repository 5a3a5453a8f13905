"""`mlcycle export REF --format mlflow|onnx DIR` (issue 16, item 3): what MLflow and ONNX
Runtime load from the export answers what `mlcycle serve` answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from mlcycle import api
from mlcycle.api.project import open_project
from mlcycle.errors import RegistryError, UsageError
from mlcycle.extras import MissingExtraError
from tests.interop.conftest import rows, served
from tests.learn.conftest import mlcycle
from tests.mlflow_server import mlflow_command, mlflow_env
from tests.serve.conftest import free_port


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Hide modules (and their submodules) as if they were not installed."""

    def hide(*names: str) -> None:
        for name in names:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, name, None)

    return hide


@pytest.mark.slow
def test_mlflow_export_loads_in_pyfunc_and_predicts_what_mlcycle_serves(
    released: Path, tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd

    target = tmp_path / "model"
    result = api.export(released, ref="current", format="mlflow", directory=target)
    entry = open_project(released).registry.get("current")
    assert result.ref == str(entry.ref) == "0.1.0/1" and result.sha256 == entry.artifact.sha256

    mlmodel = yaml.safe_load((target / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"sklearn", "python_function"}
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    recorded = [f["name"] for f in entry.data["features"]]
    signature = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in signature] == recorded == list(result.features)
    assert {c["type"] for c in signature} == {"double"}
    assert mlmodel["metadata"]["mlcycle"]["ref"] == "0.1.0/1"
    # Requirements pinned to what the entry was made with, and the Python it recorded.
    requirements = (target / "requirements.txt").read_text().split()
    for key, dist in (("sklearn", "scikit-learn"), ("numpy", "numpy"), ("skops", "skops")):
        assert f"{dist}=={entry.versions[key]}" in requirements
    assert any(r.startswith("mlflow==") for r in requirements)
    python_env = yaml.safe_load((target / "python_env.yaml").read_text())
    assert python_env["python"] == entry.versions["python"]
    assert not list(target.rglob("*.pkl"))

    instances = rows(released)
    predictions = mlflow.pyfunc.load_model(str(target)).predict(pd.DataFrame(instances))
    assert list(predictions) == served(released, "current", instances)


def test_onnx_export_is_the_served_form_with_its_feature_order(
    released: Path, tmp_path: Path
) -> None:
    import numpy as np
    import onnxruntime as ort

    target = tmp_path / "onnx"
    result = mlcycle("export", "0.1.0", target, "--format", "onnx", "--json", cwd=released)
    assert result.code == 0, result.err
    document = result.json()
    assert document["format"] == "mlcycle/export@1" and document["export_format"] == "onnx"
    entry = open_project(released).registry.get("0.1.0")
    assert entry.onnx is not None and document["sha256"] == entry.onnx.sha256
    import hashlib

    assert hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest() == entry.onnx.sha256
    described = json.loads((target / "model.json").read_text())
    columns = described["input"]["columns"]
    assert columns == [f["name"] for f in entry.data["features"]]

    instances = rows(released)
    session = ort.InferenceSession(str(target / "model.onnx"), providers=["CPUExecutionProvider"])
    matrix = np.array(
        [[row[c] for c in columns] for row in instances], dtype=described["input"]["dtype"]
    )
    labels = session.run(None, {described["input"]["name"]: matrix})[0]
    assert labels.tolist() == served(released, "0.1.0", instances)


def test_onnx_export_of_a_model_without_an_onnx_form_is_refused(
    released: Path, tmp_path: Path
) -> None:
    from mlcycle.registry import Status

    project = open_project(released)
    model = project.registry.load_model(project.registry.get("current"))
    project.registry.register(
        model,
        release="dev",
        metrics={},
        gate=None,
        data=None,
        spec_hash=None,
        git_commit=None,
        procurement="interactive",
        status=Status.CANDIDATE,
        onnx=None,
    )
    target = tmp_path / "onnx"
    with pytest.raises(RegistryError, match=r"shop dev/1 has no ONNX form") as info:
        api.export(released, ref="dev/1", format="onnx", directory=target)
    assert info.value.exit_code == 1
    assert "--format mlflow" in (info.value.hint or "")
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx")]


def test_an_export_never_overwrites_and_names_its_formats(released: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists and is not an empty directory") as info:
        api.export(released, ref="current", format="mlflow", directory=taken)
    assert info.value.exit_code == 2 and (taken / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"  # an empty directory made beforehand is taken
    empty.mkdir()
    result = api.export(released, ref="current", format="onnx", directory=empty)
    assert result.files == ("model.json", "model.onnx")
    assert sorted(p.name for p in empty.iterdir()) == ["model.json", "model.onnx"]
    with pytest.raises(UsageError, match="unknown export format 'pmml'") as info:
        api.export(released, ref="current", format="pmml", directory=tmp_path / "x")
    assert "mlflow, onnx" in (info.value.hint or "")


def test_mlflow_export_without_the_extra_names_it(released: Path, tmp_path: Path, without) -> None:  # type: ignore[no-untyped-def]
    without("mlflow")
    with pytest.raises(MissingExtraError) as info:
        api.export(released, ref="current", format="mlflow", directory=tmp_path / "m")
    assert info.value.exit_code == 2
    assert 'pip install "mlcycle-cli[mlflow]"' in (info.value.hint or "")


@pytest.mark.slow
def test_mlflow_models_serve_answers_what_mlcycle_serves(released: Path, tmp_path: Path) -> None:
    """The one real-server test: the full `mlflow models serve` on the export."""
    command = mlflow_command()
    target = tmp_path / "model"
    api.export(released, ref="current", format="mlflow", directory=target)
    port = free_port()
    log = tmp_path / "mlflow.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(command, "models", "serve", "-m", target, "--env-manager", "local"),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=mlflow_env(command),
            cwd=tmp_path,
        )
    try:
        instances = rows(released)
        body = json.dumps({"dataframe_records": instances}).encode()
        deadline = time.monotonic() + 600  # a loaded machine starts it slowly
        while True:
            assert process.poll() is None, log.read_text()
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=30) as reply:
                    answer = json.loads(reply.read())
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert answer["predictions"] == served(released, "current", instances)


LOAD_AND_PREDICT = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
print(json.dumps(model.predict(pd.DataFrame(json.loads(sys.argv[2]))).tolist()))
"""


@pytest.mark.slow
def test_the_model_code_ships_with_the_mlflow_export(tmp_path: Path) -> None:
    """A model built from the project's own classes loads in a fresh Python, away from
    the project, from the code the export carries."""
    from tests.learn.test_model_code import PIPELINE, coded_project

    root = coded_project(tmp_path / "coded", model=PIPELINE)
    entry = api.train(root).entry
    assert entry is not None and entry.code
    target = tmp_path / "model"
    result = api.export(root, ref=str(entry.ref), format="mlflow", directory=target)
    assert sorted(result.as_dict()["code"]) == ["features.py", "mypkg"]
    assert (target / "code" / "mypkg" / "steps.py").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    instances = rows(root)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(target), json.dumps(instances)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == served(
        root, str(entry.ref), instances
    )
