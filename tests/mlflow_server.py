"""The full `mlflow` command and a real MLflow tracking server, for every test that needs
one (run tracking, `release --model runs:/...`, `mlflow models serve` on an export).

The full `mlflow` lives in a venv of its own: `make mlflow` creates `.venv-mlflow`
(its pins clash with mlcycle's dev dependencies, like checkov's);
`MLCYCLE_MLFLOW=/path/to/bin/mlflow` points elsewhere. `mlflow_command` finds it;
without one the test skips, unless MLCYCLE_REQUIRE_MLFLOW=1 (`make test` sets it):
then it fails. `mlflow_env` is the environment to run it in.

`start_mlflow_server` runs `mlflow server` with a SQLite backend and a local artifact
root in a temporary directory, on 127.0.0.1 and a free port, and waits until it
answers `/health`; `MlflowServer.api` queries its REST API the way any client does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def mlflow_command() -> Path:
    """The full mlflow's command, or skip (fail under MLCYCLE_REQUIRE_MLFLOW=1)."""
    venv = ROOT / ".venv-mlflow" / "bin" / "mlflow"
    found = os.environ.get("MLCYCLE_MLFLOW") or (str(venv) if venv.is_file() else None)
    if found is None:
        reason = f"no full MLflow install at {venv.parents[1]} (`make mlflow` creates it)"
        if os.environ.get("MLCYCLE_REQUIRE_MLFLOW") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found)


def mlflow_env(command: Path) -> dict[str, str]:
    """This environment for `command`'s own venv: without the test's PYTHONPATH and
    VIRTUAL_ENV, and its bin first on PATH (`mlflow models serve` starts `uvicorn` by name)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{command.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class MlflowServer:
    """A running tracking server: its URL and its REST API."""

    url: str
    process: subprocess.Popen[bytes]

    def api(self, endpoint: str, **query: Any) -> Any:
        """GET `/api/2.0/mlflow/ENDPOINT?QUERY` and the decoded JSON answer."""
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def post(self, endpoint: str, body: dict[str, Any]) -> Any:
        """POST a JSON body to `/api/2.0/mlflow/ENDPOINT` and decode the answer."""
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@contextmanager
def start_mlflow_server(directory: Path) -> Iterator[MlflowServer]:
    """`mlflow server` on SQLite and a local artifact root under `directory`."""
    command = mlflow_command()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(command),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{directory / 'mlflow.db'}",
            "--artifacts-destination",
            str(directory / "artifacts"),
            "--workers",
            "1",
        ],
        cwd=directory,
        # Without MLflow 3's job runner (huey consumers, for server-side jobs that no
        # test uses): measured idle, the server took 0.1 s of CPU per 30 s with it off
        # against ~28 s with it on, and was ready on 11 s of CPU instead of 20.
        env={**mlflow_env(command), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group: the server's workers stop with it.
        start_new_session=True,
    )
    server = MlflowServer(f"http://127.0.0.1:{port}", process)
    try:
        # Starting creates the database schema: tens of seconds on a busy machine. The
        # bound is a failure deadline, not a timing assertion.
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    "mlflow server exited: " + (directory / "server.log").read_text()[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("mlflow server did not start in 600 s")
            time.sleep(0.5)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
