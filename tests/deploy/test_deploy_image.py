"""The open lifecycle's user story end to end, with a real Docker engine:

    mlcycle init demo --pattern open && cd demo && mlcycle release --bump minor
    mlcycle deploy --push --registry 127.0.0.1:5000

builds an image that runs and answers predictions, and pushes it; and the adaptive
one's generic engine image (`mlcycle deploy --image`) serves a mounted project.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.learn.conftest import mlcycle
from tests.package.conftest import LOCAL_REGISTRY, docker_engine, local_registry

__all__ = ["docker_engine", "local_registry"]  # fixtures, shared with tests/package

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The image serves on 0.0.0.0, so it takes its API token from the environment at run time
# (none is baked in), and clients send it. The containers run as the Kubernetes
# manifests run them: read-only root, writable /tmp and store directory only.
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READ_ONLY = {
    "environment": {"MLCYCLE_API_TOKEN": TOKEN},
    "read_only": True,
    "tmpfs": {"/tmp": "mode=1777"},
}


@pytest.fixture
def released(released_project: Callable[..., Path]) -> Path:
    return released_project("open", "demo", "--bump", "minor")


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
    # Issue 11's target: at most a third of the 893 MB the image of this model was.
    assert data["image"]["size"] <= 298e6, data["image"]["size"]

    container = docker_engine.containers.run(
        "demo:0.1.0",
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", None)},
        **{**READ_ONLY, "tmpfs": {"/tmp": "mode=1777", "/app/data": "uid=10001,gid=10001"}},
    )
    try:
        base = wait_ready(container)
        features, rows, answer = predict_events(base, released, 4)
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
            f"{base}/v1/feedback",
            data=feedback,
            headers={"Content-Type": "application/json", **AUTH},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["accepted"] == answer["ids"]
        # Served from the ONNX form made at release: nothing of training is installed.
        code, out = container.exec_run(["python", "-c", CHECK_HEAVY])
        assert code == 0, out.decode()
        assert json.loads(out.decode()) == {"missing": HEAVY, "backend": "onnx"}
    finally:
        container.remove(force=True)
    # ... and every library is pinned to one exact version (the release's own for
    # ONNX Runtime and NumPy).
    context = mlcycle("deploy", "--context-only", str(released.parent / "ctx"), cwd=released)
    assert context.code == 0, context.err
    lines = (released.parent / "ctx" / "build" / "requirements.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9._-]+==[0-9][0-9A-Za-z.!+_-]*", p) for p in pins), pins
    entry = json.loads((released / ENTRY / "entry.json").read_text())
    assert f"onnxruntime=={entry['versions']['onnxruntime']}" in pins
    assert f"numpy=={entry['versions']['numpy']}" in pins
    assert not {p.split("==")[0] for p in pins} & {*HEAVY, "scikit-learn", "skl2onnx"}
    # `deploy` says how large the image is (built again, from the build cache).
    human = mlcycle("deploy", cwd=released)
    assert human.code == 0, human.err
    assert re.search(r"built image demo:0\.1\.0 \(\d+ MB\)", human.out), human.out


ENTRY = Path(".mlcycle/registry/demo/releases/0.1.0/1")
HEAVY = ["onnx", "pandas", "pyarrow", "scipy", "skl2onnx", "sklearn", "skops"]
CHECK_HEAVY = f"""
import importlib.util, json, urllib.request
missing = [m for m in {HEAVY!r} if importlib.util.find_spec(m) is None]
request = urllib.request.Request(
    "http://127.0.0.1:8080/v1/model", headers={{"Authorization": "Bearer {TOKEN}"}}
)
backend = json.loads(urllib.request.urlopen(request, timeout=10).read())["backend"]
print(json.dumps({{"missing": missing, "backend": backend}}))
"""


def wait_ready(container: Any) -> str:
    """The base URL of the engine in `container` once it answers /readyz."""
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
                if response.status == 200:
                    return base
        except (urllib.error.URLError, OSError):
            pass
        container.reload()
        assert container.status != "exited", container.logs().decode()[-3000:]
        assert time.monotonic() < deadline, container.logs().decode()[-3000:]
        time.sleep(0.5)


def predict_events(
    base: str, project: Path, count: int
) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """Ask the engine at `base` for predictions of the project's first `count` events:
    returns the model's features, the rows and the answer."""
    model = urllib.request.Request(f"{base}/v1/model", headers=AUTH)
    with urllib.request.urlopen(model, timeout=10) as response:
        features = [f["name"] for f in json.loads(response.read())["features"]]
    with sqlite3.connect(project / "data" / "events.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM events LIMIT ?", (count,))]
    body = json.dumps({"instances": [{f: r[f] for f in features} for r in rows]}).encode()
    request = urllib.request.Request(
        f"{base}/v1/predict", data=body, headers={"Content-Type": "application/json", **AUTH}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return features, rows, json.loads(response.read())


def test_the_engine_image_serves_a_mounted_adaptive_project(
    released_project: Callable[..., Path], docker_engine: Any
) -> None:
    root = released_project("adaptive", "live")
    result = mlcycle("deploy", "--image", "--json", cwd=root)
    assert result.code == 0, result.err
    data = result.json()
    assert data["image"]["tag"] == "live:0.1.0"
    assert data["image"]["labels"]["io.mlcycle.engine"] == "dynamic"
    assert data["manifest"]["number"] == 1
    # The engine runs as an unprivileged user and keeps its prediction log in the project.
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    container = docker_engine.containers.run(
        "live:0.1.0",
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", None)},
        volumes={str(root): {"bind": "/project", "mode": "rw"}},
        **READ_ONLY,
    )
    try:
        base = wait_ready(container)
        _, _, answer = predict_events(base, root, 3)
        assert answer["model"]["name"] == "live"
        assert (answer["model"]["release"], answer["model"]["generation"]) == ("0.1.0", 1)
        assert len(answer["predictions"]) == 3
    finally:
        container.remove(force=True)
        docker_engine.images.remove("live:0.1.0", noprune=True)
