"""`release` in CI checkouts: detached HEADs, shallow clones without tags (issue 11, 3a/3b).

In-process through `mlcycle.api`, against a real bare remote in tmp_path: the
project is pushed there with a release tag, and CI's clone is made the way CI
systems make it (`git clone --depth 1 --no-tags`, HEAD detached).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.api.init import init
from mlcycle.errors import ExitCode, UsageError


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote holding project churn: a commit tagged churn@v0.1.0, then one more."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    work = tmp_path / "laptop"
    init("churn", pattern="open", directory=work)
    git(work, "remote", "add", "origin", str(bare))
    git(work, "tag", "-a", "-m", "released on a laptop", "churn@v0.1.0")
    (work / "NOTES.md").write_text("later work\n")
    git(work, "add", "NOTES.md")
    git(work, "commit", "-qm", "later work")
    git(work, "push", "-q", "origin", "main", "--tags")
    return bare


def ci_clone(remote: Path, into: Path) -> Path:
    """What CI checks out: one commit, no tags, HEAD detached."""
    git(into.parent, "clone", "-q", "--depth", "1", "--no-tags", f"file://{remote}", str(into))
    git(into, "checkout", "-q", "--detach")
    assert git(into, "tag", "--list") == ""
    return into


def test_a_gitlab_clone_takes_the_branch_from_ci_variables(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = ci_clone(remote, tmp_path / "ci")
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_COMMIT_BRANCH", "main")
    plan = api.release(clone, dry_run=True).plan
    assert (plan.branch, plan.branch_source) == ("main", "GitLab CI: CI_COMMIT_BRANCH")


def test_a_github_tag_build_needs_branch(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = ci_clone(remote, tmp_path / "ci")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_REF", "refs/tags/churn@v0.1.0")
    monkeypatch.setenv("GITHUB_REF_NAME", "churn@v0.1.0")
    with pytest.raises(UsageError) as refused:
        api.release(clone, dry_run=True)
    assert "HEAD is detached" in refused.value.message
    assert "--branch main" in (refused.value.hint or "")
    plan = api.release(clone, branch="main", dry_run=True).plan
    assert (plan.branch, plan.branch_source) == ("main", "--branch")


def test_a_shallow_tagless_clone_fetches_the_remote_tags_first(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = ci_clone(remote, tmp_path / "ci")
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_COMMIT_BRANCH", "main")
    plan = api.release(clone, bump="patch", dry_run=True).plan
    # Not "0.0.1, the first release": the remote's 0.1.0 is seen.
    assert (plan.version, plan.previous) == ("0.1.1", "0.1.0")
    assert plan.fetched_tags == ("churn@v0.1.0",)
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"  # still shallow

    # A real release from there, pushed: the remote gets 0.1.1 next to 0.1.0.
    result = api.release(clone, bump="patch", push=True)
    assert result.pushed and result.plan.fetched_tags == ()
    assert git(remote, "tag", "--list").split() == ["churn@v0.1.0", "churn@v0.1.1"]


def test_a_tagless_full_clone_does_not_reissue_a_version(remote: Path, tmp_path: Path) -> None:
    clone = tmp_path / "full"
    git(tmp_path, "clone", "-q", "--no-tags", str(remote), str(clone))
    plan = api.release(clone, dry_run=True).plan  # minor
    assert (plan.version, plan.tag) == ("0.2.0", "churn@v0.2.0")


def test_an_unreadable_remote_is_refused_before_training(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = ci_clone(remote, tmp_path / "ci")
    git(clone, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(UsageError) as refused:
        api.release(clone, branch="main", bump="patch")
    assert refused.value.exit_code == ExitCode.USAGE
    assert "could not list the tags of origin" in refused.value.message
    assert "shallow" in refused.value.message
    assert refused.value.hint is not None and "git fetch --tags origin" in refused.value.hint
    assert not (clone / ".mlcycle" / "registry").exists() or not any(
        (clone / ".mlcycle" / "registry").rglob("*.skops")
    )
    assert git(clone, "tag", "--list") == ""


def test_without_a_remote_the_local_tags_are_all_there_is(tmp_path: Path) -> None:
    work = tmp_path / "alone"
    init("churn", pattern="open", directory=work)
    assert api.release(work, dry_run=True).plan.fetched_tags == ()


def test_a_shallow_clone_without_a_remote_is_refused_before_training(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trial: the remote held 0.1.0 on this very commit's ancestor; with origin removed
    # the clone has no tags and nowhere to read them, so "0.0.1, the first release" was
    # released. It must refuse, exit 2, with the command that fixes it.
    clone = ci_clone(remote, tmp_path / "ci")
    git(clone, "remote", "remove", "origin")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_REF", "refs/heads/main")
    with pytest.raises(UsageError) as refused:
        api.release(clone, bump="patch")
    assert refused.value.exit_code == ExitCode.USAGE
    assert "shallow" in refused.value.message and "no remote" in refused.value.message
    assert refused.value.hint is not None
    assert "git remote add origin URL && git fetch --tags origin" in refused.value.hint
    assert not (clone / ".mlcycle" / "registry").exists() or not any(
        (clone / ".mlcycle" / "registry").rglob("*.skops")
    )
    assert git(clone, "tag", "--list") == ""
