"""Accepting connections: up to `ACCEPT_BATCH` each time the listening socket is ready.

libuv, under uvloop, accepts one connection each time its event loop polls the
listening socket (so that other processes on the same socket get a turn). Under
load one turn of the loop reads and answers hundreds of requests, 10 to 20 ms of
work, so the engine accepted only 50 to 100 connections a second just when clients
opened more: a client that connected during a burst waited in the kernel's accept
queue, unseen, for up to 6 s before its first request was read, and no 503 can reach
a request the server has not accepted. Seen with `strace` as one `accept4` per
`epoll_wait`, and with `ss` as an accept queue of 700 connections that drained at 80
a second while the worker answered thousands of requests a second.

asyncio's own loop accepts up to its backlog per wake-up. `AcceptingServer` does the
same on uvloop with a smaller cap, and hands each connection to the loop with
`connect_accepted_socket`, the public way to give an event loop a socket accepted
outside it. The cap bounds how long one wake-up takes (a new connection costs about
0.15 ms here) and leaves the rest of a burst to the other workers sharing the
socket. Everything else about the connection (uvicorn's protocol, TCP_NODELAY, the
transport) is what `create_server` would have made.

`new_event_loop` is the loop uvicorn runs on (`server._run_uvicorn`): uvloop's,
answering `create_server(sock=...)` with an `AcceptingServer`; asyncio's own when
uvloop is missing.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64
"""Most connections accepted each time the listening socket is ready."""
ACCEPT_RETRY_DELAY = 1.0
"""Seconds without accepting after the process ran out of descriptors or memory (as asyncio)."""
_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class AcceptingServer(asyncio.AbstractServer):
    """A listening socket whose connections `loop` serves with `protocol_factory`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        sock: socket.socket,
        backlog: int,
        batch: int = ACCEPT_BATCH,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sock = sock
        self._batch = batch
        self._serving = False
        self._closed = False
        self._pending: set[asyncio.Task[Any]] = set()
        sock.setblocking(False)
        sock.listen(backlog)
        self._start()

    def _start(self) -> None:
        if not self._serving and not self._closed:
            self._serving = True
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self._batch):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except ConnectionAbortedError:
                continue  # the client gave up before we got to it
            except OSError as e:
                if e.errno not in _RESOURCES:
                    log.error("accepting a connection failed: %s", e)
                    return
                # Out of descriptors or memory: stop polling (the socket would stay
                # ready and spin the loop) and try again later, as asyncio does.
                log.error(
                    "accepting a connection failed: %s; not accepting for %g s",
                    e,
                    ACCEPT_RETRY_DELAY,
                )
                self._pause()
                self._loop.call_later(ACCEPT_RETRY_DELAY, self._start)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as e:  # reset by the client in the meantime
            log.debug("dropping an accepted connection: %s", e)
            conn.close()

    def _pause(self) -> None:
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._sock.fileno())

    # --- asyncio.AbstractServer ----------------------------------------------------------

    def close(self) -> None:
        """Stop accepting; the connections already made go on (uvicorn drains them).
        The socket stays open: whoever passed it in closes it."""
        self._pause()
        self._closed = True

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    async def start_serving(self) -> None:
        self._start()

    async def serve_forever(self) -> None:
        self._start()
        await self._loop.create_future()

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.wait(list(self._pending))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop with `AcceptingServer` for `create_server(sock=...)`; asyncio's
    own (which accepts in batches already) when uvloop is not installed."""
    try:
        import uvloop
    except ImportError:  # Windows: uvloop does not exist there
        return asyncio.new_event_loop()

    class AcceptingLoop(uvloop.Loop):
        async def create_server(  # type: ignore[override]
            self, protocol_factory: Any, *args: Any, **kwargs: Any
        ) -> asyncio.AbstractServer:
            sock = kwargs.get("sock")
            if args or sock is None or kwargs.get("ssl") is not None:
                return await super().create_server(protocol_factory, *args, **kwargs)
            return AcceptingServer(self, protocol_factory, sock, kwargs.get("backlog", 100))

    return AcceptingLoop()
