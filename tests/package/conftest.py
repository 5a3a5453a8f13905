"""Fixtures of the packaging tests: a project with a registered model, and the Docker gate.

Tests marked `docker` take the `docker_engine` fixture. Without an engine they
are skipped, unless MLCYCLE_REQUIRE_DOCKER=1 (CI sets it after
`scripts/docker-env.sh`): then a missing engine, base image or local registry
fails them, so a broken CI setup cannot pass by skipping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlcycle.registry import Entry, LocalRegistry
from mlcycle.spec import load_spec
from mlcycle.spec.model import Spec

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "python:3.11-slim"
LOCAL_REGISTRY = "127.0.0.1:5000"
# A description no shell, Dockerfile or YAML should ever see unquoted.
HOSTILE = "x\"; rm -rf / # $(touch /tmp/pwned) `id` ${HOME} $PATH \\ 'q' && echo \\\"pwned"


@dataclass(frozen=True)
class Project:
    """A spec on disk, its registry and one registered candidate."""

    root: Path
    spec: Spec
    registry: LocalRegistry
    entry: Entry
    model: Any
    X: Any


def write_project(root: Path, *, description: str | None = None, name: str = "cancer-open") -> Spec:
    """The open example's lifecycle.yaml in `root`, with another description or name."""
    text = (ROOT / "examples" / "open" / "lifecycle.yaml").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if line.startswith("description:") and description is not None:
            # JSON is YAML: a JSON string is a safely quoted YAML scalar.
            import json

            line = f"description: {json.dumps(description)}"
        lines.append(line.replace("cancer-open", name))
    root.mkdir(parents=True, exist_ok=True)
    (root / "lifecycle.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_spec(root)


def make_project(root: Path, *, description: str | None = None) -> Project:
    """A project with a logistic regression on breast_cancer (4 named features) registered."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    spec = write_project(root, description=description)
    frame = load_breast_cancer(as_frame=True).frame
    columns = ["mean radius", "mean texture", "mean smoothness", "worst area"]
    X, y = frame[columns], frame["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    registry = LocalRegistry(spec.resolve(spec.registry.path), spec.name)
    entry = registry.register(
        model,
        release="1.2.0",
        metrics={"accuracy": 0.9},
        gate={"passed": True},
        data={"features": [{"name": c, "type": "number"} for c in columns]},
        spec_hash="cd" * 32,
        git_commit="0123456789abcdef0123456789abcdef01234567",
        procurement="unattended",
        status="candidate",
        extra={"training": {"task": "classification"}},
        make_current=True,
    )
    return Project(root, spec, registry, entry, model, X)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj")


FAKE_METADATA = """Metadata-Version: 2.3
Name: mlcycle-cli
Version: 0.1.0
Requires-Dist: pyyaml>=6
Requires-Dist: uvloop>=0.19; sys_platform != "win32"
Requires-Dist: pytest>=8; extra == "dev"
Provides-Extra: dev

Requires-Dist: not-a-header-in-the-body
"""


@pytest.fixture
def fake_wheel(tmp_path: Path) -> Path:
    """A wheel with metadata and no code: enough for tests that only write a context."""
    import zipfile

    path = tmp_path / "wheels" / "mlcycle_cli-0.1.0-py3-none-any.whl"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mlcycle_cli-0.1.0.dist-info/METADATA", FAKE_METADATA)
    return path


# --- the Docker gate -----------------------------------------------------------------


def _required() -> bool:
    return os.environ.get("MLCYCLE_REQUIRE_DOCKER") == "1"


def _unavailable(reason: str) -> None:
    if _required():
        pytest.fail(f"MLCYCLE_REQUIRE_DOCKER=1 but {reason}; run scripts/docker-env.sh")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A docker SDK client of a running engine that has the base image."""
    from mlcycle.errors import PackagingError
    from mlcycle.package import docker_client

    try:
        client = docker_client(timeout=600)
    except PackagingError as e:
        _unavailable(f"no Docker engine ({e})")
    import docker.errors

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _unavailable(f"the base image {BASE_IMAGE} is missing")
    yield client
    client.close()


@pytest.fixture(scope="session")
def local_registry() -> str:
    """The address of the local registry that `scripts/docker-env.sh` starts."""
    host, port = LOCAL_REGISTRY.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError:
        _unavailable(f"no registry answers on {LOCAL_REGISTRY}")
    return LOCAL_REGISTRY
