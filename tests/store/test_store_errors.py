"""The prediction store when its database is missing, unreachable, or goes away: errors a
user can act on (what, where, what to do), with the password masked, never a traceback."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from mlcycle.errors import DataError, ExitCode, ServingError, UsageError
from mlcycle.spec.model import Retention
from mlcycle.store.predictions import PredictionRecord, PredictionStore


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "shown", "module", "package"),
    [
        (
            "mysql://mlcycle:s3cret@127.0.0.1/served",
            "mysql://mlcycle:***@127.0.0.1/served",
            "MySQLdb",
            "mysqlclient",
        ),
        (
            "postgresql+psycopg2://mlcycle:s3cret@db.invalid/served",
            "postgresql+psycopg2://mlcycle:***@db.invalid/served",
            "psycopg2",
            "psycopg2-binary",
        ),
    ],
)
def test_a_driver_that_is_not_installed_names_the_package(
    url: str, shown: str, module: str, package: str
) -> None:
    with pytest.raises(UsageError) as info:
        PredictionStore(url)
    assert str(info.value) == (
        f"the store {shown} needs the database driver '{module}', which is not installed"
    )
    assert info.value.hint == (
        f"install it (pip install {package}) or name another driver in the URL"
    )
    assert info.value.exit_code == ExitCode.USAGE


def test_a_server_that_is_down_is_a_runtime_error_with_the_password_masked() -> None:
    port = closed_port()
    with pytest.raises(ServingError) as info:
        PredictionStore(f"postgresql://mlcycle:s3cret@127.0.0.1:{port}/served")
    message = str(info.value)
    assert message.startswith(
        f"cannot open the prediction store postgresql://mlcycle:***@127.0.0.1:{port}/served: "
    )
    assert "Connection refused" in message
    assert "s3cret" not in message
    assert info.value.exit_code == ExitCode.RUNTIME


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_text("predictions.csv, not SQLite\n" * 100)
    with pytest.raises(ServingError) as info:
        PredictionStore(f"sqlite:///{path}")
    assert str(info.value).startswith(f"cannot open the prediction store sqlite:///{path}: ")
    assert "file is not a database" in str(info.value)


def test_an_unknown_dialect() -> None:
    with pytest.raises(ServingError) as info:
        PredictionStore("nosuchdb://host/served")
    assert str(info.value) == (
        "cannot open the prediction store nosuchdb://host/served: "
        "Can't load plugin: sqlalchemy.dialects:nosuchdb"
    )


def _record(pid: str) -> PredictionRecord:
    return PredictionRecord(
        id=pid,
        model="churn",
        release="0.1.0",
        generation=1,
        created_at=time.time(),
        inputs={"x": 1.0},
        prediction=1,
        probabilities=[0.2, 0.8],
    )


def test_a_database_that_goes_away_after_opening(postgres_url: str) -> None:
    """The server drops the database under an open store: every write says what failed."""
    import sqlalchemy as sa

    store = PredictionStore(postgres_url)
    assert store.log_predictions([_record("p1")]) == 1
    name = sa.make_url(postgres_url).database
    admin = sa.create_engine(
        sa.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
    try:
        with pytest.raises(ServingError, match=r"^cannot record outcomes in the store: ") as out:
            store.record_outcomes([("p1", 1)])
        assert f'database "{name}" does not exist' in str(out.value)
        with pytest.raises(
            DataError, match=r"^cannot record production metrics in the store: "
        ) as metrics:
            store.record_metrics([{"evaluated_at": 1.0, "model": "0.1.0/1", "metric": "f1"}])
        assert f'database "{name}" does not exist' in str(metrics.value)
        with pytest.raises(ServingError, match=r"^cannot prune the prediction store: "):
            store.prune(Retention(age=60))
        with pytest.raises(ServingError, match=r"^cannot read the prediction store: "):
            store.joined()
        with pytest.raises(ServingError, match=r"^cannot read the prediction store: "):
            store.unmatched_keys()
    finally:
        store.close()


def test_engines_opening_one_empty_database_at_once_all_open_it(postgres_url: str) -> None:
    # Two engine containers starting together on an empty PostgreSQL database: both
    # created the tables, and one died of a duplicate pg_type row (a fresh-clone CI run).
    import threading

    from mlcycle.store.predictions import PredictionStore

    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            PredictionStore(postgres_url).engine.dispose()
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
