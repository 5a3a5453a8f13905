"""Repo on real repositories: state checks, release tags, and pushes to real remotes."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.errors import ExitCode, GitError, UsageError
from mlcycle.gitops import (
    FALLBACK_EMAIL,
    FALLBACK_NAME,
    Repo,
    TagFormat,
    Version,
    parse_release_message,
    release_message,
)

from .conftest import commit, git

FMT = TagFormat()


def tag_lightly(repo: Path, tag: str) -> None:
    git(repo, "tag", tag)


def tag_annotated(repo: Path, tag: str, message: str = "by hand") -> None:
    git(repo, "tag", "-a", "-m", message, tag, identity=True)


def test_importing_gitops_does_not_import_gitpython() -> None:
    code = "import sys, mlcycle.gitops; print('git' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_without_the_git_program_opening_is_a_git_error(tmp_path: Path) -> None:
    code = (
        "from mlcycle.errors import GitError\n"
        "from mlcycle.gitops import Repo\n"
        "try:\n    Repo.find('.')\n"
        "except GitError as e:\n    print(e.message.splitlines()[0]); print(e.hint)\n"
    )
    env = {**os.environ, "PATH": str(tmp_path / "no-bin")}
    env.pop("GIT_PYTHON_GIT_EXECUTABLE", None)
    env.pop("GIT_PYTHON_REFRESH", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("git is not usable (is it installed and on PATH?)")
    assert "apt-get install git" in done.stdout


def test_repo_as_context_manager(repo_path: Path) -> None:
    with Repo.find(repo_path) as repo:
        assert repo.head_commit() is not None
    assert repr(repo) == f"Repo({str(repo_path)!r})"


# --- finding the repository and its state ------------------------------------------------


def test_find_from_a_subfolder(repo_path: Path) -> None:
    repo = Repo.find(repo_path / "src")
    assert repo.root == repo_path
    assert repo.branch() == "main"
    assert not repo.is_detached()
    assert repo.head_commit() == git(repo_path, "rev-parse", "HEAD").strip()


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError) as info:
        Repo.find(tmp_path)
    assert "not a git repository" in str(info.value)
    assert info.value.hint is not None
    assert "git init" in info.value.hint and "mlcycle init" in info.value.hint
    assert info.value.exit_code == ExitCode.RUNTIME


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="no such file"):
        Repo.find(tmp_path / "nowhere")


def test_bare_repository_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(GitError, match="bare repository"):
        Repo.find(tmp_path / "bare.git")


def test_repository_without_commits(empty_repo: Path) -> None:
    repo = Repo.find(empty_repo)
    assert repo.head_commit() is None
    assert repo.branch() == "main"
    assert not repo.is_detached()
    assert repo.release_tags(FMT, "churn") == []
    assert repo.next_version(FMT, "churn", "minor") == Version(0, 1, 0)
    with pytest.raises(GitError, match="no commits") as info:
        repo.create_tag("churn@v0.1.0", "Release")
    assert info.value.hint is not None and "commit" in info.value.hint


def test_detached_head(repo_path: Path) -> None:
    first = git(repo_path, "rev-parse", "HEAD").strip()
    commit(repo_path, message="second")
    git(repo_path, "checkout", "-q", "--detach", first)
    repo = Repo.find(repo_path)
    assert repo.is_detached()
    assert repo.branch() is None
    assert repo.head_commit() == first


def test_clean_tree(repo_path: Path) -> None:
    (repo_path / ".mlcycle" / "registry").mkdir(parents=True)
    (repo_path / ".mlcycle" / "registry" / "entry.json").write_text("{}")
    (repo_path / "run.log").write_text("ignored\n")
    assert Repo.find(repo_path).dirty_paths() == []


def test_modified_file_is_dirty(repo_path: Path) -> None:
    (repo_path / "src" / "train.py").write_text("print('changed')\n")
    assert Repo.find(repo_path).dirty_paths() == ["src/train.py"]


def test_staged_file_is_dirty(repo_path: Path) -> None:
    (repo_path / "new.py").write_text("x = 1\n")
    git(repo_path, "add", "new.py")
    assert Repo.find(repo_path).dirty_paths() == ["new.py"]


def test_untracked_files_are_dirty_but_ignored_ones_are_not(repo_path: Path) -> None:
    (repo_path / "notes dir").mkdir()
    (repo_path / "notes dir" / "to do.txt").write_text("x\n")
    (repo_path / "debug.log").write_text("ignored\n")
    (repo_path / ".mlcycle").mkdir()
    (repo_path / ".mlcycle" / "store.db").write_text("ignored\n")
    repo = Repo.find(repo_path)
    assert repo.dirty_paths() == ["notes dir/to do.txt"]
    assert repo.is_dirty()


def test_deleted_and_renamed_files_are_dirty(repo_path: Path) -> None:
    git(repo_path, "mv", "src/train.py", "src/fit.py")
    (repo_path / "lifecycle.yaml").unlink()
    assert Repo.find(repo_path).dirty_paths() == ["lifecycle.yaml", "src/fit.py", "src/train.py"]


# --- reading release tags ----------------------------------------------------------------


def test_release_tags_sorted_by_version_and_other_tags_ignored(repo_path: Path) -> None:
    first = git(repo_path, "rev-parse", "HEAD").strip()
    for tag in ("churn@v0.2.0", "churn@v0.10.0", "churn@v1.0.0-rc.1"):
        tag_annotated(repo_path, tag, release_message(f"Release {tag}", {"tag": tag}))
    second = commit(repo_path, message="second")
    tag_annotated(repo_path, "churn@v0.9.1")
    tag_lightly(repo_path, "churn@v0.0.5")  # a hand-made lightweight tag still counts
    for other in ("churner@v9.0.0", "other@v5.0.0", "churn#prod#1", "churn@v2.0", "v3.0.0"):
        tag_annotated(repo_path, other)
    # A release-looking tag of a tree is not a release.
    tree = git(repo_path, "rev-parse", "HEAD^{tree}").strip()
    git(repo_path, "tag", "churn@v7.0.0", tree)

    repo = Repo.find(repo_path)
    tags = repo.release_tags(FMT, "churn")
    assert [t.name for t in tags] == [
        "churn@v0.0.5",
        "churn@v0.2.0",
        "churn@v0.9.1",
        "churn@v0.10.0",
        "churn@v1.0.0-rc.1",
    ]
    by_name = {t.name: t for t in tags}
    assert by_name["churn@v0.2.0"].commit == first
    assert by_name["churn@v0.9.1"].commit == second
    assert by_name["churn@v0.2.0"].metadata == {"tag": "churn@v0.2.0"}
    assert by_name["churn@v0.9.1"].metadata == {}  # a message without metadata
    assert by_name["churn@v0.2.0"].tagger == "Test Author <author@tests.invalid>"
    assert by_name["churn@v0.2.0"].author == by_name["churn@v0.2.0"].tagger
    light = by_name["churn@v0.0.5"]
    assert (light.annotated, light.tagger, light.message) == (False, None, "")
    assert light.commit == second

    assert repo.latest_version(FMT, "churn") == Version(1, 0, 0, "rc.1")
    assert repo.next_version(FMT, "churn", "major") == Version(1, 0, 0)
    assert repo.latest_version(FMT, "churner") == Version(9, 0, 0)
    assert repo.latest_version(FMT, "nobody") is None


def test_a_tag_with_damaged_metadata_still_lists(repo_path: Path) -> None:
    damaged = release_message("Release", {"a": 1}).replace('"a": 1', '"a": ')
    tag_annotated(repo_path, "churn@v0.1.0", damaged)
    [tag] = Repo.find(repo_path).release_tags(FMT, "churn")
    assert tag.metadata == {} and tag.message.startswith("Release")


def test_custom_tag_format(repo_path: Path) -> None:
    tag_annotated(repo_path, "release/1.2.0")
    tag_annotated(repo_path, "churn@v5.0.0")
    repo = Repo.find(repo_path)
    fmt = TagFormat("release/{version}").validate("churn")
    assert [t.version for t in repo.release_tags(fmt, "churn")] == [Version(1, 2, 0)]
    assert repo.next_version(fmt, "churn", "patch") == Version(1, 2, 1)


@pytest.mark.parametrize(
    ("existing", "bump", "expected"),
    [
        ((), "minor", "0.1.0"),
        ((), "patch", "0.0.1"),
        ((), "major", "1.0.0"),
        (("0.1.0",), "minor", "0.2.0"),
        (("0.1.0",), "patch", "0.1.1"),
        (("0.1.0", "0.3.2", "0.2.9"), "patch", "0.3.3"),
        (("0.9.0", "1.0.0-rc.2"), "major", "1.0.0"),
    ],
)
def test_next_version(repo_path: Path, existing: tuple[str, ...], bump: str, expected: str) -> None:
    for version in existing:
        tag_annotated(repo_path, f"churn@v{version}")
    assert str(Repo.find(repo_path).next_version(FMT, "churn", bump)) == expected


# --- creating and deleting tags ------------------------------------------------------------


METADATA = {
    "release": "0.1.0",
    "metrics": {"accuracy": 0.95},
    "data": {"window": ["2024-01-01", "2024-03-31"]},
    "spec_hash": "sha256:" + "0" * 64,
    "registry": {"release": "0.1.0", "generation": 1},
}


def test_create_annotated_tag_with_metadata(repo_path: Path) -> None:
    repo = Repo.find(repo_path)
    message = release_message("Release churn 0.1.0", METADATA)
    tag = repo.create_tag(FMT.format("churn", "0.1.0"), message)

    assert tag.name == "churn@v0.1.0"
    assert tag.version == Version(0, 1, 0)
    assert tag.commit == repo.head_commit()
    assert tag.annotated and tag.metadata == METADATA
    assert tag.summary == "Release churn 0.1.0"
    assert tag.tagger == "mlcycle tests <tests@mlcycle.invalid>"  # the configured identity
    assert tag.date[:4].isdigit() and ("+" in tag.date[10:] or "-" in tag.date[10:])
    # git itself sees an annotated tag whose message carries the metadata.
    assert git(repo_path, "cat-file", "-t", "churn@v0.1.0").strip() == "tag"
    contents = git(repo_path, "for-each-ref", "--format=%(contents)", "refs/tags/churn@v0.1.0")
    assert parse_release_message(contents) == METADATA
    assert repo.release_tags(FMT, "churn") == [tag]
    assert repo.tag_exists("churn@v0.1.0") and not repo.tag_exists("churn@v0.2.0")


def test_message_is_kept_verbatim(repo_path: Path) -> None:
    # git's default cleanup would drop lines starting with '#' and squeeze blank lines.
    message = "Release\n\n# kept\n\n\n  indented  \n"
    tag = Repo.find(repo_path).create_tag("churn@v0.1.0", message)
    assert tag.message == message.rstrip("\n")


def test_create_tag_on_another_commit(repo_path: Path) -> None:
    first = git(repo_path, "rev-parse", "HEAD").strip()
    commit(repo_path, message="second")
    repo = Repo.find(repo_path)
    tag = repo.create_tag("churn@v0.1.0", "Release", commit=first[:10])
    assert tag.commit == first
    with pytest.raises(GitError, match="not a commit"):
        repo.create_tag("churn@v0.2.0", "Release", commit="0" * 40)


def test_create_tag_in_detached_head(repo_path: Path) -> None:
    git(repo_path, "checkout", "-q", "--detach")
    repo = Repo.find(repo_path)
    assert repo.create_tag("churn@v1.0.0", "Release").commit == repo.head_commit()


def test_version_of_a_created_tag(repo_path: Path) -> None:
    repo = Repo.find(repo_path)
    fmt = TagFormat("{name}-{version}-final")
    tag = repo.create_tag(fmt.format("churn", "2.0.0"), "R", version=Version(2, 0, 0))
    assert tag.version == Version(2, 0, 0)
    assert repo.create_tag("churn@v1.0.0-rc.1+b.2", "R").version == Version.parse("1.0.0-rc.1+b.2")
    with pytest.raises(UsageError, match="semantic version"):
        repo.create_tag("churn-latest", "R")
    with pytest.raises(UsageError, match="not a valid git tag"):
        repo.create_tag("churn v1.0.0", "R")
    assert not repo.tag_exists("churn-latest")


def test_existing_tag_is_a_git_error(repo_path: Path) -> None:
    tag_annotated(repo_path, "churn@v0.1.0", "made elsewhere")
    repo = Repo.find(repo_path)
    with pytest.raises(GitError, match="already exists") as info:
        repo.create_tag("churn@v0.1.0", release_message("Release", METADATA))
    assert info.value.hint is not None and "git tag -d churn@v0.1.0" in info.value.hint
    # The existing tag is untouched.
    assert repo.release_tags(FMT, "churn")[0].message == "made elsewhere"


def test_delete_tag(repo_path: Path) -> None:
    repo = Repo.find(repo_path)
    repo.create_tag("churn@v0.1.0", "Release")
    repo.delete_tag("churn@v0.1.0")
    assert not repo.tag_exists("churn@v0.1.0")
    assert git(repo_path, "tag", "--list") == ""
    with pytest.raises(GitError, match=re.escape("no tag churn@v0.1.0")):
        repo.delete_tag("churn@v0.1.0")


@pytest.fixture
def no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment like a fresh CI runner: no identity in the environment or any config."""
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
        "GIT_CONFIG_GLOBAL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_git_identity")
