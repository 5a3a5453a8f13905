"""Metrics render as valid Prometheus text and add up across worker snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mlcycle.serve.metrics import Metrics, render
from tests.serve.conftest import launch, metric, wait_for


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _worker(requests: int) -> dict[str, Any]:
    metrics = Metrics()
    for _ in range(requests):
        metrics.observe("/v1/predict", "POST", 200, 0.002)
    metrics.observe("/v1/predict", "POST", 400, 0.0001)
    metrics.observe("unmatched", "GET", 404, 3.0)
    metrics.count_predictions(("m", "1.0.0", "2", "onnx"), 1_234_567)
    return metrics.snapshot()


def test_worker_snapshots_add_up() -> None:
    samples = _samples(render([_worker(3), _worker(4)]))

    ok = (("method", "POST"), ("route", "/v1/predict"), ("status", "200"))
    assert samples[("mlcycle_http_requests_total", ok)] == 7
    bucket = (("le", "0.0025"), ("route", "/v1/predict"))
    assert samples[("mlcycle_http_request_duration_seconds_bucket", bucket)] == 9
    fast = (("le", "0.0005"), ("route", "/v1/predict"))
    assert samples[("mlcycle_http_request_duration_seconds_bucket", fast)] == 2
    slow = (("le", "+Inf"), ("route", "unmatched"))
    assert samples[("mlcycle_http_request_duration_seconds_bucket", slow)] == 2
    model = (("backend", "onnx"), ("generation", "2"), ("model", "m"), ("release", "1.0.0"))
    assert samples[("mlcycle_predictions_total", model)] == 2_469_134
    assert samples[("mlcycle_workers", ())] == 2


def test_shed_requests_by_reason_and_requests_by_worker() -> None:
    """Which rule shed how much, summed over the workers; and how many requests each
    worker answered, apart (how evenly the load spreads)."""
    first, second = Metrics(), Metrics()
    first.shed["queue"] += 2
    second.shed["queue"] += 1
    second.shed["connections"] += 4
    one, two = first.snapshot(), second.snapshot()
    two["pid"] = one["pid"] + 1  # two processes
    first.observe("/v1/predict", "POST", 200, 0.002)
    two["requests"] = [["/v1/predict", "POST", 503, 5]]
    samples = _samples(render([first.snapshot(), two]))
    assert {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "mlcycle_shed_requests_total"
    } == {"connections": 4, "inflight": 0, "queue": 3, "deadline": 0, "sojourn": 0}
    workers = (("worker", str(one["pid"])),), (("worker", str(two["pid"])),)
    assert [samples[("mlcycle_worker_requests_total", w)] for w in workers] == [1, 5]


def test_snapshots_through_a_shared_directory(tmp_path: Path) -> None:
    first, second = Metrics(tmp_path), Metrics(tmp_path)
    first.observe("/healthz", "GET", 200, 0.0001)
    first.write_snapshot()
    # Both objects live in this one process, so they share one snapshot file name:
    # the second's render rewrites it with its own counters.
    second.observe("/healthz", "GET", 200, 0.0001)
    second.observe("/healthz", "GET", 200, 0.0001)
    samples = _samples(second.render())
    key = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    assert samples[("mlcycle_http_requests_total", key)] == 2
    assert list(tmp_path.glob("worker-*.json"))


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.count_predictions(('we"ird\\name', "", "", "sklearn"), 1)
    samples = _samples(metrics.render())
    labels = (
        ("backend", "sklearn"),
        ("generation", ""),
        ("model", 'we"ird\\name'),
        ("release", ""),
    )
    assert samples[("mlcycle_predictions_total", labels)] == 1


def _process(pid: int, **figures: float) -> dict[str, Any]:
    reading = {
        "pid": pid,
        "cpu_seconds": 1.5,
        "start_time": 1_700_000_000.25,
        "virtual_bytes": 400e6,
        "resident_bytes": 100e6,
        "open_fds": 20,
        "max_fds": 1024,
    }
    return {**reading, **figures}


def test_process_metrics_add_up_across_workers() -> None:
    first = {**_worker(1), "process": _process(11)}
    second = {**_worker(1), "process": _process(12, start_time=1_700_000_100.5, max_fds=512)}
    dead = {**_worker(1), "process": {**_process(13, cpu_seconds=2.0), "alive": False}}
    samples = _samples(render([first, second, dead]))

    # CPU time is a counter: a worker that died keeps what it spent.
    assert samples[("process_cpu_seconds_total", ())] == 5.0
    # Memory and descriptors are the live workers' sum; the start the earliest; the
    # descriptor limit the one a worker runs into first.
    assert samples[("process_resident_memory_bytes", ())] == 200e6
    assert samples[("process_virtual_memory_bytes", ())] == 800e6
    assert samples[("process_open_fds", ())] == 40
    assert samples[("process_start_time_seconds", ())] == 1_700_000_000.25
    assert samples[("process_max_fds", ())] == 512
    assert samples[("mlcycle_workers", ())] == 2


def test_a_dead_workers_snapshot_keeps_its_cpu_not_its_memory(tmp_path: Path) -> None:
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    huge = {"resident_bytes": 1e15, "virtual_bytes": 1e15, "open_fds": 10**9}
    snapshot = {**_worker(1), "process": _process(gone.pid, cpu_seconds=1000.0, **huge)}
    (tmp_path / f"worker-{gone.pid}.json").write_text(json.dumps(snapshot))
    metrics = Metrics(tmp_path)

    samples = _samples(metrics.render())
    own = metrics.snapshot()["process"]  # read after the render: never less
    assert 1000.0 < samples[("process_cpu_seconds_total", ())] <= 1000.0 + own["cpu_seconds"]
    assert samples[("process_resident_memory_bytes", ())] < 1e15
    assert samples[("process_virtual_memory_bytes", ())] < 1e15
    assert samples[("process_open_fds", ())] < 10**9
    assert samples[("process_start_time_seconds", ())] == own["start_time"]
    assert samples[("process_max_fds", ())] == own["max_fds"]
    # The gauge counts the workers alive now: this process, not the one that exited.
    assert samples[("mlcycle_workers", ())] == 1


def _proc_stat(pid: int) -> tuple[float, float]:
    """CPU seconds and start time (since the epoch) of `pid`, from /proc."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()
    boot = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_bytes().splitlines()
        if line.startswith(b"btime")
    )
    return (float(fields[11]) + float(fields[12])) / ticks, float(fields[19]) / ticks + boot


