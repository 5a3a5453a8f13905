"""Real images: build one from a registered model, run it, ask it for predictions, push it.

Needs a Docker engine with the base image and the local registry of
`scripts/docker-env.sh`; skipped without them unless MLCYCLE_REQUIRE_DOCKER=1.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle.errors import PackagingError
from mlcycle.package import (
    BuildContext,
    ImageInfo,
    build_bundle,
    build_image,
    push_image,
    write_context,
)
from tests.package.conftest import HOSTILE, Project, make_project

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TAG = "mlcycle-test/cancer-open:1.2.0"
# In the context's pip.conf as an index's credential would be: the builder stage reads
# it, and no layer of the image may hold it.
CANARY = "PipCredentialCanary7f3e"
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RecordingProgress:
    """A Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.lines: list[str] = []

    def start(self, description: str, total: float | None = None) -> None:
        self.tasks.append(description)

    def advance(self, steps: float = 1) -> None:
        pass

    def done(self) -> None:
        pass

    def log(self, line: str) -> None:
        self.lines.append(line)


@dataclass(frozen=True)
class Built:
    project: Project
    context: BuildContext
    image: ImageInfo
    progress: RecordingProgress
    seconds: float


@pytest.fixture(scope="module")
def built(
    docker_engine: Any, mlcycle_wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("image")
    project = make_project(root / "proj", description=HOSTILE)
    bundle = build_bundle(project.spec, project.registry, project.entry, root / "bundle")
    context = write_context(
        bundle, project.spec, root / "ctx", wheel=mlcycle_wheel, tag=TAG, source="https://x/y"
    )
    pip_conf = context.path / "build" / "pip.conf"
    pip_conf.write_text(pip_conf.read_text() + f"# https://user:{CANARY}@index.example/simple\n")
    progress = RecordingProgress()
    started = time.monotonic()
    image = build_image(context.path, TAG, progress=progress)
    seconds = time.monotonic() - started
    yield Built(project, context, image, progress, seconds)
    # Remove the tags only: the layers stay cached for the next run.
    for tag in docker_engine.images.get(image.id).tags:
        docker_engine.images.remove(tag, noprune=True)


def test_image_metadata(built: Built, docker_engine: Any) -> None:
    image = built.image
    assert image.tag == TAG
    assert image.size > 0
    labels = image.labels
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    assert labels["org.opencontainers.image.revision"] == built.project.entry.git_commit
    assert labels["org.opencontainers.image.source"] == "https://x/y"
    assert labels["io.mlcycle.artifact.sha256"] == built.project.entry.artifact.sha256
    # The hostile description arrives byte for byte: quoted, never interpreted.
    assert labels["org.opencontainers.image.description"] == HOSTILE
    config = docker_engine.images.get(image.id).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert config["Cmd"][:3] == ["mlcycle", "serve", "--bundle"]
    assert any(t.startswith("step ") for t in built.progress.tasks)
    assert any("Successfully built" in line for line in built.progress.lines)


def _wait_healthy(url: str, container: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        container.reload()
        if container.status == "exited":
            break
        time.sleep(0.5)
    logs = container.logs().decode(errors="replace")[-3000:]
    pytest.fail(f"the container did not answer {url}:\n{logs}")


def test_container_serves_predictions(built: Built, docker_engine: Any) -> None:
    # The image's own CMD: `mlcycle serve --bundle /app/bundle` on 0.0.0.0:8080.
    # The token from the environment at run time; read-only root with writable /tmp and
    # working directory (the store), as the Kubernetes manifests run it.
    container = docker_engine.containers.run(
        built.image.id,
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", None)},
        environment={"MLCYCLE_API_TOKEN": TOKEN},
        read_only=True,
        tmpfs={"/tmp": "mode=1777", "/app/data": "uid=10001,gid=10001"},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(f"{base}/healthz", container)
        X = built.project.X.head(5)
        body = json.dumps({"instances": X.to_dict(orient="records")}).encode()
        request = urllib.request.Request(
            f"{base}/v1/predict", data=body, headers={"Content-Type": "application/json", **AUTH}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        expected = built.project.model.predict(X)
        np.testing.assert_array_equal(np.asarray(answer["predictions"]), expected)
        assert answer["model"]["release"] == "1.2.0"
        assert answer["model"]["generation"] == 1
        assert len(answer["ids"]) == 5
        # The HEALTHCHECK command itself works in the image, as the non-root user.
        health = list(container.attrs["Config"]["Healthcheck"]["Test"])
        code, _ = container.exec_run(health[1:])
        assert code == 0
        code, out = container.exec_run(["id", "-u"])
        assert out.decode().strip() == "10001"
        # Nothing can be installed at run time: neither the environment's Python nor the
        # base image's has pip or ensurepip.
        for python in ("python", "/usr/local/bin/python3", "/usr/bin/python3"):
            for module in ("pip", "ensurepip"):
                code, out = container.exec_run([python, "-m", module, "--version"])
                assert code != 0, (python, module, out)
    finally:
        container.remove(force=True)


def _changed_wheel(wheel: Path, dest: Path) -> Path:
    """A copy of `wheel` whose code differs and whose requirements do not."""
    import zipfile

    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w") as copy:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "mlcycle/__init__.py":
                data += b"\n# changed: a new mlcycle with the same dependencies\n"
            copy.writestr(item, data)
    return target


def test_a_new_mlcycle_reuses_the_dependency_layer(
    built: Built, docker_engine: Any, mlcycle_wheel: Path, tmp_path: Path
) -> None:
    # Changed on purpose (issue 11): the environment was one layer holding both the
    # libraries and mlcycle, so each mlcycle change rebuilt and re-pushed all of it.
    from mlcycle.package.dockerfile import wheel_requirements

    wheel = _changed_wheel(mlcycle_wheel, tmp_path / "wheel")
    assert wheel_requirements(wheel) == wheel_requirements(mlcycle_wheel)
    bundle = build_bundle(
        built.project.spec, built.project.registry, built.project.entry, tmp_path / "bundle"
    )
    context = write_context(bundle, built.project.spec, tmp_path / "ctx", wheel=wheel)
    # The same machine's pip settings (the fixture added a line to its context's).
    shutil.copyfile(built.context.path / "build" / "pip.conf", context.path / "build" / "pip.conf")
    other = "mlcycle-test/cancer-open:changed"
    image = build_image(context.path, other)
    try:
        old = docker_engine.images.get(built.image.id).attrs["RootFS"]["Layers"]
        new = docker_engine.images.get(image.id).attrs["RootFS"]["Layers"]
        # Base, user, dependencies | mlcycle | the bundle.
        assert len(new) == len(old)
        assert new[:-2] == old[:-2]
        assert new[-2] != old[-2]
        sizes = [h["Size"] for h in docker_engine.api.history(image.id) if h["Size"]]
        assert sizes[1] < sizes[2] // 10  # mlcycle's layer is a sliver of the libraries'
    finally:
        docker_engine.images.remove(other, noprune=True)


def test_no_layer_of_the_image_holds_the_pip_settings(built: Built, docker_engine: Any) -> None:
    import io
    import tarfile

    assert CANARY in (built.context.path / "build" / "pip.conf").read_text()
    assert not any(CANARY in line for line in built.progress.lines)  # nor the build log
    archive = io.BytesIO()
    for chunk in docker_engine.images.get(built.image.id).save(named=False):
        archive.write(chunk)
    archive.seek(0)
    layers = 0
    with tarfile.open(fileobj=archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith("layer.tar"):
                continue
            layers += 1
            data = outer.extractfile(member)
            assert data is not None
            with tarfile.open(fileobj=io.BytesIO(data.read())) as layer:
                for item in layer.getmembers():
                    assert "mlcycle-build" not in item.name and "pip.conf" not in item.name
                    if item.isfile() and item.size < 1 << 20:
                        content = layer.extractfile(item)
                        assert content is None or CANARY.encode() not in content.read(), item
    assert layers > 3


def test_push_to_the_local_registry(built: Built, local_registry: str) -> None:
    pushed = push_image(TAG, local_registry)
    assert pushed.tag == f"{local_registry}/mlcycle-test/cancer-open:1.2.0"
    assert pushed.digest is not None and pushed.digest.startswith("sha256:")
    url = f"http://{local_registry}/v2/mlcycle-test/cancer-open/tags/list"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert "1.2.0" in json.loads(response.read())["tags"]


def test_push_to_a_registry_that_is_down(built: Built) -> None:
    with pytest.raises(PackagingError, match="push"):
        push_image(TAG, "127.0.0.1:1")


def test_a_failing_build_shows_its_log(docker_engine: Any, tmp_path: Path) -> None:
    dockerfile = "FROM python:3.11-slim\nRUN echo about-to-fail && exit 3\n"
    (tmp_path / "Dockerfile").write_text(dockerfile)
    with pytest.raises(PackagingError, match="building mlcycle-test/broken:1 failed") as info:
        build_image(tmp_path, "mlcycle-test/broken:1")
    assert "about-to-fail" in str(info.value)


def test_missing_base_image(docker_engine: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM mlcycle-test/no-such-base:0\n")
    with pytest.raises(PackagingError, match="failed"):
        build_image(tmp_path, "mlcycle-test/nobase:1")
