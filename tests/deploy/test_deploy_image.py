"""The open lifecycle's user story end to end, with a real Docker engine:

    mlcycle init demo --pattern open && cd demo && mlcycle release --bump minor
    mlcycle deploy --push --registry 127.0.0.1:5000

builds an image that runs and answers predictions, and pushes it.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.learn.conftest import mlcycle
from tests.package.conftest import LOCAL_REGISTRY, docker_engine, local_registry

__all__ = ["docker_engine", "local_registry"]  # fixtures, shared with tests/package

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def released(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "demo"
    assert mlcycle("init", "demo", "--pattern", "open", "-d", root).code == 0
    result = mlcycle("release", "--bump", "minor", cwd=root)
    assert result.code == 0, result.err
    yield root


def test_deploy_builds_an_image_that_serves_and_pushes_it(
    released: Path, docker_engine: Any, local_registry: str
) -> None:
    result = mlcycle("deploy", "--push", "--registry", local_registry, "--json", cwd=released)
    assert result.code == 0, result.err
    data = result.json()
    assert data["image"]["tag"] == "demo:0.1.0"
    assert data["image"]["labels"]["org.opencontainers.image.version"] == "0.1.0"
    assert data["pushed"]["tag"] == f"{LOCAL_REGISTRY}/demo:0.1.0"
    assert data["pushed"]["digest"].startswith("sha256:")

    container = docker_engine.containers.run(
        "demo:0.1.0", detach=True, ports={"8080/tcp": ("127.0.0.1", None)}
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            container.reload()
            assert container.status != "exited", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/v1/model", timeout=10) as response:
            features = [f["name"] for f in json.loads(response.read())["features"]]
        with sqlite3.connect(released / "data" / "events.db") as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM events LIMIT 4")]
        body = json.dumps({"instances": [{f: r[f] for f in features} for r in rows]}).encode()
        request = urllib.request.Request(
            f"{base}/v1/predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["model"]["release"] == "0.1.0"
        # The container answers exactly what the registered model answers here.
        import pandas as pd

        from mlcycle.registry import open_registry
        from mlcycle.spec import load_spec

        registry = open_registry(load_spec(released))
        model = registry.load_model(registry.get("0.1.0/1"))
        expected = model.predict(pd.DataFrame(rows)[features])
        assert [int(p) for p in answer["predictions"]] == [int(p) for p in expected]
        # The image keeps its prediction log in /app/data: feedback is joined there.
        feedback = json.dumps([{"id": i, "outcome": 1} for i in answer["ids"]]).encode()
        request = urllib.request.Request(
            f"{base}/v1/feedback", data=feedback, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["accepted"] == answer["ids"]
    finally:
        container.remove(force=True)