def test_fallback_identity_when_git_has_none(repo_path: Path) -> None:
    tag = Repo.find(repo_path).create_tag("churn@v0.1.0", "Release")
    assert tag.tagger == f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>"
    # Nothing was written to git's configuration, and the environment is unchanged.
    assert git(repo_path, "config", "--get", "user.name", check=False) == ""
    assert "user." not in (repo_path / ".git" / "config").read_text()
    assert "GIT_COMMITTER_NAME" not in os.environ


@pytest.mark.usefixtures("no_git_identity")
def test_configured_identity_wins_over_the_fallback(repo_path: Path) -> None:
    git(repo_path, "config", "user.name", "Repo Person")
    tag = Repo.find(repo_path).create_tag("churn@v0.1.0", "Release")
    # Only the missing part (the email) falls back.
    assert tag.tagger == f"Repo Person <{FALLBACK_EMAIL}>"


# --- pushing -----------------------------------------------------------------------------


def remote_tags(remote: Path) -> dict[str, str]:
    out = git(remote, "for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/tags")
    return dict(line.split(" ") for line in out.splitlines())


def test_push_to_a_bare_remote(repo_path: Path, bare_remote: Path) -> None:
    repo = Repo.find(repo_path)
    tag = repo.create_tag("churn@v0.1.0", release_message("Release", METADATA))
    repo.push_tag(tag.name)
    local_object = git(repo_path, "rev-parse", "refs/tags/churn@v0.1.0").strip()
    assert remote_tags(bare_remote) == {"churn@v0.1.0": local_object}
    # The remote holds the annotated tag with its metadata.
    contents = git(bare_remote, "for-each-ref", "--format=%(contents)", "refs/tags/churn@v0.1.0")
    assert parse_release_message(contents) == METADATA
    repo.push_tag(tag.name)  # pushing again is a no-op, not an error


