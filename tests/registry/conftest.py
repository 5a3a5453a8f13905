"""Fitted sklearn models on bundled datasets (fixed seeds) and registration helpers."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from mlcycle.registry import Entry, Registry


def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y


def fit_logit(C: float = 1.0) -> Any:
    """A scaled logistic regression on iris."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris()
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500)).fit(X, y)


@pytest.fixture(scope="session")
def logit() -> Any:
    return fit_logit()


@pytest.fixture(scope="session")
def forest() -> Any:
    """A random forest on breast_cancer: its trees are sklearn types skops lists as untrusted."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_breast_cancer(return_X_y=True)
    return RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def custom_model() -> Any:
    """A pipeline with a user's class in it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tests.registry.custom import Doubler

    X, y = iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_pipeline(Doubler(), LogisticRegression(max_iter=500)).fit(X, y)


def same_predictions(a: Any, b: Any) -> bool:
    X, _ = iris()
    return bool(np.array_equal(a.predict_proba(X), b.predict_proba(X)))


GATE_PASSED = {"passed": True, "checks": [{"condition": "accuracy >= 0.9", "passed": True}]}
GATE_FAILED = {"passed": False, "checks": [{"condition": "accuracy >= 0.99", "passed": False}]}
DATA = {"source": "sql", "window": [0, 150], "watermark": 149, "reproducible": True}


def register(registry: Registry, model: Any, **overrides: Any) -> Entry:
    """Register with plausible defaults; keyword arguments override them."""
    kwargs: dict[str, Any] = {
        "release": "0.1.0",
        "metrics": {"accuracy": 0.95, "roc_auc": 0.99},
        "gate": GATE_PASSED,
        "data": DATA,
        "spec_hash": "ab" * 32,
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "procurement": "unattended",
        "status": "candidate",
    }
    kwargs.update(overrides)
    return registry.register(model, **kwargs)
