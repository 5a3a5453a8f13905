"""The SQL backend (SqlRegistry): the contract on SQLite and on a real PostgreSQL, then what
only a shared database shows: concurrent writers, the release lock, a writer killed by -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcycle.registry import Registry
from mlcycle.registry.blobs import DirectoryBlobStore
from mlcycle.registry.sql import SqlRegistry
from tests.registry.conftest import register, same_predictions
from tests.registry.contract import RegistryContract

ROOT = Path(__file__).resolve().parents[2]


def sql_registry(url: str, tmp_path: Path, machine: str = "a") -> SqlRegistry:
    """A SqlRegistry as one machine sees it: the shared database and blob directory, its
    own cache."""
    blobs = DirectoryBlobStore(tmp_path / "shared-artifacts")
    return SqlRegistry(url, "iris", blobs=blobs, cache=tmp_path / f"cache-{machine}")


class TestSqlRegistryOnSqlite(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path: Path) -> Callable[[], Registry]:
        url = f"sqlite:///{tmp_path / 'registry.db'}"
        return lambda: sql_registry(url, tmp_path)


class TestSqlRegistryOnPostgres(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path: Path, postgres_url: str) -> Callable[[], Registry]:
        return lambda: sql_registry(postgres_url, tmp_path)


# --- what only processes sharing one database show ------------------------------------

WRITER = """
import sys
from pathlib import Path
from tests.registry.conftest import fit_logit, register
from tests.registry.test_sql_registry import sql_registry

registry = sql_registry(sys.argv[1], Path(sys.argv[2]), machine="writer")
if sys.argv[3] == "hold-release-lock":
    import os, signal
    with registry.release_lock():
        print("holding", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
print(register(registry, fit_logit(), make_current=True).ref, flush=True)
"""


def writer(url: str, tmp_path: Path, mode: str = "register", kill_at: str | None = None) -> Any:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if kill_at is not None:
        env["MLCYCLE_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-c", WRITER, url, str(tmp_path), mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("point", ["registry:staged", "registry:stored", "registry:written"])
def test_a_writer_killed_at_any_step_leaves_nothing_half_visible(
    postgres_url: str, tmp_path: Path, logit: Any, point: str
) -> None:
    registry = sql_registry(postgres_url, tmp_path)
    first = register(registry, logit, make_current=True)
    token = registry.change_token()

    killed = writer(postgres_url, tmp_path, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # Killed before its commit: no row, the pointer and the change token untouched
    # (even `registry:written`, whose rows were written: the transaction died with it).
    again = sql_registry(postgres_url, tmp_path, machine="b")
    assert again.entries() == [first]
    assert again.current() == first
    assert again.change_token() == token
    # The next writer is not blocked by the dead one's locks and takes the next number.
    done = writer(postgres_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.1.0/2"]
    second = again.get("0.1.0/2")
    assert again.current() == second
    assert same_predictions(again.load_model(second), logit)


@pytest.mark.slow
def test_concurrent_writers_on_postgres_get_distinct_generations(
    postgres_url: str, tmp_path: Path
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, postgres_url, str(tmp_path), "register"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    printed = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        printed += out.split()
    assert sorted(printed) == [f"0.1.0/{n}" for n in range(1, 5)]
    registry = sql_registry(postgres_url, tmp_path)
    assert [e.generation for e in registry.entries()] == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_release_lock_dies_with_its_holder_and_names_it_meanwhile(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if database == "postgresql"
        else f"sqlite:///{tmp_path / 'registry.db'}"
    )
    killed = writer(url, tmp_path, mode="hold-release-lock")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert killed.stdout.split() == ["holding"]
    registry = sql_registry(url, tmp_path)
    with registry.release_lock():  # free again: the lock died with its holder
        waits: list[str] = []
        other = sql_registry(url, tmp_path, machine="b")
        held = threading.Event()

        def contender() -> None:
            with other.release_lock(on_wait=waits.append):
                held.set()

        thread = threading.Thread(target=contender, daemon=True)
        thread.start()
        while not waits:  # the contender says whom it waits for, then blocks
            thread.join(0.05)
        assert waits[0].startswith(f"pid {os.getpid()} on ")
        assert not held.is_set()
    thread.join(60)
    assert held.is_set()
