"""Metrics render as valid Prometheus text and add up across worker snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mlcycle.serve.metrics import Metrics, render


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
