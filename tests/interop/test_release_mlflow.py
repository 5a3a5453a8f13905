"""`release --model DIR` with an MLflow model directory (issue 16, item 3): its skops model
is loaded under mlcycle's trust policy (not the trusted types its MLmodel lists), and a
pickle inside needs the same --trust-pickle a .pkl file needs."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcycle import api
from mlcycle.api.project import open_project
from mlcycle.errors import RegistryError, RuntimeFailure, UsageError
from tests.mlflow_server import MlflowServer
from tests.registry.gadgets import GADGETS, evil_pickle


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def interactive(hand_trained: Path) -> Path:
    """An interactive project from `mlcycle init`, its model trained by hand and committed
    (a copy of one made once per session, tests/conftest.py)."""
    return hand_trained


def hand_model(root: Path) -> Any:
    import skops.io as sio

    path = root / "model.skops"
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def nothing_released(root: Path) -> bool:
    return git(root, "tag", "--list") == "" and open_project(root).registry.entries() == []


def test_an_mlflow_model_directory_in_skops_is_released(interactive: Path, tmp_path: Path) -> None:
    import mlflow.sklearn
    import skops.io as sio

    model = hand_model(interactive)
    directory = tmp_path / "mlflow-model"  # outside the repository: the tree stays clean
    mlflow.sklearn.save_model(
        model,
        str(directory),
        serialization_format="skops",
        skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(model)),
    )
    result = api.release(interactive, model=directory)
    assert result.entry is not None and result.entry.artifact.format == "skops"
    assert not any("--trust-pickle" in w for w in result.warnings)
    assert git(interactive, "tag", "--list") == "byhand@v0.1.0"


def mlflow_dir_with(directory: Path, serialization: str, model_file: str, data: bytes) -> Path:
    """An MLflow model directory whose sklearn flavor is `serialization`, holding `data`."""
    directory.mkdir()
    (directory / model_file).write_bytes(data)
    flavor = {"pickled_model": model_file, "serialization_format": serialization}
    if serialization == "skops":
        import skops.io as sio

        # Anyone can write an MLmodel: this one vouches for every name its file holds.
        flavor["skops_trusted_types"] = sio.get_untrusted_types(data=data)
    mlmodel = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": model_file},
            "sklearn": flavor,
        }
    }
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return directory


@pytest.mark.parametrize("serialization", ["pickle", "cloudpickle"])
def test_a_pickle_mlflow_model_is_refused_without_the_opt_in_and_runs_nothing(
    interactive: Path, tmp_path: Path, serialization: str
) -> None:
    canary = tmp_path / "canary"
    directory = mlflow_dir_with(
        tmp_path / "evil-model", serialization, "model.pkl", evil_pickle(canary)
    )
    with pytest.raises(UsageError, match=r"refusing to unpickle a .*pickle MLflow model") as info:
        api.release(interactive, model=directory)
    assert info.value.exit_code == 2
    assert "--trust-pickle" in (info.value.hint or "")
    assert "serialization_format='skops'" in (info.value.hint or "")
    assert not canary.exists()
    assert nothing_released(interactive)


def test_a_pickle_mlflow_model_with_trust_pickle_is_stored_as_skops(
    interactive: Path, tmp_path: Path
) -> None:
    directory = mlflow_dir_with(
        tmp_path / "mine", "cloudpickle", "model.pkl", pickle.dumps(hand_model(interactive))
    )
    result = api.release(interactive, model=directory, trust_pickle=True)
    assert result.entry is not None and result.entry.artifact.format == "skops"
    assert any("--trust-pickle" in w for w in result.warnings)


def test_a_skops_gadget_in_an_mlflow_model_is_refused_whatever_its_mlmodel_trusts(
    interactive: Path, tmp_path: Path
) -> None:
    import skops.io as sio

    canary = tmp_path / "canary"
    build, names = GADGETS["chain"]
    directory = mlflow_dir_with(
        tmp_path / "evil-model", "skops", "model.skops", sio.dumps(build(canary))
    )
    with pytest.raises(RegistryError, match="refusing to load untrusted types: ") as info:
        api.release(interactive, model=directory)
    assert info.value.exit_code == 1 and names[0] in str(info.value)
    assert not canary.exists()
    assert nothing_released(interactive)


def test_a_directory_without_mlmodel_or_an_mlflow_model_of_another_flavor_is_refused(
    interactive: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UsageError, match="no such model file") as info:
        api.release(interactive, model=plain)
    assert "MLflow model directory" in (info.value.hint or "")
    other = tmp_path / "torch"
    other.mkdir()
    (other / "MLmodel").write_text(yaml.safe_dump({"flavors": {"pytorch": {}}}))
    with pytest.raises(UsageError, match=r"has no scikit-learn flavor \(it has: pytorch\)"):
        api.release(interactive, model=other)
    assert nothing_released(interactive)


def test_a_model_uri_needs_the_declared_tracking_server(interactive: Path) -> None:
    with pytest.raises(UsageError, match="declares no MLflow tracking server") as info:
        api.release(interactive, model="runs:/0123456789abcdef/model")
    assert info.value.exit_code == 2 and "tracking: {mlflow:" in (info.value.hint or "")
    assert nothing_released(interactive)


@pytest.mark.slow
def test_runs_and_models_uris_of_the_declared_tracking_server_are_released(
    interactive: Path, mlflow_server: MlflowServer
) -> None:
    """A real `mlflow server` (SQLite backend, local artifacts): a model logged to a run and
    registered is released by `runs:/` and by `models:/` URI, read under the trust policy."""
    import mlflow
    import mlflow.sklearn
    import skops.io as sio

    try:
        url = mlflow_server.url
        model = hand_model(interactive)
        mlflow.set_tracking_uri(url)
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(
                model,
                name="model",
                serialization_format="skops",
                skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(model)),
                registered_model_name="byhand",
            )
        spec = interactive / "lifecycle.yaml"
        spec.write_text(spec.read_text() + f"\ntracking:\n  mlflow: {url}\n")
        git(interactive, "commit", "-qam", "declare the tracking server")

        uri = f"runs:/{run.info.run_id}/model"
        first = api.release(interactive, model=uri)
        assert first.entry is not None and first.entry.artifact.format == "skops"
        assert first.entry.extra["model_file"] == uri
        # A commit holds one version (GTO): each release of another model is a commit.
        git(interactive, "commit", "-q", "--allow-empty", "-m", "release the registered model")
        second = api.release(interactive, model="models:/byhand/1")
        assert second.entry is not None and second.entry.release == "0.2.0"
        assert second.entry.extra["model_file"] == "models:/byhand/1"
        git(
            interactive,
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "try a version that is not there",
        )
        with pytest.raises(RuntimeFailure, match=r"cannot download models:/byhand/7") as info:
            api.release(interactive, model="models:/byhand/7")
        assert info.value.exit_code == 1
    finally:
        mlflow.set_tracking_uri("")
