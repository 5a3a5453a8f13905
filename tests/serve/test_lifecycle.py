"""Server lifecycle: load shedding, graceful SIGTERM, several workers, start-up failures."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlcycle.store.predictions import PredictionStore
from tests.serve.conftest import Server, free_port, launch, metric, rows_of, shed, wait_for

pytestmark = pytest.mark.slow

STOPPED = -signal.SIGTERM
"""How a server ends after a graceful SIGTERM: drained, flushed, then by the signal."""


def _open_request(port: int, body: bytes, sent: int) -> socket.socket:
    """A connection holding a POST /v1/predict whose body is only partly sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        "POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:sent])
    return sock


def _finish(sock: socket.socket, body: bytes, sent: int) -> tuple[int, Any]:
    """Send the rest of the body and read the response (status, JSON)."""
    sock.sendall(body[sent:])
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    sock.close()
    return int(head.split(b" ")[1]), json.loads(rest[:length])


def test_overload_is_shed_with_503_and_retry_after(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    server = launch(bundle, tmp_path, "--max-inflight", "2")
    try:
        # Two requests at work fill the server: feedback on ids that look issued a
        # moment ago by another worker, which the server retries for a few seconds.
        # (A body still arriving takes no slot: test_http_limits.py.)
        now_ms = int(time.time() * 1000)
        fresh = [f"{now_ms:012x}{0:08x}{i:08x}" for i in range(2)]
        with ThreadPoolExecutor(2) as pool:
            feedback = [{"id": pid, "outcome": 1} for pid in fresh]
            busy = [pool.submit(server.post, "/v1/feedback", item) for item in feedback]
            # /metrics answers while feedback waits (the retries are off its thread pool).
            wait_for(
                lambda: metric(server, "mlcycle_inflight_requests") == 2,
                "both feedback requests to hold a slot",
                server,
            )

            refused = server.post("/v1/predict", {"instances": rows_of(cancer[0], 0, 1)})
            assert refused.status == 503
            assert refused.headers["retry-after"] == "1"
            assert "overloaded" in refused.json["error"]
            # Probes are never shed: an orchestrator must still see the server alive.
            assert server.get("/healthz").status == 200

            assert [f.result().status for f in busy] == [200, 200]
        assert server.post("/v1/predict", {"instances": rows_of(cancer[0], 0, 1)}).status == 200
        # It waited for a slot until the deadline (the slots were held off the loop).
        assert shed(server)["deadline"] == 1
    finally:
        assert server.stop() == STOPPED


def test_sigterm_drains_in_flight_requests_and_flushes_the_log(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    X, _ = cancer
    server = launch(bundle, tmp_path)
    answered = []
    for i in range(20):
        answered += server.post("/v1/predict", {"instances": rows_of(X, i, i + 1)}).json["ids"]
    bodies = [json.dumps({"instances": rows_of(X, i, i + 5)}).encode() for i in range(3)]
    held = [_open_request(server.port, body, 100) for body in bodies]
    # One event loop serves every connection in turn: once a request on a connection opened
    # after them is answered, the held requests' headers have been read (they are in flight).
    assert server.get("/healthz").status == 200

    server.process.send_signal(signal.SIGTERM)
    # The requests are finished only once the server is draining, to show it drains them.
    wait_for(lambda: "Shutting down" in server.output(), "the server to start draining", server)
    finished = [_finish(sock, body, 100) for sock, body in zip(held, bodies, strict=True)]

    assert [status for status, _ in finished] == [200, 200, 200]
    for _, reply in finished:
        answered += reply["ids"]
    assert server.process.wait(60) == STOPPED
    assert server.store is not None
    stored = PredictionStore(f"sqlite:///{server.store}").joined(with_outcome=False)
    assert sorted(r.id for r in stored) == sorted(answered)
    assert len(answered) == 35
    assert "Shutting down" in server.output()


@pytest.mark.parametrize("sockets", [[], ["--reuse-port"]], ids=["shared-socket", "reuse-port"])
def test_two_workers_share_the_port_and_the_store(
    bundle: Path, tmp_path: Path, cancer: Any, pipeline: Any, sockets: list[str]
) -> None:
    X, _ = cancer
    server = launch(bundle, tmp_path, "--workers", "2", *sockets)
    try:
        pids = set()
        ids = []
        # Fresh connections until both workers answered (the kernel spreads them).
        for i in range(200):
            reply = server.post("/v1/predict", {"instances": rows_of(X, i, i + 1)})
            assert reply.json["predictions"] == pipeline.predict(X.iloc[i : i + 1]).tolist()
            ids += reply.json["ids"]
            pids.add(_worker_pid(server))
            assert server.process.pid not in pids
            if len(pids) == 2 and i >= 20:
                break
        assert len(pids) == 2
        # Feedback may reach the other worker than the prediction did: still accepted.
        report = server.post("/v1/feedback", [{"id": i, "outcome": 1} for i in ids]).json
        assert report["accepted"] == ids
        # Each worker reports its counters on its own snapshot interval.
        wait_for(lambda: metric(server, "mlcycle_workers") == 2, "both workers to report", server)
    finally:
        assert server.stop() == STOPPED
    assert server.store is not None
    assert PredictionStore(f"sqlite:///{server.store}").counts().outcomes == len(ids)


def _worker_pid(server: Server) -> int:
    """Which worker process answered a fresh connection."""
    return int(server.get("/healthz").json["worker"])


def test_a_pipeline_that_does_not_convert_is_served_by_sklearn(tmp_path: Path, cancer: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = cancer
    # np.log1p saves as skops (a lambda would not) but skl2onnx cannot convert it. (It was a
    # pickle before issue 10: the runner now refuses pickles.)
    import numpy as np
    import skops.io as sio

    model = make_pipeline(
        FunctionTransformer(np.log1p), LogisticRegression(max_iter=2000, random_state=0)
    ).fit(X, y)
    path = tmp_path / "model.skops"
    sio.dump(model, path)
    np.save(tmp_path / "sample.npy", X.to_numpy())
    server = launch(path, tmp_path, "--sample", str(tmp_path / "sample.npy"), store=False)
    try:
        assert server.get("/v1/model").json["backend"] == "sklearn"
        reply = server.post("/v1/predict", {"instances": rows_of(X, 0, 50)})
        assert reply.json["predictions"] == model.predict(X.iloc[:50]).tolist()
        assert "serving through sklearn, not ONNX" in server.output()
    finally:
        assert server.stop() == STOPPED


def test_a_port_in_use_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlcycle.serve",
                str(model_dir / "model.skops"),
                "--port",
                str(port),
                "--store",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlcycle.serve", str(tmp_path / "nope.skops")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "nope.skops: no such model file" in result.stderr


def test_a_bundle_names_itself_and_refuses_options_that_would_rename_it(
    bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlcycle.serve.__main__ import main

    code = main([str(bundle), "--release", "9.9.9", "--backend", "sklearn"])
    assert code == 2
    assert "a bundle sets its own name, release, generation, task and backend" in caplog.text
    assert "leave out --release, --backend" in caplog.text


def test_a_worker_that_dies_is_replaced(bundle: Path, tmp_path: Path, cancer: Any) -> None:
    import os

    server = launch(bundle, tmp_path, "--workers", "2", store=False)
    try:
        victim = _worker_pid(server)
        os.kill(victim, signal.SIGKILL)
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(seen - {victim}) < 2:
            seen.add(_worker_pid(server))
            time.sleep(0.05)
        # The survivor and a new worker answer; nothing is refused meanwhile.
        assert victim not in seen
        assert len(seen) == 2
        reply = server.post("/v1/predict", {"instances": rows_of(cancer[0], 0, 1)})
        assert reply.status == 200
        assert "exited with code -9; starting a new one" in server.output()
    finally:
        assert server.stop() == STOPPED
