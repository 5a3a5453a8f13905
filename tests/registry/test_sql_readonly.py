"""Read-only commands (`models`, `history`) against a shared SQL registry: they create
nothing, and a database that cannot be reached is named (host:port, no password) with
exit 1 and a hint, not "a database error while creating the registry's tables"."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.spec.helpers import assert_clean_failure_output, cli

READ_ONLY = (("models",), ("models", "--json"), ("history",), ("history", "--json"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readonly") / "churn"
    made = cli("init", "churn", "--pattern", "open", "-d", str(root))
    assert made.code == 0, made.output
    return root


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_database_that_is_down_is_named_with_exit_1_and_a_hint(
    project: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    port = closed_port()
    monkeypatch.setenv("MLCYCLE_REGISTRY_URL", f"postgresql://team:hunter2@127.0.0.1:{port}/reg")
    result = cli(*command, cwd=project)
    assert result.code == 1, result.output
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        f"error: cannot reach the registry database reg at 127.0.0.1:{port}: connection failed"
    ), first
    assert "Connection refused" in first
    assert "hint: check that the database server is running and reachable from here" in (
        result.stderr
    )
    assert "MLCYCLE_REGISTRY_URL" in result.stderr
    assert "hunter2" not in result.output
    assert "creating the registry's tables" not in result.output
    assert_clean_failure_output(result)


def test_a_database_that_does_not_exist_on_a_real_server(
    project: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    absent = f"{url.database}_absent"
    monkeypatch.setenv(
        "MLCYCLE_REGISTRY_URL", url.set(database=absent).render_as_string(hide_password=False)
    )
    for command in READ_ONLY:
        result = cli(*command, cwd=project)
        assert result.code == 1, result.output
        first = result.stderr.splitlines()[0]
        assert first.startswith(
            f"error: cannot reach the registry database {absent} at {url.host}:{url.port}: "
        ), first
        assert f'database "{absent}" does not exist' in first
        assert "hint: check that the database server is running" in result.stderr
        assert_clean_failure_output(result)


def test_read_only_commands_create_no_tables(
    project: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    monkeypatch.setenv("MLCYCLE_REGISTRY_URL", postgres_url)
    listed = cli("models", "--json", cwd=project)
    assert listed.code == 0, listed.output
    assert '"entries": []' in listed.stdout and '"current": null' in listed.stdout
    history = cli("history", cwd=project)
    assert history.code == 0, history.output
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
