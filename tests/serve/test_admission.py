"""Admission control: a request that waited too long, or came over the connection budget,
is answered 503 + Retry-After at once; the server stays up and serves what comes next.
The requests that queued behind one stall of the server are served, not shed.

The waits are made deterministic by freezing the server process (SIGSTOP): what is sent
meanwhile waits in the kernel, as it would behind a stalled or starved event loop, and
is read in one turn after it. No assertion here is about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mlcycle.serve.admission import LoopLag, SlotQueue, SojournLimit
from tests.serve.conftest import (
    launch,
    metric,
    read_response,
    rows_of,
    served_connection,
    shed,
    wait_for,
)

pytestmark = pytest.mark.slow


def _request(body: Any) -> bytes:
    data = json.dumps(body).encode()
    return (
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def _frozen_requests(
    server: Any, body: Any, count: int = 3
) -> list[tuple[int, dict[str, str], Any]]:
    """Send `count` requests on their own connections while the server is frozen; the
    answers. The kernel accepts the connections and holds their requests meanwhile:
    they wait half a second, then the server reads them all at once."""
    server.process.send_signal(signal.SIGSTOP)
    try:
        late = [
            socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(count)
        ]
        for sock in late:
            sock.sendall(_request(body))
        time.sleep(0.5)
    finally:
        server.process.send_signal(signal.SIGCONT)
    answers = []
    for sock in late:
        with sock:
            answers.append(read_response(sock))
    return answers


def test_requests_that_waited_past_the_deadline_are_shed_and_the_server_recovers(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    # The deadline bounds the wait inside the worker, from a request's read to its model
    # work. 1 µs: every request that waits behind another one in flight is past it.
    server = launch(bundle, tmp_path, "--queue-deadline-ms", "0.001")
    body = {"instances": rows_of(cancer[0], 0, 1)}
    try:
        assert server.post("/v1/predict", body).status == 200
        # Five, not three: on a busy machine the worker may read the first requests in
        # turns of their own; five read at once leave some queued behind one in flight.
        answers = _frozen_requests(server, body, count=5)
        # One request goes first and is served (shedding the last of a queue spares
        # no one); those queued behind it waited too long and are shed at once.
        statuses = sorted(status for status, _, _ in answers)
        assert statuses[0] == 200
        assert 503 in statuses
        for status, headers, reply in answers:
            if status == 503:
                assert headers["retry-after"] == "1"
                assert "overloaded" in reply["error"]

        # Up, and serving again: what arrives now has not waited.
        assert server.get("/healthz").status == 200
        answered = server.post("/v1/predict", body)
        assert answered.status == 200
        assert len(answered.json["predictions"]) == 1
        assert sum(shed(server).values()) == statuses.count(503)
    finally:
        server.stop()


def test_the_requests_read_after_one_stall_are_served_not_shed(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    """A stall is not a queue: the requests that waited in the kernel through it (ten
    times the deadline here) are served once the server runs again. A live model swap,
    a garbage collection or a busy machine stalls a worker now and then; shedding what
    queued behind it lost requests to nothing but bad luck."""
    server = launch(bundle, tmp_path, "--queue-deadline-ms", "50")
    body = {"instances": rows_of(cancer[0], 0, 1)}
    try:
        assert server.post("/v1/predict", body).status == 200
        answers = _frozen_requests(server, body)
        assert [status for status, _, _ in answers] == [200, 200, 200]
        assert sum(shed(server).values()) == 0
    finally:
        server.stop()


def test_requests_beyond_max_inflight_wait_for_a_slot_and_are_served(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    """One slot, five requests read in one turn: a cap that shed what came beyond it shed
    four requests that were a few milliseconds of work (the worker reads every request
    that arrived since its last turn at once: 1,024 clients whose sends fell together,
    or what queued in the kernel while the process got no CPU). They wait for the slot
    in turn and are served. (A deadline of 10 s keeps a busy machine out of it.)"""
    server = launch(bundle, tmp_path, "--max-inflight", "1", "--queue-deadline-ms", "10000")
    body = {"instances": rows_of(cancer[0], 0, 1)}
    try:
        assert server.post("/v1/predict", body).status == 200
        answers = _frozen_requests(server, body, count=5)
        assert [status for status, _, _ in answers] == [200] * 5
        assert sum(shed(server).values()) == 0
    finally:
        server.stop()


@contextlib.contextmanager
def _late_queue(
    bundle: Path, tmp_path: Path, cancer: Any
) -> Iterator[tuple[Any, bytes, Future[Any], socket.socket]]:
    """A server whose one slot is held (feedback on ids that look issued a moment ago
    by another worker, which the server retries for seconds) while one request waits
    for it, with a queue target of 1 µs: a request read now would be shed at once.
    Yields the server, a predict request, the feedback's future and the waiting
    request's connection (its answer unread)."""
    server = launch(
        bundle,
        tmp_path,
        *("--max-inflight", "1", "--queue-target-ms", "0.001", "--queue-deadline-ms", "10000"),
    )
    request = _request({"instances": rows_of(cancer[0], 0, 1)})
    fresh = f"{int(time.time() * 1000):012x}{0:08x}{0:08x}"
    try:
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(server.post, "/v1/feedback", {"id": fresh, "outcome": 1})
            wait_for(
                lambda: metric(server, "mlcycle_inflight_requests") == 1,
                "the feedback to hold the slot",
                server,
            )
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as waiting:
                waiting.sendall(request)
                wait_for(
                    lambda: metric(server, "mlcycle_queued_requests") == 1,
                    "a request to wait for the slot",
                    server,
                )
                yield server, request, busy, waiting
    finally:
        server.stop()


