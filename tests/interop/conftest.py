"""Fixtures for interop: a released project, rows to predict, what the engine serves.

The real `mlflow` command and tracking server are in tests/mlflow_server.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def rows(root: Path, n: int = 8) -> list[dict[str, Any]]:
    """The first `n` rows of an open project's example data, features only."""
    import sqlite3

    with sqlite3.connect(root / "data" / "events.db") as con:
        cursor = con.execute(f"select * from events order by seq limit {n}")
        names = [d[0] for d in cursor.description]
        records = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    return [{k: v for k, v in r.items() if k not in ("id", "seq", "malignant")} for r in records]


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open project from `mlcycle init`, released once (0.1.0/1, with an ONNX form)."""
    from mlcycle import api
    from mlcycle.api.init import init

    root = tmp_path_factory.mktemp("export") / "shop"
    init("shop", pattern="open", directory=root)
    api.release(root)
    return root


def served(root: Path, ref: str, instances: list[dict[str, Any]]) -> list[Any]:
    """What the engine answers for `instances`: the model `mlcycle serve` builds for the
    entry (its ONNX form when it has one), run in this process."""
    import numpy as np

    from mlcycle.api.project import open_project
    from mlcycle.serve.live import served_model_from_entry

    project = open_project(root)
    entry = project.registry.get(ref)
    model = served_model_from_entry(project.spec.name, project.registry, entry)
    matrix = np.array([[row[f.name] for f in model.features] for row in instances], dtype=float)
    labels, _ = model.predictor.predict(matrix)
    return np.asarray(labels).tolist()
