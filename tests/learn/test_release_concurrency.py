"""Concurrent `mlcycle release` processes of one project: each one whole, none lost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.registry import LocalRegistry
from tests.forked import Command, Zygote
from tests.learn.conftest import mlcycle


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def quick_project(root: Path) -> Path:
    """An open project from `mlcycle init`, its tuning removed so that training is quick."""
    assert mlcycle("init", root.name, "--pattern", "open", "-d", root).code == 0
    spec = root / "lifecycle.yaml"
    text = re.sub(r"\n  tuning:.*?\n    cv: 3\n", "\n", spec.read_text(), flags=re.S)
    assert "\n  tuning:" not in text
    spec.write_text(text)
    git(root, "commit", "-qam", "no tuning, for speed")
    return root


def racer_checkouts(root: Path, count: int) -> list[Path]:
    """`count` worktrees of `root`, each on its own branch and commit (a commit holds one
    version), all sharing `root`'s registry: one project released from many commits."""
    (root / ".git" / "info" / "exclude").write_text(".mlcycle\n")  # the symlinks below
    checkouts = []
    for i in range(count):
        checkout = root.parent / f"racer{i}"
        git(root, "worktree", "add", "-q", "-b", f"racer{i}", str(checkout))
        git(checkout, "commit", "-q", "--allow-empty", "-m", f"change {i}")
        (checkout / ".mlcycle").symlink_to(root / ".mlcycle", target_is_directory=True)
        checkouts.append(checkout)
    (root / ".mlcycle").mkdir(exist_ok=True)
    return checkouts


def start_releases(
    zygote: Zygote, root: Path, count: int, *args: str
) -> list[tuple[int, str, str]]:
    """`count` `mlcycle release ARGS --json` processes started at the same instant, each
    from its own commit (`racer_checkouts`); (exit code, stdout, stderr) each."""
    commands = [
        Command(["release", *args, "--json"], cwd=checkout)
        for checkout in racer_checkouts(root, count)
    ]
    return [(f.returncode, f.stdout, f.stderr) for f in zygote.run(commands)]


def registry_refs(root: Path) -> list[str]:
    entries = mlcycle("models", "--json", cwd=root).json()["entries"]
    return sorted(e["ref"] for e in entries)


@pytest.mark.slow
# Eight processes on two cores race for the lock as sixteen did (128 s of the suite).
@pytest.mark.parametrize("count", [8])
def test_concurrent_bumps_each_release_their_own_version(
    zygote: Zygote, tmp_path: Path, count: int
) -> None:
    root = quick_project(tmp_path / "churn")
    results = start_releases(zygote, root, count, "--bump", "patch")
    assert [code for code, _, _ in results] == [0] * count, [err for _, _, err in results]
    # They raced: started at one instant, the lock was taken when others asked for it.
    waited = [err for _, _, err in results if "waiting for another release of churn" in err]
    assert len(waited) >= 1, [err for _, _, err in results]
    versions = sorted((json.loads(out)["version"] for _, out, _ in results), key=len)
    expected = [f"0.0.{i}" for i in range(1, count + 1)]
    assert sorted(versions) == sorted(expected)  # distinct, none skipped
    # Every tag has its registry entry and every entry its tag: nothing lost.
    assert sorted(git(root, "tag", "--list").split()) == sorted(f"churn@v{v}" for v in expected)
    assert registry_refs(root) == sorted(f"{v}/1" for v in expected)
    # One version per commit, so GTO reads them all.
    gto = Path(sys.executable).with_name("gto")
    shown = subprocess.run([gto, "show", "--json"], cwd=root, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    history = mlcycle("history", "--json", cwd=root).json()["releases"]
    assert {h["status"] for h in history} == {"released"}
    # The newest release is current, and it is there to be served.
    current = [h["version"] for h in history if h["current"]]
    assert current == [f"0.0.{count}"]
    registry = LocalRegistry(root / ".mlcycle" / "registry", "churn")
    entry = registry.current()
    assert entry is not None and str(entry.ref) == f"0.0.{count}/1"
    assert registry.load_model(entry) is not None


@pytest.mark.slow
def test_concurrent_releases_of_one_version_one_wins_the_rest_fail_cleanly(
    zygote: Zygote, tmp_path: Path
) -> None:
    root = quick_project(tmp_path / "churn")
    results = start_releases(zygote, root, 4, "--version", "1.0.0")
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2, 2, 2], [err for _, _, err in results]
    for code, _, err in results:
        if code == 2:
            assert "error: version 1.0.0 is not greater than the latest release 1.0.0" in err
            assert "Traceback" not in err
    assert git(root, "tag", "--list").split() == ["churn@v1.0.0"]
    assert registry_refs(root) == ["1.0.0/1"]
    current = LocalRegistry(root / ".mlcycle" / "registry", "churn").current()
    assert current is not None and str(current.ref) == "1.0.0/1"


def test_a_release_waits_for_the_one_holding_the_lock_and_says_so(tmp_path: Path) -> None:
    root = quick_project(tmp_path / "churn")
    registry = LocalRegistry(root / ".mlcycle" / "registry", "churn")
    with registry.release_lock():
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "release", "--bump", "patch", "--json"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the release reports its wait
        assert line.startswith(f"waiting for another release of churn (pid {os.getpid()} on "), line
        assert git(root, "tag", "--list") == ""  # it waits before tagging anything
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out)["version"] == "0.0.1"
    assert git(root, "tag", "--list") == "churn@v0.0.1"