def test_a_request_that_would_join_a_late_queue_is_refused_as_it_is_read(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    """The protocol answers a request that would join a late queue 503 + Retry-After
    itself, before a request cycle starts, and keeps the connection open for the next
    request; the waiting one is served once the slot frees."""
    with _late_queue(bundle, tmp_path, cancer) as (server, request, busy, waiting):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as late:
            late.sendall(request)
            status, headers, reply = read_response(late)
            assert (status, headers["retry-after"]) == (503, "1")
            assert "overloaded" in reply["error"]
            assert "connection" not in headers  # kept alive
            late.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            assert read_response(late)[0] == 200
        assert shed(server)["queue"] == 1
        assert busy.result().status == 200
        assert read_response(waiting)[0] == 200


def test_a_connection_refused_once_has_its_next_request_served(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    """Refused at once, then sent again at once on the same connection (a client that
    ignores Retry-After), a request is not refused again: it waits for the slot and is
    served. A client that resends at once keeps as many requests waiting however many
    are refused, and refusing them all left a worker answering almost only 503s
    (admission.py). Another connection is still refused."""
    with _late_queue(bundle, tmp_path, cancer) as (server, request, busy, waiting):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as again:
            again.sendall(request)
            assert read_response(again)[0] == 503
            again.sendall(request)  # at once, on the same connection
            wait_for(
                lambda: metric(server, "mlcycle_queued_requests") == 2,
                "the resent request to wait for the slot",
                server,
            )
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as other:
                other.sendall(request)
                assert read_response(other)[0] == 503
            assert busy.result().status == 200
            assert read_response(waiting)[0] == 200
            status, _, reply = read_response(again)
            assert status == 200 and len(reply["predictions"]) == 1
        assert shed(server)["queue"] == 2


def test_the_slot_queue_hands_slots_over_in_order_and_sheds_by_time() -> None:
    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        queue = SlotQueue(loop, join_within=0.5, deadline=1.0, period=0.001)
        now, cpu = time.monotonic(), time.thread_time()
        first = queue.join((now, cpu))
        second = queue.join((now, cpu))
        assert first is not None and second is not None
        assert queue.waiting()
        # A freed slot goes to the oldest waiter, then the next; then to nobody.
        seen: list[object] = [queue.hand_over(), first.result(), second.done()]
        seen += [queue.hand_over(), second.result(), queue.hand_over(), queue.waiting()]
        # A queue whose oldest waiter waited longer than join_within: shed at once.
        late = queue.join((now - 10, cpu - 10))
        assert late is not None
        seen.append(queue.join((now, cpu)))
        # And one that waited past the deadline in wall time is shed by the sweep.
        seen.append(await late)
        # A waiter given up on (its client went away) gets no slot.
        gone = queue.join((time.monotonic(), time.thread_time()))
        assert gone is not None
        gone.cancel()
        seen += [queue.waiting(), queue.hand_over()]
        return seen

    assert asyncio.run(scenario()) == [
        True, True, False, True, True, False, False, None, False, False, False
    ]  # fmt: skip


def test_a_connection_over_the_budget_gets_503_and_is_closed(
    bundle: Path, tmp_path: Path, cancer: Any
) -> None:
    server = launch(bundle, tmp_path, "--max-connections", "2")
    request = _request({"instances": rows_of(cancer[0], 0, 1)})
    try:
        # Answered: the engine holds both connections now.
        held = [served_connection(server.port, request) for _ in range(2)]
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as extra:
            extra.sendall(request)
            status, headers, reply = read_response(extra)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert headers["connection"] == "close"
            assert "overloaded" in reply["error"]
            assert extra.recv(1) == b""  # closed by the server
        # The connections within the budget keep being served...
        held[0].sendall(request)
        assert read_response(held[0])[0] == 200
        for sock in held:
            sock.close()

        # ...and once they are gone, a new connection is within the budget again.
        def served() -> bool:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(request)
                return read_response(sock)[0] == 200

        assert any(served() for _ in range(50))
    finally:
        server.stop()


def test_sojourn_limit_cuts_a_standing_queue_not_a_burst_nor_a_stall() -> None:
    limit = SojournLimit(target=0.005, deadline=0.1, interval=0.1)
    # A burst: waits above the target, below the deadline, but the shortest one was short.
    assert all(limit.admit(w, w, 0.01 * i) for i, w in enumerate([0.0, 0.05, 0.08, 0.09]))
    assert not limit.admit(0.2, 0.2, 0.05)  # waited in the worker past the deadline: shed
    # A stall: read after the loop ran 300 ms late, it waited that long in the kernel
    # but not in the worker. Served.
    assert limit.admit(0.3, 0.001, 0.06)
    # The next interval judges the last one: its shortest wait (0) was within the target.
    assert limit.admit(0.05, 0.05, 0.11)
    assert not limit.overloaded
    # A standing queue: no wait in this interval was shorter than 40 ms...
    for i in range(5):
        limit.admit(0.04 + 0.001 * i, 0.001, 0.12 + 0.01 * i)
    # ...so the next one cuts sojourns above twice the target, however they were spent.
    assert not limit.admit(0.02, 0.001, 0.25)
    assert limit.overloaded
    assert limit.admit(0.009, 0.009, 0.26)
    # A whole interval without requests: the queue is gone.
    assert limit.admit(0.05, 0.05, 1.0)
    assert not limit.overloaded


def test_the_loop_lag_counts_its_own_work_not_a_stall() -> None:
    """A loop late because it worked (requests queued behind that work) is charged; a
    loop late because its thread did not run (no CPU, another thread holding the GIL,
    SIGSTOP; here a blocking sleep) is not: that is a stall, not a queue."""

    async def measure() -> tuple[float, float]:
        lag = LoopLag(asyncio.get_running_loop(), period=0.01)
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # the loop thread blocked without running
        stalled = lag.lag(time.monotonic(), time.thread_time())
        await asyncio.sleep(0.05)
        start = time.thread_time()
        while time.thread_time() - start < 0.3:  # the loop's own work: 0.3 s of CPU
            pass
        busy = lag.lag(time.monotonic(), time.thread_time())
        lag.stop()
        return stalled, busy

    stalled, busy = asyncio.run(measure())
    assert stalled < 0.1
    assert busy > 0.2