def test_a_real_server_reports_its_workers_process_metrics(bundle: Path, tmp_path: Path) -> None:
    server = launch(bundle, tmp_path, "--workers", "2", store=False)
    try:
        # Which worker answers a fresh connection is the kernel's choice: ask until both
        # did, with a deadline rather than a number of tries (one worker can take a long
        # run of connections on a busy machine).
        pids: set[int] = set()

        def both_answered() -> bool:
            pids.add(int(server.get("/healthz").json["worker"]))
            return len(pids) == 2

        wait_for(both_answered, "both workers to answer", server)
        wait_for(lambda: metric(server, "mlcycle_workers") == 2, "both workers to report", server)
        samples = _samples(server.get("/metrics").raw.decode())
        after = {pid: _proc_stat(pid) for pid in pids}
        limits = {pid: _max_fds(pid) for pid in pids}
    finally:
        server.stop()

    cpu = samples[("process_cpu_seconds_total", ())]
    assert 0 < cpu <= sum(c for c, _ in after.values()) + 0.02  # read before, ticks rounded
    # The workers' start, not the supervisor's (which started them, earlier).
    assert (
        abs(samples[("process_start_time_seconds", ())] - min(s for _, s in after.values())) < 0.02
    )
    assert samples[("process_resident_memory_bytes", ())] > 2 * 10e6  # two Pythons with numpy
    assert (
        samples[("process_virtual_memory_bytes", ())]
        > samples[("process_resident_memory_bytes", ())]
    )
    assert samples[("process_open_fds", ())] >= 2 * 3  # at least stdin/out/err each
    assert samples[("process_max_fds", ())] == min(limits.values())


def _max_fds(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no descriptor limit in /proc/{pid}/limits")
