"""Accepting connections in batches (serve/listener.py), on the event loop the engine runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import ssl
from collections.abc import Iterator

import pytest

from mlcycle.serve import listener
from mlcycle.serve.listener import AcceptingServer, new_event_loop


class Counting(asyncio.Protocol):
    """Counts the connections it is given, and answers each one's first bytes."""

    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counting.made += 1
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"ok:" + data)  # type: ignore[attr-defined]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = new_event_loop()
    Counting.made = 0
    yield loop
    loop.close()


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def connect(sock: socket.socket, n: int) -> list[socket.socket]:
    """`n` connections the kernel completes into `sock`'s accept queue, unaccepted yet."""
    return [socket.create_connection(sock.getsockname(), timeout=5) for _ in range(n)]


def turns(loop: asyncio.AbstractEventLoop, n: int) -> list[int]:
    """Run `loop` for `n` turns; how many connections were made by the end of each."""
    made: list[int] = []
    done = loop.create_future()

    def tick() -> None:  # a callback that schedules itself runs once per turn
        made.append(Counting.made)
        if len(made) < n:
            loop.call_soon(tick)
        else:
            done.set_result(None)

    loop.call_soon(tick)
    loop.run_until_complete(done)
    return made


def steps(made: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *made], made, strict=False) if b != a]


def test_the_engine_loop_accepts_a_whole_queue_in_one_wake_up(
    loop: asyncio.AbstractEventLoop, listening: socket.socket
) -> None:
    # uvloop's own server accepts one connection per turn of the loop: 40 connections
    # that queued while the loop was busy would need 40 turns.
    server = loop.run_until_complete(loop.create_server(Counting, sock=listening, backlog=128))
    assert isinstance(server, AcceptingServer)
    clients = connect(listening, 40)
    try:
        assert steps(turns(loop, 4)) == [40]
        # And each is served by the protocol, on a working transport.
        clients[-1].sendall(b"hi")
        loop.run_until_complete(asyncio.sleep(0.05))
        assert clients[-1].recv(16) == b"ok:hi"
    finally:
        for client in clients:
            client.close()
        server.close()
        loop.run_until_complete(server.wait_closed())


def test_one_wake_up_accepts_at_most_a_batch(
    loop: asyncio.AbstractEventLoop, listening: socket.socket
) -> None:
    server = AcceptingServer(loop, Counting, listening, backlog=128, batch=8)
    clients = connect(listening, 20)
    try:
        assert steps(turns(loop, 8)) == [8, 8, 4]
    finally:
        for client in clients:
            client.close()
        server.close()


def test_after_close_nothing_more_is_accepted(
    loop: asyncio.AbstractEventLoop, listening: socket.socket
) -> None:
    server = AcceptingServer(loop, Counting, listening, backlog=16)
    assert server.is_serving() and server.sockets == (listening,)
    server.close()
    assert not server.is_serving() and server.sockets == ()
    clients = connect(listening, 3)  # the socket still listens: its owner closes it
    try:
        turns(loop, 4)
        assert Counting.made == 0
    finally:
        for client in clients:
            client.close()


def test_out_of_descriptors_it_pauses_then_accepts_again(
    loop: asyncio.AbstractEventLoop,
    listening: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A listening socket that stays ready while accept fails would spin the loop at
    # full CPU: like asyncio, it stops polling for a while and tries again.
    monkeypatch.setattr(listener, "ACCEPT_RETRY_DELAY", 0.2)
    server = AcceptingServer(loop, Counting, listening, backlog=16)
    clients = connect(listening, 3)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def starve() -> None:
        # Inside the running loop (whose own descriptors exist by now): every new
        # descriptor number must be below the limit, so accept gets EMFILE.
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))

    def restore() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    try:
        with caplog.at_level(logging.ERROR, logger=listener.__name__):
            loop.call_soon(starve)
            loop.call_later(0.05, restore)
            loop.run_until_complete(asyncio.sleep(0.1))
        assert Counting.made == 0
        assert not server.is_serving()
        assert "Too many open files; not accepting for 0.2 s" in caplog.text
        loop.run_until_complete(asyncio.sleep(0.3))
        assert server.is_serving() and Counting.made == 3
    finally:
        restore()
        for client in clients:
            client.close()
        server.close()


def test_other_servers_are_uvloops_own(
    loop: asyncio.AbstractEventLoop, listening: socket.socket
) -> None:
    # Only a plain listening socket gets the batching server; a host and port, or TLS,
    # are served as uvloop serves them.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for made in (
        loop.create_server(Counting, "127.0.0.1", 0),
        loop.create_server(Counting, sock=listening, ssl=context),
    ):
        server = loop.run_until_complete(made)
        with contextlib.closing(server):
            assert not isinstance(server, AcceptingServer)
