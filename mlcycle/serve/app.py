"""The ASGI application of the serving engine: a hand-written router over raw ASGI.

No framework: measured on this machine, a raw ASGI app under uvicorn+httptools+uvloop
answers a one-row JSON POST about 40% faster than the same app on Starlette (see the
serving report), and the engine needs none of a framework's features. The router is a
table in Starlette's shape (`_Route` rows, 404 and 405 in `_http` alone):
`benchmarks/bench_http_internals.py` puts it beside Starlette's `Router` with the same
routes. On this 2-core machine, shared and loaded (best of 5, two runs), a lookup took
0.12-0.65 µs against 6-26 µs for the /v1 routes and /metrics, 6-8 µs against 52-60 µs
for the /v2/models/{name}/... family, and a whole dispatch to a no-op endpoint, over
a mix of routes with a 404 and a 405, 3.7 µs against 50-59 µs: it stays hand-written.

Routes (the serving contract: README.md, documented in `GET /openapi.json`):

    POST /v1/predict        {"instances": [{FEATURE: VALUE}, ...]} or {"columns": {FEATURE: [...]}}
    POST /v1/feedback       {"id": ID, "outcome": VALUE} or a list of them
    GET  /v1/model          what is served
    GET  /healthz /readyz /metrics /openapi.json
    Open Inference Protocol v2: /v2/health/live, /v2/health/ready, /v2,
    /v2/models/{NAME}[/versions/{VERSION}][/ready|/infer]
    (infer takes and gives the binary tensor data extension: Inference-Header-Content-Length)

Every refusal is a JSON `{"error": message}` with a 4xx status (503 + Retry-After when
overloaded); the only 5xx is a bug, which is logged.

With a token (`ServeOptions.token`), every route but the health probes needs
`Authorization: Bearer TOKEN` (401 otherwise); `public_predict` leaves the prediction
routes open. A request body is read in full, under a deadline (408), before the
request takes one of the `max_inflight` slots for model work: a client that sends
slowly holds a connection, never the model's capacity.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import orjson

from mlcycle import __version__
from mlcycle.serve import ids as id_tools
from mlcycle.serve import openapi
from mlcycle.serve.admission import SlotQueue, SojournLimit, waited
from mlcycle.serve.batching import MicroBatcher
from mlcycle.serve.codec import Codec, RequestError, json_type
from mlcycle.serve.metrics import Metrics
from mlcycle.serve.model import (
    ModelSource,
    RequestInfo,
    Router,
    ServedModel,
    resolve_source,
    warm_up,
)
from mlcycle.serve.transport import ARRIVAL, CONNECTION, LAG, OVER_BUDGET
from mlcycle.spec.model import (
    DEFAULT_MAX_ROWS,
    SERVE_BACKLOG,
    SERVE_MAX_CONNECTIONS,
    SERVE_QUEUE_DEADLINE_MS,
    Retention,
)
from mlcycle.store.log import PredictionLog
from mlcycle.store.outcomes import OutcomeRule, check_outcome
from mlcycle.store.predictions import OutcomeReport, PredictionStore, shadow_id

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_OCTETS = b"application/octet-stream"
_HEADER_LENGTH = b"inference-header-content-length"
_TEXT = b"text/plain; version=0.0.4; charset=utf-8"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_NEEDS_TOKEN = b'Bearer realm="mlcycle"'
_INVALID_TOKEN = b'Bearer realm="mlcycle", error="invalid_token"'
_OVERLOADED = "the server is overloaded; retry later"
MAX_KEY_LENGTH = 200
"""Longest event key a request may carry (the store's column width)."""


@dataclass(frozen=True)
class ServeOptions:
    """Tuning of one serving engine (each worker process applies them on its own)."""

    max_body_bytes: int = 8 * 1024 * 1024
    """Larger request bodies get 413."""
    max_rows: int = DEFAULT_MAX_ROWS
    """Rows one prediction request may carry (`deployment.serve.max_rows`); more get 413."""
    retention: Retention | None = None
    """What the prediction log keeps (`store.retention`); the log writer prunes the rest."""
    max_inflight: int = 256
    """Requests a worker works on at once (per worker). With the sojourn check on, the
    requests beyond wait for a slot in arrival order, and are shed only by time (see
    `SlotQueue`); with it off, they are shed with 503 at once."""
    retry_after: int = 1
    """Seconds a shed client is told to wait (`Retry-After`)."""
    queue_deadline: float | None = SERVE_QUEUE_DEADLINE_MS / 1000
    """Seconds a request may wait in the worker between being read and its model work;
    one that waited longer is shed with 503 at once (None: sojourn shedding off, the
    standing-queue rule included). See `serve/admission.py`: the requests read right
    after one stall of the loop are not shed, only a queue that stays."""
    queue_target: float = 0.025
    """While the shortest sojourn of the last 100 ms exceeded this (a standing queue), a
    request that waited more than twice this is shed (CoDel's target; at capacity with
    64 connections one loop turn of a worker takes 10-20 ms, which is no queue to cut)."""
    max_connections: int | None = SERVE_MAX_CONNECTIONS
    """Open connections per worker; the requests of one opened beyond get 503 and it is
    closed (None: no budget)."""
    backlog: int = SERVE_BACKLOG
    """Connections the kernel queues for accepting (listen backlog; capped by the
    system's net.core.somaxconn)."""
    max_batch_rows: int = 512
    """Rows per micro-batch; 1 disables batching."""
    batch_wait: float = 0.0
    """Seconds a batch stays open for more requests (0: until the next loop turn; uvloop
    counts timers in whole milliseconds, so useful values are 0 or >= 0.001)."""
    log_interval: float = 0.2
    """Seconds between writes of the prediction log."""
    log_max_pending: int = 100_000
    """Answered requests queued for the store before new ones are dropped (and counted)."""
    drain_timeout: float = 30.0
    """Seconds a worker waits for in-flight requests on SIGTERM."""
    keep_alive: int = 5
    """Seconds an idle keep-alive connection stays open."""
    log_level: str = "info"
    reuse_port: bool = False
    """With several workers, give each its own SO_REUSEPORT socket instead of one shared
    listening socket. Measured the same speed here; the shared socket is the default
    because a restarted worker takes over its queue (SO_REUSEPORT resets connections
    waiting in a dead worker's queue)."""
    metrics_every: float = 2.0
    """Seconds between metric snapshots of a worker (several workers only)."""
    body_timeout: float = 10.0
    """Seconds a request body may take to arrive in full; a slower one gets 408 and its
    connection is closed. Also how long a connection lingers to let a client that is
    still sending read an early answer (413, 408)."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (counted from when it
    connects, or from the request's first byte); slower connections are closed."""
    token: str | None = field(default=None, repr=False)
    """The bearer token every route but the health probes requires; None: no authentication."""
    public_predict: bool = False
    """With a token, leave the prediction routes (POST /v1/predict, v2 infer) open."""


class _ClientGoneError(Exception):
    """The client disconnected before sending the whole body."""


@dataclass
class _Route:
    name: str
    methods: tuple[str, ...]
    handler: Callable[..., Awaitable[int]]
    shed: bool = False
    """The route takes a JSON body and does model or store work: its body is read in full
    before it takes an in-flight slot, and it is shed with 503 when none is free."""
    params: dict[str, str] = field(default_factory=dict)
    public: bool = False
    """Open without the bearer token."""
    binary: bool = False
    """The body may be `application/octet-stream` (the v2 binary tensor data extension)."""


@dataclass(eq=False)
class _Served:
    """What the engine keeps for one model it serves, made when the model first answers.

    It holds the model itself: a model swapped out is never mistaken for a new one
    that happens to reuse its memory (and so its `id`).
    """

    model: ServedModel
    codec: Codec
    batcher: MicroBatcher
    labels: tuple[str, str, str, str]
    """The model's metric labels: name, release, generation, backend."""
    serial: int
    """The model's key in the prediction log: unique in this process."""


class ServingApp:
    """The serving engine as an ASGI application (use `create_app` to build one)."""

    def __init__(
        self,
        router: Router,
        *,
        store_url: str | None = None,
        options: ServeOptions | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        self.options = options or ServeOptions()
        self.metrics = Metrics(metrics_dir)
        self.store_url = store_url
        self.store: PredictionStore | None = None
        self.log: PredictionLog | None = None
        self.ready = False
        self._inflight = 0
        self._queue: SlotQueue | None = None
        """The requests waiting for a slot (made with the first; none without a deadline)."""
        deadline = self.options.queue_deadline
        self._sojourn = (
            None
            if deadline is None
            else SojournLimit(target=min(self.options.queue_target, deadline), deadline=deadline)
        )
        self._retry_after = [(b"retry-after", str(self.options.retry_after).encode())]
        refused = orjson.dumps({"error": _OVERLOADED})
        self._refusal = (
            b"content-type: application/json\r\ncontent-length: %d\r\nretry-after: %d\r\n\r\n%s"
            % (len(refused), self.options.retry_after, refused)
        )
        self._ids = id_tools.IdGenerator()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlcycle-serve")
        # Feedback talks to the store and may wait seconds for ids another worker has not
        # written yet: its own threads, so that it never holds up /metrics or the lifecycle.
        self._store_executor = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="mlcycle-feedback"
        )
        self._served: dict[int, _Served] = {}
        self._serials = itertools.count()
        self._retired_batches = 0
        self._retired_rows = 0
        self._background: set[asyncio.Future[None]] = set()
        self._rules: tuple[OutcomeRule, ...] = ()
        self._rules_for: tuple[ServedModel, ...] | None = None
        # Body reads in progress and their deadlines (a sweep cancels the late ones).
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeping = False
        token = self.options.token
        # The whole expected header value, computed once: the check is one compare.
        self._authorization = None if token is None else b"Bearer " + token.encode("ascii")
        self._token = None if token is None else token.encode("ascii")
        open_predict = self.options.public_predict
        self._bind_router(router)
        self.metrics.refresh = self._refresh_metrics
        primary = router.models[0]
        self.name = primary.name
        self._model_info = orjson.dumps(primary.describe())
        # Open without the token: the health probes, and the predictions if asked.
        opened = {*openapi.HEALTH_PATHS, *(openapi.PREDICT_PATHS if open_predict else ())}
        document = openapi.build(primary)
        if token is not None:
            document = openapi.secure(document, open_paths=opened)
        self._openapi = orjson.dumps(document)
        self._v2_metadata = orjson.dumps(_v2_metadata(primary))
        self._routes: dict[str, _Route] = {
            "/v1/predict": _Route("/v1/predict", ("POST",), self._predict, shed=True),
            "/v1/feedback": _Route("/v1/feedback", ("POST",), self._feedback, shed=True),
            "/v1/model": _Route("/v1/model", ("GET",), self._model),
            "/healthz": _Route("/healthz", ("GET",), self._healthz),
            "/readyz": _Route("/readyz", ("GET",), self._readyz),
            "/metrics": _Route("/metrics", ("GET",), self._metrics),
            "/openapi.json": _Route("/openapi.json", ("GET",), self._openapi_json),
            "/v2/health/live": _Route("/v2/health/live", ("GET",), self._v2_live),
            "/v2/health/ready": _Route("/v2/health/ready", ("GET",), self._v2_ready),
            "/v2": _Route("/v2", ("GET",), self._v2_server),
        }
        for route in self._routes.values():
            route.public = route.name in opened

    def _bind_router(self, router: Router) -> None:
        """Route requests through `router` and prepare its models."""
        self.router = router
        for model in router.models:
            self._state(model)

    def _state(self, model: ServedModel) -> _Served:
        """The engine's state for `model`, made on its first request."""
        state = self._served.get(id(model))
        if state is not None and state.model is model:
            return state
        # A new model (a live router swapped arms in): forget the models no longer
        # routed to, keeping their batch counts, so memory does not grow with swaps.
        routed = {id(m) for m in self.router.models}
        for key, old in list(self._served.items()):
            if key not in routed:
                self._retired_batches += old.batcher.batches
                self._retired_rows += old.batcher.batched_rows
                del self._served[key]
        state = self._served[id(model)] = _Served(
            model=model,
            codec=Codec(model),
            batcher=MicroBatcher(
                model.predictor,
                max_rows=self.options.max_batch_rows,
                wait=self.options.batch_wait,
            ),
            labels=(
                model.name,
                model.release or "",
                "" if model.generation is None else str(model.generation),
                model.predictor.backend,
            ),
            serial=next(self._serials),
        )
        return state

    def _refresh_metrics(self) -> None:
        served = list(self._served.values())
        self.metrics.batches = self._retired_batches + sum(s.batcher.batches for s in served)
        self.metrics.batched_rows = self._retired_rows + sum(s.batcher.batched_rows for s in served)
        if self.log is not None:
            self.metrics.log_dropped = self.log.dropped
        self.metrics.arms = self.router.arm_stats()
        self.metrics.queued = 0 if self._queue is None else len(self._queue)

    # --- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store, start the background writers, warm the predictors up."""
        loop = asyncio.get_running_loop()
        if self.store_url:
            self.store = await loop.run_in_executor(self._executor, PredictionStore, self.store_url)
            self.log = PredictionLog(
                self.store_url,
                interval=self.options.log_interval,
                max_pending=self.options.log_max_pending,
                retention=self.options.retention,
            )
            for model in self.router.models:
                self._log_index(self._state(model))
            await loop.run_in_executor(self._executor, self.log.start)
        # A bandit loads its state from the store and starts its refresher.
        await loop.run_in_executor(self._executor, self.router.start, self.store_url)
        self.metrics.start(self.options.metrics_every)
        for model in self.router.models:
            warm_up(model)
        # Everything loaded so far (numpy, sklearn, onnxruntime, the model) lives as long
        # as the process: keep it out of the garbage collector's full collections, which
        # otherwise walk hundreds of thousands of objects and stall requests for ~100 ms.
        gc.collect()
        gc.freeze()
        self.ready = True

    async def shutdown(self) -> None:
        """Flush the prediction log (everything answered gets written) and close the store."""
        self.ready = False
        loop = asyncio.get_running_loop()
        if self._background:  # shadow predictions still running: let them reach the log
            await asyncio.wait(list(self._background), timeout=5)
        await loop.run_in_executor(self._executor, self.router.stop)
        if self.log is not None:
            await loop.run_in_executor(self._executor, self.log.close, self.options.drain_timeout)
            log.info(
                "prediction log closed: %d written, %d dropped", self.log.written, self.log.dropped
            )
        if self.store is not None:
            self.store.close()
        self.metrics.stop()
        self._executor.shutdown(wait=False)
        self._store_executor.shutdown(wait=False)

    # --- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI connection."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.exception("the serving engine could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        route = self._routes.get(path) or self._match(path)
        status = 500
        counted = False
        body = b""
        read = False
        try:
            # Before anything else (404 included): without the token, only what is open.
            if self._authorization is not None and (route is None or not route.public):
                self._authenticate(scope)
            if route is None:
                shown = path if len(path) <= 200 else path[:200] + "..."
                raise RequestError(404, f"no route {shown!r}; see GET /openapi.json")
            if method not in route.methods:
                allowed = ", ".join(route.methods)
                raise RequestError(
                    405,
                    f"{route.name} takes {allowed}, not {method}",
                    headers=[(b"allow", allowed.encode())],
                )
            if route.shed:
                # The whole body first, then a slot: a slow or stalled client holds its
                # connection, never one of the slots for model work.
                body = await self._read_body(scope, receive, binary=route.binary)
                read = True
                connection = scope.get(CONNECTION)
                again = connection is not None and connection.refused_last
                try:
                    waiting = self._admit(scope, after_refusal=again)
                    if waiting is not None:
                        await self._wait_for_slot(scope, waiting, after_refusal=again)
                except RequestError:
                    if connection is not None:
                        connection.refused_last = True
                    raise
                if connection is not None:
                    connection.refused_last = False
                counted = True
            status = await route.handler(scope, body, send, route)
        except RequestError as e:
            status = e.status
            headers = e.headers
            if not read and _declares_body(scope):
                # Answered before the body was read: close, so that the rest of it is
                # discarded by the lingering close (bounded) rather than parsed on.
                headers = [*(headers or ()), (b"connection", b"close")]
            await _send_json(send, status, {"error": e.message}, headers)
        except _ClientGoneError:
            status = 499
        except Exception:
            log.exception("error answering %s %s", method, path)
            status = 500
            try:
                await _send_json(send, 500, {"error": "internal error; see the server log"})
            except Exception:  # the response had already started: nothing more to say
                log.debug("could not send the 500 response", exc_info=True)
        finally:
            if counted:
                self._release()
        name = route.name if route is not None else "unmatched"
        self.metrics.observe(name, method, status, time.perf_counter() - start)

    def _match(self, path: str) -> _Route | None:
        """The /v2/models/{name}[/versions/{version}][/ready|/infer] routes."""
        if not path.startswith("/v2/models/"):
            return None
        parts = path[len("/v2/models/") :].split("/")
        params = {"name": parts[0]}
        template = "/v2/models/{name}"
        if len(parts) >= 3 and parts[1] == "versions":
            params["version"] = parts[2]
            template += "/versions/{version}"
            parts = [parts[0], *parts[3:]]
        if len(parts) == 1:
            return _Route(template, ("GET",), self._v2_model, params=params)
        if len(parts) == 2 and parts[1] == "ready":
            return _Route(template + "/ready", ("GET",), self._v2_model_ready, params=params)
        if len(parts) == 2 and parts[1] == "infer":
            return _Route(
                template + "/infer",
                ("POST",),
                self._v2_infer,
                shed=True,
                params=params,
                public=self.options.public_predict,  # with or without /versions/{version}
                binary=True,
            )
        return None

    # --- helpers -------------------------------------------------------------------------

    def _authenticate(self, scope: Scope) -> None:
        """Pass when the request carries the bearer token, else 401 (RFC 6750)."""
        expected = self._authorization
        assert expected is not None and self._token is not None
        for key, value in scope["headers"]:
            if key == b"authorization":
                if hmac.compare_digest(value, expected):
                    return
                # The scheme is case-insensitive (RFC 7235); the token is compared in
                # constant time either way, and never logged.
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(
                    credentials.strip(), self._token
                ):
                    return
                raise RequestError(
                    401,
                    "the bearer token is not valid",
                    headers=[(b"www-authenticate", _INVALID_TOKEN)],
                )
        raise RequestError(
            401,
            "this route needs a token: send 'Authorization: Bearer TOKEN'",
            headers=[(b"www-authenticate", _NEEDS_TOKEN)],
        )

    async def _read_body(self, scope: Scope, receive: Receive, *, binary: bool = False) -> bytes:
        """The whole request body, after checking its declared type and size (JSON, or
        also `application/octet-stream` when `binary`).

        408 when it has not arrived within `body_timeout`: a sweep cancels the late read
        (a timer per request would cost every request; this costs a dict entry).
        """
        limit = self.options.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise RequestError(400, "Content-Length is not a number") from None
                if length > limit:
                    raise RequestError(
                        413, f"the body has {length} bytes; this server takes at most {limit}"
                    )
            elif key == b"content-type":
                media = value.split(b";", 1)[0].strip().lower()
                if (
                    media != _JSON
                    and not media.endswith(b"+json")
                    and not (binary and media == _OCTETS)
                ):
                    raise RequestError(
                        415,
                        f"the body must be JSON (Content-Type: application/json), "
                        f"not {value.decode('latin-1')!r}",
                    )
        task = asyncio.current_task()
        assert task is not None
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(self._sweep_every(), self._sweep)
        self._reading[task] = time.monotonic() + self.options.body_timeout
        try:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGoneError
            body: bytes = message.get("body", b"")
            if message.get("more_body"):
                chunks = [body]
                size = len(body)
                while message.get("more_body"):
                    message = await receive()
                    if message["type"] != "http.request":
                        raise _ClientGoneError
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise RequestError(
                            413, f"the body exceeds this server's limit of {limit} bytes"
                        )
                    chunks.append(chunk)
                body = b"".join(chunks)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise  # cancelled by someone else (the server shutting down)
            self._expired.discard(task)
            task.uncancel()
            raise RequestError(
                408, f"the request body did not arrive within {self.options.body_timeout:g} s"
            ) from None
        finally:
            self._reading.pop(task, None)
        return body

    def _sweep_every(self) -> float:
        return max(0.05, min(1.0, self.options.body_timeout / 4))

    def _sweep(self) -> None:
        """Cancel the body reads past their deadline (their requests then get 408)."""
        now = time.monotonic()
        for task, deadline in list(self._reading.items()):
            if deadline <= now:
                del self._reading[task]
                self._expired.add(task)
                task.cancel()
        if self._reading:
            asyncio.get_running_loop().call_later(self._sweep_every(), self._sweep)
        else:
            self._sweeping = False

    def _admit(self, scope: Scope, *, after_refusal: bool = False) -> asyncio.Future[bool] | None:
        """Take a slot for model work, or shed with 503 + Retry-After what should not
        start it now: a request on a connection beyond the budget, one that waited too
        long since it arrived while others are in flight (CoDel; see
        `serve/admission.py`), one that would join a queue for slots that is already
        late. None: the request holds a slot; else a future to wait on for one.

        `after_refusal`: the connection's last request was refused; neither the
        sojourn check nor a late queue sheds this one (`admission.ConnectionState`)."""
        if scope.get(OVER_BUDGET):
            self._shed("connections", close=True)
        queue = self._queue
        if self._inflight < self.options.max_inflight and (queue is None or not queue.waiting()):
            self._check_sojourn(scope, alone=after_refusal or self._inflight == 0)
            self._inflight += 1
            self.metrics.inflight = self._inflight
            return None
        sojourn = self._sojourn
        if sojourn is None:  # nothing bounds a wait for a slot: none is waited for
            self._shed("inflight")
        if queue is None:
            queue = self._queue = SlotQueue(
                asyncio.get_running_loop(), join_within=sojourn.target, deadline=sojourn.deadline
            )
        arrival = scope.get(ARRIVAL) or (time.monotonic(), time.thread_time())
        waiting = queue.join(arrival, even_late=after_refusal)
        if waiting is None:
            self._shed("queue")
        return waiting

    def refuse(self, method: bytes, url: bytes) -> bytes | None:
        """The rest of a 503 for a request the protocol may refuse as soon as it is read
        (`transport.EarlyRefusal`): a request `_admit` would shed at once because the
        queue for slots is late, refused before its request cycle and task start."""
        queue = self._queue
        if queue is None or method != b"POST" or not queue.late():
            return None
        path = url.split(b"?", 1)[0].decode("latin-1")
        route = self._routes.get(path) or self._match(path)
        if route is None or not route.shed:
            return None
        if self._authorization is not None and not route.public:
            return None  # 401 comes first: the app authenticates it
        self.metrics.shed["queue"] += 1
        self.metrics.observe(route.name, "POST", 503, 0.0)
        return self._refusal

    async def _wait_for_slot(
        self, scope: Scope, waiting: asyncio.Future[bool], *, after_refusal: bool = False
    ) -> None:
        """Wait for a slot a finishing request hands over (503 when the wait ran past the
        deadline first); then the sojourn check, as for a request that found one free
        (none `after_refusal`)."""
        try:
            handed = await waiting
        except asyncio.CancelledError:
            if waiting.done() and not waiting.cancelled() and waiting.result():
                self._release()  # a slot was handed over as the task was cancelled
            raise
        if not handed:
            self._shed("deadline")
        try:
            self._check_sojourn(scope, alone=after_refusal or self._inflight == 1)
        except RequestError:
            self._release()
            raise

    def _check_sojourn(self, scope: Scope, *, alone: bool) -> None:
        """Shed a request that waited too long since it arrived (`SojournLimit`), unless
        it is `alone` in flight: shedding it would spare no one behind it (after a
        stall, say). CoDel never drops the last packet of a queue either."""
        arrival = scope.get(ARRIVAL)
        sojourn = self._sojourn
        if arrival is None or sojourn is None:
            return
        now = time.monotonic()
        wait = waited(arrival, now, time.thread_time())
        if sojourn.admit(wait + scope.get(LAG, 0.0), wait, now) or alone:
            return
        self._shed("deadline" if wait > sojourn.deadline else "sojourn")

    def _release(self) -> None:
        """A request's slot is free: to the oldest waiting request, else back to the pool."""
        if self._queue is None or not self._queue.hand_over():
            self._inflight -= 1
            self.metrics.inflight = self._inflight

    def _shed(self, reason: str, *, close: bool = False) -> NoReturn:
        """Answer 503 + Retry-After (and close the connection when `close`)."""
        self.metrics.shed[reason] += 1
        headers = self._retry_after
        if close:
            headers = [*headers, (b"connection", b"close")]
        raise RequestError(503, _OVERLOADED, headers=headers)

    def _select(self, scope: Scope, route: _Route, payload: Any) -> ServedModel:
        if not self.ready:
            raise RequestError(503, "the model is not ready yet", headers=[(b"retry-after", b"1")])
        return self.router.select(RequestInfo(route.name, scope["headers"], payload))

    def _check_name(self, route: _Route) -> ServedModel:
        name = route.params["name"]
        if name != self.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {self.name!r}")
        version = route.params.get("version")
        models = self.router.models
        if version is not None:
            for model in models:
                if model.version == version:
                    return model
            versions = ", ".join(sorted({m.version for m in models}))
            raise RequestError(404, f"model {name!r} has no version {version!r}; it has {versions}")
        return models[0]

    async def _run(
        self, model: ServedModel, rows: np.ndarray, keys: list[str] | None = None
    ) -> tuple[Any, Any, list[str]]:
        """Predict `rows` with `model` (micro-batched), issue ids, queue the log entry."""
        state = self._state(model)
        labels, probabilities = await state.batcher.submit(rows)
        count = len(rows)
        issued = self._ids.take(count)
        self.metrics.count_predictions(state.labels, count)
        if self.log is not None:
            self.log.put(
                self._log_index(state), issued, rows, labels, probabilities, time.time(), keys
            )
        return labels, probabilities, issued

    async def _answer(
        self,
        model: ServedModel,
        decode: Callable[[Codec], np.ndarray],
        *,
        failover: bool = True,
        keys: list[str] | None = None,
    ) -> tuple[ServedModel, Any, Any, list[str]]:
        """Decode and predict with `model`; on a model error, fail over when the router can.

        The failed model is reported to the router only when another model answered the
        same request: then the fault is the model's, not the input's. The rows answered
        are mirrored to the router's shadows for `model`.
        """
        rows = decode(self._state(model).codec)
        try:
            labels, probabilities, issued = await self._run(model, rows, keys)
        except Exception as error:
            alternative = self.router.fallback_for(model, error) if failover else None
            if alternative is None:
                raise
            try:
                alternative_rows = decode(self._state(alternative).codec)
            except RequestError:
                raise error from None
            labels, probabilities, issued = await self._run(alternative, alternative_rows, keys)
            self.router.report_error(model, error)
            model, rows = alternative, alternative_rows
        self._mirror(model, rows, issued)
        return model, labels, probabilities, issued

    def _mirror(self, model: ServedModel, rows: np.ndarray, issued: list[str]) -> None:
        """Send `rows` to the shadows of `model` in the background (never on the answer)."""
        for k, shadow in enumerate(self.router.shadows(model), 1):
            if shadow.feature_names != model.feature_names:
                continue  # rows in another feature order would be nonsense to it
            task = asyncio.ensure_future(self._shadow(shadow, rows, issued, k))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _shadow(
        self, model: ServedModel, rows: np.ndarray, issued: list[str], k: int
    ) -> None:
        """Predict mirrored rows with a shadow model and log them as `shadow_id(ID, k)`."""
        state = self._state(model)
        dtype = model.predictor.input_dtype
        if rows.dtype != dtype and rows.dtype != object:
            rows = rows.astype(dtype)
        try:
            labels, probabilities = await state.batcher.submit(rows)
        except Exception as error:
            self.router.report_error(model, error)
            return
        self.metrics.count_shadow_predictions(state.labels, len(rows))
        if self.log is not None:
            ids = [shadow_id(pid, k) for pid in issued]
            self.log.put(self._log_index(state), ids, rows, labels, probabilities, time.time())

    def _log_index(self, state: _Served) -> int:
        assert self.log is not None
        model = state.model
        return self.log.register(
            state.serial,
            name=model.name,
            release=model.release,
            generation=model.generation,
            features=model.feature_names,
        )

    # --- v1 ------------------------------------------------------------------------------

    async def _predict(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        payload = _parse_json(body)
        if type(payload) is not dict:
            raise RequestError(
                400,
                f"the body must be a JSON object with 'instances' or 'columns', "
                f"got {json_type(payload)}",
            )
        model = self._select(scope, route, payload)
        # Optional event keys, one per row: they tie a prediction to the case the spec's
        # outcomes source later reports on (`mlcycle evaluate --production` joins them).
        keys = None
        if "keys" in payload:
            if self._authorization is not None:
                # Keys tie predictions to true outcomes from the spec's outcomes source,
                # which score models and reward bandits: with --public-predict too, only
                # holders of the token may send them.
                self._authenticate(scope)
            keys = _event_keys(payload["keys"])
        form = len(payload) - (keys is not None)
        if form == 1 and "instances" in payload:
            instances = payload["instances"]

            def read(codec: Codec) -> np.ndarray:
                return codec.instances(instances)

        elif form == 1 and "columns" in payload:
            columns = payload["columns"]

            def read(codec: Codec) -> np.ndarray:
                return codec.columns(columns)

        else:
            raise _form_problem(payload)
        self._check_rows(_claimed_rows(payload.get("instances", payload.get("columns"))))

        def decode(codec: Codec) -> np.ndarray:
            rows = read(codec)
            self._check_rows(len(rows))
            if keys is not None and len(keys) != len(rows):
                raise RequestError(400, f"'keys' has {len(keys)} entries for {len(rows)} rows")
            return rows

        model, labels, probabilities, issued = await self._answer(model, decode, keys=keys)
        answer: dict[str, Any] = {
            "predictions": _jsonable(labels),
            "ids": issued,
            "model": model.ref,
        }
        if probabilities is not None:
            answer["probabilities"] = _jsonable(probabilities)
        await _send_bytes(send, 200, orjson.dumps(answer, option=_NUMPY))
        return 200

    def _check_rows(self, count: int) -> None:
        """413 when a request carries more rows than `max_rows`."""
        limit = self.options.max_rows
        if count > limit:
            raise RequestError(
                413,
                f"the request has {count} rows; this server takes at most {limit} per request "
                "(deployment.serve.max_rows): send them in smaller requests",
            )

    def _outcome_rules(self) -> tuple[OutcomeRule, ...]:
        """What outcomes the models serving now take (recomputed when they change)."""
        models = tuple(self.router.models)
        known = self._rules_for
        if (
            known is None
            or len(known) != len(models)
            or any(a is not b for a, b in zip(known, models, strict=True))
        ):
            self._rules = OutcomeRule.for_models(models)
            self._rules_for = models
        return self._rules

    async def _feedback(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        payload = _parse_json(body)
        items = _feedback_items(payload, self._outcome_rules())
        if self.store is None:
            raise RequestError(
                404, "feedback is off: this server was started without a prediction store"
            )
        if self._background:
            # Shadow predictions of this process still on their way to the log: an outcome
            # counted before its shadow rows exist would never reward the shadow.
            await asyncio.wait(list(self._background), timeout=5)
        report = await self._record_outcomes(items)
        await _send_json(send, 200, report.as_dict())
        return 200

    async def _record_outcomes(self, items: list[tuple[str, Any]]) -> OutcomeReport:
        """Record outcomes; ids another worker issued a moment ago get more chances.

        Another worker may still hold those predictions in its log queue (it writes
        every `log_interval`, later when the machine is busy): ids issued within the
        last few seconds are retried after each of its writes until they turn up or
        the window closes. The store is written on the feedback threads and the waits
        between tries hold no thread at all.
        """
        store, log_ = self.store, self.log
        assert store is not None
        loop = asyncio.get_running_loop()

        def record(chosen: list[tuple[str, Any]], flush: bool = False) -> OutcomeReport:
            if flush and log_ is not None:
                log_.flush()
            return store.record_outcomes(chosen)

        report = await loop.run_in_executor(self._store_executor, record, items, True)
        window = 2 * self.options.log_interval + 3.0
        accepted, duplicate = report.accepted, report.duplicate
        pending = set(report.unknown)
        while True:
            now = time.time()
            recent = {
                pid
                for pid in pending
                if (issued := id_tools.issued_at(pid)) is not None and now - issued < window
            }
            if not recent:
                break
            await asyncio.sleep(self.options.log_interval + 0.05)
            retry = await loop.run_in_executor(
                self._store_executor, record, [(p, o) for p, o in items if p in recent]
            )
            accepted += retry.accepted
            duplicate += retry.duplicate
            pending -= set(retry.accepted) | set(retry.duplicate)
        if pending == set(report.unknown):
            return report
        order = {pid: i for i, (pid, _) in reversed(list(enumerate(items)))}

        def ordered(ids: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(sorted(ids, key=order.__getitem__))

        return OutcomeReport(
            accepted=ordered(accepted),
            unknown=ordered(tuple(p for p in report.unknown if p in pending)),
            duplicate=ordered(duplicate),
        )

    async def _model(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        # A selector router changes what serves (new generations, arms taken out):
        # /v1/model describes it at request time, with the routing.
        routing = self.router.describe()
        if routing is None:
            await _send_bytes(send, 200, self._model_info)
            return 200
        info = {**self.router.models[0].describe(), "routing": routing}
        await _send_bytes(send, 200, orjson.dumps(info, option=_NUMPY))
        return 200

    async def _healthz(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        await _send_json(send, 200, {"status": "ok", "worker": os.getpid()})
        return 200

    async def _readyz(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        if not self.ready:
            raise RequestError(503, "not ready", headers=[(b"retry-after", b"1")])
        await _send_json(send, 200, {"status": "ready"})
        return 200

    async def _metrics(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        loop = asyncio.get_running_loop()
        # Reading the other workers' snapshots touches files: keep it off the loop.
        text = await loop.run_in_executor(self._executor, self.metrics.render)
        await _send_bytes(send, 200, text.encode(), _TEXT)
        return 200

    async def _openapi_json(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        await _send_bytes(send, 200, self._openapi)
        return 200

    # --- Open Inference Protocol v2 -------------------------------------------------------

    async def _v2_live(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        await _send_json(send, 200, {"live": True})
        return 200

    async def _v2_ready(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        if not self.ready:
            raise RequestError(503, "not ready", headers=[(b"retry-after", b"1")])
        await _send_json(send, 200, {"ready": True})
        return 200

    async def _v2_server(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        await _send_json(
            send,
            200,
            {"name": "mlcycle", "version": __version__, "extensions": list(V2_EXTENSIONS)},
        )
        return 200

    async def _v2_model(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        model = self._check_name(route)
        metadata = (
            self._v2_metadata
            if model is self.router.models[0]
            else orjson.dumps(_v2_metadata(model))
        )
        await _send_bytes(send, 200, metadata)
        return 200

    async def _v2_model_ready(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        model = self._check_name(route)
        if not self.ready:
            raise RequestError(503, "not ready", headers=[(b"retry-after", b"1")])
        await _send_json(send, 200, {"name": model.name, "ready": True})
        return 200

    async def _v2_infer(self, scope: Scope, body: bytes, send: Send, route: _Route) -> int:
        named = self._check_name(route)
        payload, binary = _v2_request(scope, body)
        if type(payload) is not dict:
            raise RequestError(
                400, f"the body must be an inference request object, got {json_type(payload)}"
            )
        unknown = set(payload) - {"id", "parameters", "inputs", "outputs"}
        if unknown:
            raise RequestError(400, f"unknown field(s) {sorted(unknown)}; see GET /openapi.json")
        if "inputs" not in payload:
            raise RequestError(400, "missing field 'inputs'")
        request_id = payload.get("id")
        if request_id is not None and type(request_id) is not str:
            raise RequestError(400, "'id' must be a string")
        parameters = payload.get("parameters", {})
        if type(parameters) is not dict:
            raise RequestError(400, "'parameters' must be an object")
        binary_default = parameters.get("binary_data_output", False)
        if type(binary_default) is not bool:
            raise RequestError(400, "parameters.binary_data_output must be true or false")
        pinned = "version" in route.params
        model = named if pinned else self._select(scope, route, payload)
        if not self.ready:
            raise RequestError(503, "not ready", headers=[(b"retry-after", b"1")])
        wanted = _v2_outputs(payload.get("outputs"), model, binary_default)
        inputs = payload["inputs"]
        self._check_rows(_claimed_v2_rows(inputs))

        def decode(codec: Codec) -> np.ndarray:
            rows = codec.v2_inputs(inputs, binary)
            self._check_rows(len(rows))
            return rows

        model, labels, probabilities, issued = await self._answer(
            model, decode, failover=not pinned
        )
        outputs = []
        chunks: list[bytes] = []
        if "predict" in wanted:
            outputs.append(_v2_output("predict", labels, wanted["predict"], chunks))
        if "predict_proba" in wanted and probabilities is not None:
            outputs.append(
                _v2_output("predict_proba", probabilities, wanted["predict_proba"], chunks)
            )
        answer: dict[str, Any] = {
            "model_name": model.name,
            "model_version": model.version,
            "parameters": {"ids": issued},
            "outputs": outputs,
        }
        if request_id is not None:
            answer["id"] = request_id
        header = orjson.dumps(answer, option=_NUMPY)
        if not chunks:
            await _send_bytes(send, 200, header)
            return 200
        # The binary tensor data extension: the JSON header, then each binary output's
        # bytes in the order of `outputs`; the header's length says where they start.
        await _send_bytes(
            send,
            200,
            b"".join((header, *chunks)),
            _OCTETS,
            [(_HEADER_LENGTH, str(len(header)).encode())],
        )
        return 200


def create_app(
    source: ModelSource,
    *,
    store_url: str | None = None,
    options: ServeOptions | None = None,
    metrics_dir: Path | None = None,
) -> ServingApp:
    """The ASGI application serving `source` (a ServedModel, a Router or a loader)."""
    return ServingApp(
        resolve_source(source), store_url=store_url, options=options, metrics_dir=metrics_dir
    )


# --- module helpers ------------------------------------------------------------------------


async def _send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = _JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_json(
    send: Send, status: int, data: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_bytes(send, status, orjson.dumps(data), _JSON, headers)


def _parse_json(body: bytes) -> Any:
    """The request's JSON document, or a 400 saying why there is none."""
    if not body:
        raise RequestError(400, "the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None


def _declares_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunks)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            return value.strip() not in (b"0", b"")
        if key == b"transfer-encoding":
            return True
    return False


def _jsonable(values: np.ndarray) -> Any:
    """An array orjson can write directly, or a list when it cannot (objects, strided)."""
    if values.dtype.kind in "iufb" and values.flags.c_contiguous:
        return values
    return values.tolist()


def _event_keys(value: Any) -> list[str]:
    """The request's `keys` as text; 400 unless a list of strings or integers."""
    if type(value) is not list:
        raise RequestError(
            400, f"'keys' must be a list with one key per row, got {json_type(value)}"
        )
    keys = []
    for i, key in enumerate(value):
        if type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH:
            keys.append(key)
        elif type(key) is int:
            keys.append(str(key))
        else:
            raise RequestError(
                400,
                f"keys[{i}] must be a string of 1 to {MAX_KEY_LENGTH} characters or an "
                f"integer, got {json_type(key)}",
            )
    return keys


def _form_problem(payload: dict[str, Any]) -> RequestError:
    forms = [k for k in ("instances", "columns") if k in payload]
    extra = sorted(set(payload) - {"instances", "columns", "keys"})
    if len(forms) == 2:
        return RequestError(400, "send either 'instances' or 'columns', not both")
    if extra:
        return RequestError(
            400,
            f"unknown field(s) {', '.join(repr(k) for k in extra)}; the body takes "
            f"'instances' (rows) or 'columns', and optionally 'keys'",
        )
    return RequestError(400, "the body needs 'instances' (a list of rows) or 'columns'")


def _claimed_rows(data: Any) -> int:
    """How many rows an `instances` list or a `columns` mapping claims (before decoding)."""
    if type(data) is list:
        return len(data)
    if type(data) is dict:
        return max((len(v) for v in data.values() if type(v) is list), default=0)
    return 0


def _claimed_v2_rows(inputs: Any) -> int:
    """The largest first dimension among v2 input tensors (before decoding)."""
    if type(inputs) is not list:
        return 0
    claimed = 0
    for tensor in inputs:
        shape = tensor.get("shape") if type(tensor) is dict else None
        if type(shape) is list and shape and type(shape[0]) is int:
            claimed = max(claimed, shape[0])
    return claimed


_MAX_PROBLEMS = 5
"""Outcome problems named in one 422 answer (the rest are counted)."""


def _feedback_items(payload: Any, rules: tuple[OutcomeRule, ...]) -> list[tuple[str, Any]]:
    """(id, outcome) pairs from a feedback body, or a 400 saying what is wrong.

    Every outcome must fit the served models (`rules`: one of the classes, or a finite
    number): when one does not, the whole request gets 422 naming each misfit and
    nothing of it is stored, so a client never has to find out which half went in.
    Outcomes are returned as stored: in the classes' own type (`1.0` becomes `1`).
    """
    if type(payload) is dict:
        entries = [payload]
        where = ["the body"]
    elif type(payload) is list:
        if not payload:
            raise RequestError(400, "the feedback list is empty")
        entries = payload
        where = [f"[{i}]" for i in range(len(payload))]
    else:
        raise RequestError(
            400,
            f"feedback must be an object {{'id', 'outcome'}} or a list of them, "
            f"got {json_type(payload)}",
        )
    items = []
    for entry, place in zip(entries, where, strict=True):
        if type(entry) is not dict:
            raise RequestError(400, f"{place} must be an object, got {json_type(entry)}")
        missing = [k for k in ("id", "outcome") if k not in entry]
        if missing:
            raise RequestError(400, f"{place}: missing {' and '.join(repr(k) for k in missing)}")
        extra = sorted(set(entry) - {"id", "outcome"})
        if extra:
            raise RequestError(400, f"{place}: unknown field(s) {', '.join(map(repr, extra))}")
        pid, outcome = entry["id"], entry["outcome"]
        if type(pid) is not str or not pid or len(pid) > 100:
            raise RequestError(400, f"{place}: 'id' must be a prediction id (a short string)")
        if outcome is None:
            raise RequestError(400, f"{place}: 'outcome' is null; send the true value")
        items.append((pid, outcome))
    checked = []
    problems = []
    for (pid, outcome), place in zip(items, where, strict=True):
        stored, problem = check_outcome(outcome, rules)
        if problem is not None:
            problems.append(f"{place}: 'outcome' {problem}")
        checked.append((pid, stored))
    if problems:
        shown = "; ".join(problems[:_MAX_PROBLEMS])
        more = len(problems) - _MAX_PROBLEMS
        tail = f" (and {more} more)" if more > 0 else ""
        raise RequestError(
            422, f"{shown}{tail}; nothing of this request was stored, send the true outcomes"
        )
    return checked


def _v2_request(scope: Scope, body: bytes) -> tuple[Any, memoryview | None]:
    """The JSON header of a v2 inference request, and the binary tensor data after it
    (None without an Inference-Header-Content-Length header: the body is all JSON)."""
    declared = None
    for key, value in scope["headers"]:
        if key == _HEADER_LENGTH:
            declared = value
            break
    if declared is None:
        try:
            return _parse_json(body), None
        except RequestError as e:
            if body[:1] == b"{" and b"binary_data_size" in body:
                e.message += (
                    "; a request with binary tensor data needs the header "
                    "Inference-Header-Content-Length (the length of its JSON part)"
                )
            raise
    text = declared.strip()
    if not text.isdigit() or len(text) > 12:
        raise RequestError(
            400,
            f"Inference-Header-Content-Length must be a byte count, not {_preview_bytes(declared)}",
        )
    length = int(text)
    if length == 0 or length > len(body):
        raise RequestError(
            400,
            f"Inference-Header-Content-Length is {length} but the body has {len(body)} "
            "bytes; it must be the length of the JSON header at the start of the body",
        )
    try:
        payload = orjson.loads(memoryview(body)[:length])
    except orjson.JSONDecodeError as e:
        raise RequestError(
            400,
            f"the JSON header (the first {length} bytes, per Inference-Header-Content-Length) "
            f"is not valid JSON: {e}",
        ) from None
    return payload, memoryview(body)[length:]


def _preview_bytes(value: bytes) -> str:
    text = repr(value.decode("latin-1"))
    return text if len(text) <= 40 else text[:37] + "..."


def _v2_outputs(requested: Any, model: ServedModel, binary: bool) -> dict[str, bool]:
    """The outputs a v2 request asks for, each with whether it goes as binary data
    (`binary`: the request's `binary_data_output`, which an output's own
    `parameters.binary_data` overrides)."""
    available = ["predict"]
    if model.predictor.has_probabilities:
        available.append("predict_proba")
    if requested is None:
        return dict.fromkeys(available, binary)
    if type(requested) is not list:
        raise RequestError(400, "'outputs' must be an array of {'name': ...}")
    wanted = {}
    for i, item in enumerate(requested):
        if type(item) is not dict or type(item.get("name")) is not str:
            raise RequestError(400, f"outputs[{i}] must be an object with a string 'name'")
        if item["name"] not in available:
            raise RequestError(
                400,
                f"unknown output {item['name']!r}; this model has {', '.join(sorted(available))}",
            )
        parameters = item.get("parameters", {})
        if type(parameters) is not dict:
            raise RequestError(400, f"outputs[{i}].parameters must be an object")
        flag = parameters.get("binary_data", binary)
        if type(flag) is not bool:
            raise RequestError(400, f"outputs[{i}].parameters.binary_data must be true or false")
        if parameters.get("class_count", 0) not in (0, None):
            raise RequestError(
                400,
                f"outputs[{i}]: the classification extension (class_count) is not supported; "
                "ask for 'predict_proba' instead",
            )
        wanted[item["name"]] = flag
    return wanted


def _v2_output(name: str, values: np.ndarray, binary: bool, chunks: list[bytes]) -> dict[str, Any]:
    """One output tensor of a v2 answer; as binary data, its bytes are added to `chunks`."""
    datatype = _v2_datatype(values)
    output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
    if not binary:
        output["data"] = _jsonable(values.reshape(-1))
        return output
    if datatype == "BYTES":
        # Each element: its length (4 bytes, little-endian), then its UTF-8 text.
        parts = []
        for value in values.reshape(-1).tolist():
            encoded = str(value).encode("utf-8")
            parts.append(len(encoded).to_bytes(4, "little"))
            parts.append(encoded)
        raw = b"".join(parts)
    else:
        raw = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    chunks.append(raw)
    return output


V2_EXTENSIONS = ("binary_tensor_data",)
"""The Open Inference Protocol extensions this server implements (`GET /v2`)."""


def _v2_datatype(values: np.ndarray) -> str:
    kind, size = values.dtype.kind, values.dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return f"{'INT' if kind == 'i' else 'UINT'}{size * 8}"
    if kind == "f":
        return f"FP{size * 8}"
    return "BYTES"


_V2_FEATURE_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def _v2_metadata(model: ServedModel) -> dict[str, Any]:
    """`GET /v2/models/{name}`: one input per feature, or one [N, F] tensor."""
    predictor = model.predictor
    outputs = [{"name": "predict", "datatype": _label_datatype(model), "shape": [-1]}]
    if predictor.has_probabilities and predictor.classes is not None:
        precision = "FP32" if np.dtype(predictor.input_dtype) == np.float32 else "FP64"
        outputs.append(
            {"name": "predict_proba", "datatype": precision, "shape": [-1, len(predictor.classes)]}
        )
    return {
        "name": model.name,
        "versions": sorted({model.version}),
        "platform": f"mlcycle-{predictor.backend}",
        "inputs": [
            {"name": f.name, "datatype": _V2_FEATURE_TYPES[f.type], "shape": [-1]}
            for f in model.features
        ],
        "outputs": outputs,
        "parameters": {
            "task": model.task,
            "classes": list(predictor.classes) if predictor.classes is not None else None,
            "alternative_input": f"one tensor of shape [-1, {len(model.features)}] with the "
            "features in the order of 'inputs'",
        },
    }


def _label_datatype(model: ServedModel) -> str:
    if model.task == "regression":
        return "FP64"
    classes = model.predictor.classes or ()
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) for c in classes):
        return "INT64"
    if classes and all(isinstance(c, float) for c in classes):
        return "FP64"
    return "BYTES"
