"""The engine's hand-written HTTP internals against the libraries they stand in for.

Two pieces of `mlcycle.serve` are written by hand for speed; this measures whether
they still earn it, on the same work both ways, and prints the figures side by side:

- routing: the engine's route table (`ServingApp._routes`, one dict lookup, and
  `_match` for the /v2/models/{name}/... family; 404 and 405 in one place) against
  Starlette's `Router` with the same routes (each `Route.matches` in turn, as
  `Router.app` does, FULL or PARTIAL → 405), per request, over the engine's paths;
  and the whole ASGI dispatch to a no-op endpoint both ways (Starlette's
  `Router.__call__`; the engine's lookup, method check and handler call);
- metrics: one request's update (request counter, latency histogram, predictions
  counter) and one `/metrics` render with 2 workers, `serve/metrics.py` (a dict
  increment and a bisect; workers' JSON snapshots summed at a scrape) against
  `prometheus_client` in multiprocess mode (a value in an mmap'd file per worker,
  `MultiProcessCollector` merging them at a scrape), with the same families and the
  same label sets. prometheus_client's half runs in a child process, since its
  multiprocess mode is chosen by `PROMETHEUS_MULTIPROC_DIR` when it is imported.

Each figure is the best of REPEATS rounds (the least disturbed by the other work on a
shared machine). Nothing here is asserted: read the numbers.

    .venv/bin/python benchmarks/bench_http_internals.py [--requests 100000] [--scrapes 200]

Needs the dev extra (prometheus_client, starlette).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPEATS = 5
NAME = "bench"
# (path, method): the engine's routes as clients call them, plus a 404 and a 405.
PATHS = [
    ("/v1/predict", "POST"),
    ("/metrics", "GET"),
    ("/healthz", "GET"),
    ("/v2/models/bench/infer", "POST"),
    ("/v2/models/bench/versions/1.0.0+1/ready", "GET"),
    ("/no/such/route", "GET"),
    ("/metrics", "DELETE"),
]
# The label sets a worker has seen after some traffic: (route, method, status).
TRAFFIC = [
    ("/v1/predict", "POST", 200),
    ("/v1/predict", "POST", 400),
    ("/v1/feedback", "POST", 200),
    ("/v1/model", "GET", 200),
    ("/healthz", "GET", 200),
    ("/readyz", "GET", 200),
    ("/metrics", "GET", 200),
    ("unmatched", "GET", 404),
]
MODEL = ("bench", "1.0.0", "1", "onnx")


def best(rounds: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(rounds))


# --- routing --------------------------------------------------------------------------


def engine_app() -> Any:
    """A real ServingApp over a tiny model (its route table is what is measured)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlcycle.serve.app import ServingApp
    from mlcycle.serve.model import ServedModel, SingleModelRouter

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = ServedModel.from_estimator(
        LogisticRegression(max_iter=500).fit(X, y),
        name=NAME,
        release="1.0.0",
        generation=1,
        backend="sklearn",
    )
    return ServingApp(SingleModelRouter(model))


