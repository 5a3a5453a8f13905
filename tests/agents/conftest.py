"""A released adaptive project, made once per session and copied for each test."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _released_adaptive(release_template: Callable[..., Path]) -> Path:
    # The session's one adaptive `live` release (tests/conftest.py), shared with the
    # deploy and serve tests that start from it.
    return release_template("adaptive", "live")


@pytest.fixture
def adaptive(_released_adaptive: Path, tmp_path: Path) -> Callable[[], Path]:
    """A fresh copy of `live`: adaptive, released as 0.1.0/1 (git repo and registry)."""

    def copy() -> Path:
        target = tmp_path / "live"
        shutil.copytree(_released_adaptive, target, symlinks=True)
        return target

    return copy


def feature_rows(root: Path, limit: int) -> list[dict[str, float]]:
    """The first `limit` rows of the project's events, features only (as served)."""
    with sqlite3.connect(root / "data" / "events.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(f"SELECT * FROM events ORDER BY seq LIMIT {limit}").fetchall()
    skip = {"seq", "id", "malignant"}
    return [{k: float(v) for k, v in dict(r).items() if k not in skip} for r in rows]
