"""Shared fixtures: an isolated environment for every test session, and file-tree helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temp HOME, no system git config, a fixed git identity, plain 80-column output."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update(
        {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "mlcycle tests",
            "GIT_AUTHOR_EMAIL": "tests@mlcycle.invalid",
            "GIT_COMMITTER_NAME": "mlcycle tests",
            "GIT_COMMITTER_EMAIL": "tests@mlcycle.invalid",
            "NO_COLOR": "1",
            "COLUMNS": "80",
            "TERM": "dumb",
        }
    )
    os.environ.pop("MLCYCLE_DEBUG", None)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = mlcycle tests\n\temail = tests@mlcycle.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_file_tree(root: Path, spec: Mapping[str, str | bytes | Mapping]) -> Path:
    """Create files under `root` from a dict: name → text, bytes, or a nested dict (a folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in spec.items():
        path = root / name
        if isinstance(content, Mapping):
            build_file_tree(path, content)
        elif isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    return root
