"""`mlcycle serve`'s access rules, as a user runs it in a released project.

The token comes from MLCYCLE_API_TOKEN or --token-file; a server that would listen
beyond the loopback interface without one refuses to start (exit 2) unless --no-auth.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.test_deploy_cli import free_port, wait_ready
from tests.learn.conftest import init_and_release
from tests.serve.conftest import Reply, Server

pytestmark = pytest.mark.slow

TOKEN = "cli-token_0123456789abcdef"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The open template, released once for this module."""
    return init_and_release(tmp_path_factory.mktemp("serving") / "guarded", "open")


def _serve(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = project / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), *args],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    return process, port, log


def _refusal(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `mlcycle serve ARGS`, expect exit 2 before it serves; its output."""
    process, _, log = _serve(project, *args, env=env)
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        started = " ".join(args)
        pytest.fail(f"mlcycle serve {started} started instead of refusing:\n{log.read_text()}")
    output = log.read_text()
    assert code == 2, output
    assert "Traceback" not in output
    return output


@pytest.fixture
def running(project: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Server, str]]:
    """`mlcycle serve` started with the arguments and environment of the test's marker."""
    args, env = request.param
    process, port, log = _serve(project, *args, env=env)
    wait_ready(port, process, log)
    wait_banner(log)
    try:
        yield Server(process, port, None, log), log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def wait_banner(log: Path) -> None:
    """Wait for the "serving ..." line: it is printed once the port accepts connections,
    by the thread that saw it do so, so a moment after the first request may be answered."""
    deadline = time.monotonic() + 30
    while "serving" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_public_address_without_a_token_is_refused(project: Path) -> None:
    output = _refusal(project, "--host", "0.0.0.0")
    assert "refusing to serve on 0.0.0.0 without authentication" in output
    assert "MLCYCLE_API_TOKEN" in output and "--token-file" in output and "--no-auth" in output


def test_a_bad_token_file_is_a_usage_error(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "the token is empty" in _refusal(project, "--token-file", str(empty))
    missing = tmp_path / "missing"
    assert "cannot read the token" in _refusal(project, "--token-file", str(missing))


def test_no_auth_and_a_token_exclude_each_other(project: Path) -> None:
    output = _refusal(project, "--no-auth", env={"MLCYCLE_API_TOKEN": TOKEN})
    assert "--no-auth" in output
    assert TOKEN not in output


@pytest.mark.parametrize("running", [(["--host", "0.0.0.0", "--no-auth"], {})], indirect=True)
def test_no_auth_serves_a_public_address_openly(running: tuple[Server, str]) -> None:
    server, banner = running
    assert "no authentication" in banner
    assert server.get("/v1/model").status == 200


@pytest.mark.parametrize(
    "running",
    [(["--host", "0.0.0.0", "--workers", "2"], {"MLCYCLE_API_TOKEN": TOKEN})],
    indirect=True,
)
def test_the_environments_token_guards_a_public_address(running: tuple[Server, str]) -> None:
    server, banner = running
    assert "bearer token required" in banner
    refused: Reply = server.get("/v1/model")
    assert refused.status == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    allowed = server.request("GET", "/v1/model", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status == 200
    assert server.get("/healthz").status == 200
    assert TOKEN not in server.output()


def test_a_token_file_guards_the_server(project: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    process, port, log = _serve(project, "--token-file", str(token_file), "--public-predict")
    try:
        wait_ready(port, process, log)
        server = Server(process, port, None, log)
        assert server.get("/v1/model").status == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert server.request("GET", "/v1/model", headers=headers).status == 200
        wait_banner(log)
        assert "predictions open" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_the_admission_options_are_documented_in_help() -> None:
    from tests.spec.helpers import cli

    result = cli("serve", "--help")
    assert result.code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    for option, says in (
        ("--max-connections", "0: no budget"),
        ("--backlog", "Connections the kernel queues"),
        ("--queue-deadline-ms", "0: off"),
    ):
        assert option in text
        assert says in text, text


def test_the_connection_budget_option_reaches_the_server(project: Path) -> None:
    import socket

    process, port, log = _serve(project, "--max-connections", "1", "--queue-deadline-ms", "0")
    try:
        wait_ready(port, process, log)
        request = b"GET /v1/model HTTP/1.1\r\nHost: t\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
            held.sendall(request)
            assert held.recv(65536).startswith(b"HTTP/1.1 200")
            # GET routes are answered over the budget too; a prediction is not.
            with socket.create_connection(("127.0.0.1", port), timeout=30) as extra:
                body = b'{"instances": [{}]}'
                extra.sendall(
                    b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                    + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                answer = extra.recv(65536)
                assert answer.startswith(b"HTTP/1.1 503"), answer
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