def test_push_rejected_by_a_hook(repo_path: Path, bare_remote: Path) -> None:
    hook = bare_remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'releases are frozen until Monday' >&2\nexit 1\n")
    hook.chmod(0o755)
    repo = Repo.find(repo_path)
    repo.create_tag("churn@v0.1.0", "Release")
    with pytest.raises(GitError) as info:
        repo.push_tag("churn@v0.1.0")
    message = str(info.value)
    assert "pushing tag churn@v0.1.0 to origin failed" in message
    assert "pre-receive hook declined" in message
    assert "remote: releases are frozen until Monday" in message
    assert info.value.exit_code == ExitCode.RUNTIME
    assert remote_tags(bare_remote) == {}


def test_push_rejected_when_the_remote_has_the_tag_elsewhere(
    repo_path: Path, bare_remote: Path, tmp_path: Path
) -> None:
    # Someone else released churn@v0.1.0 from another clone first.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare_remote), str(other))
    commit(other, message="their work")
    tag_annotated(other, "churn@v0.1.0", "their release")
    git(other, "push", "-q", "origin", "HEAD:refs/heads/main", "refs/tags/churn@v0.1.0")
    theirs = remote_tags(bare_remote)

    repo = Repo.find(repo_path)
    repo.create_tag("churn@v0.1.0", "our release")
    with pytest.raises(GitError, match="already exists") as info:
        repo.push_tag("churn@v0.1.0")
    assert info.value.hint is not None and "git fetch origin tag churn@v0.1.0" in info.value.hint
    assert remote_tags(bare_remote) == theirs


