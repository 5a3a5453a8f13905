"""`mlcycle report`: the HTML page, rendered for real in headless Chromium."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle.store.predictions import PredictionRecord, PredictionStore
from tests.learn.conftest import mlcycle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fill_store(root: Path) -> None:
    """Two generations served over three hours; the second one is better."""
    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}")
    # From half past an hour, four hours ago: with hourly windows aligned to the clock,
    # the first generation's two hours touch three windows and the second's hour two,
    # whatever the time the test runs at (from `time.time() - 3h` it was 3 to 5).
    start = (math.floor(time.time() / 3600) - 4) * 3600 + 1800
    records, outcomes = [], []
    for i in range(240):
        generation = 1 if i < 160 else 2
        truth = i % 2
        wrong = i % (4 if generation == 1 else 20) == 0
        prediction = 1 - truth if wrong else truth
        p1 = 0.9 if prediction else 0.1
        records.append(
            PredictionRecord(
                id=f"r{i}",
                model="live",
                release="0.1.0",
                generation=generation,
                created_at=start + i * 45,
                inputs={"mean_radius": 12.0 + (i % 9)},
                prediction=prediction,
                probabilities=[1 - p1, p1],
            )
        )
        outcomes.append((f"r{i}", truth))
    store.log_predictions(records)
    store.record_outcomes(outcomes)
    store.close()


@pytest.fixture
def project_with_traffic(adaptive: Callable[[], Path]) -> Path:
    root = adaptive()  # the session's released `live`, copied
    fill_store(root)
    return root


def test_report_renders_in_headless_chromium(project_with_traffic: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if __import__("os").environ.get("MLCYCLE_REQUIRE_DOCKER") == "1":
            pytest.fail("chromium is missing: `make browser` installs it")
        pytest.skip("chromium is not installed")
    out = tmp_path / "report.html"
    result = mlcycle("report", "-o", out, "--json", cwd=project_with_traffic)
    assert result.code == 0, result.err
    data = result.json()
    assert data["models"] == 2 and data["windows"] == 5
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", out.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # The browser parsed the page into these elements: two series on each metric's chart.
    assert dom.count('class="chart"') == len(data["metrics"]) == 2
    assert dom.count('data-model="0.1.0/1"') == 2 and dom.count('data-model="0.1.0/2"') == 2
    assert '<table id="models">' in dom and '<table id="drift">' in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1000,1600",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a blank page compresses far smaller


def test_report_escapes_what_it_shows(tmp_path: Path) -> None:
    from mlcycle.agents.production import ProductionReport, WindowMetrics
    from mlcycle.api.report import render_html

    hostile = "<script>alert(1)</script>"
    window = WindowMetrics(
        model=hostile,
        start=0.0,
        end=3600.0,
        predictions=3,
        outcomes=3,
        metrics={"accuracy": 0.5},
    )
    page = render_html(
        title=hostile,
        pattern=hostile,
        entries=[],
        current=None,
        production=ProductionReport(
            project=hostile, metrics=("accuracy",), overall=(window,), windows=(window,)
        ),
    )
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
