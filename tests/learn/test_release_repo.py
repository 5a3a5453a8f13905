"""`release` opens the project's repository in a `with`: a refused plan leaves no git process."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.errors import UsageError
from tests.learn.test_release import project

__all__ = ["project"]  # fixture


def git_children() -> list[str]:
    """The git processes this test process started and that still run."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # ended meanwhile
            if argv and Path(argv[0].decode()).name == "git":
                found.append(b" ".join(argv).decode())
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_refused_release_leaves_no_git_process(project: Callable[..., Path]) -> None:
    root = project()
    (root / "scratch.py").write_text("x = 1\n")
    before = git_children()
    # pytest keeps the traceback, and with it every frame and repository object in it.
    with pytest.raises(UsageError, match="uncommitted changes"):
        api.release(root)
    assert git_children() == before