def test_push_to_a_missing_remote(repo_path: Path) -> None:
    repo = Repo.find(repo_path)
    repo.create_tag("churn@v0.1.0", "Release")
    with pytest.raises(GitError, match="no git remote named 'origin'") as info:
        repo.push_tag("churn@v0.1.0")
    assert info.value.hint is not None and "git remote add origin" in info.value.hint


def test_push_names_the_remotes_there_are(repo_path: Path, bare_remote: Path) -> None:
    repo = Repo.find(repo_path)
    repo.create_tag("churn@v0.1.0", "Release")
    with pytest.raises(GitError, match="'upstream'") as info:
        repo.push_tag("churn@v0.1.0", remote="upstream")
    assert info.value.hint is not None and "origin" in info.value.hint
    assert repo.remotes() == ["origin"]


def test_push_to_an_unreachable_remote(repo_path: Path, tmp_path: Path) -> None:
    git(repo_path, "remote", "add", "origin", str(tmp_path / "gone.git"))
    repo = Repo.find(repo_path)
    repo.create_tag("churn@v0.1.0", "Release")
    with pytest.raises(GitError, match="failed") as info:
        repo.push_tag("churn@v0.1.0")
    assert "does not appear to be a git repository" in str(info.value)
    assert info.value.hint is not None and "reachable" in info.value.hint


def test_push_of_a_missing_tag(repo_path: Path, bare_remote: Path) -> None:
    with pytest.raises(GitError, match=re.escape("no tag churn@v0.1.0")):
        Repo.find(repo_path).push_tag("churn@v0.1.0")


def test_release_tag_json_friendly(repo_path: Path) -> None:
    # What `history --json` will print: every field but the version is plain JSON already.
    tag = Repo.find(repo_path).create_tag("churn@v0.1.0", release_message("R", METADATA))
    plain = json.loads(json.dumps(dataclasses.asdict(tag)))
    assert plain["metadata"] == METADATA and plain["commit"] == tag.commit
