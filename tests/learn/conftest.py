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

from tests.inprocess import run_in_process

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

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def json(self) -> Any:
        return json.loads(self.out)


# Verbs that keep running (a server) or whose test is about the process itself stay in
# a subprocess; every other call runs in-process through the CLI's own error funnel,
# which is what `python -m mlcycle` runs too. A subprocess costs a Python start and
# the import of scikit-learn (about a second of CPU); the suite makes ~1,000 calls.
_REAL_PROCESS_VERBS = frozenset({"serve"})


def mlcycle(*args: str | Path, cwd: Path | None = None, real: bool = False) -> Result:
    """Run `mlcycle ARGS` as a user would: in-process through the CLI's entry point
    (parse, the error funnel, exit code, stdout/stderr), or in a subprocess
    (`python -m mlcycle`) when `real` or for a verb that serves."""
    argv = [str(a) for a in args]
    if real or (argv and argv[0] in _REAL_PROCESS_VERBS):
        proc = subprocess.run(
            [sys.executable, "-m", "mlcycle", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=cwd,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)
    code, out, err = run_in_process(argv, cwd=cwd)
    return Result(code, out, err)


def init_and_release(root: Path, pattern: str, *release_args: str) -> Path:
    """`mlcycle init NAME --pattern PATTERN -d ROOT` (NAME: the folder's name), then
    `mlcycle release RELEASE_ARGS`; returns ROOT."""
    assert mlcycle("init", root.name, "--pattern", pattern, "-d", root).code == 0
    result = mlcycle("release", *release_args, cwd=root)
    assert result.code == 0, result.err
    return root
