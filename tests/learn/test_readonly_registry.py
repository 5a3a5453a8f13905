"""A registry on a read-only file system: a clear error and exit 1, never "a bug in mlcycle"."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import ExitCode, RegistryError
from mlcycle.registry import LocalRegistry
from tests.learn.conftest import mlcycle


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` made read-only by a read-only bind mount of itself (works for root too).

    chmod does not stop root, which runs these tests in CI; a read-only mount does.
    """
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    bind = subprocess.run(["mount", "--bind", path, path], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here (no mount privilege?): {bind.stderr.strip()}")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,bind,ro", path], capture_output=True, text=True
        )
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {ro.stderr.strip()}")
        yield
    finally:
        subprocess.run(["umount", path], check=True)


def test_register_on_a_read_only_registry_says_what_where_and_what_to_do(
    tmp_path: Path,
) -> None:
    from sklearn.dummy import DummyClassifier

    root = tmp_path / "registry"
    root.mkdir()
    registry = LocalRegistry(root, "churn")
    model = DummyClassifier().fit([[0], [1]], [0, 1])
    with read_only(root), pytest.raises(RegistryError) as info:
        registry.register(
            model,
            release="dev",
            metrics={},
            gate=None,
            data=None,
            spec_hash=None,
            git_commit=None,
            procurement="unattended",
            status="candidate",
        )
    message = str(info.value)
    assert message.startswith(f"{root / 'churn'}: cannot write the model registry")
    assert message.endswith("registering a model of release dev: the file system is read-only")
    assert "registry.path" in (info.value.hint or "")
    assert info.value.exit_code == ExitCode.RUNTIME
    assert list(root.iterdir()) == []


def check_cli_error(result: Any, root: Path) -> None:
    assert result.code == 1, result.err
    assert "bug in mlcycle" not in result.err and "unexpected" not in result.err
    assert "Traceback" not in result.err
    registry = root / ".mlcycle"
    assert re.search(
        rf"error: {re.escape(str(registry))}\S*: cannot write the model registry while .*: "
        "the file system is read-only",
        result.err,
    ), result.err
    assert "hint: the registry of churn is" in result.err
    assert "registry.path" in result.err


def test_train_and_release_on_a_read_only_project(tmp_path: Path) -> None:
    root = tmp_path / "churn"
    assert mlcycle("init", "churn", "--pattern", "open", "-d", root).code == 0
    spec = root / "lifecycle.yaml"
    spec.write_text(re.sub(r"\n  tuning:.*?\n    cv: 3\n", "\n", spec.read_text(), flags=re.S))
    subprocess.run(["git", "commit", "-qam", "no tuning"], cwd=root, check=True)
    with read_only(root):
        release = mlcycle("release", cwd=root)
        check_cli_error(release, root)
        train = mlcycle("train", cwd=root)
        check_cli_error(train, root)
    assert not (root / ".mlcycle" / "registry").exists()


def test_a_retirement_the_registry_refuses_takes_its_git_tag_back(
    released_project: Any,
) -> None:
    # A retirement is a GTO deregistration tag plus the registry's record: the tag is
    # written first, so when the registry then refuses, the tag goes again (a GTO
    # retirement the registry never made would hide a model that still serves).
    root = released_project("adaptive", "live")
    tags = subprocess.run(["git", "tag"], cwd=root, capture_output=True, text=True, check=True)
    with read_only(root / ".mlcycle" / "registry"):
        retired = mlcycle("retire", "0.1.0", cwd=root)
    registry = root / ".mlcycle" / "registry" / "live"
    assert retired.code == 1, retired.err
    assert retired.err.startswith(
        f"error: {registry}/.lock: cannot write the model registry while retiring 0.1.0: "
        "the file system is read-only\n"
    )
    after = subprocess.run(["git", "tag"], cwd=root, capture_output=True, text=True, check=True)
    assert after.stdout == tags.stdout
    entry = LocalRegistry(root / ".mlcycle" / "registry", "live").get("0.1.0/1")
    assert entry.state.value == "released"
