"""Serving benchmark: the reference model behind `mlcycle.serve`, driven by wrk.

Reference model (DESIGN.md section 6): StandardScaler + LogisticRegression on sklearn's
breast cancer data (30 features), one-row JSON requests. Prints:

- the in-process floor: one sklearn `predict` and one ONNX Runtime call on one row;
- closed loop (wrk, Lua POST script): req/s and p50/p90/p99 at several concurrencies,
  for 1 and 2 workers (prediction log on, to a SQLite file);
- open loop: a Python asyncio sender firing at a fixed rate, latency measured from
  each request's scheduled time (so a stalled server cannot hide its queue);
- optionally `mlflow models serve` on the same model, when the full mlflow is importable
  (the [mlflow] extra installs only mlflow-skinny; `pip install mlflow` for this).

    .venv/bin/python benchmarks/bench_serve.py [--duration 5] [--workers 1 2]
        [--concurrency 1 8 32 64] [--server-arg=--max-batch-rows=1 ...]

Needs `wrk` (Debian: apt-get install wrk) for the closed-loop part.
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path
from typing import Any

import numpy as np

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
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}"] = _ms(match[1]) if match else float("nan")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors[1]) if errors else 0.0
    return result


def lua_script(body: dict[str, Any], workdir: Path) -> Path:
    text = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    path = workdir / "post.lua"
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{text}'\n"
    )
    return path


async def open_loop(port: int, body: bytes, rate: float, duration: float) -> dict[str, float]:
    """Fire at `rate` req/s for `duration` s over a pool of keep-alive connections."""
    request = (
        b"POST /v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def one(scheduled: float) -> None:
        conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I)[1])  # type: ignore[index]
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - scheduled)
        status = head[9:12].decode()
        if status != "200":
            failures[status] = failures.get(status, 0) + 1
        idle.append(conn)

    loop = asyncio.get_running_loop()
    start = time.perf_counter() + 0.05
    total = int(rate * duration)
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    ordered = sorted(latencies)
    return {
        "sent_rps": total / elapsed,
        "p50": ordered[len(ordered) // 2] * 1e3,
        "p90": ordered[int(len(ordered) * 0.9)] * 1e3,
        "p99": ordered[int(len(ordered) * 0.99)] * 1e3,
        "max": ordered[-1] * 1e3,
        "failures": sum(failures.values()),
        "statuses": failures,
        "connections": len(idle),
    }


def mlflow_ratio(pipeline: Any, workdir: Path, lua: Path, duration: float, ours: float) -> None:
    try:
        import mlflow.sklearn
    except ImportError:
        print("\n(mlflow is not installed: skipping the mlflow comparison)")
        return
    path = workdir / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, path)
    port = free_port()
    # `models serve` needs the full mlflow (the [mlflow] extra is mlflow-skinny):
    # `make mlflow`'s, else whichever `mlflow` is on PATH.
    venv = Path(__file__).resolve().parents[1] / ".venv-mlflow" / "bin"
    command = str(venv / "mlflow") if (venv / "mlflow").exists() else "mlflow"
    env = dict(os.environ, PATH=f"{venv}{os.pathsep}{os.environ.get('PATH', '')}")
    process = subprocess.Popen(
        [command, "models", "serve", "-m", str(path), "-p", str(port), "--env-manager", "local"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", process)
        result = run_wrk(f"http://127.0.0.1:{port}/invocations", lua, 32, duration)
        print(
            f"\nmlflow models serve, c=32: {result['rps']:.0f} req/s, p99 {result['p99']:.1f} ms;"
            f" mlcycle is {ours / result['rps']:.1f}x"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 3000, 6000])
    parser.add_argument("--server-arg", action="append", default=[], help="passed to the server")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    pipeline, X, model, body = train(workdir)
    in_process_floor(pipeline, X)
    lua = lua_script(body, workdir)
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        print("\n(wrk not found: install it with `apt-get install wrk`; skipping the closed loop)")
    best_c32 = 0.0
    print(f"\nmachine: {os.cpu_count()} cores; load generator on the same machine")
    for workers in args.workers:
        server = Server(model, workdir, workers, args.server_arg)
        try:
            backend = json.loads(urllib.request.urlopen(f"{server.url}/v1/model").read())["backend"]
            print(
                f"\n== {workers} worker(s), {backend} backend, prediction log on "
                f"{' '.join(args.server_arg)}=="
            )
            if have_wrk:
                columns = ("req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx")
                print(f"{'conc':>5} " + " ".join(f"{c:>8}" for c in columns))
                for c in args.concurrency:
                    r = run_wrk(f"{server.url}/v1/predict", lua, c, args.duration)
                    print(
                        f"{c:>5} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p90']:>8.2f} "
                        f"{r['p99']:>8.2f} {r['non2xx']:>8.0f}"
                    )
                    if c == 32:
                        best_c32 = max(best_c32, r["rps"])
            encoded = json.dumps(body).encode()
            time.sleep(2.0)  # let the prediction log catch up with the closed-loop runs
            for rate in args.rates:
                # This process holds sklearn, pandas and onnxruntime: a full garbage
                # collection here stalls the sender for ~100 ms and looks like a server
                # stall. Freeze the heap and keep the collector off while firing.
                gc.collect()
                gc.freeze()
                gc.disable()
                try:
                    r = asyncio.run(open_loop(server.port, encoded, rate, 3.0))
                finally:
                    gc.enable()
                print(
                    f"open loop {rate:>6.0f} req/s for 3 s: sent {r['sent_rps']:.0f}/s, "
                    f"p50 {r['p50']:.2f} ms, p90 {r['p90']:.2f} ms, p99 {r['p99']:.2f} ms, "
                    f"max {r['max']:.1f} ms, connections {r['connections']}, "
                    f"non-200 {r['statuses'] or 0}"
                )
        finally:
            server.stop()
    if have_wrk:
        mlflow_ratio(pipeline, workdir, lua, args.duration, best_c32)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