def starlette_router(endpoint: Any) -> Any:
    from starlette.routing import Route, Router

    routes = [
        Route("/v1/predict", endpoint, methods=["POST"]),
        Route("/v1/feedback", endpoint, methods=["POST"]),
        Route("/v1/model", endpoint, methods=["GET"]),
        Route("/healthz", endpoint, methods=["GET"]),
        Route("/readyz", endpoint, methods=["GET"]),
        Route("/metrics", endpoint, methods=["GET"]),
        Route("/openapi.json", endpoint, methods=["GET"]),
        Route("/v2/health/live", endpoint, methods=["GET"]),
        Route("/v2/health/ready", endpoint, methods=["GET"]),
        Route("/v2", endpoint, methods=["GET"]),
        Route("/v2/models/{name}", endpoint, methods=["GET"]),
        Route("/v2/models/{name}/ready", endpoint, methods=["GET"]),
        Route("/v2/models/{name}/infer", endpoint, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", endpoint, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", endpoint, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/infer", endpoint, methods=["POST"]),
    ]
    # Starlette would answer a path with a trailing slash by a redirect; the engine by 404.
    return Router(routes=routes, redirect_slashes=False)


def scope_of(path: str, method: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }


def bench_routing(requests: int) -> dict[str, dict[str, float]]:
    """µs per request, per path and for the mix: lookup alone, and the whole dispatch."""
    from starlette.routing import Match

    app = engine_app()

    def engine_lookup(path: str, method: str) -> Any:
        # What ServingApp._http does before it calls the handler.
        route = app._routes.get(path) or app._match(path)
        if route is None:
            return 404
        if method not in route.methods:
            return 405
        return route

    class Endpoint:  # an ASGI app, not a function: Starlette calls it as it is
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            return None

    router = starlette_router(Endpoint())

    def starlette_lookup(scope: dict[str, Any]) -> Any:
        # What Starlette's Router.app does before it calls the endpoint.
        partial = None
        for route in router.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return child
            if match is Match.PARTIAL and partial is None:
                partial = route
        return 405 if partial is not None else 404

    figures: dict[str, dict[str, float]] = {}
    per_path = max(1, requests // len(PATHS))
    for path, method in PATHS:
        scope = scope_of(path, method)

        def hand(path: str = path, method: str = method) -> float:
            start = time.perf_counter()
            for _ in range(per_path):
                engine_lookup(path, method)
            return (time.perf_counter() - start) / per_path * 1e6

        def star(scope: dict[str, Any] = scope) -> float:
            start = time.perf_counter()
            for _ in range(per_path):
                starlette_lookup(scope)
            return (time.perf_counter() - start) / per_path * 1e6

        figures[f"{method} {path}"] = {
            "hand": best(REPEATS, hand),
            "starlette": best(REPEATS, star),
        }

    async def noop_receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def noop_send(message: Any) -> None:
        return None

    async def noop_handler(*args: Any) -> int:
        return 200

    scopes = [scope_of(p, m) for p, m in PATHS]

    async def hand_dispatch() -> float:
        start = time.perf_counter()
        for _ in range(per_path):
            for scope in scopes:
                found = engine_lookup(scope["path"], scope["method"])
                if not isinstance(found, int):
                    await noop_handler(scope, b"", noop_send, found)
        return (time.perf_counter() - start) / (per_path * len(scopes)) * 1e6

    async def starlette_dispatch() -> float:
        from starlette.exceptions import HTTPException

        start = time.perf_counter()
        for _ in range(per_path):
            for scope in scopes:
                # 404 and 405 raise inside a bare Router (no exception middleware).
                with contextlib.suppress(HTTPException):
                    await router(dict(scope), noop_receive, noop_send)
        return (time.perf_counter() - start) / (per_path * len(scopes)) * 1e6

    loop = asyncio.new_event_loop()
    try:
        figures["dispatch, mix of the above"] = {
            "hand": min(loop.run_until_complete(hand_dispatch()) for _ in range(REPEATS)),
            "starlette": min(loop.run_until_complete(starlette_dispatch()) for _ in range(REPEATS)),
        }
    finally:
        loop.close()
    return figures


# --- metrics ------------------------------------------------------------------------------


def other_worker(record: Callable[[], None]) -> None:
    """Fork a second worker that records the same traffic and leaves its data behind."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            record()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def bench_hand_metrics(requests: int, scrapes: int) -> dict[str, float]:
    from mlcycle.serve.metrics import Metrics

    directory = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    metrics = Metrics(directory)

    def traffic(m: Metrics) -> None:
        for route, method, status in TRAFFIC:
            m.observe(route, method, status, 0.003)
        m.count_predictions(MODEL, 1)

    def second() -> None:
        worker = Metrics(directory)
        traffic(worker)
        worker.write_snapshot()

    other_worker(second)
    traffic(metrics)

    def update() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            metrics.observe("/v1/predict", "POST", 200, 0.003)
            metrics.count_predictions(MODEL, 1)
        return (time.perf_counter() - start) / requests * 1e6

    def render() -> float:
        start = time.perf_counter()
        for _ in range(scrapes):
            text = metrics.render()
        assert "mlcycle_workers 2" in text, text[-300:]
        return (time.perf_counter() - start) / scrapes * 1e3

    return {"update_us": best(REPEATS, update), "render_ms": best(REPEATS, render)}


def prometheus_child(requests: int, scrapes: int) -> dict[str, float]:
    """prometheus_client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR set by the parent)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    from mlcycle.serve.metrics import BUCKETS

    requests_total = Counter(
        "mlcycle_http_requests_total", "HTTP requests.", ["route", "method", "status"]
    )
    latency = Histogram(
        "mlcycle_http_request_duration_seconds", "Latency.", ["route"], buckets=BUCKETS
    )
    predictions = Counter(
        "mlcycle_predictions_total", "Rows.", ["model", "release", "generation", "backend"]
    )
    plain = [
        Counter("mlcycle_predict_batches_total", "Batches."),
        Counter("mlcycle_predict_batch_rows_total", "Rows."),
        Counter("mlcycle_shed_requests_total", "Shed."),
        Counter("mlcycle_prediction_log_dropped_total", "Dropped."),
    ]
    inflight = Gauge("mlcycle_inflight_requests", "In flight.", multiprocess_mode="livesum")

    def traffic() -> None:
        for route, method, status in TRAFFIC:
            requests_total.labels(route, method, str(status)).inc()
            latency.labels(route).observe(0.003)
        predictions.labels(*MODEL).inc(1)
        for counter in plain:
            counter.inc(0)
        inflight.set(0)

    other_worker(traffic)
    traffic()

    def update() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            requests_total.labels("/v1/predict", "POST", "200").inc()
            latency.labels("/v1/predict").observe(0.003)
            predictions.labels(*MODEL).inc(1)
        return (time.perf_counter() - start) / requests * 1e6

    def render() -> float:
        start = time.perf_counter()
        for _ in range(scrapes):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            text = generate_latest(registry)
        assert b"mlcycle_http_requests_total" in text
        return (time.perf_counter() - start) / scrapes * 1e3

    return {"update_us": best(REPEATS, update), "render_ms": best(REPEATS, render)}


def bench_prometheus(requests: int, scrapes: int) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="bench-prometheus-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
    args = ["--prometheus-child", "--requests", str(requests), "--scrapes", str(scrapes)]
    done = subprocess.run(
        [sys.executable, __file__, *args], env=env, check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- report ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--prometheus-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prometheus_child:
        print(json.dumps(prometheus_child(args.requests, args.scrapes)))
        return

    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, starlette {version('starlette')}, "
        f"prometheus_client {version('prometheus_client')}, {os.cpu_count()} CPUs; "
        f"best of {REPEATS} rounds\n"
    )
    routing = bench_routing(args.requests)
    print(f"{'routing, µs per request':<52} {'hand-written':>12} {'Starlette':>10} {'ratio':>6}")
    for what, figures in routing.items():
        ratio = figures["starlette"] / figures["hand"]
        print(f"  {what:<50} {figures['hand']:>12.3f} {figures['starlette']:>10.3f} {ratio:>5.1f}x")

    hand = bench_hand_metrics(args.requests, args.scrapes)
    prom = bench_prometheus(args.requests, args.scrapes)
    print(f"\n{'metrics, 2 workers':<52} {'hand-written':>12} {'prom. mp':>10} {'ratio':>6}")
    rows = (("update per request, µs", "update_us"), ("render of /metrics, ms", "render_ms"))
    for label, key in rows:
        ratio = prom[key] / hand[key]
        print(f"  {label:<50} {hand[key]:>12.3f} {prom[key]:>10.3f} {ratio:>5.1f}x")


if __name__ == "__main__":
    main()
