"""Request and prediction metrics, rendered in the Prometheus text format.

Recording is a dict increment and a bisect per request; rendering happens only when
`/metrics` is scraped. With several worker processes each keeps its own counters and
writes a snapshot to a shared directory (every few seconds and on every scrape); the
worker that answers a scrape sums every snapshot, so `/metrics` shows the whole server
whichever worker answers.

The standard `process_*` metrics (read from /proc as prometheus_client's
ProcessCollector reads them) describe the serving processes as one, like every other
family here: with several workers they are the workers' sum (CPU seconds, resident
and virtual memory, open descriptors), the earliest start time and the smallest
descriptor limit (the one a worker runs into first). CPU seconds include workers that
have died (a counter only grows, as the request counts keep theirs); the gauges count
the live workers only. The supervising parent process, which forks the workers and
serves nothing, is not counted; with one worker the figures are the server process's.

Why by hand and not `prometheus_client` in multiprocess mode (which a server of
several workers would need): `benchmarks/bench_http_internals.py` measures both with the
same families and label sets, 2 workers. On this 2-core machine, shared and loaded
(load average 14-19; best of 5 rounds in each of two runs; prometheus_client 0.26,
Python 3.11), one request's update (request counter, latency histogram, predictions
counter) took 2.7-5.4 µs here against 48-56 µs in multiprocess mode (a value in an
mmap'd file per worker, behind a lock), and a `/metrics` render 3.7-7.3 ms against
11-13 ms (every worker's files read and merged), this one including the /proc reads.
The update is on every request's path, so its 10-18x decides it; the library's
multiprocess mode also has no `process_*` metrics. The exposition is read back with
prometheus_client's own parser in the tests.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from mlcycle.serve.admission import SHED_REASONS

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Latency histogram bounds in seconds (`+Inf` is implied)."""

_PREFIX = "mlcycle"
_PROC = Path("/proc")


