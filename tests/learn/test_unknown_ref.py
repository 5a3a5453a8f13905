"""A REF that names nothing the registry holds: one answer from every verb that takes one.

A trial: `evaluate 9.9.9` exited 1 "no candidate model" while `deploy 9.9.9` and
`promote 9.9.9` exited 2 "names no model in the registry (releases: dev, 0.1.0)",
`dev` (the pseudo-release of `mlcycle train`) listed as a release.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.errors import ExitCode
from tests.inprocess import run_in_process
from tests.learn.conftest import init_and_release

LISTING = (
    "churn: 9.9.9 names no model in the registry (releases: 0.1.0; development trainings: dev)"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = init_and_release(tmp_path_factory.mktemp("refs") / "churn", "open")
    api.train(root)  # a development training: release `dev`
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "9.9.9"],
        ["deploy", "9.9.9"],
        ["promote", "9.9.9", "--stage", "prod"],
        ["models", "show", "9.9.9"],
        ["export", "9.9.9", "--format", "onnx", "out"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_verb_gives_one_answer_with_exit_2(
    project: Path, tmp_path: Path, argv: list[str]
) -> None:
    code, _, err = (
        run_in_process(argv, cwd=project)
        if argv[0] != "export"
        else run_in_process([*argv[:-1], str(tmp_path / "out")], cwd=project)
    )
    assert code == ExitCode.USAGE, err
    assert LISTING in " ".join(err.split())


def test_a_generation_that_does_not_exist_is_the_same_answer(project: Path) -> None:
    code, _, err = run_in_process(["evaluate", "0.1.0/7"], cwd=project)
    assert code == ExitCode.USAGE
    assert "0.1.0/7 names no model in the registry" in err
    # What the registry holds still evaluates.
    assert run_in_process(["evaluate", "0.1.0"], cwd=project)[0] == 0
