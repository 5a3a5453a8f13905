"""`save_model_dir`, the one MLflow-model writer (`export --format mlflow` and the models
run tracking logs): what it refuses before writing anything. What it writes, and that
MLflow loads it, is tested through `export` (test_export.py) and a tracking server
(tests/learn/test_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from mlcycle.errors import RuntimeFailure, UsageError
from mlcycle.interop.mlflow import save_model_dir
from mlcycle.registry.artifacts import library_versions
from mlcycle.registry.trust import DEFAULT_POLICY

FEATURES = [
    {"name": "a", "type": "number", "nullable": False},
    {"name": "b", "type": "integer", "nullable": True},
]


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A project's own step: a name no default trust policy knows."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) * 2


def fitted(*steps: Any) -> Any:
    X = np.array([[0.0, 1], [1.0, 0], [2.0, 1], [3.0, 0]])
    return make_pipeline(*steps, LogisticRegression()).fit(X, [0, 0, 1, 1])


def test_a_name_the_trust_policy_refuses_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    model = fitted(Doubler())
    target = tmp_path / "out" / "model"
    with pytest.raises(RuntimeFailure, match=r"does not trust: .*test_mlflow_writer\.Doubler"):
        save_model_dir(
            model,
            target,
            features=FEATURES,
            versions=library_versions(),
            is_trusted=DEFAULT_POLICY.is_trusted,
        )
    assert not target.exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_the_loader_trusts_exactly_the_names_the_policy_accepted(tmp_path: Path) -> None:
    model = fitted(Doubler())
    asked: list[str] = []

    def policy(name: str) -> bool:
        asked.append(name)
        return True

    written = save_model_dir(
        model, tmp_path / "m", features=FEATURES, versions=library_versions(), is_trusted=policy
    )
    mlmodel = yaml.safe_load((written.directory / "MLmodel").read_text())
    assert sorted(mlmodel["flavors"]["sklearn"]["skops_trusted_types"]) == sorted(asked)
    assert any(n.endswith("test_mlflow_writer.Doubler") for n in asked)
    # A nullable feature is an optional column: MLflow accepts rows without it.
    columns = json.loads(mlmodel["signature"]["inputs"])
    assert [(c["name"], c["type"], c["required"]) for c in columns] == [
        ("a", "double", True),
        ("b", "long", False),
    ]


def test_a_feature_type_mlflow_has_no_column_for_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"feature 'when': type 'datetime'") as info:
        save_model_dir(
            fitted(),
            tmp_path / "m",
            features=[{"name": "when", "type": "datetime"}],
            versions=library_versions(),
            is_trusted=DEFAULT_POLICY.is_trusted,
        )
    assert info.value.exit_code == 2
    assert not (tmp_path / "m").exists()
