"""Which branch a release is made from, also when HEAD is detached in CI.

CI systems check out a commit, not a branch (GitLab always, GitHub for pull
requests and tags, Jenkins, Buildkite ...), and say which branch it came from
in their own variables. The answer, in order: `--branch NAME`; the branch git
has checked out; the CI's variables. Each answer says where it came from, so a
release can tell its user. The variables are a table (data), read only when
the CI's own marker variable says that CI is running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from mlcycle.errors import UsageError
from mlcycle.gitops.tags import check_ref_name


@dataclass(frozen=True)
class Branch:
    """A branch name and where it was learnt: `--branch`, `git`, or a CI variable."""

    name: str
    source: str


@dataclass(frozen=True)
class _Rule:
    """`variable` names the branch when `marker` is set, no `unless` variable is, and
    every `when` variable has its value."""

    variable: str
    strip: str = ""  # a prefix to remove ("refs/heads/"); the value must carry it
    unless: tuple[str, ...] = ()
    when: tuple[tuple[str, str], ...] = ()


# CI name, the variable that says it is running, and its branch variables in order of
# preference (a pull/merge request's source branch before the pipeline's ref). Tag
# pipelines name a tag where a branch would be, hence the `unless` and `strip` guards.
_CI: Final[tuple[tuple[str, str, tuple[_Rule, ...]], ...]] = (
    (
        "GitHub Actions",
        "GITHUB_ACTIONS",
        (
            _Rule("GITHUB_HEAD_REF"),
            _Rule("GITHUB_REF", strip="refs/heads/"),
            # the short name; a tag's when GITHUB_REF_TYPE is "tag"
            _Rule("GITHUB_REF_NAME", when=(("GITHUB_REF_TYPE", "branch"),)),
        ),
    ),
    (
        "GitLab CI",
        "GITLAB_CI",
        (
            _Rule("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
            _Rule("CI_COMMIT_BRANCH"),
            _Rule("CI_COMMIT_REF_NAME", unless=("CI_COMMIT_TAG",)),
        ),
    ),
    (
        "Jenkins",
        "JENKINS_URL",
        (_Rule("CHANGE_BRANCH"), _Rule("BRANCH_NAME", unless=("TAG_NAME",))),
    ),
    ("Buildkite", "BUILDKITE", (_Rule("BUILDKITE_BRANCH", unless=("BUILDKITE_TAG",)),)),
    ("CircleCI", "CIRCLECI", (_Rule("CIRCLE_BRANCH"),)),
    (
        "Azure Pipelines",
        "TF_BUILD",
        (
            _Rule("SYSTEM_PULLREQUEST_SOURCEBRANCH", strip="refs/heads/"),
            _Rule("BUILD_SOURCEBRANCH", strip="refs/heads/"),
        ),
    ),
    ("Bitbucket Pipelines", "BITBUCKET_BUILD_NUMBER", (_Rule("BITBUCKET_BRANCH"),)),
    (
        "Travis CI",
        "TRAVIS",
        (_Rule("TRAVIS_PULL_REQUEST_BRANCH"), _Rule("TRAVIS_BRANCH", unless=("TRAVIS_TAG",))),
    ),
)


def ci_branch(environ: Mapping[str, str]) -> Branch | None:
    """The branch the running CI says it built, from its variables; None outside CI or on tags."""
    for ci, marker, rules in _CI:
        if not environ.get(marker):
            continue
        for rule in rules:
            value = environ.get(rule.variable, "").strip()
            if not value or any(environ.get(v) for v in rule.unless):
                continue
            if any(environ.get(v, "").strip() != want for v, want in rule.when):
                continue
            if rule.strip:
                if not value.startswith(rule.strip):
                    continue  # refs/tags/..., refs/pull/...: not a branch
                value = value.removeprefix(rule.strip)
            if value and check_ref_name(value) is None:
                return Branch(value, f"{ci}: {rule.variable}")
    return None


def resolve_branch(
    checked_out: str | None, *, explicit: str | None, environ: Mapping[str, str]
) -> Branch | None:
    """The release's branch: `explicit` (--branch), else git's `checked_out`, else the CI's.

    UsageError when `explicit` is no branch name, or differs from the branch
    git has checked out (a release names the branch it is made from).
    """
    if explicit is not None:
        problem = check_ref_name(explicit)
        if problem is not None:
            raise UsageError(f"--branch {explicit!r} is not a branch name: {problem}")
        if checked_out is not None and checked_out != explicit:
            raise UsageError(
                f"--branch {explicit} names another branch than the one checked out "
                f"({checked_out})",
                hint=f"check out {explicit} first, or leave --branch out",
            )
        return Branch(explicit, "--branch")
    if checked_out is not None:
        return Branch(checked_out, "git")
    return ci_branch(environ)
