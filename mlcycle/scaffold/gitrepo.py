"""The new project's git repository: `git init` on branch `main` and one first commit.

GitPython is imported inside the function. The commit is written by GitPython
(no hooks, no signing: it is a machine-made scaffold commit) from an index that
`git add --all` filled, so `.gitignore` applies exactly as git applies it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import GitError

if TYPE_CHECKING:
    from git import Actor, Repo

FALLBACK_NAME = "mlcycle"
FALLBACK_EMAIL = "mlcycle@localhost"
BRANCH = "main"


@dataclass(frozen=True)
class InitialCommit:
    """The first commit of a new project."""

    sha: str
    branch: str
    author: str  # `Name <email>`
    # No identity was configured, so the commit is by `mlcycle <mlcycle@localhost>`.
    fallback_identity: bool


def enclosing_repository(path: Path) -> Path | None:
    """The work tree of the git repository `path` (which may not exist yet) would be inside.

    `git init` there makes a nested repository, which the outer one sees as one
    untracked directory and never tracks the files of. None when there is none, or
    git is missing.
    """
    import subprocess

    existing = next((p for p in (path, *path.parents) if p.is_dir()), None)
    if existing is None:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(existing), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    top = done.stdout.strip()
    return Path(top) if done.returncode == 0 and top else None


def create_repository(root: Path, *, message: str, branch: str = BRANCH) -> InitialCommit:
    """`git init` `root`, put HEAD on `branch`, and commit every file not ignored.

    The author is the configured git identity (GIT_AUTHOR_* / GIT_COMMITTER_*
    variables, `user.name` / `user.email`); without one the commit is by
    `mlcycle <mlcycle@localhost>`, for this commit only (no config is written), and
    the result says so. Raises GitError when git is missing or fails.
    """
    try:
        import git
    except ImportError as e:  # GitPython raises ImportError when the git executable is missing
        raise GitError(
            f"cannot create a git repository in {root}: {e}",
            hint="install git, or pass --no-git to create the project without a repository",
        ) from e
    try:
        repo = git.Repo.init(root)
    except (git.GitCommandError, OSError) as e:
        raise GitError(f"`git init` failed in {root}: {_reason(e)}") from e
    try:
        repo.git.symbolic_ref("HEAD", f"refs/heads/{branch}")
        repo.git.add("--all")
        author, committer, fallback = _identities(repo)
        commit = repo.index.commit(message, author=author, committer=committer, skip_hooks=True)
        return InitialCommit(
            sha=commit.hexsha,
            branch=branch,
            author=f"{author.name} <{author.email}>",
            fallback_identity=fallback,
        )
    except (git.GitCommandError, OSError, ValueError) as e:
        raise GitError(f"the first commit in {root} failed: {_reason(e)}") from e
    finally:
        repo.close()


def _identities(repo: Repo) -> tuple[Actor, Actor, bool]:
    """(author, committer, fallback) as git would pick them, or the fallback identity."""
    from git import Actor

    name = os.environ.get("GIT_AUTHOR_NAME") or _config(repo, "user.name")
    email = (
        os.environ.get("GIT_AUTHOR_EMAIL") or _config(repo, "user.email") or os.environ.get("EMAIL")
    )
    if not name or not email:
        fallback = Actor(FALLBACK_NAME, FALLBACK_EMAIL)
        return fallback, fallback, True
    committer = Actor(
        os.environ.get("GIT_COMMITTER_NAME") or _config(repo, "user.name") or name,
        os.environ.get("GIT_COMMITTER_EMAIL") or _config(repo, "user.email") or email,
    )
    return Actor(name, email), committer, False


def _config(repo: Repo, key: str) -> str | None:
    from git import GitCommandError

    try:
        value = repo.git.config("--get", key)
    except GitCommandError:  # exit 1: not set
        return None
    return str(value).strip() or None


def _reason(error: BaseException) -> str:
    stderr = getattr(error, "stderr", None)
    if isinstance(stderr, str) and stderr.strip():
        return stderr.strip().removeprefix("stderr:").strip().strip("'").strip()
    return str(error)
