"""Release tags in git: versions, the tag grammar, and the project's repository.

`import mlcycle.gitops` is cheap: GitPython is imported only when a repository
is opened (`Repo.find`).
"""

from __future__ import annotations

from mlcycle.gitops.branch import Branch, ci_branch, resolve_branch
from mlcycle.gitops.repo import FALLBACK_EMAIL, FALLBACK_NAME, Repo
from mlcycle.gitops.tags import (
    METADATA_MARKER,
    Action,
    EventTag,
    ReleaseTag,
    TagEvent,
    TagFormat,
    check_ref_name,
    check_stage,
    is_gto_name,
    parse_release_message,
    release_message,
)
from mlcycle.gitops.version import BUMPS, Bump, Version, first_version

__all__ = [
    "BUMPS",
    "FALLBACK_EMAIL",
    "FALLBACK_NAME",
    "METADATA_MARKER",
    "Action",
    "Branch",
    "Bump",
    "EventTag",
    "ReleaseTag",
    "Repo",
    "TagEvent",
    "TagFormat",
    "Version",
    "check_ref_name",
    "check_stage",
    "ci_branch",
    "first_version",
    "is_gto_name",
    "parse_release_message",
    "release_message",
    "resolve_branch",
]
