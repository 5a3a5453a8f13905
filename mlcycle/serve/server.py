"""Running the engine: uvicorn (httptools, uvloop) in one process or several workers.

`serve` loads the model once in the calling process (so a model that cannot load or
convert fails before anything listens), then either runs one uvicorn server in that
process or starts `workers` processes that accept from one shared listening socket
(or, with `ServeOptions.reuse_port`, each from its own SO_REUSEPORT socket; both
spread connections evenly here). The parent forwards SIGTERM/SIGINT, restarts a
worker that dies, and waits for all of them to drain their requests and flush their
prediction logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from mlcycle.errors import ServingError
from mlcycle.serve.app import ServeOptions, ServingApp
from mlcycle.serve.listener import new_event_loop
from mlcycle.serve.model import ModelSource, Router, resolve_source
from mlcycle.serve.transport import http_protocol
from mlcycle.spec.model import DEFAULT_STORE_URL, SERVE_HOST, SERVE_PORT, SERVE_WORKERS
from mlcycle.store.predictions import PredictionStore

log = logging.getLogger(__name__)

_RESTART_WINDOW = 30.0
_MAX_RESTARTS = 5


def serve(
    source: ModelSource,
    *,
    host: str = SERVE_HOST,
    port: int = SERVE_PORT,
    workers: int = SERVE_WORKERS,
    store_url: str | None = DEFAULT_STORE_URL,
    options: ServeOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `source` over HTTP until SIGTERM or SIGINT; blocks.

    `on_ready(url)` is called (from a thread of its own) once the port accepts
    connections: what announces "serving on http://..." must not come earlier.

    On SIGTERM/SIGINT the server stops accepting, answers the requests in flight,
    flushes the prediction log, and then (like uvicorn) re-raises the signal: the
    process ends by SIGTERM, or with KeyboardInterrupt for SIGINT.

    `source` is a ServedModel, a Router, or a function returning either (it is called
    once, here). `store_url` is where predictions and outcomes go (any SQLAlchemy URL;
    None turns the prediction log and feedback off). Raises ServingError when the
    model, the store or the port cannot be used.
    """
    options = options or ServeOptions()
    if workers < 1:
        raise ServingError(f"workers must be at least 1, not {workers}")
    if not 0 <= port <= 65535:
        raise ServingError(f"port must be between 0 and 65535, not {port}")
    router = resolve_source(source)
    for model in router.models:
        log.info(
            "model %s %s: %s, %d features, %s backend%s",
            model.name,
            model.version,
            model.task,
            len(model.features),
            model.predictor.backend,
            f" ({model.predictor.note})" if model.predictor.note else "",
        )
    if options.token is None:
        log.info("authentication: off (every route is open)")
    else:
        log.info(
            "authentication: bearer token required (open: health probes%s)",
            ", predictions" if options.public_predict else "",
        )
    if store_url:
        # Create the tables once, before workers race to do it, and fail early.
        PredictionStore(store_url).close()
    if workers == 1:
        sock = _bind(host, port, reuse_port=False)
        log.info("serving on http://%s:%d (1 worker)", host, sock.getsockname()[1])
        app = ServingApp(router, store_url=store_url, options=options)
        stop = _announce(host, sock.getsockname()[1], on_ready)
        try:
            _run_uvicorn(app, sock, options)
        finally:
            stop.set()
        return
    _supervise(router, host, port, workers, store_url, options, on_ready)


