"""`mlcycle init`: every pattern renders a valid project in a clean repo; errors leave no trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
import yaml

from mlcycle.errors import GitError, UsageError
from mlcycle.scaffold import (
    PATTERNS,
    InitResult,
    check_name,
    image_name,
    init_project,
    schema_url,
)
from mlcycle.scaffold.render import target_path
from mlcycle.spec import validate_file
from tests.conftest import build_file_tree
from tests.inprocess import run_in_process
from tests.scaffold.conftest import snapshot


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`mlcycle ARGS` in-process through the CLI's entry point and error funnel (exit code,
    stdout, stderr); the console script itself is tested in tests/test_cli_basics.py."""
    code, out, err = run_in_process(list(args), cwd=cwd)
    return subprocess.CompletedProcess(["mlcycle", *args], code, out, err)


# --- every pattern renders and validates ---------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rendered_spec_validates_as_its_pattern(
    projects: dict[str, InitResult], pattern: str
) -> None:
    spec = projects[pattern].directory / "lifecycle.yaml"
    report = validate_file(spec)
    assert report.ok, [d.format() for d in report.errors]
    assert report.pattern.pattern == pattern


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rendered_spec_starts_with_schema_modeline_and_explains_sections(
    projects: dict[str, InitResult], pattern: str
) -> None:
    text = (projects[pattern].directory / "lifecycle.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == f"# yaml-language-server: $schema={schema_url()}"
    document = yaml.safe_load(text)
    assert document["name"] == f"demo-{pattern}"
    # Every top-level section is introduced by a comment line right above it.
    for key in document:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        if key not in ("apiVersion", "name", "description"):
            assert lines[index - 1].startswith("# "), f"section {key} has no comment"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_no_placeholder_survives_rendering(projects: dict[str, InitResult], pattern: str) -> None:
    result = projects[pattern]
    for created in result.files:
        path = result.directory / created.path
        if path.suffix in (".db", ".parquet", ".csv"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "@@" not in text, created.path
        assert created.about, f"{created.path} has no description"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_readme_names_the_pattern_and_next_commands(
    projects: dict[str, InitResult], pattern: str
) -> None:
    result = projects[pattern]
    readme = (result.directory / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(f"# demo-{pattern}\n")
    assert f"## The lifecycle: {pattern}" in readme
    assert "mlcycle validate" in readme
    assert result.next_steps[0] == f"cd {result.directory}"  # tmp dirs are outside the cwd
    assert "mlcycle validate" in result.next_steps


# --- git ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_git_repo_has_one_commit_clean_tree_and_ignores_state(
    projects: dict[str, InitResult], pattern: str
) -> None:
    result = projects[pattern]
    assert result.commit is not None
    with git.Repo(result.directory) as repo:
        assert repo.active_branch.name == "main"
        commits = list(repo.iter_commits())
        assert len(commits) == 1
        assert commits[0].hexsha == result.commit.sha
        assert commits[0].author.email == "tests@mlcycle.invalid"
        assert not result.commit.fallback_identity
        assert not repo.is_dirty(untracked_files=True)
        tracked = set(repo.git.ls_files().splitlines())
        assert tracked == {f.path for f in result.files}
        assert repo.ignored(".mlcycle/registry/x", ".mlcycle/store.db") == [
            ".mlcycle/registry/x",
            ".mlcycle/store.db",
        ]


def test_without_git_identity_the_first_commit_uses_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    monkeypatch.setenv("HOME", str(empty_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(empty_home / ".config"))
    for variable in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
        "GIT_CONFIG_GLOBAL",
    ):
        monkeypatch.delenv(variable, raising=False)
    result = run_cli("init", "anon", "--pattern", "interactive", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no git identity is configured" in result.stderr
    assert "mlcycle <mlcycle@localhost>" in result.stderr
    with git.Repo(tmp_path / "anon") as repo:
        commit = repo.head.commit
        assert (commit.author.name, commit.author.email) == ("mlcycle", "mlcycle@localhost")
        assert (commit.committer.name, commit.committer.email) == ("mlcycle", "mlcycle@localhost")
        # Only that commit: no identity was written to any config.
        with repo.config_reader("repository") as config:
            assert not config.has_section("user")
    assert not (empty_home / ".gitconfig").exists()


def test_no_git_creates_no_repository(tmp_path: Path) -> None:
    result = init_project("plain", pattern="interactive", directory=tmp_path / "p", git=False)
    assert result.commit is None
    assert not (tmp_path / "p" / ".git").exists()
    assert result.as_dict()["git"] is None


def test_a_project_made_inside_a_repository_is_said_to_be_a_nested_one(tmp_path: Path) -> None:
    # A trial: `mlcycle init sub` inside a repository made a nested one silently.
    from tests.inprocess import run_in_process

    outer = tmp_path / "mono"
    outer.mkdir()
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    code, _, err = run_in_process(["init", "sub", "--pattern", "open"], cwd=outer)
    assert code == 0, err
    message = " ".join(err.split())
    assert f"is inside the git repository {outer}" in message
    assert "untracked" in message and "--no-git" in message and "-d DIR" in message
    assert (outer / "sub" / ".git").is_dir()

    # --no-git: the files belong to the outer repository, nothing to warn about.
    code, _, err = run_in_process(["init", "plain", "--pattern", "open", "--no-git"], cwd=outer)
    assert code == 0 and "warning" not in err
    # Outside any repository: no warning.
    alone = init_project("alone", pattern="open", directory=tmp_path / "alone")
    assert alone.outer_repository is None


# --- refusals and clean failure -------------------------------------------------------------


def test_refuses_a_non_empty_directory_and_leaves_it_untouched(tmp_path: Path) -> None:
    target = build_file_tree(
        tmp_path / "busy",
        {"notes.txt": "mine\n", "lifecycle.yaml": "keep: me\n", "sub": {"a.bin": b"\x00\x01"}},
    )
    before = snapshot(target)
    result = run_cli("init", "busy", "--directory", str(target))
    assert result.returncode == 2
    assert f"refusing to create the project in {target}: the directory is not empty" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert snapshot(target) == before


def test_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        init_project("taken", directory=tmp_path / "taken")
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize(
    "name",
    ["Churn", "-churn", "churn-", "my churn", "churn!", "", "x" * 64, "ünïcode", "a/b"],
)
def test_a_bad_name_exits_2_and_creates_nothing(tmp_path: Path, name: str) -> None:
    result = run_cli("init", "--", name, cwd=tmp_path)  # `--`: "-churn" is no option
    assert result.returncode == 2
    assert f"invalid project name {name!r}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_name_suggests_a_valid_one() -> None:
    with pytest.raises(UsageError) as info:
        check_name("My Churn Model")
    assert info.value.hint == "try 'my-churn-model'"


@pytest.mark.parametrize("name", ["a", "0", "1.5", "yes", "null", "x" * 63, "a.b_c-d"])
def test_names_yaml_would_misread_stay_strings(tmp_path: Path, name: str) -> None:
    result = init_project(name, pattern="interactive", directory=tmp_path / "p", git=False)
    report = validate_file(result.directory / "lifecycle.yaml")
    assert report.ok, [d.format() for d in report.errors]
    document = yaml.safe_load((result.directory / "lifecycle.yaml").read_text())
    assert document["name"] == name
    assert document["deployment"]["image"]["name"] == image_name(name)


def test_unknown_pattern_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown pattern 'closed'"):
        init_project("x", pattern="closed", directory=tmp_path / "x")
    result = run_cli("init", "x", "--pattern", "closed", cwd=tmp_path)
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pre_existing", [False, True])
def test_failure_midway_removes_only_what_init_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pre_existing: bool
) -> None:
    # A real git failure after every file is written: git cannot create its index there.
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "no" / "such" / "dir" / "index"))
    parent = tmp_path / "parent"
    target = parent / "deeper" / "proj"
    if pre_existing:
        target.mkdir(parents=True)
    with pytest.raises(GitError, match="first commit"):
        init_project("proj", pattern="interactive", directory=target)
    if pre_existing:
        assert target.is_dir()
        assert list(target.iterdir()) == []
    else:
        assert not parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["parent"] if pre_existing else [])


