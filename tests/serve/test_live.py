"""Dynamic serving: `mlcycle serve` follows the serving manifest under continuous load.

A real project (adaptive template), a real engine process, real HTTP clients
hammering it while new generations appear in the registry: a good one must be
swapped in without a single failed request, a broken one must never serve.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle.registry import LocalRegistry, Status
from mlcycle.spec import load_spec
from tests.learn.conftest import mlcycle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Load:
    """Client threads sending predictions over keep-alive connections until stopped."""

    def __init__(self, port: int, body: bytes, threads: int = 3) -> None:
        self.port, self.body = port, body
        self.served: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            try:
                conn.request(
                    "POST",
                    "/v1/predict",
                    body=self.body,
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                raw = response.read()
                if response.status != 200:
                    with self._lock:
                        self.failures.append(f"{response.status}: {raw[:200]!r}")
                    continue
                model = json.loads(raw)["model"]
                with self._lock:
                    self.served[f"{model['release']}/{model['generation']}"] += 1
            except (OSError, http.client.HTTPException) as e:
                with self._lock:
                    self.failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()

    def wait_for(self, ref: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.served[ref] < 5:
            assert time.monotonic() < deadline, f"{ref} never served: {dict(self.served)}"
            time.sleep(0.2)


def _wait_until(condition: Callable[[], bool], what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.05)


@pytest.fixture
def live_project(released_project: Callable[..., Path]) -> Path:
    root = released_project("adaptive", "live")  # init + release, once per session
    assert mlcycle("deploy", cwd=root).code == 0
    return root


def register_generation(root: Path) -> Any:
    """A second model of release 0.1.0, fitted on the project's data, registered directly."""
    from mlcycle.data import load_dataset
    from mlcycle.train import train

    spec = load_spec(root)
    dataset = load_dataset(spec)
    trained = train(spec, dataset.X, dataset.y, ordinal=dataset.ordinal)
    registry = LocalRegistry(spec.resolve(spec.registry.path), spec.name)
    current = registry.current()
    assert current is not None
    return registry.register(
        trained.model,
        release="0.1.0",
        metrics=trained.metrics,
        gate={"passed": True},
        data=dict(current.data),
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status=Status.CANDIDATE,
        extra={"training": {"task": "classification"}},
    ), registry


@pytest.mark.slow
def test_new_generations_swap_in_under_load_and_broken_ones_never_serve(
    live_project: Path,
) -> None:
    port = free_port()
    log = live_project / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port)],
            cwd=live_project,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/model")
        features = [f["name"] for f in json.loads(conn.getresponse().read())["features"]]
        body = json.dumps({"instances": [dict.fromkeys(features, 1.0)]}).encode()

        with Load(port, body) as load:
            load.wait_for("0.1.0/1")
            entry, registry = register_generation(live_project)
            assert str(entry.ref) == "0.1.0/2"
            load.wait_for("0.1.0/2")  # swapped in while requests kept coming

            # A third generation whose artifact is damaged after registration.
            broken, _ = register_generation(live_project)
            path = registry.artifact_path(broken)
            path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
            _wait_until(
                lambda: "not serving 0.1.0/3" in log.read_text(),
                "the watcher to refuse the damaged generation",
                log,
            )
            before = sum(load.served.values())
            _wait_until(lambda: sum(load.served.values()) > before + 20, "serving to go on", log)
            # The next good generation is not held back by the broken one before it.
            good, _ = register_generation(live_project)
            assert str(good.ref) == "0.1.0/4"
            load.wait_for("0.1.0/4")
        assert load.failures == []
        assert load.served["0.1.0/3"] == 0, "a broken generation served"
        # /v1/model describes what serves now, not what served at start.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/model")
        described = json.loads(conn.getresponse().read())
        assert described["generation"] == 4
        routing = described["routing"]
        assert routing["swaps"] >= 2 and routing["manifest"] == 1
        assert routing["arms"][0]["generation"] == 4
        assert "SHA-256 mismatch" in log.read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_generations_with_project_code_load_under_the_projects_trust_policy(
    live_project: Path,
) -> None:
    """A generation whose pipeline uses the project's own class serves only when the
    router is given the project's policy (as `mlcycle serve` does), never by default."""
    from sklearn.pipeline import Pipeline

    from mlcycle.registry import TrustPolicy
    from mlcycle.serve.live import LiveRouter
    from tests.registry.custom import Doubler

    policy = TrustPolicy(project_code=frozenset({"tests.registry.custom.Doubler"}))
    spec = load_spec(live_project)
    root = spec.resolve(spec.registry.path)
    registry = LocalRegistry(root, spec.name, trust=policy)
    current = registry.current()
    assert current is not None
    fitted = registry.load_model(current)
    X = np.zeros((4, fitted.n_features_in_))
    model = Pipeline([("double", Doubler().fit(X)), ("model", fitted)])
    registry.register(
        model,
        release="0.1.0",
        metrics=dict(current.metrics),
        gate={"passed": True},
        data=dict(current.data),
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status=Status.CANDIDATE,
        extra={"training": {"task": "classification"}},
    )

    trusted = LiveRouter(registry)
    assert {(m.release, m.generation) for m in trusted.models} == {("0.1.0", 1), ("0.1.0", 2)}
    default = LiveRouter(
        LocalRegistry(root, spec.name)
    )  # library names only: generation 2 is skipped
    assert {(m.release, m.generation) for m in default.models} == {("0.1.0", 1)}


_SWAP_IN_A_SERVING_PROCESS = """
import sys
from mlcycle.registry import LocalRegistry
from mlcycle.serve.live import LiveRouter
from mlcycle.spec import load_spec

spec = load_spec(sys.argv[1])
router = LiveRouter(LocalRegistry(spec.resolve(spec.registry.path), spec.name), poll=3600)
router.check()  # the first look only reads the registry
print("ready", flush=True)
input()  # the test registers a generation without its ONNX form meanwhile
assert router.check(), "no swap"
model = router.models[0]
imported = ["skl2onnx" in sys.modules, "sklearn" in sys.modules]
print(model.generation, model.predictor.backend, *imported)
"""


def test_a_swap_converts_a_generation_without_its_onnx_form_outside_the_serving_process(
    live_project: Path,
) -> None:
    """A generation registered without its ONNX form is converted (skl2onnx, checked
    against scikit-learn) by a child process: in the engine's process that work holds
    the GIL long enough to stall the request loop (about 0.5 s on a first swap, when it
    imports skl2onnx). The engine gets the verified ONNX bytes and imports neither."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SWAP_IN_A_SERVING_PROCESS, str(live_project)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        entry, _ = register_generation(live_project)
        assert entry.onnx is None
        child.stdin.write("registered\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    generation, backend, skl2onnx, sklearn = out.split()[-4:]
    assert (generation, backend) == ("2", "onnx")
    assert (skl2onnx, sklearn) == ("False", "False"), err