class Metrics:
    """Counters of one worker process."""

    def __init__(self, snapshot_dir: Path | None = None) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        # route -> [count per bucket..., +Inf count, sum]
        self.latency: dict[str, list[float]] = {}
        self.predictions: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.shadow_predictions: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.arms: list[dict[str, Any]] = []
        """Traffic and reward per arm of a selector router (`SelectorRouter.arm_stats`)."""
        self.batches = 0
        self.batched_rows = 0
        self.shed: dict[str, int] = dict.fromkeys(SHED_REASONS, 0)
        """Requests shed with 503, by the rule that shed them (`admission.SHED_REASONS`)."""
        self.inflight = 0
        self.queued = 0
        """Requests waiting for a slot (`admission.SlotQueue`), as of the last snapshot."""
        self.log_dropped = 0
        self._process = ProcessReader()
        self.refresh: Callable[[], None] | None = None
        """Called before every snapshot to copy counters kept elsewhere (batchers, log)."""
        self._dir = snapshot_dir
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests[(route, method, status)] += 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = [0.0] * (len(BUCKETS) + 2)
        histogram[bisect_left(BUCKETS, seconds)] += 1
        histogram[-1] += seconds

    def count_predictions(self, key: tuple[str, str, str, str], rows: int) -> None:
        """Count `rows` predictions of the model `key` (name, release, generation, backend)."""
        self.predictions[key] += rows

    def count_shadow_predictions(self, key: tuple[str, str, str, str], rows: int) -> None:
        """Count `rows` mirrored to the shadow model `key`: logged, never returned."""
        self.shadow_predictions[key] += rows

    # --- snapshots across workers --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This worker's counters as JSON-able data."""
        if self.refresh is not None:
            self.refresh()
        return {
            "pid": os.getpid(),
            "requests": [[*k, v] for k, v in self.requests.items()],
            "latency": {k: list(v) for k, v in self.latency.items()},
            "predictions": [[*k, v] for k, v in self.predictions.items()],
            "shadow_predictions": [[*k, v] for k, v in self.shadow_predictions.items()],
            "arms": list(self.arms),
            "batches": self.batches,
            "batched_rows": self.batched_rows,
            "shed": dict(self.shed),
            "inflight": self.inflight,
            "queued": self.queued,
            "log_dropped": self.log_dropped,
            "process": self._process.read(),
        }

    def write_snapshot(self) -> None:
        """Write this worker's snapshot to the shared directory (atomically)."""
        if self._dir is None:
            return
        path = self._dir / f"worker-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_bytes(orjson.dumps(self.snapshot()))
            tmp.replace(path)

    def start(self, every: float = 2.0) -> None:
        """Write snapshots every `every` seconds from a background thread."""
        if self._dir is None or self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(every):
                self.write_snapshot()

        self._thread = threading.Thread(target=run, name="mlcycle-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the snapshot thread after a last snapshot."""
        self._stop.set()
        self.write_snapshot()

    def collect(self) -> list[dict[str, Any]]:
        """Snapshots of every worker (just this one without a shared directory)."""
        if self._dir is None:
            return [self.snapshot()]
        self.write_snapshot()
        snapshots = []
        for path in sorted(self._dir.glob("worker-*.json")):
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                snapshot = orjson.loads(path.read_bytes())
                process = snapshot.get("process")
                if isinstance(process, dict) and not _alive(process.get("pid")):
                    # A dead worker's counters still count; its memory and files do not.
                    process["alive"] = False
                snapshots.append(snapshot)
        return snapshots or [self.snapshot()]

    def render(self) -> str:
        """The Prometheus text exposition of every worker's counters, summed."""
        return render(self.collect())


class ProcessReader:
    """This process's CPU time, memory and descriptors, read from /proc as
    prometheus_client's ProcessCollector does; {} where there is no /proc."""

    def __init__(self) -> None:
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._page = float(os.sysconf("SC_PAGE_SIZE"))
        self._boot: float | None = None
        with contextlib.suppress(OSError, ValueError, StopIteration):
            lines = _PROC.joinpath("stat").read_bytes().splitlines()
            self._boot = float(next(line for line in lines if line.startswith(b"btime")).split()[1])

    def read(self) -> dict[str, Any]:
        """`pid`, `cpu_seconds`, `resident_bytes`, `virtual_bytes`, `start_time`,
        `open_fds`, `max_fds`."""
        if self._boot is None:
            return {}
        try:
            # After the command name (which may hold spaces and parentheses): field 3 on.
            fields = _PROC.joinpath("self/stat").read_bytes().rsplit(b")", 1)[-1].split()
            open_fds = sum(1 for _ in _PROC.joinpath("self/fd").iterdir())
        except OSError:
            return {}
        return {
            "pid": os.getpid(),
            "cpu_seconds": (float(fields[11]) + float(fields[12])) / self._ticks,
            "start_time": float(fields[19]) / self._ticks + self._boot,
            "virtual_bytes": float(fields[20]),
            "resident_bytes": float(fields[21]) * self._page,
            "open_fds": open_fds,
            "max_fds": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _num(value: float) -> str:
    """A sample value: integral counts in full (`:g` would round 1234567 to 1.23457e+06)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(**labels: Any) -> str:
    parts = []
    for key, value in labels.items():
        text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{key}="{text}"')
    return "{" + ",".join(parts) + "}"


def render(snapshots: list[dict[str, Any]]) -> str:
    """Sum worker snapshots and render them (text format 0.0.4)."""
    requests: defaultdict[tuple[Any, ...], float] = defaultdict(float)
    latency: dict[str, list[float]] = {}
    predictions: defaultdict[tuple[Any, ...], float] = defaultdict(float)
    shadows: defaultdict[tuple[Any, ...], float] = defaultdict(float)
    totals = {
        "batches": 0.0,
        "batched_rows": 0.0,
        "inflight": 0.0,
        "queued": 0.0,
        "log_dropped": 0.0,
    }
    shed = dict.fromkeys(SHED_REASONS, 0.0)
    for snap in snapshots:
        for *key, value in snap.get("requests", []):
            requests[tuple(key)] += value
        for route, values in snap.get("latency", {}).items():
            current = latency.setdefault(route, [0.0] * len(values))
            for i, v in enumerate(values):
                current[i] += v
        for *key, value in snap.get("predictions", []):
            predictions[tuple(key)] += value
        for *key, value in snap.get("shadow_predictions", []):
            shadows[tuple(key)] += value
        for name in totals:
            totals[name] += snap.get(name, 0)
        reasons = snap.get("shed")
        for reason, value in (reasons if isinstance(reasons, dict) else {}).items():
            shed[reason] = shed.get(reason, 0.0) + value

    p = _PREFIX
    lines = [
        f"# HELP {p}_http_requests_total HTTP requests answered, by route, method and status.",
        f"# TYPE {p}_http_requests_total counter",
    ]
    for (route, method, status), value in sorted(requests.items()):
        labels = _labels(route=route, method=method, status=status)
        lines.append(f"{p}_http_requests_total{labels} {_num(value)}")
    lines += [
        f"# HELP {p}_http_request_duration_seconds Time to answer a request, by route.",
        f"# TYPE {p}_http_request_duration_seconds histogram",
    ]
    for route, values in sorted(latency.items()):
        cumulative = 0.0
        for bound, count in zip((*BUCKETS, float("inf")), values[:-1], strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            labels = _labels(route=route, le=le)
            lines.append(f"{p}_http_request_duration_seconds_bucket{labels} {_num(cumulative)}")
        lines.append(
            f"{p}_http_request_duration_seconds_sum{_labels(route=route)} {_num(values[-1])}"
        )
        lines.append(
            f"{p}_http_request_duration_seconds_count{_labels(route=route)} {_num(cumulative)}"
        )
    lines += [
        f"# HELP {p}_predictions_total Rows predicted, by model.",
        f"# TYPE {p}_predictions_total counter",
    ]
    for (model, release, generation, backend), value in sorted(predictions.items()):
        labels = _labels(model=model, release=release, generation=generation, backend=backend)
        lines.append(f"{p}_predictions_total{labels} {_num(value)}")
    if shadows:
        lines += [
            f"# HELP {p}_shadow_predictions_total Rows mirrored to shadow models (never returned).",
            f"# TYPE {p}_shadow_predictions_total counter",
        ]
        for (model, release, generation, backend), value in sorted(shadows.items()):
            labels = _labels(model=model, release=release, generation=generation, backend=backend)
            lines.append(f"{p}_shadow_predictions_total{labels} {_num(value)}")
    lines += _render_arms(snapshots)
    simple = (
        (
            "predict_batches_total",
            "counter",
            "Predict calls made (one per micro-batch).",
            "batches",
        ),
        ("predict_batch_rows_total", "counter", "Rows predicted in those calls.", "batched_rows"),
        ("inflight_requests", "gauge", "Requests being answered now.", "inflight"),
        ("queued_requests", "gauge", "Requests waiting for a slot for model work.", "queued"),
        (
            "prediction_log_dropped_total",
            "counter",
            "Predictions not written to the store (queue full or store failing).",
            "log_dropped",
        ),
    )
    for name, kind, help_text, key in simple:
        lines += [
            f"# HELP {p}_{name} {help_text}",
            f"# TYPE {p}_{name} {kind}",
            f"{p}_{name} {_num(totals[key])}",
        ]
    lines += [
        f"# HELP {p}_shed_requests_total Requests refused with 503 under overload, by the rule "
        "that refused them (connections: over the connection budget; inflight: every slot "
        "taken, sojourn check off; queue: the queue for slots was already late; deadline: "
        "waited too long in the worker; sojourn: a standing queue).",
        f"# TYPE {p}_shed_requests_total counter",
    ]
    for reason, value in shed.items():
        lines.append(f"{p}_shed_requests_total{_labels(reason=reason)} {_num(value)}")
    # A restarted worker leaves its predecessor's snapshot behind (its counters still
    # count); the gauge counts the workers alive now.
    live = sum(1 for s in snapshots if (s.get("process") or {}).get("alive", True))
    lines.append(f"# HELP {p}_workers Worker processes alive and reporting.")
    lines.append(f"# TYPE {p}_workers gauge")
    lines.append(f"{p}_workers {live}")
    # How the load spreads over the worker processes (a restarted worker is a new pid).
    lines += [
        f"# HELP {p}_worker_requests_total HTTP requests answered, by worker process (pid).",
        f"# TYPE {p}_worker_requests_total counter",
    ]
    for snap in snapshots:
        answered = sum(value for *_, value in snap.get("requests", []))
        worker = snap.get("pid", "")
        lines.append(f"{p}_worker_requests_total{_labels(worker=worker)} {_num(answered)}")
    lines += _render_process(snapshots)
    return "\n".join(lines) + "\n"


# The standard process families, as prometheus_client names them: (name, type, help,
# the reading it comes from, and how the workers' readings make one).
_PROCESS_FAMILIES = (
    ("cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
     "cpu_seconds", "sum, dead workers included"),
    ("resident_memory_bytes", "gauge", "Resident memory size in bytes.", "resident_bytes", "sum"),
    ("virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", "virtual_bytes", "sum"),
    ("start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
     "start_time", "min"),
    ("open_fds", "gauge", "Number of open file descriptors.", "open_fds", "sum"),
    ("max_fds", "gauge", "Maximum number of open file descriptors.", "max_fds", "min"),
)  # fmt: skip


def _render_process(snapshots: list[dict[str, Any]]) -> list[str]:
    """The standard `process_*` families, for the workers as one (see the module's doc)."""
    readings = [s["process"] for s in snapshots if s.get("process")]
    if not readings:
        return []
    live = [r for r in readings if r.get("alive", True)] or readings
    lines = []
    for name, kind, help_text, key, how in _PROCESS_FAMILIES:
        values = [r[key] for r in (readings if how.endswith("included") else live)]
        value = min(values) if how == "min" else sum(values)
        lines += [
            f"# HELP process_{name} {help_text}",
            f"# TYPE process_{name} {kind}",
            f"process_{name} {_num(value)}",
        ]
    return lines


def _render_arms(snapshots: list[dict[str, Any]]) -> list[str]:
    """Traffic and reward per arm of a selector.

    Traffic (requests answered, mirrored, errors) is counted by each worker and summed;
    rewards come from the shared store, so every worker reports the same totals, only
    more or less fresh: the largest count wins.
    """
    traffic: dict[tuple[str, str, str], list[float]] = {}
    rewards: dict[tuple[str, str, str], tuple[float, float]] = {}
    states: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for snap in snapshots:
        for arm in snap.get("arms", []):
            gen = arm.get("generation")
            key = (
                str(arm.get("model", "")),
                arm.get("release") or "",
                "" if gen is None else str(gen),
            )
            counts = traffic.setdefault(key, [0.0, 0.0, 0.0])
            counts[0] += arm.get("selected", 0)
            counts[1] += arm.get("mirrored", 0)
            counts[2] += arm.get("errors", 0)
            seen = (float(arm.get("evaluated", 0)), float(arm.get("reward", 0.0)))
            if key not in rewards or seen[0] > rewards[key][0]:
                rewards[key] = seen
            states[(*key, str(arm.get("state", "")))] += 1
    if not traffic:
        return []
    p = _PREFIX
    families = (
        ("arm_requests_total", "counter", "Requests each selector arm answered.", 0),
        ("arm_mirrored_requests_total", "counter", "Requests mirrored to each arm.", 1),
        ("arm_errors_total", "counter", "Predict calls of each arm that raised.", 2),
    )
    lines: list[str] = []
    for name, kind, help_text, slot in families:
        lines += [f"# HELP {p}_{name} {help_text}", f"# TYPE {p}_{name} {kind}"]
        for (model, release, generation), counts in sorted(traffic.items()):
            labels = _labels(model=model, release=release, generation=generation)
            lines.append(f"{p}_{name}{labels} {_num(counts[slot])}")
    lines += [
        f"# HELP {p}_arm_evaluated_predictions Predictions of each arm with a true outcome.",
        f"# TYPE {p}_arm_evaluated_predictions gauge",
    ]
    for (model, release, generation), (evaluated, _) in sorted(rewards.items()):
        labels = _labels(model=model, release=release, generation=generation)
        lines.append(f"{p}_arm_evaluated_predictions{labels} {_num(evaluated)}")
    lines += [
        f"# HELP {p}_arm_reward Rewards each arm earned (right predictions, see selectors).",
        f"# TYPE {p}_arm_reward gauge",
    ]
    for (model, release, generation), (_, reward) in sorted(rewards.items()):
        labels = _labels(model=model, release=release, generation=generation)
        lines.append(f"{p}_arm_reward{labels} {_num(reward)}")
    lines += [
        f"# HELP {p}_arm_reward_mean Mean reward of each arm's evaluated predictions.",
        f"# TYPE {p}_arm_reward_mean gauge",
    ]
    for (model, release, generation), (evaluated, reward) in sorted(rewards.items()):
        if evaluated:
            labels = _labels(model=model, release=release, generation=generation)
            lines.append(f"{p}_arm_reward_mean{labels} {_num(reward / evaluated)}")
    lines += [
        f"# HELP {p}_arm_state Workers reporting each arm in each state "
        "(active, standby, shadow, cold, degraded, failed).",
        f"# TYPE {p}_arm_state gauge",
    ]
    for (model, release, generation, state), count in sorted(states.items()):
        labels = _labels(model=model, release=release, generation=generation, state=state)
        lines.append(f"{p}_arm_state{labels} {_num(count)}")
    return lines
