"""Helpers for the train tests: specs built from documents, small bundled datasets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mlcycle.spec.model import Spec

LIFECYCLE = {
    "data_access": "programmatic",
    "procurement": "unattended",
    "update": "autonomous",
    "deployment": "dynamic",
    "liaison": "joint",
}

SCALED_LOGIT = ["sklearn.preprocessing.StandardScaler", "sklearn.linear_model.LogisticRegression"]


def make_spec(
    root: Path,
    *,
    model: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    update: Mapping[str, Any] | None = None,
) -> Spec:
    """A typed spec with the given sections (a scaled logistic regression by default)."""
    doc: dict[str, Any] = {
        "apiVersion": "mlcycle/v1",
        "name": "churn",
        "lifecycle": LIFECYCLE,
        "model": dict(model) if model is not None else {"pipeline": SCALED_LOGIT},
    }
    if evaluation is not None:
        doc["evaluation"] = dict(evaluation)
    if update is not None:
        doc["update"] = dict(update)
    return Spec.from_document(doc, root=root)


class RecordingProgress:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, description: str, total: float | None = None) -> None:
        self.events.append(("start", (description, total)))

    def advance(self, steps: float = 1) -> None:
        self.events.append(("advance", steps))

    def done(self) -> None:
        self.events.append(("done", None))

    def starts(self) -> list[tuple[str, Any]]:
        """(description, total) of every task started, in order."""
        return [v for k, v in self.events if k == "start"]

    def advanced(self) -> float:
        return sum(v for k, v in self.events if k == "advance")


@pytest.fixture(scope="session")
def cancer() -> tuple[Any, Any]:
    """Breast cancer: 569 rows, 30 features, a binary label (pandas)."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes() -> tuple[Any, Any]:
    """Diabetes: 442 rows, 10 features, a continuous label (pandas)."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def iris() -> tuple[Any, Any]:
    """Iris: 150 rows, 4 features, three classes (pandas)."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y
