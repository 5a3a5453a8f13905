"""`init`: create a new mlcycle project from the templates of one lifecycle pattern."""

from __future__ import annotations

from pathlib import Path

from mlcycle.progress import NULL_PROGRESS, Progress
from mlcycle.scaffold import DEFAULT_PATTERN, InitResult, init_project


def init(
    name: str,
    *,
    pattern: str = DEFAULT_PATTERN,
    directory: Path | str | None = None,
    git: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> InitResult:
    """Create project `name` of `pattern` (interactive, open, adaptive, dual) in `directory`.

    `directory` defaults to `./NAME` and must not exist or be empty. The project
    holds `lifecycle.yaml`, example data, a README, CI files for GitHub Actions
    and GitLab CI, and `.gitignore`; with `git` it is a repository on `main`
    with one commit. Raises UsageError (exit 2) for a bad name, pattern or
    directory and GitError or RuntimeFailure (exit 1) when creating it fails, in
    which case nothing is left behind.
    """
    return init_project(name, pattern=pattern, directory=directory, git=git, progress=progress)
