"""Where the next release goes in git: its commit, its branch, its version and its tag.

A release tags a commit with a version, and git decides whether it may: the commit
exists and is clean, it carries no version yet (GTO allows one per commit), the
version is above every released one (read from the tags, after fetching those the
remote has and this clone lacks) and its tag is free. `release_point` answers all of
that at once, or raises the UsageError (exit 2) that says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlcycle.errors import UsageError
from mlcycle.gitops.branch import Branch, resolve_branch
from mlcycle.gitops.repo import Repo
from mlcycle.gitops.tags import TagFormat
from mlcycle.gitops.version import Version

log = logging.getLogger(__name__)

DIRTY_SHOWN = 5


@dataclass(frozen=True)
class ReleasePoint:
    """The commit a release tags, the branch it came from, its version and tag, and the
    latest version released before it (None for the first)."""

    commit: str
    branch: Branch | None
    version: Version
    tag: str
    latest: Version | None


def sync_tags(root: Path, fmt: TagFormat, name: str, remote: str | None) -> tuple[str, list[str]]:
    """The remote releases use (`remote`, else the branch's, else origin) and the release
    tags of project `name` fetched from it (`Repo.sync_release_tags`)."""
    with Repo.find(root) as repo:
        chosen = remote if remote is not None else repo.default_remote()
        fetched = repo.sync_release_tags(chosen, lambda tag: fmt.parse(tag, name) is not None)
    return chosen or "origin", fetched


def release_point(
    repo: Repo,
    fmt: TagFormat,
    name: str,
    *,
    bump: str | None,
    version: str | None,
    branch: str | None,
    environ: Mapping[str, str],
) -> ReleasePoint:
    """The point the next release of project `name` goes to: HEAD, with `version` or the
    latest version raised by `bump` (default minor). `branch` names the branch of a
    detached HEAD (else git, else the CI's variables in `environ`)."""
    commit = repo.head_commit()
    if commit is None:
        raise UsageError(
            f"{repo.root}: the repository has no commits yet; a release tags a commit",
            hint="commit the project first: git add -A && git commit -m 'first version'",
        )
    dirty = repo.dirty_paths()
    if dirty:
        shown = ", ".join(dirty[:DIRTY_SHOWN]) + (", ..." if len(dirty) > DIRTY_SHOWN else "")
        raise UsageError(
            f"{repo.root}: the working tree has uncommitted changes ({shown}); a release "
            "must be reproducible from its commit",
            hint="commit or stash them (git status shows them), or add generated files "
            "to .gitignore",
        )
    on = resolve_branch(repo.branch(), explicit=branch, environ=environ)
    if on is None and version is None:
        raise UsageError(
            f"{repo.root}: HEAD is detached and no CI variable names its branch, so the "
            "next version cannot be told from a branch",
            hint="name the branch (mlcycle release --branch main), check one out, "
            "or name the version: mlcycle release --version X.Y.Z",
        )
    if on is not None and on.source != "git":
        log.info("releasing from branch %s (from %s)", on.name, on.source)
    tags = repo.release_tags(fmt, name)
    on_head = [t.name for t in tags if t.commit == commit]
    if on_head:
        # GTO allows one version per commit (`gto show` fails on a second one), and a
        # version is the code of its commit: a new version needs a new commit.
        raise UsageError(
            f"HEAD ({commit[:12]}) already carries {', '.join(on_head)}: commit the change "
            "you want to release",
            hint="a commit holds one version (as in GTO); commit your change and release "
            f"that, or retrain {name} on new data with `mlcycle update`",
        )
    latest = tags[-1].version if tags else None
    if version is not None:
        target = Version.parse(version.removeprefix("v"))
        if latest is not None and not latest < target:
            raise UsageError(
                f"version {target} is not greater than the latest release {latest} "
                f"({fmt.format(name, latest)})",
                hint=f"choose a version above {latest}, or --bump patch|minor|major",
            )
    else:
        target = repo.next_version(fmt, name, bump or "minor")
    tag = fmt.format(name, target)
    if repo.tag_exists(tag):
        raise UsageError(
            f"the tag {tag} already exists (but is not a release of {name} this mlcycle can read)",
            hint="delete it (git tag -d) or choose another version with --version",
        )
    return ReleasePoint(commit=commit, branch=on, version=target, tag=tag, latest=latest)
