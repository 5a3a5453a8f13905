"""Serving benchmark: the reference model behind `mlcycle.serve`, closed loop and bursts.

Reference model (README.md, Serving under load): StandardScaler + LogisticRegression on sklearn's
breast cancer data (30 features), one-row JSON requests. Prints, from one run, so that
the figures are comparable (the machine may be shared: absolute numbers are noisy, the
side-by-side ones less so):

- the in-process floor: one sklearn `predict` and one ONNX Runtime call on one row;
- `mlflow models serve` on the same model, closed loop at c=32 (when an mlflow is
  found: `MLCYCLE_BENCH_MLFLOW`, else `make mlflow`'s .venv-mlflow, else the `mlflow`
  beside this Python);
- closed loop (wrk, Lua POST script): req/s and p50/p90/p99 at several concurrencies,
  for 1 and 2 workers (prediction log on, to a SQLite file), with the ratio to MLflow;
  then the same row at c=32 as an Open Inference Protocol v2 request with binary tensor
  data (`/v2/models/bench/infer`, Inference-Header-Content-Length; oip_binary.py);
- bursts: an open loop at 0.5x, 1x, 2x and 4x the measured capacity (wrk's best 2xx/s)
  through a bounded pool of keep-alive connections, as a real client has, sent by
  h2load when installed (else an asyncio client in this process). With the asyncio
  client latency is measured from each request's scheduled time (so neither a stalled
  server nor the client's wait for a free connection can hide a queue); h2load logs
  only send times, so with it latency is from the write and what the pool held back
  shows as `sent/s` below the offered rate. h2load's connections start over one
  sending period, so that they do not all send in the same instant (`--lockstep`: as
  h2load does by default; `h2load_pacing`). One block of rounds per pool size
  (`--pool`, 64 and 1,024 connections by default). For each round: admitted
  (200) p50/p99, rejected (503) p50/p99, share shed, connections opened, each worker
  process's share of the requests and the sheds by rule (both from /metrics), the
  server's memory, and how soon after the burst a fresh request is served again;
- the same 2x burst on fresh servers: with 1 worker, the default `max_inflight` and a
  fixed 16 (does a tight concurrency limit beat the sojourn check?); with 2 workers,
  one shared listening socket and one SO_REUSEPORT socket per worker (`--reuse-port`),
  to compare how they spread the connections.

    .venv/bin/python benchmarks/bench_serve.py [--duration 5] [--burst-duration 10]
        [--workers 1 2] [--concurrency 1 8 32 64] [--loads 0.5 1 2 4] [--pool 64 1024]
        [--lockstep] [--server-arg=--max-batch-rows=1 ...]

Needs `wrk` (Debian: apt-get install wrk) for the closed loop (and so for capacity;
without it, pass `--capacity REQ_PER_S`). The bursts use `h2load` (Debian:
apt-get install nghttp2-client) when installed (`--generator auto`), else an asyncio
client in this process, which competes with the server for CPU on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from oip_binary import v2_binary, wrk_script

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(workdir: Path) -> tuple[Any, Any, Path, dict[str, Any]]:
    """Fit the reference pipeline; save it (skops) and one request body."""
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    pipeline.fit(X, y)
    path = workdir / "model.skops"
    sio.dump(pipeline, path)
    np.save(workdir / "sample.npy", X.to_numpy())
    body = {"instances": [{str(k): float(v) for k, v in X.iloc[0].items()}]}
    return pipeline, X, path, body


def in_process_floor(pipeline: Any, X: Any) -> None:
    """Cost of one predict call, sklearn versus ONNX Runtime."""
    from mlcycle.serve.model import ServedModel

    served = ServedModel.from_estimator(pipeline, name="bench", sample=X.to_numpy())
    predictor = served.predictor
    one = X.to_numpy()[:1]
    many = X.to_numpy()[:64]
    frame = X.iloc[:1]

    def per_call(fn: Any, n: int) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6

    # sklearn warns on every ndarray call to a pipeline fitted on a DataFrame.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    figures = [
        (
            "sklearn predict_proba, 1-row DataFrame",
            per_call(lambda: pipeline.predict_proba(frame), 300),
        ),
        (
            "sklearn predict_proba, 1-row ndarray",
            per_call(lambda: pipeline.predict_proba(one), 300),
        ),
        (f"{predictor.backend} predictor, 1 row", per_call(lambda: predictor.predict(one), 5000)),
        (
            f"{predictor.backend} predictor, 64 rows",
            per_call(lambda: predictor.predict(many), 5000),
        ),
    ]
    print("\n== in-process floor (one call; microseconds) ==")
    for label, micros in figures:
        print(f"{label:<40}: {micros:8.1f}")


class Server:
    """`python -m mlcycle.serve` in a subprocess."""

    def __init__(self, model: Path, workdir: Path, workers: int, extra: list[str]) -> None:
        self.port = free_port()
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        store = workdir / f"store-{self.port}.db"
        self.log = (workdir / f"server-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlcycle.serve",
                str(model),
                "--name",
                "bench",
                "--release",
                "1.0.0",
                "--sample",
                str(workdir / "sample.npy"),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--store",
                f"sqlite:///{store}",
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        wait_ready(f"{self.url}/readyz", self.process)
        if workers > 1:
            time.sleep(2.0)  # let every worker finish starting, not just the first

    def counters(self) -> dict[str, dict[str, float]]:
        """From /metrics: requests shed by reason, and requests answered by each worker
        process (`shed`, `workers`). With several workers the other workers' figures are
        up to `metrics_every` (2 s) old: read them after a pause."""
        text = urllib.request.urlopen(f"{self.url}/metrics", timeout=30).read().decode()
        found: dict[str, dict[str, float]] = {"shed": {}, "workers": {}}
        for family, label, key in (
            ("shed", "reason", "mlcycle_shed_requests_total"),
            ("workers", "worker", "mlcycle_worker_requests_total"),
        ):
            for name, value in re.findall(rf'^{key}\{{{label}="([^"]*)"\}} (\S+)$', text, re.M):
                found[family][name] = float(value)
        return found

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes, in MB."""
        total = 0
        pending = [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pending += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, TypeError):
                continue
        return total / 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} was not ready in {timeout}s")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    return float(match[1]) * _UNITS[match[2]] if match else float("nan")