def _announce(host: str, port: int, on_ready: Callable[[str], None] | None) -> threading.Event:
    """Call `on_ready(url)` once a TCP connection to the port succeeds; set the returned
    event to give up (the engine stopped before it listened)."""
    stop = threading.Event()
    if on_ready is None:
        return stop
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    # A wildcard address is reached through the loopback interface.
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)

    def wait() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection((target, port), timeout=1.0):
                    break
            except OSError:
                stop.wait(0.02)
        else:
            return
        on_ready(url)

    threading.Thread(target=wait, name="mlcycle-announce", daemon=True).start()
    return stop


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket (not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServingError(
            f"cannot listen on {host}:{port}: {e.strerror or e}",
            hint="choose another port, or stop the process that uses it",
        ) from e
    sock.set_inheritable(True)
    return sock


def _run_uvicorn(app: ServingApp, sock: socket.socket, options: ServeOptions) -> None:
    """Run uvicorn on `sock` until a signal; it drains requests, then the app flushes."""
    import uvicorn

    config = uvicorn.Config(
        app,
        loop="none",  # the loop is ours: new_event_loop, below
        http=http_protocol(
            header_timeout=options.header_timeout,
            linger_time=options.body_timeout,
            max_connections=options.max_connections,
            early=app,
        ),
        ws="none",
        lifespan="on",
        access_log=False,
        log_level=options.log_level,
        timeout_keep_alive=options.keep_alive,
        timeout_graceful_shutdown=max(1, round(options.drain_timeout)),
        server_header=False,
        # Nothing here reads the client address; the middleware that rewrites it from
        # X-Forwarded-For would cost every request a header scan for nothing.
        proxy_headers=False,
        backlog=options.backlog,
    )
    server = uvicorn.Server(config)
    try:
        # `server.run` would pick uvicorn's loop; this one accepts in batches (listener.py).
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(server.serve(sockets=[sock]))
    except SystemExit as e:
        raise ServingError(
            "the serving engine could not start; see the log above", hint=None
        ) from e
    finally:
        sock.close()
    if not server.started:
        raise ServingError("the serving engine could not start; see the log above")


# --- several workers ------------------------------------------------------------------------


def _supervise(
    router: Router,
    host: str,
    port: int,
    workers: int,
    store_url: str | None,
    options: ServeOptions,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    try:
        payload = pickle.dumps(router, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # pickling raises whatever the object raises
        raise ServingError(
            f"the model cannot be copied to worker processes ({type(e).__name__}: {e})",
            hint="serve it with workers=1, or make its pipeline convert to ONNX",
        ) from e
    if options.reuse_port:
        # Check the port is free with an exclusive bind, then let every worker bind
        # its own SO_REUSEPORT socket (an exclusive check, because SO_REUSEPORT would
        # otherwise quietly share the port with another server already on it).
        probe = _bind(host, port, reuse_port=False)
        port = probe.getsockname()[1]
        probe.close()
        shared = None
    else:
        shared = _bind(host, port, reuse_port=False)
        port = shared.getsockname()[1]
    metrics_dir = Path(tempfile.mkdtemp(prefix="mlcycle-metrics-"))
    context = multiprocessing.get_context("spawn")
    # One pruner per engine: each worker's log writer would otherwise compute the same
    # excess of rows and delete it once per worker (N times too many rows).
    quiet = dataclasses.replace(options, retention=None)

    def start(index: int) -> Any:
        args = (
            payload, host, port, shared, store_url, options if index == 0 else quiet,
            str(metrics_dir),
        )  # fmt: skip
        process = context.Process(
            target=_worker_main, args=args, name=f"mlcycle-serve-{index}", daemon=False
        )
        process.start()
        return process

    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes = {i: start(i) for i in range(workers)}
    log.info("serving on http://%s:%d (%d workers)", host, port, workers)
    announcing = _announce(host, port, on_ready)
    restarts: list[float] = []
    failure: str | None = None
    try:
        while not stopping.is_set():
            sentinels = [p.sentinel for p in processes.values()]
            multiprocessing.connection.wait(sentinels, timeout=0.5)
            for index, process in list(processes.items()):
                if process.is_alive() or stopping.is_set():
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < _RESTART_WINDOW] + [now]
                if len(restarts) > _MAX_RESTARTS:
                    failure = (
                        f"worker processes keep dying (last exit code {process.exitcode}); "
                        "see the log above"
                    )
                    stopping.set()
                    break
                log.warning(
                    "worker %d (pid %s) exited with code %s; starting a new one",
                    index,
                    process.pid,
                    process.exitcode,
                )
                processes[index] = start(index)
    finally:
        announcing.set()
        for process in processes.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + options.drain_timeout + 10
        for process in processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if shared is not None:
            shared.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failure:
        raise ServingError(failure)
    if received:
        # Like uvicorn with one worker: after a graceful stop, die of the signal that
        # asked for it (SIGINT becomes KeyboardInterrupt, which the CLI maps to 130).
        signal.raise_signal(received[0])


def _worker_main(
    payload: bytes,
    host: str,
    port: int,
    shared: socket.socket | None,
    store_url: str | None,
    options: ServeOptions,
    metrics_dir: str,
) -> None:
    """Entry point of one worker process (spawned: a fresh interpreter)."""
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s [worker %(process)d] %(name)s: %(message)s",
    )
    _exit_with_parent()
    router = pickle.loads(payload)
    sock = shared if shared is not None else _bind(host, port, reuse_port=True)
    app = ServingApp(router, store_url=store_url, options=options, metrics_dir=Path(metrics_dir))
    # A Ctrl-C reaches every process of the group; after its graceful stop uvicorn
    # re-raises SIGINT, which must not print a traceback from each worker.
    with contextlib.suppress(KeyboardInterrupt):
        _run_uvicorn(app, sock, options)


def _exit_with_parent() -> None:
    """Drain and stop when the supervising process disappears (e.g. killed with -9)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="mlcycle-parent-watch", daemon=True).start()
