"""Admission control: what would be answered late is answered 503 at once instead.

Past capacity, a queue forms somewhere; a 503 protects the server and its clients only
when it comes before the queue, not after it. Each worker process checks three things,
none of which costs a request more than a few attribute reads:

- A connection budget (`ServeOptions.max_connections`, in `transport.py`): the
  protocol marks every request of a connection opened beyond the budget, and the app
  answers it 503 + `Retry-After` and closes it, without parsing or predicting. Together
  with a bounded accept backlog (`ServeOptions.backlog`) this keeps the connections a
  worker serves, and so the length of one event-loop turn, bounded.
- The sojourn time of a request (`SojournLimit`): how long it waited between arriving
  and the start of its model work. The engine cannot see when bytes reached the kernel,
  so a request's arrival is the moment its last byte was read, moved back by the event
  loop's lag (`LoopLag`: a request read just after the loop stalled for 300 ms waited
  in the kernel for up to that long). Sojourn is checked CoDel-style, as Facebook's
  Thrift servers and Wangle do ("Fail at Scale", ACM Queue 2015): while a standing
  queue exists (the shortest sojourn seen in the last `interval` exceeded
  `queue_target`), a request that waited longer than twice the target is shed.
  A burst is absorbed; a queue that stays is cut.

  A stall is not a queue. Waits are counted in the event loop thread's CPU time, not
  in wall time: what a request waited while the loop worked on other requests is a
  queue; what it waited while the loop did not run at all (the process got no CPU on
  a busy machine, a model swap's thread held the GIL, SIGSTOP) is a stall, and
  shedding the requests that queued behind a stall spares no one. The hard deadline,
  `queue_deadline`, applies to the wait inside this worker, from the moment a request
  was read in full to its model start; the standing-queue rule adds the loop's lag
  (kernel wait). A stall that is the loop's own work (a long garbage collection)
  still counts; the CoDel rule alone sees that one through (the next interval's
  shortest sojourn is short again).
- Slots for model work (`ServeOptions.max_inflight`): the requests beyond wait for a
  slot in arrival order (`SlotQueue`), and are shed by time, not by count: at once
  when the oldest waiter has already waited longer than `queue_target` (the wait a
  newcomer would have), later when one is still waiting at `queue_deadline`. With the
  sojourn check off nothing bounds such a wait, and the cap sheds at once.

A connection whose last request was refused has its next one served
(`ConnectionState`): the sojourn check and the slot queue's lateness pass it, and
only the slot queue's deadline (wall time) still sheds it. A client that sends its
next request as soon as an answer comes (503 included, ignoring `Retry-After`)
keeps as many requests waiting however many are refused, so refusing them all
shortens no queue: it only turns the worker into a 503 machine. Measured (one
worker, 1,024 such connections, 2x capacity): 96-98% shed and 130-300 answers/s
with 200, against 2.2-2.8k/s with every other request of a connection served,
answers still within 0.5 s (README, Serving under load). A client that backs off
after a 503 is not affected: its next request is served, as it would be anyway
once the queue is gone.

Which rule shed a request is counted (`SHED_REASONS`, `/metrics`
`mlcycle_shed_requests_total{reason}`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

SHED_REASONS = ("connections", "inflight", "queue", "deadline", "sojourn")
"""The rules that shed a request, as `/metrics` labels them (`shed_requests_total{reason}`)."""
INTERVAL = 0.1
"""Seconds over which the shortest sojourn is taken to tell a standing queue (CoDel's)."""
_CATCH_UP_TURNS = 3
"""Loop turns after a late beat in which what is read is charged with the lateness: the
turn that accepts what queued, the one that reads it, and one to spare."""


class LoopLag:
    """How late an event loop runs because of its own work, measured by a heartbeat
    every `period` seconds.

    `lag(now, cpu)` is what a request read now may have waited in the kernel because
    the loop was busy: how late the last beat fired (for the few loop turns after it in
    which the loop reads what piled up meanwhile, new connections included), or how
    overdue the next beat is (the loop is busy now). About one loop turn under load, 0
    when idle. A request that arrives once the loop has caught up is not charged with
    the lateness before it.

    Only lateness the loop's thread spent running counts (its CPU time,
    `time.thread_time()`): that is work queued in front of what waited. A stall in
    which the thread did not run (the process got no CPU on a busy machine, another
    thread held the GIL, SIGSTOP) is not charged: it says nothing about a queue, and
    shedding what waited through it spares no one.
    """

    __slots__ = ("_beats", "_cpu", "_handle", "_last", "_late", "_loop", "_period")

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = 0.01) -> None:
        self._loop = loop
        self._period = period
        self._last = time.monotonic()
        self._cpu = time.thread_time()
        self._late = 0.0
        self._beats = 0
        self._handle = loop.call_later(period, self._beat)

    def _beat(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        self._late = max(0.0, min(now - self._last, cpu - self._cpu) - self._period)
        self._last, self._cpu = now, cpu
        self._beats += 1
        self._handle = self._loop.call_later(self._period, self._beat)
        if self._late:
            self._loop.call_soon(self._settle, self._beats, _CATCH_UP_TURNS)

    def _settle(self, beat: int, turns: int) -> None:
        if beat != self._beats:  # a later beat measured the loop again
            return
        if turns > 1:
            self._loop.call_soon(self._settle, beat, turns - 1)
        else:
            self._late = 0.0

    def lag(self, now: float, cpu: float) -> float:
        """Seconds the loop is behind at `now` (a `time.monotonic()` reading) because of
        its own work (`cpu`: the loop thread's `time.thread_time()` now)."""
        overdue = min(now - self._last, cpu - self._cpu) - self._period
        return self._late if self._late > overdue else overdue  # never below 0

    def stop(self) -> None:
        """Stop the heartbeat."""
        self._handle.cancel()


class SojournLimit:
    """CoDel for requests: shed those that waited too long before their model work.

    `admit(sojourn, wait, now)` is called once per request as its model work would
    start; False means answer 503 now. See the module docstring for the rule.
    """

    __slots__ = ("_interval_end", "_shortest", "deadline", "interval", "overloaded", "target")

    def __init__(self, *, target: float, deadline: float, interval: float = INTERVAL) -> None:
        self.target = target
        self.deadline = deadline
        self.interval = interval
        self.overloaded = False
        """Whether the last interval saw a standing queue (its shortest sojourn > target)."""
        self._shortest = math.inf
        self._interval_end = 0.0

    def admit(self, sojourn: float, wait: float, now: float) -> bool:
        """Whether a request is served that waited `wait` seconds since it was read and
        `sojourn` seconds since it arrived (`wait` plus the loop's lag when it was read),
        at time `now`."""
        if now >= self._interval_end:
            # A standing queue: every request of the interval just ended waited longer
            # than the target. Not when a whole interval since then went by without any
            # request (the queue is gone), nor before the first request.
            self.overloaded = (
                self.target < self._shortest < math.inf and now < self._interval_end + self.interval
            )
            self._shortest = math.inf
            self._interval_end = now + self.interval
        if sojourn < self._shortest:
            self._shortest = sojourn
        if wait > self.deadline:
            return False
        return not (self.overloaded and sojourn > 2 * self.target)


class ConnectionState:
    """What admission remembers of one connection: whether its last request was refused
    (503 by any rule of this module, or at once by the protocol). The next request of
    such a connection is served if a slot frees before the slot queue's deadline:
    admission sheds at most every other request of a connection (module docstring)."""

    __slots__ = ("refused_last",)

    def __init__(self) -> None:
        self.refused_last = False


def waited(arrival: tuple[float, float], now: float, cpu: float) -> float:
    """Seconds a request read at `arrival` (`time.monotonic()`, the loop thread's
    `time.thread_time()`) has waited at `now`/`cpu` behind the loop's own work: the
    shorter of the wall time and the loop thread's CPU time since (a stall in which the
    thread did not run is no queue)."""
    return min(now - arrival[0], cpu - arrival[1])


class SlotQueue:
    """The requests read while every slot for model work was taken, in arrival order.

    A slot freed by a finishing request goes to the oldest request still waiting.
    Nothing waits long: a request is shed at once (`join` returns None) when the oldest
    waiter has already waited more than `join_within` behind the loop's work (as
    `waited` counts it: the queue drains slower than it fills, and a FIFO newcomer
    would wait about as long), and one that still waits `deadline` seconds after its
    read, in wall time, is shed then (a sweep every `period` seconds, running only
    while requests wait): the slots may be held by work off the loop (feedback waiting
    for the store), which the loop's CPU time does not see.

    Why: a fixed cap that sheds whatever comes beyond it counts requests, not time. One
    event-loop turn reads every request that arrived since the last one, so 300
    requests read in one turn (1,024 clients whose sends fell together, or what queued
    in the kernel while the process got no CPU) were 300 requests in flight at once,
    and the cap shed the excess although, micro-batched at ~0.1-0.2 ms each, they were
    30-60 ms of work. Waiting for a slot, they are served in order and the turns stay
    short; what would wait too long is still shed at once.
    """

    __slots__ = ("_handle", "_loop", "_period", "_waiters", "deadline", "join_within")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        join_within: float,
        deadline: float,
        period: float = 0.005,
    ) -> None:
        self._loop = loop
        self.join_within = join_within
        self.deadline = deadline
        self._period = period
        self._waiters: deque[tuple[asyncio.Future[bool], tuple[float, float]]] = deque()
        self._handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Requests in the queue (some may have given up since)."""
        return len(self._waiters)

    def waiting(self) -> bool:
        """Whether a request waits (those given up on at the head are dropped first)."""
        waiters = self._waiters
        while waiters and waiters[0][0].done():  # given up on (the client went away)
            waiters.popleft()
        return bool(waiters)

    def late(self) -> bool:
        """Whether the oldest waiter has waited longer than `join_within`: a request
        that came now would be shed rather than join."""
        if not self.waiting():
            return False
        head = self._waiters[0][1]
        return waited(head, time.monotonic(), time.thread_time()) > self.join_within

    def join(
        self, arrival: tuple[float, float], *, even_late: bool = False
    ) -> asyncio.Future[bool] | None:
        """A future that says whether the request read at `arrival` got a slot (True)
        or is shed (False); None: shed now, the queue is already late (unless
        `even_late`: then it waits, and only the deadline sheds it)."""
        if not even_late and self.late():
            return None
        waiters = self._waiters
        future: asyncio.Future[bool] = self._loop.create_future()
        waiters.append((future, arrival))
        if self._handle is None:
            self._handle = self._loop.call_later(self._period, self._sweep)
        return future

    def hand_over(self) -> bool:
        """Give a freed slot to the oldest request still waiting; False: none waits."""
        waiters = self._waiters
        while waiters:
            future, _ = waiters.popleft()
            if not future.done():
                future.set_result(True)
                return True
        return False

    def _sweep(self) -> None:
        self._handle = None
        waiters = self._waiters
        now = time.monotonic()
        while waiters and (waiters[0][0].done() or now - waiters[0][1][0] > self.deadline):
            future, _ = waiters.popleft()
            if not future.done():
                future.set_result(False)
        if waiters:
            self._handle = self._loop.call_later(self._period, self._sweep)
