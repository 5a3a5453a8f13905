"""The coalescing transport: one socket write per loop turn, same bytes, same order."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from mlcycle.serve.transport import CoalescingTransport
from tests.serve.conftest import Server


class CountingTransport:
    """A real transport, with its write calls counted."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def connected_pair() -> tuple[CountingTransport, asyncio.StreamReader, Any]:
    """A real TCP connection on 127.0.0.1: our transport's end and a reader at the other."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.StreamReader] = loop.create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(reader)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    reader = await accepted
    return CountingTransport(transport), reader, server


def test_writes_of_one_turn_go_out_as_one_in_order() -> None:
    async def main() -> None:
        real, reader, server = await connected_pair()
        loop = asyncio.get_running_loop()
        coalescing = CoalescingTransport(real, loop)  # type: ignore[arg-type]
        coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        coalescing.write(bytearray(b"hel"))
        coalescing.writelines([memoryview(b"lo")])
        assert real.writes == 0
        assert coalescing.get_write_buffer_size() == 43
        await asyncio.sleep(0)  # the end of this turn
        assert real.writes == 1
        data = await reader.readexactly(43)
        assert data == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        coalescing.write(b"next")
        await asyncio.sleep(0)
        assert real.writes == 2
        assert await reader.readexactly(4) == b"next"
        # close sends what is gathered first, then the peer sees the end.
        coalescing.write(b"bye")
        coalescing.close()
        assert await reader.read() == b"bye"
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_abort_drops_what_is_gathered() -> None:
    async def main() -> None:
        real, reader, server = await connected_pair()
        coalescing = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalescing.write(b"never sent")
        coalescing.abort()
        await asyncio.sleep(0)
        assert real.writes == 0
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await reader.readexactly(1)
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def read_response(sock: socket.socket, buffer: bytes) -> tuple[int, dict[str, Any], bytes]:
    """One HTTP/1.1 response with a content-length from `sock` (status, JSON body, rest)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection early"
        buffer += chunk
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(buffer) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection early"
        buffer += chunk
    return int(lines[0].split()[1]), json.loads(buffer[:length]), buffer[length:]


def test_pipelined_and_closing_requests_get_whole_answers(server: Server) -> None:
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /v1/model HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        status, body, rest = read_response(sock, b"")
        assert (status, body["status"]) == (200, "ok")
        status, body, rest = read_response(sock, rest)
        assert status == 200 and body["features"]
        status, body, rest = read_response(sock, rest)
        assert (status, body["status"]) == (200, "ok")
        # After the answer to `Connection: close`, the server closes: nothing else comes.
        assert rest == b"" and sock.recv(100) == b""
