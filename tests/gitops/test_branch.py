"""Which branch a release is made from: --branch, git, or the CI's own variables."""

from __future__ import annotations

import pytest

from mlcycle.errors import UsageError
from mlcycle.gitops import Branch, ci_branch, resolve_branch


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        # GitHub Actions: a push to a branch, a pull request, a tag.
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/heads/main", "GITHUB_REF_NAME": "main"},
            Branch("main", "GitHub Actions: GITHUB_REF"),
        ),
        (
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_REF": "refs/pull/7/merge",
                "GITHUB_REF_NAME": "7/merge",
                "GITHUB_HEAD_REF": "feature/x",
            },
            Branch("feature/x", "GitHub Actions: GITHUB_HEAD_REF"),
        ),
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/tags/v1", "GITHUB_REF_NAME": "v1"},
            None,
        ),
        # Only the short name (a runner that passes GITHUB_REF_NAME on, not GITHUB_REF):
        # a branch when GITHUB_REF_TYPE says so, never a tag.
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "main", "GITHUB_REF_TYPE": "branch"},
            Branch("main", "GitHub Actions: GITHUB_REF_NAME"),
        ),
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "v1", "GITHUB_REF_TYPE": "tag"},
            None,
        ),
        ({"GITHUB_ACTIONS": "true", "GITHUB_REF_NAME": "main"}, None),
        # GitLab CI: a branch pipeline, a merge request pipeline, a tag pipeline.
        (
            {"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main"},
            Branch("main", "GitLab CI: CI_COMMIT_BRANCH"),
        ),
        (
            {
                "GITLAB_CI": "true",
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "fix",
                "CI_COMMIT_REF_NAME": "fix",
            },
            Branch("fix", "GitLab CI: CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
        ),
        (
            {"GITLAB_CI": "true", "CI_COMMIT_REF_NAME": "dev"},
            Branch("dev", "GitLab CI: CI_COMMIT_REF_NAME"),
        ),
        ({"GITLAB_CI": "true", "CI_COMMIT_REF_NAME": "v1", "CI_COMMIT_TAG": "v1"}, None),
        # Others, cheaply.
        (
            {"JENKINS_URL": "http://j", "BRANCH_NAME": "main"},
            Branch("main", "Jenkins: BRANCH_NAME"),
        ),
        (
            {"BUILDKITE": "true", "BUILDKITE_BRANCH": "main"},
            Branch("main", "Buildkite: BUILDKITE_BRANCH"),
        ),
        ({"BUILDKITE": "true", "BUILDKITE_BRANCH": "v1", "BUILDKITE_TAG": "v1"}, None),
        (
            {"TF_BUILD": "True", "BUILD_SOURCEBRANCH": "refs/heads/rel/2"},
            Branch("rel/2", "Azure Pipelines: BUILD_SOURCEBRANCH"),
        ),
        # A variable without its CI's marker is not believed (a stray export).
        ({"CI_COMMIT_BRANCH": "main"}, None),
        # Nor a value that cannot name a branch.
        ({"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "a..b"}, None),
    ],
)
def test_ci_branch(environ: dict[str, str], expected: Branch | None) -> None:
    assert ci_branch(environ) == expected


def test_resolve_branch_order() -> None:
    ci = {"GITLAB_CI": "true", "CI_COMMIT_BRANCH": "main"}
    assert resolve_branch("dev", explicit=None, environ=ci) == Branch("dev", "git")
    assert resolve_branch(None, explicit=None, environ=ci) == Branch(
        "main", "GitLab CI: CI_COMMIT_BRANCH"
    )
    assert resolve_branch(None, explicit="rel", environ=ci) == Branch("rel", "--branch")
    assert resolve_branch("rel", explicit="rel", environ={}) == Branch("rel", "--branch")
    assert resolve_branch(None, explicit=None, environ={}) is None


def test_resolve_branch_refuses_a_bad_or_contradicting_name() -> None:
    with pytest.raises(UsageError, match="not a branch name"):
        resolve_branch(None, explicit="a b", environ={})
    with pytest.raises(UsageError, match=r"another branch than the one checked out \(dev\)"):
        resolve_branch("dev", explicit="main", environ={})
