"""The SQL backend (SqlRegistry): the contract on SQLite and on a real PostgreSQL, then what
only a shared database shows: concurrent writers, the release lock, a writer killed by -9."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import ExitCode, RegistryError, UsageError
from mlcycle.registry import LocalRegistry, Registry, open_registry
from mlcycle.registry.blobs import DirectoryBlobStore
from mlcycle.registry.sql import SqlRegistry
from tests.forked import Command, Finished, Zygote
from tests.registry.conftest import register, same_predictions
from tests.registry.contract import RegistryContract
from tests.registry.test_local_registry import make_spec

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


def database_url(request: pytest.FixtureRequest, tmp_path: Path, database: str) -> str:
    if database == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'registry.db'}"


def writer(
    zygote: Zygote, url: str, tmp_path: Path, mode: str = "register", kill_at: str | None = None
) -> Finished:
    env = dict(os.environ)
    if kill_at is not None:
        env["MLCYCLE_KILL_AT"] = kill_at
    (done,) = zygote.run([Command([url, str(tmp_path), mode], cwd=ROOT, code=WRITER, env=env)])
    return done


@pytest.mark.slow
@pytest.mark.parametrize("point", ["registry:staged", "registry:stored", "registry:written"])
def test_a_writer_killed_at_any_step_leaves_nothing_half_visible(
    postgres_url: str, zygote: Zygote, tmp_path: Path, logit: Any, point: str
) -> None:
    registry = sql_registry(postgres_url, tmp_path)
    first = register(registry, logit, make_current=True)
    token = registry.change_token()

    killed = writer(zygote, postgres_url, tmp_path, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # Killed before its commit: no row, the pointer and the change token untouched
    # (even `registry:written`, whose rows were written: the transaction died with it).
    again = sql_registry(postgres_url, tmp_path, machine="b")
    assert again.entries() == [first]
    assert again.current() == first
    assert again.change_token() == token
    # The next writer is not blocked by the dead one's locks and takes the next number.
    done = writer(zygote, postgres_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.1.0/2"]
    second = again.get("0.1.0/2")
    assert again.current() == second
    assert same_predictions(again.load_model(second), logit)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_concurrent_writers_get_distinct_generations(
    request: pytest.FixtureRequest, zygote: Zygote, tmp_path: Path, database: str
) -> None:
    url = database_url(request, tmp_path, database)
    writers = [Command([url, str(tmp_path), "register"], cwd=ROOT, code=WRITER)] * 4
    printed = []
    for done in zygote.run(writers):  # four processes, started at one instant
        assert done.returncode == 0, done.stderr
        printed += done.stdout.split()
    assert sorted(printed) == [f"0.1.0/{n}" for n in range(1, 5)]
    registry = sql_registry(url, tmp_path)
    assert [e.generation for e in registry.entries()] == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_release_lock_dies_with_its_holder_and_names_it_meanwhile(
    request: pytest.FixtureRequest, zygote: Zygote, tmp_path: Path, database: str
) -> None:
    url = database_url(request, tmp_path, database)
    killed = writer(zygote, url, tmp_path, mode="hold-release-lock")
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


# --- choosing the backend -----------------------------------------------------------------


def test_open_registry_picks_the_backend_by_url_and_the_environment_wins(
    tmp_path: Path, logit: Any
) -> None:
    db = tmp_path / "team.db"
    spec = make_spec(
        tmp_path,
        {"registry": {"url": f"sqlite:///{db}", "artifacts": "file:shared"}},
    )
    declared = open_registry(spec, environ={})
    assert isinstance(declared, SqlRegistry)
    assert declared.describe() == f"sqlite:///{db} (artifacts file:{tmp_path / 'shared'})"
    entry = register(declared, logit)
    # The cache of pulled files lives under registry.path; the blobs in the store.
    path = declared.artifact_path(entry)
    assert path.is_relative_to(tmp_path / ".mlcycle" / "registry" / "churn" / "cache")
    assert (tmp_path / "shared" / f"sha256-{entry.artifact.sha256}").is_file()

    other = tmp_path / "ci.db"
    env = {
        "MLCYCLE_REGISTRY_URL": f"sqlite:///{other}",
        "MLCYCLE_ARTIFACTS_URL": f"file:{tmp_path / 'ci-artifacts'}",
    }
    overridden = open_registry(spec, environ=env)
    assert isinstance(overridden, SqlRegistry)
    assert overridden.entries() == []
    ci_artifacts = tmp_path / "ci-artifacts"
    assert overridden.describe() == f"sqlite:///{other} (artifacts file:{ci_artifacts})"
    # A relative SQLite path is relative to the spec, wherever mlcycle runs.
    relative = open_registry(spec, environ={"MLCYCLE_REGISTRY_URL": "sqlite:///reg/team.db"})
    assert relative.describe().startswith(f"sqlite:///{tmp_path / 'reg' / 'team.db'} ")
    # Without any URL it is the local directory, as always.
    assert isinstance(open_registry(make_spec(tmp_path, {}), environ={}), LocalRegistry)


def test_credentials_never_show_in_what_the_registry_says(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {})
    with pytest.raises(UsageError) as info:
        open_registry(spec, environ={"MLCYCLE_REGISTRY_URL": "mysql://team:hunter2@db/reg"})
    assert str(info.value) == (
        "churn: the registry URL mysql://team:***@db/reg names no registry backend"
    )
    assert "postgresql:, sqlite:" in (info.value.hint or "")
    assert info.value.exit_code == ExitCode.USAGE

    # Nothing listens on port 1: where it is and the driver's error, the password masked.
    url = "postgresql://team:hunter2@127.0.0.1:1/reg"
    registry = open_registry(spec, environ={"MLCYCLE_REGISTRY_URL": url})
    assert "hunter2" not in registry.describe() and "hunter2" not in repr(registry)
    with pytest.raises(RegistryError) as failed:
        registry.entries()
    message = str(failed.value)
    assert message.startswith("cannot reach the registry database reg at 127.0.0.1:1: ")
    assert "hunter2" not in message + (failed.value.hint or "")
    assert failed.value.exit_code == ExitCode.RUNTIME
