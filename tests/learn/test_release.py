"""`mlcycle release` and `mlcycle history` in real git repositories made by `mlcycle init`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle.gitops import parse_release_message
from tests.forked import Command, Zygote
from tests.learn.conftest import mlcycle


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """A project made by `mlcycle init` (a git repository with a first commit)."""

    def make(pattern: str = "open", name: str = "churn") -> Path:
        result = mlcycle("init", name, "--pattern", pattern, "-d", tmp_path / name)
        assert result.code == 0, result.err
        return tmp_path / name

    return make


def registry_state(root: Path) -> list[tuple[str, str]]:
    entries = mlcycle("models", "--json", cwd=root).json()["entries"]
    return [(e["ref"], e["status"]) for e in entries]


def tags(root: Path) -> list[str]:
    return git(root, "tag", "--list").split()


def test_release_tags_registers_and_history_shows_it(project: Callable[..., Path]) -> None:
    root = project()
    result = mlcycle("release", "--bump", "minor", "--json", cwd=root)
    assert result.code == 0, result.err
    data = result.json()
    assert data["version"] == "0.1.0" and data["tag"] == "churn@v0.1.0"
    assert data["ref"] == "0.1.0/1"
    assert data["gate"]["passed"] is True
    assert tags(root) == ["churn@v0.1.0"]
    assert git(root, "cat-file", "-t", "churn@v0.1.0") == "tag"  # annotated
    message = git(root, "tag", "-l", "--format=%(contents)", "churn@v0.1.0")
    metadata = parse_release_message(message)
    assert metadata["registry"] == {"ref": "0.1.0/1", "sha256": data["sha256"]}
    assert metadata["metrics"] == data["metrics"]
    assert metadata["data"]["watermark"] == 569
    assert git(root, "rev-list", "-n1", "churn@v0.1.0") == git(root, "rev-parse", "HEAD")

    models = mlcycle("models", "--json", cwd=root).json()
    assert models["current"] == "0.1.0/1"

    history = mlcycle("history", "--json", cwd=root).json()["releases"]
    assert [(h["version"], h["status"], h["current"]) for h in history] == [
        ("0.1.0", "released", True)
    ]
    assert history[0]["commit"] == git(root, "rev-parse", "HEAD")
    assert history[0]["metrics"] == data["metrics"]
    assert history[0]["generations"] == [1]

    # A second release after a commit.
    (root / "NOTES.md").write_text("more\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-qm", "notes")
    second = mlcycle("release", "--bump", "patch", "--json", cwd=root)
    assert second.code == 0, second.err
    assert second.json()["version"] == "0.1.1"
    history = mlcycle("history", cwd=root)
    assert "0.1.0" in history.out and "0.1.1" in history.out


def test_dry_run_changes_nothing(project: Callable[..., Path]) -> None:
    root = project()
    result = mlcycle("release", "--dry-run", cwd=root)
    assert result.code == 0, result.err
    assert "would release churn@v0.1.0" in result.out
    assert "train and evaluate the model" in result.out
    assert tags(root) == []
    assert registry_state(root) == []


def test_a_dirty_tree_is_refused(project: Callable[..., Path]) -> None:
    root = project()
    (root / "scratch.py").write_text("x = 1\n")
    result = mlcycle("release", cwd=root)
    assert result.code == 2
    assert "uncommitted changes (scratch.py)" in result.err
    assert tags(root) == [] and registry_state(root) == []


def test_ignored_files_do_not_make_the_tree_dirty(project: Callable[..., Path]) -> None:
    root = project()
    (root / ".mlcycle" / "junk").mkdir(parents=True)
    assert mlcycle("release", "--dry-run", cwd=root).code == 0


def test_version_must_increase_and_tag_must_be_free(project: Callable[..., Path]) -> None:
    root = project()
    both = mlcycle("release", "--bump", "major", "--version", "1.0.0", cwd=root)
    assert (both.code, both.err) == (
        2,
        "error: --bump and --version exclude each other\nhint: pass one of them\n",
    )
    assert mlcycle("release", "--version", "1.0.0", cwd=root).code == 0
    git(root, "commit", "-q", "--allow-empty", "-m", "next change")  # one version per commit
    lower = mlcycle("release", "--version", "0.9.0", cwd=root)
    assert lower.code == 2
    assert "not greater than the latest release 1.0.0" in lower.err
    same = mlcycle("release", "--version", "1.0.0", cwd=root)
    assert same.code == 2
    git(root, "tag", "churn@v2.0.0-foreign", "HEAD")  # not a version we can read? it is: prerelease
    git(root, "tag", "-d", "churn@v2.0.0-foreign")
    git(root, "tag", "-a", "-m", "by hand", "churn@v1.1.0")
    taken = mlcycle("release", "--version", "1.1.0", cwd=root)
    assert taken.code == 2
    assert registry_state(root) == [("1.0.0/1", "released")]


def test_a_commit_that_carries_a_version_is_not_released_again(
    project: Callable[..., Path],
) -> None:
    """GTO allows one version per commit: `gto show` fails on a second one."""
    root = project()
    assert mlcycle("release", cwd=root).code == 0
    for args in (("release",), ("release", "--dry-run"), ("release", "--version", "2.0.0")):
        again = mlcycle(*args, cwd=root)
        assert again.code == 2, again.err
        assert "error: HEAD (" in again.err
        assert "already carries churn@v0.1.0: commit the change you want to release" in again.err
        assert "hint: " in again.err and "Traceback" not in again.err
    assert tags(root) == ["churn@v0.1.0"]
    assert registry_state(root) == [("0.1.0/1", "released")]
    gto = Path(sys.executable).with_name("gto")
    shown = subprocess.run([gto, "show", "--json"], cwd=root, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    # After a commit, the next version is released as usual and GTO still reads both.
    git(root, "commit", "-q", "--allow-empty", "-m", "a change")
    assert mlcycle("release", cwd=root).code == 0
    shown = subprocess.run([gto, "show", "--json"], cwd=root, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert tags(root) == ["churn@v0.1.0", "churn@v0.2.0"]


def test_detached_head_needs_an_explicit_version(project: Callable[..., Path]) -> None:
    root = project()
    git(root, "checkout", "-q", "--detach")
    result = mlcycle("release", cwd=root)
    assert result.code == 2
    assert "HEAD is detached" in result.err
    assert mlcycle("release", "--version", "0.1.0", cwd=root).code == 0


def test_not_a_git_repository(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    assert mlcycle("init", "plain", "-d", root, "--no-git").code == 0
    result = mlcycle("release", cwd=root)
    assert result.code == 1  # the project is there; its repository is what fails
    assert "not a git repository" in result.err
    assert "Traceback" not in result.err


def test_gate_failure_leaves_no_tag_and_no_entry(project: Callable[..., Path]) -> None:
    root = project()
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("roc_auc >= 0.9", "roc_auc >= 0.99999"))
    git(root, "commit", "-qam", "strict gate")
    result = mlcycle("release", cwd=root)
    assert result.code == 3, result.err
    assert "FAIL" in result.out
    assert tags(root) == [] and registry_state(root) == []


@pytest.mark.parametrize("point", ["release:registered", "release:tagged"])
def test_a_release_killed_at_each_step_leaves_a_consistent_state(
    project: Callable[..., Path], zygote: Zygote, point: str
) -> None:
    root = project()
    env = {**os.environ, "MLCYCLE_KILL_AT": point}
    (killed,) = zygote.run([Command(["release", "--json"], cwd=root, env=env)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if point == "release:tagged":
        # The tag was the last step: the release is complete.
        assert tags(root) == ["churn@v0.1.0"]
        assert registry_state(root) == [("0.1.0/1", "released")]
    else:
        # Registered, not tagged: an orphan, marked by history ...
        assert tags(root) == []
        history = mlcycle("history", "--json", cwd=root).json()["releases"]
        assert [(h["version"], h["status"]) for h in history] == [("0.1.0", "incomplete")]
        # ... which says the other cause, with a shared registry: the tag not fetched.
        shown = mlcycle("history", cwd=root)
        assert "incomplete" in shown.out and "git fetch --tags" in shown.err
        # ... and removed by the next release of that version, which completes.
        again = mlcycle("release", "--json", cwd=root)
        assert again.code == 0, again.err
        assert again.json()["orphan"] is True
        assert tags(root) == ["churn@v0.1.0"]
        assert registry_state(root) == [("0.1.0/1", "released")]


def test_push_to_a_bare_remote_and_a_rejected_push(
    project: Callable[..., Path], tmp_path: Path
) -> None:
    root = project()
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", remote], check=True)
    git(root, "remote", "add", "origin", str(remote))
    pushed = mlcycle("release", "--push", "--json", cwd=root)
    assert pushed.code == 0, pushed.err
    assert pushed.json()["pushed"] is True
    assert git(remote, "tag", "--list") == "churn@v0.1.0"

    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'releases are frozen this week' >&2\nexit 1\n")
    hook.chmod(0o755)
    (root / "NOTES.md").write_text("more\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-qm", "notes")
    refused = mlcycle("release", "--push", cwd=root)
    assert refused.code == 1
    assert "releases are frozen this week" in refused.err
    assert "rolled back" in refused.err
    assert tags(root) == ["churn@v0.1.0"]
    assert registry_state(root) == [("0.1.0/1", "released")]
    assert mlcycle("models", "--json", cwd=root).json()["current"] == "0.1.0/1"


def test_interactive_release_of_a_model_trained_by_hand(project: Callable[..., Path]) -> None:
    import sys

    root = project("interactive", "byhand")
    subprocess.run([sys.executable, "train_by_hand.py"], cwd=root, check=True, capture_output=True)
    no_commit = mlcycle("release", cwd=root)
    assert no_commit.code == 2  # model.skops is not committed yet
    git(root, "add", "model.skops")
    git(root, "commit", "-qm", "model trained by hand")
    result = mlcycle("release", "--json", cwd=root)
    assert result.code == 0, result.err
    data = result.json()
    assert data["procurement"] == "interactive"
    assert data["metrics"]["roc_auc"] > 0.9
    assert any("interactive procurement" in w for w in data["warnings"])
    entry = mlcycle("models", "--json", cwd=root).json()["entries"][0]
    assert entry["procurement"] == "interactive"
    assert entry["data"]["reproducible"] is False
    assert entry["data"]["sha256"]

    git(root, "commit", "-q", "--allow-empty", "-m", "next change")  # one version per commit
    human = mlcycle("release", "--model", root / "model.skops", "--bump", "patch", cwd=root)
    assert human.code == 0, human.err
    assert "warning: interactive procurement" in human.err


def test_model_flag_is_refused_for_unattended_projects(project: Callable[..., Path]) -> None:
    root = project()
    result = mlcycle("release", "--model", "x.skops", cwd=root)
    assert result.code == 2
    assert "--model is for interactive procurement" in result.err


def test_dual_release_reproduces_research(project: Callable[..., Path]) -> None:
    root = project("dual", "twin")
    ok = mlcycle("release", "--json", cwd=root)
    assert ok.code == 0, ok.err
    reproduction = ok.json()["reproduction"]
    assert reproduction["passed"] is True
    assert reproduction["predictions_compared"] == 113
    assert reproduction["max_prediction_delta"] <= 0.001

    # Engineering changes the model: it no longer reproduces research's results.
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("C: 1.0", "C: 0.01"))
    git(root, "commit", "-qam", "regularise more")
    refused = mlcycle("release", cwd=root)
    assert refused.code == 3, refused.err
    assert "does not reproduce research's results" in refused.err
    assert "prediction" in refused.err
    assert tags(root) == ["twin@v0.1.0"]
    assert [e for e in json.loads(mlcycle("models", "--json", cwd=root).out)["entries"]] != []
    assert registry_state(root) == [("0.1.0/1", "released")]


def test_a_release_not_pushed_names_the_push_that_finishes_it(
    project: Callable[..., Path], tmp_path: Path
) -> None:
    from tests.spec.helpers import cli

    root = project()
    # No remote at all: the tag exists only here, and the output says what to run.
    alone = cli("release", cwd=root)
    assert alone.code == 0, alone.output
    assert (
        "next: git push origin churn@v0.1.0 (until the tag is pushed, other clones see this "
        "release as incomplete)"
    ) in " ".join(alone.stdout.split())

    # A remote, and no --push: the same step, in --json too.
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", remote], check=True)
    git(root, "remote", "add", "origin", str(remote))
    (root / "NOTES.md").write_text("more\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-qm", "notes")
    unpushed = cli("release", "--json", cwd=root)
    assert unpushed.code == 0, unpushed.output
    data = json.loads(unpushed.stdout)
    assert data["pushed"] is False
    assert data["next_step"] == "git push origin churn@v0.2.0"
    assert git(remote, "tag", "--list") == ""

    # Pushed: nothing left to do, and nothing said.
    (root / "NOTES.md").write_text("more still\n")
    git(root, "commit", "-qam", "notes")
    pushed = cli("release", "--push", cwd=root)
    assert pushed.code == 0, pushed.output
    assert "next:" not in pushed.stdout
    assert "pushed to origin" in pushed.stdout
