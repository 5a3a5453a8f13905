"""Real git repositories in tmp_path, and a `git` helper that runs the real program."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import build_file_tree

# Commits in these tests carry this identity explicitly, so they work without any
# git configuration (the fallback-identity tests remove it) and never touch it.
IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@tests.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@tests.invalid",
}


def git(cwd: Path, *args: str, check: bool = True, identity: bool = False) -> str:
    """Run git in `cwd`; its stdout. `identity` sets a committer for this call only."""
    env = dict(os.environ)
    if identity:
        env.update(IDENTITY)
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def commit(repo: Path, files: dict[str, str] | None = None, message: str = "change") -> str:
    """Write `files`, stage everything, commit; the new commit's hex SHA."""
    build_file_tree(repo, files or {"counter.txt": message})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, identity=True)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def empty_repo(tmp_path: Path) -> Path:
    """A fresh repository without commits, on branch main."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


@pytest.fixture
def repo_path(empty_repo: Path) -> Path:
    """A repository with one commit: a lifecycle.yaml, a .gitignore and a source file."""
    commit(
        empty_repo,
        {
            "lifecycle.yaml": "apiVersion: mlcycle/v1\nname: churn\n",
            ".gitignore": ".mlcycle/\n*.log\n",
            "src": {"train.py": "print('train')\n"},
        },
        message="initial",
    )
    return empty_repo


@pytest.fixture
def bare_remote(tmp_path: Path, repo_path: Path) -> Path:
    """A bare repository added to `repo_path` as remote `origin`."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo_path, "remote", "add", "origin", str(remote))
    return remote
