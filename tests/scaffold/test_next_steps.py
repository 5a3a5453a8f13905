"""The "Next:" list `mlcycle init` prints, run verbatim in a new project of each pattern.

Each step runs through the shell exactly as printed, with the venv's `mlcycle` and
`python` first on PATH. `mlcycle serve` blocks, as it does for a user: it is started,
asked for a prediction once ready, and stopped with SIGTERM. Wrapped deploys build
real images, so this needs the Docker engine (`make test` starts it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mlcycle.scaffold import PATTERNS
from mlcycle.scaffold.datasets import feature_names
from tests.package.conftest import docker_engine

__all__ = ["docker_engine"]  # fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The image `mlcycle deploy` builds is NAME:0.1.0: a name no other test's image has, as
# tests run side by side on pytest-xdist's workers.
NAME = "nextsteps"

SERVE_PORT = 8080  # the default a user gets


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _serve_and_predict(root: Path, step: str, env: dict[str, str], log: Path) -> dict[str, Any]:
    with log.open("wb") as out:
        server = subprocess.Popen(
            step,
            shell=True,
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"`{step}` exited: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{SERVE_PORT}/readyz", timeout=2
                ) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"`{step}` never got ready: {log.read_text()}"
            time.sleep(0.3)
        row = dict.fromkeys(feature_names(), 1.0)
        request = urllib.request.Request(
            f"http://127.0.0.1:{SERVE_PORT}/v1/predict",
            data=json.dumps({"instances": [row]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_next_step_succeeds_verbatim(
    pattern: str, tmp_path: Path, docker_engine: Any
) -> None:
    env = _environment()
    init = subprocess.run(
        ["mlcycle", "init", NAME, "--pattern", pattern],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = init.stdout.split("\nNext:\n", 1)[1]
    steps = [line.strip() for line in printed.splitlines() if line.strip()]
    assert steps[0] == f"cd {NAME}"
    root = tmp_path / NAME
    env = _environment()
    for step in steps[1:]:
        if step.startswith("mlcycle serve"):
            answer = _serve_and_predict(root, step, env, tmp_path / "serve.log")
            assert len(answer["predictions"]) == 1
            continue
        done = subprocess.run(
            step, shell=True, cwd=root, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"`{step}` failed:\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
    # Whatever the steps wrote, the project can still make its next release.
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    )
    assert status.stdout == "", status.stdout