def test_failure_midway_through_the_cli_exits_1_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "missing" / "index"))
    result = run_cli("init", "proj", "-p", "interactive", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: the first commit" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "proj").exists()


# --- CLI output ----------------------------------------------------------------------------


def test_cli_json_output_describes_the_project(tmp_path: Path) -> None:
    result = run_cli("init", "churn", "--pattern", "open", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["name"] == "churn"
    assert payload["pattern"] == "open"
    assert Path(payload["directory"]) == (tmp_path / "churn").absolute()
    paths = [f["path"] for f in payload["files"]]
    assert paths[:2] == ["lifecycle.yaml", "README.md"]
    assert {".gitignore", ".github/workflows/mlcycle.yml", ".gitlab-ci.yml"} <= set(paths)
    assert "data/events.db" in paths
    assert payload["git"]["branch"] == "main"
    assert payload["git"]["fallback_identity"] is False
    assert payload["next_steps"][:2] == ["cd churn", "mlcycle validate"]


def test_cli_prints_files_and_next_commands(tmp_path: Path) -> None:
    result = run_cli("init", "churn", "-p", "adaptive", "-d", "work/churn", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Created the adaptive project churn" in out
    assert "lifecycle.yaml" in out
    assert "git: first commit" in out
    assert "cd work/churn" in out
    assert "mlcycle update" in out


# --- small pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("churn", "churn"),
        ("a.b_c-d", "a.b_c-d"),
        ("a._b", "a-b"),
        ("a__b", "a__b"),
    ],
)
def test_image_name_is_a_valid_image_repository(name: str, image: str) -> None:
    assert image_name(name) == image


def test_dot_components_become_dotfiles() -> None:
    assert target_path("dot-github/workflows/mlcycle.yml").as_posix() == (
        ".github/workflows/mlcycle.yml"
    )
    assert target_path("dot-gitignore").as_posix() == ".gitignore"
    assert target_path("data/dot-keep").as_posix() == "data/.keep"
    assert target_path("README.md").as_posix() == "README.md"


def test_every_template_directory_is_a_pattern_init_offers() -> None:
    from mlcycle.scaffold.render import available_patterns

    assert available_patterns() == tuple(sorted(PATTERNS))


def test_a_name_with_two_dots_is_refused_because_git_refuses_it_in_tags() -> None:
    from mlcycle.scaffold import check_name

    with pytest.raises(UsageError, match=r"never '\.\.'") as info:
        check_name("a..b")
    assert info.value.hint == "try 'a.b'"


def _init_output(tmp_path: Path, name: str, *, terminal: bool) -> str:
    """What `mlcycle init` prints on stdout at COLUMNS=80, to a pipe or to a terminal."""
    import pty

    env = {**os.environ, "COLUMNS": "80"}
    args = [sys.executable, "-m", "mlcycle", "init", name, "--no-git", "-d", str(tmp_path / name)]
    if not terminal:
        done = subprocess.run(args, capture_output=True, text=True, check=False, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout
    leader, follower = pty.openpty()
    with subprocess.Popen(args, stdout=follower, stderr=subprocess.DEVNULL, env=env) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed (EIO on Linux)
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait() == 0
    os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_init_lists_its_files_without_trailing_spaces(tmp_path: Path, terminal: bool) -> None:
    out = _init_output(tmp_path, "neat", terminal=terminal)
    lines = out.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    listed = [line for line in lines if line.startswith("  lifecycle.yaml ")]
    assert len(listed) == 1
    # Still aligned: every description starts in the same column.
    files = lines[lines.index(listed[0]) : lines.index(listed[0]) + 4]
    starts = {len(line) - len(line.split("  ", 2)[-1].lstrip()) for line in files}
    assert len(starts) == 1, files
