"""Slow, stalled and oversized requests, on real sockets against a real server.

Idle or half-sent connections must cost the server a connection, never the slots for
model work; a request that stalls gets 408 and is closed; an answer sent before the
body was read (413) reaches ordinary clients instead of a connection reset.
"""

from __future__ import annotations

import http.client
import json
import resource
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve.conftest import Server, launch, read_response, rows_of, shed

pytestmark = pytest.mark.slow

HELD = 300
"""Idle sockets an attacker holds open (more than the default 256 in-flight slots)."""


def _raise_file_limit(needed: int) -> None:
    """Lift the soft limit on open files (the server inherits it), or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"this test holds {HELD} sockets; `ulimit -n` allows at most {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory, bundle: Path) -> Iterator[Server]:
    """A server with the default deadlines and in-flight slots (256), started after
    the file limit allows the test's sockets."""
    _raise_file_limit(4 * HELD)
    server = launch(bundle, tmp_path_factory.mktemp("patient"), store=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, bundle: Path) -> Iterator[Server]:
    """A server with one-second deadlines for headers and bodies, and a 1 MB body limit."""
    server = launch(
        bundle,
        tmp_path_factory.mktemp("strict"),
        "--body-timeout",
        "1",
        "--header-timeout",
        "1",
        "--max-body-bytes",
        "1000000",
        store=False,
    )
    yield server
    server.stop()


def _stalled_predict(port: int, declared: int = 100_000, sent: bytes = b'{"ins') -> socket.socket:
    """A connection that sends the headers of a POST /v1/predict and part of its body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (declared, sent)
    )
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (EOF or reset) before the socket's timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_idle_half_sent_bodies_do_not_make_others_wait_or_get_503(
    patient: Server, cancer: Any
) -> None:
    held = [_stalled_predict(patient.port) for _ in range(HELD)]
    try:
        # Every stalled request has reached the server (it answers in order per loop).
        assert patient.get("/healthz").status == 200
        body = {"instances": rows_of(cancer[0], 0, 1)}
        for _ in range(5):
            # A normal client is answered at once (the socket's timeout is one second).
            reply = patient.request("POST", "/v1/predict", body, timeout=1)
            assert reply.status == 200, reply.json
        assert sum(shed(patient).values()) == 0
    finally:
        for sock in held:
            sock.close()


def test_a_stalled_body_gets_408_and_its_connection_is_closed(strict: Server) -> None:
    with _stalled_predict(strict.port) as sock:
        sock.settimeout(20)
        status, headers, body = read_response(sock)
        assert status == 408
        assert "did not arrive within 1 s" in body["error"]
        assert headers["connection"] == "close"
        assert _closed_by_server(sock)
    # The server still answers everyone else, and counted the 408.
    assert strict.get("/healthz").status == 200
    assert 'status="408"' in strict.get("/metrics").raw.decode()


def test_a_socket_that_sends_nothing_or_part_of_its_headers_is_closed(strict: Server) -> None:
    silent = socket.create_connection(("127.0.0.1", strict.port), timeout=20)
    partial = socket.create_connection(("127.0.0.1", strict.port), timeout=20)
    partial.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Le")
    with silent, partial:
        assert _closed_by_server(silent)
        status, _, body = read_response(partial)
        assert status == 408 and "headers" in body["error"]
        assert _closed_by_server(partial)


def test_an_oversized_body_gets_413_with_urllib(strict: Server) -> None:
    # 11.6 MB: the client is still sending long after the server has answered.
    data = json.dumps({"instances": [{"x": "y" * 100}] * 100_000}).encode()
    assert len(data) > 11_000_000
    request = urllib.request.Request(
        f"http://127.0.0.1:{strict.port}/v1/predict",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 413
    assert "at most 1000000" in json.loads(raised.value.read())["error"]


def test_an_oversized_body_gets_413_with_http_client_keep_alive(strict: Server) -> None:
    data = b"[" + b"1," * 3_000_000 + b"1]"
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=30)
    try:
        conn.request("POST", "/v1/predict", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 413
        assert response.getheader("connection") == "close"
        assert "at most" in json.loads(response.read())["error"]
    finally:
        conn.close()
    # The next connection is served as usual.
    assert strict.get("/healthz").status == 200


def test_an_endless_upload_is_cut_off(strict: Server) -> None:
    # After its early 413 the server discards what still comes, but not forever: a
    # client that keeps sending is cut off after the linger time (or 64 MiB).
    sock = socket.create_connection(("127.0.0.1", strict.port), timeout=10)
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000000\r\n\r\n"
    )
    chunk = b"1" * 65536
    deadline = time.monotonic() + 20
    cut = False
    with sock:
        try:
            while time.monotonic() < deadline:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
    assert cut, "the server kept reading the upload for 20 s"
    assert strict.get("/healthz").status == 200


def test_a_body_trickled_to_a_route_that_reads_none_is_closed(strict: Server) -> None:
    # /healthz is open without a token and reads no body: the answer comes at once, and
    # the connection must not stay open for a body sent one byte at a time.
    with socket.create_connection(("127.0.0.1", strict.port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n{")
        status, _, body = read_response(sock)
        assert status == 200 and body["status"] == "ok"
        sock.settimeout(1)
        deadline = time.monotonic() + 15
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"x")
                closed = sock.recv(65536) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed, "the connection stayed open for a trickled body"
