"""Serving tests: a real fitted pipeline, and real server processes on 127.0.0.1.

`start_server` runs `python -m mlcycle.serve MODEL` in a subprocess on a free port,
waits for `/readyz`, and on teardown sends SIGTERM and waits for a clean exit. `http`
is a small stdlib client that returns status, headers and the parsed body, so tests
can send exactly the bytes they mean (bad JSON, wrong content types, partial bodies).
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

NAME = "cancer"
RELEASE = "1.4.0"
GENERATION = 2


@dataclass(frozen=True)
class Reply:
    """An HTTP response: status, lower-cased headers, raw body and parsed JSON (or None)."""

    status: int
    headers: Mapping[str, str]
    raw: bytes
    json: Any = None


def _parse(status: int, headers: Mapping[str, str], raw: bytes) -> Reply:
    parsed = None
    if headers.get("content-type", "").startswith("application/json"):
        parsed = json.loads(raw)
    return Reply(status, headers, raw, parsed)


@dataclass
class Server:
    """A running server process."""

    process: subprocess.Popen[bytes]
    port: int
    store: Path | None
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Reply:
        """Send one request (JSON-encoding `body`, or `raw` bytes as they are)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            sent_headers = dict(headers or {})
            payload = raw
            if body is not None:
                payload = json.dumps(body).encode()
                sent_headers.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=payload, headers=sent_headers)
            response = conn.getresponse()
            data = response.read()
            lowered = {k.lower(): v for k, v in response.getheaders()}
            return _parse(response.status, lowered, data)
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        """GET `path`."""
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        """POST `body` as JSON."""
        return self.request("POST", path, body)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait; returns the exit code (-SIGTERM after a graceful stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def output(self) -> str:
        """What the server logged so far."""
        return self.log.read_text(errors="replace")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    model: Path,
    tmp: Path,
    *args: str,
    store: bool = True,
    wait: bool = True,
    name: str = NAME,
) -> Server:
    """Start `python -m mlcycle.serve MODEL` and (by default) wait until it is ready.

    MODEL is a `.skops` file, served as NAME RELEASE/GENERATION, or a bundle directory
    (`bundle`), which names its own."""
    port = free_port()
    store_path = tmp / "store.db" if store else None
    log_path = tmp / f"server-{port}.log"
    named = ["--name", name, "--release", RELEASE, "--generation", str(GENERATION)]
    names = [] if model.is_dir() else named
    command = [
        sys.executable,
        "-m",
        "mlcycle.serve",
        str(model),
        *names,
        "--port",
        str(port),
        "--store",
        f"sqlite:///{store_path}" if store_path else "none",
        "--log-level",
        "info",
        *args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp, env=os.environ.copy()
        )
    server = Server(process, port, store_path, log_path)
    if wait:
        wait_ready(server)
    return server


def wait_for(condition: Callable[[], bool], what: str, server: Server, timeout: float = 30) -> None:
    """Poll `condition` until it holds; on timeout fail with `what` and the server's log.

    Tests wait on the event itself (a metric, a log line, a route), never a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited waiting for {what}:\n{server.output()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{server.output()[-3000:]}")


def metric(server: Server, name: str) -> float:
    """One unlabelled sample of the server's /metrics, e.g. metric(s, "mlcycle_workers")."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(server.get("/metrics").raw.decode()):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    raise AssertionError(f"no metric {name} at /metrics")


def shed(server: Server) -> dict[str, float]:
    """The server's shed requests by reason (`mlcycle_shed_requests_total{reason}`)."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {}
    for family in text_string_to_metric_families(server.get("/metrics").raw.decode()):
        for sample in family.samples:
            if sample.name == "mlcycle_shed_requests_total":
                counts[sample.labels["reason"]] = float(sample.value)
    assert counts, "no mlcycle_shed_requests_total at /metrics"
    return counts


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One response with a content-length: (status, lower-cased headers, JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer (got {data!r})"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of its answer"
        rest += chunk
    return int(lines[0].split()[1]), headers, json.loads(rest[:length])


def served_connection(port: int, request: bytes, timeout: float = 30) -> socket.socket:
    """A connection the server answered `request` on with 200, left open.

    Under a connection budget, a connection opened before the server has seen an
    earlier one close (a readiness probe's, say) is rightly refused with 503: that one
    is closed and a new one tried, until `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request)
        status, _, reply = read_response(sock)
        if status == 200:
            return sock
        sock.close()
        assert status == 503 and time.monotonic() < deadline, (status, reply)
        time.sleep(0.05)


def wait_ready(server: Server, timeout: float = 90) -> None:
    """Poll /readyz until it answers 200 (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{server.output()}")
        try:
            if server.get("/readyz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"the server was not ready in {timeout}s:\n{server.output()}")


@pytest.fixture(scope="session")
def cancer() -> tuple[Any, Any]:
    """sklearn's breast cancer data: 569 rows, 30 numeric features, as DataFrames."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def pipeline(cancer: tuple[Any, Any]) -> Any:
    """StandardScaler + LogisticRegression fitted on the whole data set (fixed seed)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0)).fit(
        X, y
    )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, pipeline: Any, cancer: Any) -> Path:
    """The pipeline saved with skops, and its training rows as a verification sample."""
    import skops.io as sio

    root = tmp_path_factory.mktemp("model")
    sio.dump(pipeline, root / "model.skops")
    np.save(root / "sample.npy", cancer[0].to_numpy())
    return root


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory, pipeline: Any, cancer: Any) -> Path:
    """The pipeline as `mlcycle deploy` bundles it: NAME RELEASE/GENERATION with its ONNX
    form, so that a server starts without scikit-learn or a conversion (about 1.5 s of
    CPU, against 4.6 s for the `.skops` file). For the tests about serving, not about
    loading or converting a model."""
    from mlcycle.package import build_bundle
    from mlcycle.registry import LocalRegistry
    from mlcycle.registry.onnx import compile_onnx
    from tests.package.conftest import write_project

    root = tmp_path_factory.mktemp("bundled")
    spec = write_project(root / "project", name=NAME)
    features = [{"name": str(c), "type": "number"} for c in cancer[0].columns]
    registry = LocalRegistry(root / "registry", NAME)
    entry = registry.register(
        pipeline,
        release=RELEASE,
        generation=GENERATION,
        metrics={"accuracy": 0.98},
        gate={"passed": True},
        data={"features": features},
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status="candidate",
        extra={"training": {"task": "classification"}},
        onnx=compile_onnx(pipeline, features=features, task="classification", sample=cancer[0]),
    )
    assert entry.onnx is not None and entry.generation == GENERATION
    return build_bundle(spec, registry, entry, root / "bundle").path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Server]:
    """One server for the read-mostly tests (small body limit, to test 413 cheaply)."""
    tmp = tmp_path_factory.mktemp("server")
    running = launch(
        model_dir / "model.skops",
        tmp,
        "--sample",
        str(model_dir / "sample.npy"),
        "--max-body-bytes",
        "1000000",
    )
    yield running
    running.stop()


def rows_of(frame: Any, start: int = 0, stop: int | None = None) -> list[dict[str, float]]:
    """DataFrame rows as JSON instances."""
    return [
        {str(k): float(v) for k, v in row.items()}
        for row in frame.iloc[start:stop].to_dict("records")
    ]


def save_pickle(obj: Any, path: Path) -> Path:
    """Pickle `obj` to `path` (for pipelines skops cannot hold)."""
    path.write_bytes(pickle.dumps(obj))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty prediction store: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
