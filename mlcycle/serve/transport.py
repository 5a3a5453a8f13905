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
"""

from __future__ import annotations

import asyncio
from typing import Any


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


def http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol on a `CoalescingTransport`, or "auto" without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools missing: uvicorn's pure-Python h11 protocol instead
        return "auto"

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            coalescing: Any = CoalescingTransport(transport, self.loop)
            super().connection_made(coalescing)

    return CoalescingHttpToolsProtocol
