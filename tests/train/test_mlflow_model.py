"""The one MLflow-model writer (issue 16, items 2 and 3): what `export --format mlflow`
and run tracking both write, loaded back by MLflow's own pyfunc loader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlcycle.errors import TrainingError
from mlcycle.extras import MissingExtraError
from mlcycle.registry.trust import DEFAULT_POLICY
from mlcycle.train.mlflow_model import save_mlflow_model


def fitted():  # type: ignore[no-untyped-def]
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X


def test_an_mlflow_model_loads_with_pyfunc_and_predicts_the_same(tmp_path: Path) -> None:
    import mlflow.pyfunc

    model, X = fitted()
    features = [{"name": c, "type": "number", "nullable": False} for c in X.columns]
    path = save_mlflow_model(
        model,
        tmp_path / "m",
        features=features,
        is_trusted=DEFAULT_POLICY.is_trusted,
        metadata={"release": "1.0.0", "generation": 1},
    )
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert "python_function" in mlmodel["flavors"]
    assert mlmodel["metadata"] == {"release": "1.0.0", "generation": 1}
    assert [c["name"] for c in yaml.safe_load(mlmodel["signature"]["inputs"])] == list(X.columns)
    requirements = (path / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "skops==" in requirements
    assert not list(path.rglob("*.pkl"))
    loaded = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_an_existing_directory_is_not_overwritten(tmp_path: Path) -> None:
    model, _ = fitted()
    (tmp_path / "m").mkdir()
    with pytest.raises(TrainingError, match="already exists"):
        save_mlflow_model(model, tmp_path / "m", features=[], is_trusted=DEFAULT_POLICY.is_trusted)


def test_without_the_extra_the_error_names_it(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for loaded in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    model, _ = fitted()
    with pytest.raises(MissingExtraError, match=r"\[mlflow\] extra") as caught:
        save_mlflow_model(model, tmp_path / "m", features=[], is_trusted=lambda n: True)
    assert caught.value.exit_code == 2
