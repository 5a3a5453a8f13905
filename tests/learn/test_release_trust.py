"""`release --model`: a hostile model file runs no code; a pickle needs --trust-pickle."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import pytest

from tests.learn.conftest import mlcycle
from tests.registry.gadgets import GADGETS, evil_pickle


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def interactive(hand_trained: Path) -> Path:
    """An interactive project from `mlcycle init`, its model trained by hand and committed
    (a copy of one made once per session, tests/conftest.py)."""
    return hand_trained


def nothing_released(root: Path) -> bool:
    entries = mlcycle("models", "--json", cwd=root).json()["entries"]
    return git(root, "tag", "--list") == "" and entries == []


def test_a_pickle_is_refused_without_the_opt_in_and_runs_nothing(
    interactive: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    evil = tmp_path / "evil.pkl"  # outside the repository: the tree stays clean
    evil.write_bytes(evil_pickle(canary))
    result = mlcycle("release", "--model", evil, cwd=interactive)
    assert result.code == 2, result.err
    assert f"error: {evil}: refusing to unpickle a model file" in result.err
    assert "--trust-pickle" in result.err
    assert not canary.exists()
    assert nothing_released(interactive)


def test_trust_pickle_reads_the_file_and_stores_it_as_skops(
    interactive: Path, tmp_path: Path
) -> None:
    import skops.io as sio

    model = sio.load(
        interactive / "model.skops",
        trusted=sio.get_untrusted_types(file=interactive / "model.skops"),
    )
    mine = tmp_path / "model.pkl"
    mine.write_bytes(pickle.dumps(model))
    result = mlcycle("release", "--model", mine, "--trust-pickle", "--json", cwd=interactive)
    assert result.code == 0, result.err
    data = result.json()
    assert any("--trust-pickle" in w for w in data["warnings"])
    entry = mlcycle("models", "--json", cwd=interactive).json()["entries"][0]
    assert entry["artifact"]["format"] == "skops"


@pytest.mark.parametrize("gadget", ["chain", "full_like"])
def test_a_skops_gadget_is_refused_by_name(interactive: Path, tmp_path: Path, gadget: str) -> None:
    import skops.io as sio

    canary = tmp_path / "canary"
    build, names = GADGETS[gadget]
    path = tmp_path / "evil.skops"
    sio.dump(build(canary), path)
    result = mlcycle("release", "--model", path, cwd=interactive)
    assert result.code == 1, result.err
    assert f"error: {path}: refusing to load untrusted types: " in result.err
    assert names[0] in result.err
    assert "Traceback" not in result.err
    assert not canary.exists()
    assert nothing_released(interactive)
