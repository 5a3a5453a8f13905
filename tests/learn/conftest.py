"""Fixtures for the learn verbs: copies of the example projects, and a CLI runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def example(tmp_path: Path) -> Callable[[str], Path]:
    """Copy an example project (interactive, open, adaptive, dual) into tmp_path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(".mlcycle"))
        return target

    return copy


class Result:
    """A finished CLI run."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)


def mlcycle(*args: str | Path, cwd: Path | None = None) -> Result:
    """Run `python -m mlcycle ARGS` in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlcycle", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )
    return Result(proc)


def init_and_release(root: Path, pattern: str, *release_args: str) -> Path:
    """`mlcycle init NAME --pattern PATTERN -d ROOT` (NAME: the folder's name), then
    `mlcycle release RELEASE_ARGS`; returns ROOT."""
    assert mlcycle("init", root.name, "--pattern", pattern, "-d", root).code == 0
    result = mlcycle("release", *release_args, cwd=root)
    assert result.code == 0, result.err
    return root
