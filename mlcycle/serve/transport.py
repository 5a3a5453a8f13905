"""One write per response: uvicorn's HTTP protocol on a transport that coalesces writes.

Through ASGI a response is two messages, and uvicorn writes each to the socket as it
comes: the status line and headers, then the body. On a keep-alive connection with
TCP_NODELAY (what uvicorn sets), each write is its own `send` system call and its own
TCP segment, and on loopback the kernel also does the receiver's TCP work inside that
call. `CoalescingTransport` gathers what one turn of the event loop writes to a
connection and sends it with one call at the end of the turn, so a small JSON answer
costs one segment instead of two.

Nothing waits longer than the current loop turn, and closing the connection sends what
is gathered first, so the bytes on the wire and their order are exactly uvicorn's.

The protocol adds four things uvicorn does not do:

- A header deadline. uvicorn waits forever for a new connection's first request and
  for the rest of a request's headers (its keep-alive timeout only runs between
  requests), so idle or half-sent sockets would pile up. A connection that has not
  sent a request's complete headers within `header_timeout` is closed (with a 408
  when part of a request came). The body has its own deadline in the app, which
  answers 408 itself.
- A lingering close, as nginx does. When the server answers before it has read the
  whole request (413, 408, 401 on a large upload) and closes, the kernel would reset
  the connection on the bytes the client still sends, and the client (urllib,
  requests) would see "connection reset" instead of the answer. The server instead
  half-closes (the client reads the answer and the end of it) and discards what still
  arrives until the client closes, for at most `linger_time` seconds and
  `linger_bytes` bytes.

- A connection budget. A connection opened while the worker already holds
  `max_connections` is marked (`scope[OVER_BUDGET]`): the app answers its requests
  503 + `Retry-After` and closes it, without doing their work (`admission.py`).
- An arrival time. When a request has been read in full, `scope[ARRIVAL]` records when
  (`time.monotonic()` and the loop thread's CPU time) and `scope[LAG]` how late the
  event loop's own work made it then (what waited in the kernel while the loop was
  busy waited all the same), so that the app can shed a request that waited too long
  behind other work before its model work starts.

- An early refusal (`EarlyRefusal`, the app's). When the app would shed a request
  anyway (its queue for slots is late), the protocol answers it 503 itself as soon
  as the request is read, without the ASGI request cycle, the task and the app's
  answer: under overload a refusal is most of the work, and one that costs less
  leaves more for the requests that are served (measured in the README).

Both deadlines are checked by one sweep per event loop (a few times a second over the
open connections), so a request pays for two attribute writes, not for a timer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from mlcycle.serve.admission import ConnectionState, LoopLag

LINGER_BYTES = 64 * 1024 * 1024
"""Most a lingering connection discards before it is reset anyway."""
ARRIVAL = "mlcycle.arrival"
"""Scope key: when the request was read in full: (`time.monotonic()`, `time.thread_time()`)."""
LAG = "mlcycle.lag"
"""Scope key: seconds the event loop ran late when the request was read (`LoopLag`)."""
OVER_BUDGET = "mlcycle.over_budget"
"""Scope key, set (True) on the requests of a connection opened beyond the budget."""
CONNECTION = "mlcycle.connection"
"""Scope key: the connection's `admission.ConnectionState` (was its last request refused)."""

_TIMEOUT_BODY = b'{"error":"the request headers did not arrive in time"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class EarlyRefusal(Protocol):
    """What the app tells the protocol about refusing a request before it starts."""

    def refuse(self, method: bytes, url: bytes) -> bytes | None:
        """The rest of a 503 answer (headers after the status line and the server's
        default headers, blank line, body) when the request `method` `url` is to be
        refused now (and counted as refused); None: start it as usual."""


class CoalescingTransport:
    """Forwards to `transport`, gathering the writes of one event-loop turn into one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data`; the first write of a turn schedules the flush."""
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        """Queue every chunk of `lines`."""
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Send what is gathered, then close (what uvicorn expects of `close`)."""
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        """Send what is gathered, then half-close."""
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        """Drop what is gathered and abort the connection."""
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        """Bytes not yet sent: the transport's buffer plus what is gathered."""
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def __getattr__(self, name: str) -> Any:
        # Everything else (get_extra_info, is_closing, pause_reading, ...) is the transport's.
        return getattr(self._transport, name)


class _LingeringTransport(CoalescingTransport):
    """The transport the HTTP protocol writes to: closing may first linger (see above)."""

    __slots__ = ("_lingering", "_protocol")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, protocol: Any
    ) -> None:
        super().__init__(transport, loop)
        self._protocol = protocol
        self._lingering = False

    def close(self) -> None:
        """Send what is gathered; then close, or half-close and linger if a request is unread."""
        self._flush()
        if self._lingering or self._transport.is_closing():
            self._transport.close()
        elif self._protocol.unread():
            self._lingering = True
            self._protocol.start_lingering()
            self._transport.write_eof()
        else:
            self._transport.close()

    def is_closing(self) -> bool:
        """True while lingering too: uvicorn must neither answer nor arm its keep-alive."""
        return self._lingering or self._transport.is_closing()

    def abort(self) -> None:
        """Drop what is gathered and abort the connection."""
        self._lingering = False
        super().abort()


