"""`evaluate --production` when the store cannot be used or a flag is wrong: an error with
its exit code that says what and where (password masked), through mlcycle.api and once
through the real CLI."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.errors import ExitCode, ServingError, UsageError
from tests.learn.conftest import mlcycle


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlcycle.api.init import init

    root = tmp_path_factory.mktemp("template") / "churn"
    init("churn", pattern="open", directory=root, git=False)
    return root


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the open project; its store URL takes the password from STORE_PASSWORD."""
    root = tmp_path / "churn"
    shutil.copytree(template, root)
    monkeypatch.setenv("STORE_PASSWORD", "s3cret")
    return root


def use_store(root: Path, url: str) -> None:
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    assert "  url: sqlite:///.mlcycle/store.db" in text
    spec.write_text(text.replace("  url: sqlite:///.mlcycle/store.db", f"  url: {url}", 1))


def test_a_store_driver_that_is_not_installed(project: Path) -> None:
    use_store(project, "mysql://mlcycle:${env:STORE_PASSWORD}@127.0.0.1/served")
    with pytest.raises(UsageError) as info:
        api.evaluate_production(project)
    assert str(info.value) == (
        "the store mysql://mlcycle:***@127.0.0.1/served needs the database driver 'MySQLdb', "
        "which is not installed"
    )
    assert info.value.hint == (
        "install it (pip install mysqlclient) or name another driver in the URL"
    )
    assert info.value.exit_code == ExitCode.USAGE


def test_a_store_server_that_is_down(project: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use_store(project, f"postgresql://mlcycle:${{env:STORE_PASSWORD}}@127.0.0.1:{port}/served")
    with pytest.raises(ServingError) as info:
        api.evaluate_production(project)
    message = str(info.value)
    assert message.startswith(
        f"cannot open the prediction store postgresql://mlcycle:***@127.0.0.1:{port}/served: "
    )
    assert "Connection refused" in message and "s3cret" not in message
    assert info.value.exit_code == ExitCode.RUNTIME


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"window": "soon"}, "--window 'soon' is not a duration"),
        ({"since": "1 fortnight"}, "--since '1 fortnight' is not a duration"),
    ],
)
def test_a_bad_duration_is_a_usage_error(
    project: Path, flags: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError) as info:
        api.evaluate_production(project, **flags)
    assert str(info.value) == message
    assert info.value.hint == "write e.g. 30s, 5m, 12h, 1d or 1w"


def test_nothing_served_yet_is_an_empty_report(project: Path) -> None:
    report = api.evaluate_production(project, window="1h")
    assert (report.overall, report.windows, report.drift) == ((), (), ())
    assert report.imported_outcomes == 0
    check = api.production_check(project, report)
    assert check.passed is True and check.checked == () and check.unreliable == ()


def test_the_cli_says_so_without_a_traceback(project: Path) -> None:
    use_store(project, "mysql://mlcycle:${env:STORE_PASSWORD}@127.0.0.1/served")
    result = mlcycle("evaluate", "--production", cwd=project)
    assert result.code == 2, result.err
    assert "error: the store mysql://mlcycle:***@127.0.0.1/served needs the database driver " in (
        " ".join(result.err.split())
    )
    assert "pip install mysqlclient" in " ".join(result.err.split())
    assert "Traceback" not in result.err and "s3cret" not in result.err + result.out


def test_a_tracking_server_that_is_down_leaves_a_warning_and_the_model_stands(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One attempt, no back-off: the client's retries would only make the test slow.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = project / "lifecycle.yaml"
    spec.write_text(spec.read_text() + f"\ntracking:\n  mlflow: http://127.0.0.1:{port}\n")

    result = api.train(project)
    assert result.passed and result.entry is not None and str(result.entry.ref) == "dev/1"
    assert result.run is not None
    (warning,) = result.warnings
    assert warning.startswith(f"run {result.run.id} is recorded locally but not in MLflow: ")
    assert f"127.0.0.1:{port}" in warning
    answer = result.run.tracking["mlflow"]
    assert answer["url"] == f"http://127.0.0.1:{port}"
    assert warning.endswith(answer["error"])
    # The local record keeps the server's failure beside the run.
    (listed,) = api.runs(project).runs
    assert listed.id == result.run.id and listed.tracking["mlflow"] == answer
