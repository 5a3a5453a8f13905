"""mlcycle as a stranger gets it: its wheel from a package index, in a fresh venv.

The wheel is built from this checkout and served by a PEP 503 index over HTTP on
127.0.0.1; a new venv outside the checkout installs `mlcycle-cli==VERSION` from it
(the dependencies from the index pip is configured with). Then, in a directory of
its own: `init → release → deploy`, where deploy must put this exact mlcycle into
the image (pip downloads it from the index, as peers pin themselves in images) and
the container must answer predictions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import mlcycle
from tests.package.conftest import docker_engine

__all__ = ["docker_engine"]  # fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def test_an_installed_mlcycle_builds_an_image_that_serves(
    stranger: tuple[Path, dict[str, str]], docker_engine: Any
) -> None:
    home, env = stranger
    assert _run(["mlcycle", "init", "shop", "--pattern", "open"], home, env).returncode == 0
    project = home / "shop"
    released = _run(["mlcycle", "release", "--bump", "minor"], project, env)
    assert released.returncode == 0, released.stderr

    # Without an index that has this version, deploy fails clearly and leaves nothing.
    offline = {**env, "PIP_NO_INDEX": "1"}
    failed = _run(["mlcycle", "deploy", "--context-only", str(home / "ctx0")], project, offline)
    assert failed.returncode == 1, failed.stderr
    assert mlcycle.requirement() in failed.stderr and "MLCYCLE_WHEEL" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (home / "ctx0").exists()

    context = _run(["mlcycle", "deploy", "--context-only", str(home / "ctx")], project, env)
    assert context.returncode == 0, context.stderr
    wheels = [p.name for p in (home / "ctx" / "wheel").iterdir()]
    assert wheels == [f"mlcycle_cli-{mlcycle.__version__}-py3-none-any.whl"]
    # The build container cannot reach this machine's loopback: the index is not passed on.
    assert "127.0.0.1" not in (home / "ctx" / "build" / "pip.conf").read_text()

    built = _run(["mlcycle", "deploy", "--json"], project, env)
    assert built.returncode == 0, built.stderr
    tag = json.loads(built.stdout)["image"]["tag"]
    container = docker_engine.containers.run(
        tag,
        detach=True,
        environment={"MLCYCLE_API_TOKEN": "stranger-token"},
        ports={"8080/tcp": ("127.0.0.1", None)},
    )
    try:
        answer = _predict(docker_engine, container, project)
        assert answer["model"]["release"] == "0.1.0"
        assert len(answer["predictions"]) == 1
    finally:
        container.remove(force=True)
    shutil.rmtree(home / "ctx", ignore_errors=True)


def _predict(engine: Any, container: Any, project: Path) -> dict[str, Any]:
    from mlcycle.scaffold.datasets import feature_names

    deadline = time.monotonic() + 120
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/predict",
        data=json.dumps({"instances": [dict.fromkeys(feature_names(), 1.0)]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer stranger-token"},
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError as e:
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, f"no answer: {e}"
            time.sleep(0.5)