def http_protocol(
    *,
    header_timeout: float = 10.0,
    linger_time: float = 10.0,
    linger_bytes: int = LINGER_BYTES,
    max_connections: int | None = None,
    early: EarlyRefusal | None = None,
) -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol with the header deadline, lingering close, coalescing,
    the connection budget and arrival times.

    "auto" (uvicorn's pure-Python h11 protocol, without those) when httptools is missing.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools missing: uvicorn's pure-Python h11 protocol instead
        return "auto"

    sweep_every = max(0.05, min(1.0, header_timeout / 4, linger_time / 4))

    class ServingHttpProtocol(HttpToolsProtocol):
        # uvicorn makes one protocol object per connection, all sharing the server's
        # `connections` set: one sweep over it serves them all.
        sweeping = False
        lag: LoopLag | None = None
        """The event loop's heartbeat, started with the first connection."""
        over_budget = False
        """Opened while the worker held `max_connections` already."""
        deadline: float | None = None
        """When this connection is closed unless something changes (None: no deadline)."""
        started = False
        """Part of a request arrived and the rest has not (headers or body)."""
        refusing: bytes | None = None
        """The rest of the 503 to send once the body has arrived (refused early)."""
        lingering = False
        discarded = 0

        def connection_made(self, transport: Any) -> None:
            wrapped: Any = _LingeringTransport(transport, self.loop, self)
            super().connection_made(wrapped)
            self.admission = ConnectionState()
            if ServingHttpProtocol.lag is None:
                ServingHttpProtocol.lag = LoopLag(self.loop)
            if max_connections is not None and len(self.connections) > max_connections:
                self.over_budget = True
            self.deadline = self.loop.time() + header_timeout
            if not ServingHttpProtocol.sweeping:
                ServingHttpProtocol.sweeping = True
                self.loop.call_later(sweep_every, _sweep, self.loop, self.connections)

        def data_received(self, data: bytes) -> None:
            if self.lingering:
                self.discarded += len(data)
                if self.discarded > linger_bytes:
                    self.transport.abort()
                return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.started = True
            self.deadline = self.loop.time() + header_timeout

        def on_headers_complete(self) -> None:
            # The app reads the body under its own deadline (and answers 408 itself).
            self.deadline = None
            if (
                early is not None
                and not self.over_budget  # the app answers those and closes them
                and not self.expect_100_continue  # the client waits to send the body
                and not self.pipeline
                and (self.cycle is None or self.cycle.response_complete)
                and not self.admission.refused_last  # the app serves this one
            ):
                self.refusing = early.refuse(self.parser.get_method(), self.url)
                if self.refusing is not None:
                    # The body is discarded as it arrives, under the header deadline.
                    self.deadline = self.loop.time() + header_timeout
                    return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self.refusing is None:
                super().on_body(body)

        def on_message_complete(self) -> None:
            self.started = False
            if self.refusing is not None:
                self._refuse(self.refusing)
                return
            scope = self.scope
            now, cpu = time.monotonic(), time.thread_time()
            lag = self.lag
            scope[ARRIVAL] = (now, cpu)  # type: ignore[literal-required]
            scope[LAG] = 0.0 if lag is None else lag.lag(now, cpu)  # type: ignore[literal-required]
            scope[CONNECTION] = self.admission  # type: ignore[literal-required]
            if self.over_budget:
                scope[OVER_BUDGET] = True  # type: ignore[literal-required]
            super().on_message_complete()

        def _refuse(self, rest: bytes) -> None:
            self.admission.refused_last = True
            self.refusing = None
            self.deadline = None
            keep_alive = self.parser.should_keep_alive()
            parts = [b"HTTP/1.1 503 Service Unavailable\r\n"]
            for name, value in self.server_state.default_headers:
                parts += [name, b": ", value, b"\r\n"]
            if not keep_alive:
                parts.append(b"connection: close\r\n")
            parts.append(rest)
            self.transport.write(b"".join(parts))
            if keep_alive:
                self.on_response_complete()  # what uvicorn does after an answer
            else:
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Answered while the same request's body is still arriving: a route that
            # reads none (GET /healthz with a Content-Length). Close, lingering, or a
            # body trickled byte by byte would hold the connection with no deadline. A
            # pipelined later request still waiting for its answer keeps it open.
            latest = self.cycle
            if (
                self.started
                and latest is not None
                and latest.response_complete
                and not self.transport.is_closing()
            ):
                self.transport.close()

        def unread(self) -> bool:
            """Whether the client may still be sending the current request."""
            return self.started

        def start_lingering(self) -> None:
            self.lingering = True
            self.deadline = self.loop.time() + linger_time
            # uvicorn pauses reading while a body waits for the app; nothing will read
            # it now, and the client must be able to finish sending.
            self.flow.resume_reading()

        def expire(self) -> None:
            """The deadline passed: end lingering, or close a connection that stalled."""
            self.deadline = None
            if self.lingering:
                self.transport.abort()
            elif self.cycle is not None and not self.cycle.response_complete:
                # A pipelined request is partial while the app still answers an earlier
                # one: a 408 now would land inside that answer. Wait for it.
                self.deadline = self.loop.time() + header_timeout
            elif self.started:  # a partial request: say why before closing
                self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()
            else:  # a connection that never sent a request
                self.transport.close()

    def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = loop.time()
        for protocol in list(connections):
            deadline = protocol.deadline
            if deadline is not None and deadline <= now:
                protocol.expire()
        if connections:
            loop.call_later(sweep_every, _sweep, loop, connections)
        else:
            ServingHttpProtocol.sweeping = False

    return ServingHttpProtocol