def run_wrk(url: str, lua: Path, concurrency: int, duration: float) -> dict[str, float]:
    threads = min(2, concurrency)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{duration:g}s",
            "--latency",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    total = re.search(r"(\d+) requests in", out)
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}"] = _ms(match[1]) if match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors[1]) if errors else 0.0
    # Goodput: the 2xx answers per second (a shed request is answered, not served).
    share_ok = 1 - result["non2xx"] / float(total[1]) if total and float(total[1]) else 1.0
    result["ok_rps"] = result["rps"] * share_ok
    return result


def lua_script(body: dict[str, Any], workdir: Path, name: str = "post.lua") -> Path:
    text = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    path = workdir / name
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{text}'\n"
    )
    return path


# --- bursts: an open loop through a bounded connection pool ------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection of the pool: one request at a time, no pipelining."""

    def __init__(self, client: BurstClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scheduled = 0.0
        self.written = 0.0
        self.busy = False
        self.requests = 0
        self.probe: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop > 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.busy = False
        if self.probe is not None:
            self.probe.set_result(body)
            return
        self.client.answered(self, int(head[9:12]), b"connection: close" in head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.probe is not None and not self.probe.done():
            self.probe.set_exception(ConnectionError("closed"))
        self.client.lost(self)


@dataclass
class Round:
    """What one burst round saw (latencies in seconds from the scheduled send)."""

    offered: float
    sent: float = 0.0
    elapsed: float = 0.0
    latency: dict[int, list[float]] = field(default_factory=dict)
    wire: dict[int, list[float]] = field(default_factory=dict)
    """Seconds from writing the request to its answer: the server's share of the latency."""
    failed: int = 0
    """Requests that got no answer (connection reset or refused)."""
    opened: int = 0
    per_worker: dict[int, list[int]] = field(default_factory=dict)
    """Worker pid: [connections, requests] (connections still open at the end)."""
    workers: dict[str, float] = field(default_factory=dict)
    """Worker pid: requests it answered in the round (its /metrics counter)."""
    shed_by: dict[str, float] = field(default_factory=dict)
    """Requests shed in the round, by the rule that shed them (/metrics)."""
    recovery: float = float("nan")
    rss_mb: float = 0.0


class BurstClient:
    """Sends requests at scheduled times over at most `pool` connections, FIFO."""

    def __init__(self, port: int, request: bytes, pool: int, result: Round) -> None:
        self.port = port
        self.request = request
        self.pool = pool
        self.result = result
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Connection] = []
        self.live: set[_Connection] = set()
        self.connecting = 0
        self.queue: deque[float] = deque()
        self.outstanding = 0

    def submit(self, scheduled: float) -> None:
        self.outstanding += 1
        if self.idle:
            self._send(self.idle.pop(), scheduled)
            return
        self.queue.append(scheduled)
        self._grow()

    def _grow(self) -> None:
        if self.queue and len(self.live) + self.connecting < self.pool:
            self.connecting += 1
            self.result.opened += 1
            task = self.loop.create_task(
                self.loop.create_connection(lambda: _Connection(self), "127.0.0.1", self.port)
            )
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self.connecting -= 1
        if task.cancelled():  # the round is over
            return
        if task.exception() is not None:
            # Refused or reset while connecting: the queued request waits for another.
            self.result.failed += 1
            if self.queue:
                self.queue.popleft()
                self.outstanding -= 1
            self.loop.call_later(0.01, self._grow)
            return
        _, connection = task.result()
        self.live.add(connection)
        self._next(connection)

    def _next(self, connection: _Connection) -> None:
        if self.queue:
            self._send(connection, self.queue.popleft())
        else:
            self.idle.append(connection)

    def _send(self, connection: _Connection, scheduled: float) -> None:
        connection.scheduled = scheduled
        connection.busy = True
        connection.requests += 1
        assert connection.transport is not None
        connection.written = time.perf_counter()
        connection.transport.write(self.request)

    def answered(self, connection: _Connection, status: int, close: bool) -> None:
        now = time.perf_counter()
        self.result.latency.setdefault(status, []).append(now - connection.scheduled)
        self.result.wire.setdefault(status, []).append(now - connection.written)
        self.outstanding -= 1
        if close:
            assert connection.transport is not None
            connection.transport.close()
        else:
            self._next(connection)

    def lost(self, connection: _Connection) -> None:
        self.live.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if connection.busy:
            connection.busy = False
            self.result.failed += 1
            self.outstanding -= 1
        self._grow()

    async def spread(self) -> dict[int, list[int]]:
        """Which worker each open connection reached (GET /healthz on it), and its load."""
        workers: dict[int, list[int]] = {}
        for connection in list(self.idle):
            connection.probe = self.loop.create_future()
            assert connection.transport is not None
            connection.transport.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
            try:
                body = await asyncio.wait_for(connection.probe, 10)
            except (ConnectionError, TimeoutError):
                continue
            counts = workers.setdefault(json.loads(body)["worker"], [0, 0])
            counts[0] += 1
            counts[1] += connection.requests
        return workers

    def close(self) -> None:
        for connection in list(self.live):
            if connection.transport is not None:
                connection.transport.close()


async def _probe(port: int, request: bytes) -> int:
    """One request on a fresh connection: its status (0 when the connection failed)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        return int(head[9:12])
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return 0
    finally:
        writer.close()


async def burst(port: int, body: bytes, rate: float, duration: float, pool: int) -> Round:
    """Fire `rate` req/s for `duration` s through `pool` connections; then measure how
    soon a fresh request is served (200) again, and how the connections spread."""
    request = (
        b"POST /v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    result = Round(offered=rate)
    client = BurstClient(port, request, pool, result)
    total = int(rate * duration)
    start = time.perf_counter() + 0.02
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            # Scheduled times, not send times: what waits for a connection is late.
            client.submit(start + sent / rate)
            sent += 1
        await asyncio.sleep(0.001)
    ended = time.perf_counter()
    result.sent = total / (ended - start)
    # Recovery: a fresh client's request, every 10 ms, until one is served.
    while await _probe(port, request) != 200 and time.perf_counter() - ended < 30:
        await asyncio.sleep(0.01)
    result.recovery = time.perf_counter() - ended
    # What still waits in the client's queue after a few seconds is counted as failed
    # (a real client would have given up on it by then).
    drain = time.perf_counter() + 5
    while client.outstanding > 0 and time.perf_counter() < drain:
        await asyncio.sleep(0.01)
    result.elapsed = time.perf_counter() - start
    client.queue.clear()
    settle = time.perf_counter() + 2  # let the requests already sent be answered
    while len(client.idle) < len(client.live) and time.perf_counter() < settle:
        await asyncio.sleep(0.01)
    result.failed += client.outstanding  # never answered
    result.per_worker = await client.spread()
    client.close()
    return result


def run_burst(port: int, body: bytes, rate: float, duration: float, pool: int) -> Round:
    """`burst` on a uvloop loop, with this process's garbage collector held off."""
    import uvloop

    # This process holds sklearn, pandas and onnxruntime: a full garbage collection
    # here stalls the sender for ~100 ms and looks like a server stall.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(burst(port, body, rate, duration, pool))
    finally:
        gc.enable()


def h2load_pacing(rate: float, duration: float, pool: int, lockstep: bool) -> list[str]:
    """h2load's options for `rate` req/s over `pool` connections for `duration` s.

    `--rps` is per connection (client): `rate / pool` each. Each client sends on a
    timer of its own, started when its connection is made, every `1 / rps` seconds
    (at least 10 ms, several requests per tick above 100 req/s). With `-D` (a duration)
    h2load opens every connection at once, so all the timers tick in the same instant:
    1,024 clients at 3 req/s each sent waves of 1,024 requests every 340 ms rather
    than 3,000 spread over each second. Independent clients do not send in step;
    unless `lockstep`, the connections are opened over one sending period instead (`-r`
    connections every millisecond, which h2load allows only with a request count `-n`,
    not with `-D`), which spreads the timers and so the sends."""
    pacing = ["--rps", f"{rate / pool:.3f}"]
    if lockstep:
        return [*pacing, "-D", f"{duration:g}"]
    period_ms = 1000 * max(0.01, pool / rate)
    per_ms = max(1, round(pool / period_ms))
    return [*pacing, "-n", str(round(rate * duration)), "-r", str(per_ms), "--rate-period", "1ms"]


def run_h2load_burst(
    port: int,
    body: bytes,
    rate: float,
    duration: float,
    pool: int,
    workdir: Path,
    lockstep: bool = False,
) -> Round:
    """The burst through h2load (nghttp2-client, in C): `pool` HTTP/1.1 keep-alive
    connections, each sending at `rate / pool` req/s (`--rps`), without pipelining, so
    that a request waits for its connection as with a real client pool. A Python load
    generator on 2 shared cores competes with the server for CPU and queues in its own
    pool above capacity; h2load costs a fraction of it. The connections' sends are
    spread in time unless `lockstep` (`h2load_pacing`).

    h2load logs each request's send time, status and duration, not when it was due:
    its latency here is from the write (both `latency` and `wire`), and what the pool
    held back shows as a sending rate (`sent`) below the offered one."""
    body_file = workdir / "burst-body.json"
    body_file.write_bytes(body)
    log = workdir / "h2load.log"
    log.unlink(missing_ok=True)
    result = Round(offered=rate, opened=pool)
    command = [
        *("h2load", "--h1", "-c", str(pool), "-t", "1"),
        *h2load_pacing(rate, duration, pool, lockstep),
        *("-d", str(body_file), "-H", "Content-Type: application/json"),
        *("--log-file", str(log), f"http://127.0.0.1:{port}/v1/predict"),
    ]
    # With a request count (-n) h2load runs until every request is answered, which
    # past capacity takes longer than the burst: it is stopped when the burst's time
    # is up (plus the spread of its connections' starts), as -D stops it. What was not
    # sent by then is dropped, as -D drops it; the log holds every answer before.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stdout, _ = process.communicate(timeout=duration + (60 if lockstep else 1 + pool / rate))
    except subprocess.TimeoutExpired:
        process.terminate()
        stdout, _ = process.communicate(timeout=30)
    ended = time.perf_counter()
    request = (
        b"POST /v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def recover() -> float:
        while await _probe(port, request) != 200 and time.perf_counter() - ended < 30:
            await asyncio.sleep(0.01)
        return time.perf_counter() - ended

    result.recovery = asyncio.run(recover())
    rows = sorted(
        (int(start), int(status), int(micros))
        for start, status, micros, *_ in (
            line.split("\t") for line in log.read_text().splitlines() if line.strip()
        )
    )
    for _, status, micros in rows:
        result.latency.setdefault(status, []).append(micros / 1e6)
        result.wire.setdefault(status, []).append(micros / 1e6)
    # Connection errors and timeouts; not the requests still in flight when h2load's
    # duration ended (it drops those: the end of the run, not the server, cut them).
    match = re.search(r"(\d+) errored, (\d+) timeout", stdout)
    if match:
        result.failed = int(match.group(1)) + int(match.group(2))
    # Rates over the sending span (h2load's start and connection setup excluded).
    span = (rows[-1][0] - rows[0][0]) / 1e6 if len(rows) > 1 else duration
    result.elapsed = max(span, 1e-3)
    result.sent = len(rows) / result.elapsed
    return result


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


def print_round(load: float, r: Round) -> None:
    ok = r.latency.get(200, [])
    shed = r.latency.get(503, [])
    other = sum(len(v) for k, v in r.latency.items() if k not in (200, 503))
    answered = len(ok) + len(shed) + other
    share = len(shed) / answered if answered else float("nan")
    total = sum(r.workers.values())
    spread = "/".join(f"{n / total:.0%}" for n in sorted(r.workers.values(), reverse=True))
    reasons = " ".join(f"{k[0]}:{v:.0f}" for k, v in r.shed_by.items() if v)
    wire_ok, wire_shed = r.wire.get(200, []), r.wire.get(503, [])
    print(
        f"{load:>4g}x {r.offered:>6.0f} {r.sent:>6.0f} {len(ok) / r.elapsed:>6.0f} "
        f"{_pct(ok, 0.5):>7.1f} {_pct(ok, 0.99):>7.1f} {_pct(shed, 0.5):>7.1f} "
        f"{_pct(shed, 0.99):>7.1f} {_pct(wire_ok, 0.99):>7.1f} {_pct(wire_shed, 0.99):>7.1f} "
        f"{share:>6.1%} {other + r.failed:>6} {r.opened:>5} "
        f"{r.rss_mb:>6.0f} {r.recovery * 1e3:>6.0f}  {spread or '-':<8} {reasons}"
    )


BURST_HEADER = (
    f"{'load':>5} {'rate':>6} {'sent/s':>6} {'ok/s':>6} {'ok p50':>7} {'ok p99':>7} "
    f"{'503 p50':>7} {'503 p99':>7} {'w ok99':>7} {'w 50399':>7} {'shed':>6} {'fail':>6} "
    f"{'conns':>5} {'rss MB':>6} {'recov':>6}  {'workers':<8} shed by\n"
    "(latency in ms from the scheduled send, with h2load from the write; w: from the "
    "request's write, the server's share; sent/s: what the load generator sent; "
    "fail: unanswered, incl. what still queued in the client 5 s after the burst; "
    "recov: ms after the burst until a fresh connection's request is served; workers: "
    "each worker's share of the requests answered; shed by: c(onnections) i(nflight) "
    "q(ueue) d(eadline) s(ojourn), the rule that shed, from /metrics)"
)


# --- MLflow ------------------------------------------------------------------------------


def find_mlflow() -> Path | None:
    """The `mlflow` executable: MLCYCLE_BENCH_MLFLOW, else the full MLflow `make mlflow`
    installs in .venv-mlflow (`models serve` needs more than the [mlflow] extra's
    mlflow-skinny), else the one beside this Python (a venv's scripts are not on PATH
    unless it is activated)."""
    override = os.environ.get("MLCYCLE_BENCH_MLFLOW")
    if override:
        return Path(override) if Path(override).is_file() else None
    for candidate in (
        Path(__file__).resolve().parents[1] / ".venv-mlflow" / "bin" / "mlflow",
        Path(sys.executable).parent / "mlflow",
    ):
        if candidate.is_file():
            return candidate
    return None


_SAVE_MLFLOW_MODEL = """
import sys
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
import mlflow.sklearn

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
mlflow.sklearn.save_model(pipeline.fit(X, y), sys.argv[1])
"""


def mlflow_closed_loop(
    workdir: Path, body: dict[str, Any], duration: float
) -> dict[str, float] | None:
    """`mlflow models serve` on the reference model, wrk at c=32 (None: no mlflow).

    The same rows in the form MLflow's scoring server reads as a DataFrame
    (`dataframe_records`; it answers 400 to `instances` given as objects).
    """
    mlflow = find_mlflow()
    if mlflow is None:
        print(
            "\n(no mlflow beside this Python and MLCYCLE_BENCH_MLFLOW unset: "
            "skipping the MLflow comparison)"
        )
        return None
    bindir = mlflow.parent
    # mlflow's own Python saves the model (this one may not have mlflow installed), and
    # its scripts directory goes first on PATH: `models serve` starts its server by name.
    python = bindir / "python"
    path = workdir / "mlflow-model"
    subprocess.run(
        [str(python if python.is_file() else sys.executable), "-c", _SAVE_MLFLOW_MODEL, path],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    port = free_port()
    process = subprocess.Popen(
        [
            str(mlflow),
            "models",
            "serve",
            "-m",
            str(path),
            "-p",
            str(port),
            "--env-manager",
            "local",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", process)
        lua = lua_script({"dataframe_records": body["instances"]}, workdir, "mlflow.lua")
        check = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": body["instances"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(check, timeout=60) as response:  # answers, and warm
            json.loads(response.read())
        result = run_wrk(f"http://127.0.0.1:{port}/invocations", lua, 32, duration)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    print(
        f"\n== mlflow models serve ({mlflow}) ==\n"
        f"c=32: {result['ok_rps']:.0f} req/s (2xx), p50 {result['p50']:.1f} ms, "
        f"p99 {result['p99']:.1f} ms, non-2xx {result['non2xx']:.0f}"
    )
    return result


V2_INFER = "/v2/models/bench/infer"


# --- main --------------------------------------------------------------------------------


def closed_loop(
    server: Server,
    lua: Path,
    binary: Path,
    args: argparse.Namespace,
    mlflow: dict[str, float] | None,
) -> float:
    """wrk at each concurrency on /v1/predict, then at c=32 with the same row as OIP v2
    binary tensor data; returns the best v1 2xx/s (the capacity bursts scale from)."""
    columns = ("req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "2xx/s")
    print(
        f"{'request':<9} {'conc':>5} " + " ".join(f"{c:>8}" for c in columns) + "  vs mlflow c=32"
    )

    def row(label: str, c: int, r: dict[str, float]) -> None:
        ratio = (
            f"  {r['ok_rps'] / mlflow['ok_rps']:.0f}x"
            if mlflow and mlflow["ok_rps"] and c == 32
            else ""
        )
        print(
            f"{label:<9} {c:>5} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p90']:>8.2f} "
            f"{r['p99']:>8.2f} {r['non2xx']:>8.0f} {r['ok_rps']:>8.0f}{ratio}"
        )

    capacity = 0.0
    for c in args.concurrency:
        r = run_wrk(f"{server.url}/v1/predict", lua, c, args.duration)
        row("v1 JSON", c, r)
        capacity = max(capacity, r["ok_rps"])
        if c == 32 or (c == args.concurrency[-1] and 32 not in args.concurrency):
            # Right after the v1 run at c=32: the machine's load drifts, neighbours compare.
            row("v2 binary", 32, run_wrk(f"{server.url}{V2_INFER}", binary, 32, args.duration))
    return capacity


def check_binary(server: Server, body: bytes, headers: dict[str, str]) -> None:
    """One binary request answered 200 (wrk would only count the failures)."""
    request = urllib.request.Request(f"{server.url}{V2_INFER}", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def fire(server: Server, body: bytes, rate: float, pool: int, args: argparse.Namespace) -> Round:
    """One burst at `rate` through `pool` connections and the chosen load generator,
    with the server's memory after it and what /metrics counted during it."""
    before = server.counters()
    if args.generator == "h2load":
        r = run_h2load_burst(
            server.port, body, rate, args.burst_duration, pool, args.workdir, args.lockstep
        )
    else:
        r = run_burst(server.port, body, rate, args.burst_duration, pool)
    r.rss_mb = server.rss_mb()
    if server.workers > 1:
        time.sleep(2.5)  # every worker writes its counters every 2 s
    after = server.counters()
    for family, into in (("shed", r.shed_by), ("workers", r.workers)):
        for key, value in after[family].items():
            into[key] = value - before[family].get(key, 0.0)
    return r


def bursts(
    server: Server, body: bytes, capacity: float, pool: int, args: argparse.Namespace
) -> dict[float, Round]:
    generator = args.generator + (" in lockstep" if args.lockstep else "")
    print(
        f"\nbursts ({generator}): {args.burst_duration:g} s each, pool of {pool} "
        f"connections, capacity {capacity:.0f} req/s"
    )
    print(BURST_HEADER)
    rounds = {}
    for load in args.loads:
        time.sleep(1.0)  # let the prediction log catch up with the round before
        r = fire(server, body, load * capacity, pool, args)
        print_round(load, r)
        rounds[load] = r
    low, high, top = rounds.get(0.5), rounds.get(2), rounds.get(4)
    if low and high:
        base = _pct(low.latency.get(200, []), 0.99)
        print(
            f"2x vs 0.5x: admitted p99 {_pct(high.latency.get(200, []), 0.99) / base:.1f}x; "
            f"rejected p99 at 2x {_pct(high.latency.get(503, []), 0.99):.1f} ms "
            f"({_pct(high.wire.get(503, []), 0.99):.1f} ms from the write)"
            + (f"; after 4x, served again in {top.recovery * 1e3:.0f} ms" if top else "")
            + f"; memory {min(r.rss_mb for r in rounds.values()):.0f}-"
            f"{max(r.rss_mb for r in rounds.values()):.0f} MB"
        )
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--burst-duration", type=float, default=10.0, help="seconds per burst")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--loads", type=float, nargs="+", default=[0.5, 1, 2, 4], help="x the capacity"
    )
    parser.add_argument(
        "--pool",
        type=int,
        nargs="+",
        default=[64, 1024],
        help="the burst client's connections (one block of bursts per pool size)",
    )
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="h2load as it runs by default: every connection opened at once, all of them "
        "sending in the same instant (waves of one request per connection); else their "
        "starts are spread over one sending period",
    )
    parser.add_argument("--capacity", type=float, default=None, help="req/s, instead of wrk's")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the MLflow comparison")
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the 2x variants (fixed max_inflight 16; shared socket vs SO_REUSEPORT)",
    )
    parser.add_argument("--server-arg", action="append", default=[], help="passed to the server")
    parser.add_argument(
        "--generator",
        choices=["auto", "h2load", "python"],
        default="auto",
        help="the bursts' load generator (auto: h2load when installed, else this Python's)",
    )
    args = parser.parse_args()
    if args.generator == "auto":
        args.generator = "h2load" if shutil.which("h2load") else "python"

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    args.workdir = workdir
    pipeline, X, model, body = train(workdir)
    in_process_floor(pipeline, X)
    lua = lua_script(body, workdir)
    # The same row as the v1 body, as OIP v2 binary tensor data.
    v2_body, v2_headers = v2_binary(X.to_numpy()[:1].astype(np.float64))
    binary = wrk_script(v2_body, v2_headers, workdir / "v2-binary.lua")
    encoded = json.dumps(body).encode()
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        print("\n(wrk not found: install it with `apt-get install wrk`; skipping the closed loop)")
        if args.capacity is None:
            raise SystemExit("without wrk, pass --capacity REQ_PER_S for the bursts")
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        "load generators on the same machine"
    )
    mlflow = None
    if have_wrk and not args.no_mlflow:
        mlflow = mlflow_closed_loop(workdir, body, args.duration)
    for workers in args.workers:
        server = Server(model, workdir, workers, args.server_arg)
        try:
            backend = json.loads(urllib.request.urlopen(f"{server.url}/v1/model").read())["backend"]
            print(
                f"\n== {workers} worker(s), {backend} backend, prediction log on "
                f"{' '.join(args.server_arg)}=="
            )
            capacity = args.capacity
            if have_wrk:
                check_binary(server, v2_body, v2_headers)
                measured = closed_loop(server, lua, binary, args, mlflow)
                capacity = capacity or measured
            assert capacity
            for pool in args.pool:
                bursts(server, encoded, capacity, pool, args)
        finally:
            server.stop()
        if args.no_compare:
            continue
        if workers == 1:
            title = "the default max_inflight (256), then a fixed 16"
            variants: list[list[str]] = [[], ["--max-inflight", "16"]]
        else:
            title = "one shared socket, then SO_REUSEPORT"
            variants = [[], ["--reuse-port"]]
        pool = args.pool[-1]
        print(f"\n2x bursts, {workers} worker(s), pool of {pool}: {title}")
        print(BURST_HEADER)
        for extra in variants:
            server = Server(model, workdir, workers, [*args.server_arg, *extra])
            try:
                r = fire(server, encoded, 2 * capacity, pool, args)
                print_round(2, r)
            finally:
                server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load} (1, 5, 15 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
