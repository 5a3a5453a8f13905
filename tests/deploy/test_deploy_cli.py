"""`mlcycle deploy` (context, Kubernetes, dynamic manifests) and `mlcycle serve` on a project."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.learn.conftest import mlcycle

K8S_VERSION = "1.30.0"


@pytest.fixture
def released(released_project: Callable[..., Path]) -> Callable[..., Path]:
    """A project made by `mlcycle init` with release 0.1.0 (a copy of one released once
    per session, tests/conftest.py)."""

    def make(pattern: str = "open", name: str = "churn") -> Path:
        return released_project(pattern, name)

    return make


def validate_k8s(directory: Path) -> list[str]:
    kinds = []
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    return kinds


@pytest.mark.slow
def test_context_only_and_k8s_for_a_wrapped_release(
    released: Callable[..., Path], tmp_path: Path
) -> None:
    root = released()
    result = mlcycle(
        "deploy",
        "--context-only",
        tmp_path / "ctx",
        "--k8s",
        tmp_path / "k8s",
        "--json",
        cwd=root,
    )
    assert result.code == 0, result.err
    data = result.json()
    assert data["ref"] == "0.1.0/1"
    assert data["image"] is None
    dockerfile = (tmp_path / "ctx" / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM ") or "\nFROM " in dockerfile
    assert "HEALTHCHECK" in dockerfile and "USER " in dockerfile
    # Hardened (issue 10): a disruption budget and a network policy join them.
    assert validate_k8s(tmp_path / "k8s") == [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    deployment = yaml.safe_load(next((tmp_path / "k8s").glob("*deployment*")).read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "churn:0.1.0"
    # The serving token's Secret: named in the manifests, created by the user.
    assert data["k8s"]["create_secret"].startswith("kubectl create secret generic churn-serving-")
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "churn-serving-token"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.slow
def test_k8s_files_written_into_the_project_are_named_as_uncommitted(
    released: Callable[..., Path], tmp_path: Path
) -> None:
    root = released()
    result = mlcycle("deploy", "--context-only", tmp_path / "ctx", "--k8s", "k8s", cwd=root)
    assert result.code == 0, result.err
    assert "not committed" in result.err and "git add k8s" in result.err
    # What the message says makes the next release possible.
    blocked = mlcycle("release", "--bump", "patch", cwd=root)
    assert blocked.code != 0 and "k8s/" in blocked.err
    # Every file it wrote counts, the README beside the manifests too.
    (root / "k8s" / "README.md").unlink()
    subprocess.run(["git", "add", "k8s"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "k8s without its README"], cwd=root, check=True)
    readme = mlcycle(
        "deploy", "--context-only", tmp_path / "ctx1", "--k8s", "k8s", "--json", cwd=root
    )
    assert [Path(p).name for p in readme.json()["uncommitted"]] == ["README.md"]
    subprocess.run(["git", "add", "k8s"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "k8s"], cwd=root, check=True)
    again = mlcycle(
        "deploy", "--context-only", tmp_path / "ctx2", "--k8s", "k8s", "--json", cwd=root
    )
    assert again.code == 0, again.err
    assert again.json()["uncommitted"] == []  # the same files, already committed
    assert mlcycle("release", "--bump", "patch", cwd=root).code == 0


def test_deploy_without_a_release_says_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    assert mlcycle("init", "empty", "-d", root).code == 0
    result = mlcycle("deploy", "--context-only", tmp_path / "ctx", cwd=root)
    assert result.code == 1
    assert "no release to deploy" in result.err and "mlcycle release" in result.err


def test_push_needs_a_registry(released: Callable[..., Path]) -> None:
    result = mlcycle("deploy", "--push", cwd=released())
    assert result.code == 2
    assert "--registry" in result.err


def test_dynamic_deploy_publishes_versioned_manifests(
    released: Callable[..., Path], tmp_path: Path
) -> None:
    root = released("adaptive", "live")
    first = mlcycle("deploy", "--json", "--k8s", tmp_path / "k8s", cwd=root)
    assert first.code == 0, first.err
    data = first.json()
    assert data["manifest"]["number"] == 1
    assert data["manifest"]["selector"]["kind"] == "epsilon-greedy"
    assert data["arms"] == ["0.1.0/1"]
    assert validate_k8s(tmp_path / "k8s") == [
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "NetworkPolicy",
        "CronJob",
        "CronJob",
    ]
    assert mlcycle("deploy", cwd=root).code == 0
    rolled = mlcycle("deploy", "--rollback", "--json", cwd=root)
    assert rolled.code == 0, rolled.err
    assert rolled.json()["manifest"]["number"] == 3
    assert rolled.json()["manifest"]["note"] == "rollback to manifest 1"
    history = mlcycle("deploy", "--history", "--json", cwd=root).json()
    assert history["format"] == "mlcycle/manifests@1"
    assert [m["number"] for m in history["manifests"]] == [1, 2, 3]
    manifests = root / ".mlcycle" / "registry" / "live" / "manifests"
    assert sorted(p.name for p in manifests.iterdir()) == [
        "000001.json",
        "000002.json",
        "000003.json",
    ]
    # The Deployment and the agents run the engine image `mlcycle deploy --image` builds.
    images = set()
    for path in (tmp_path / "k8s").glob("*.yaml"):
        images |= set(re.findall(r"image: (\S+)", path.read_text()))
    assert images == {"live:0.1.0"}
    # Every pod that mounts the project runs as the image's user, with the volume
    # writable for it (the store and new generations are written there).
    for path in (tmp_path / "k8s").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if doc["kind"] in ("Deployment", "CronJob"):
            template = doc["spec"].get("template") or doc["spec"]["jobTemplate"]["spec"]["template"]
            assert template["spec"]["securityContext"]["fsGroup"] == 10001, path.name


@pytest.mark.slow
def test_dynamic_engine_context_and_refusals(released: Callable[..., Path], tmp_path: Path) -> None:
    root = released("adaptive", "live")
    result = mlcycle("deploy", "--context-only", tmp_path / "ctx", "--json", cwd=root)
    assert result.code == 0, result.err
    data = result.json()
    assert data["context"] == str(tmp_path / "ctx")
    # --context-only writes files and changes nothing else: a running engine would pick
    # up a published manifest.
    assert data["manifest"] is None
    manifests = root / ".mlcycle" / "registry" / "live" / "manifests"
    assert not manifests.exists() or not any(manifests.iterdir())
    assert data["ref"] == "0.1.0/1"
    context = tmp_path / "ctx"
    dockerfile = (context / "Dockerfile").read_text()
    assert not (context / "bundle").exists()  # the engine holds no model
    assert "COPY bundle/" not in dockerfile
    assert 'CMD ["mlcycle", "serve", "--project", "/project", "--host", "0.0.0.0"' in dockerfile
    assert "io.mlcycle.engine=" in dockerfile
    entry = json.loads((root / ".mlcycle/registry/live/releases/0.1.0/1/entry.json").read_text())
    pins = (context / "build" / "requirements.txt").read_text().splitlines()
    assert f"scikit-learn=={entry['versions']['sklearn']}" in pins

    assert mlcycle("deploy", cwd=root).code == 0  # publishes manifest 1
    for args, message in (
        (("--rollback", "--image"), "builds no image"),
        (("--registry", "127.0.0.1:5000"), "add --push"),
        (("--context-only", context), "not an empty directory"),
    ):
        refused = mlcycle("deploy", *args, cwd=root)
        assert refused.code == 2, refused.err
        assert message in refused.err
        assert "Traceback" not in refused.err
    # None of the refused commands published a manifest.
    assert sorted(p.name for p in manifests.iterdir()) == ["000001.json"]

    wrapped = released("open", "shop")
    refused = mlcycle("deploy", "--image", cwd=wrapped)
    assert refused.code == 2 and "leave out --image" in refused.err


def test_an_engine_image_that_cannot_be_built_publishes_nothing(
    released: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = released("adaptive", "live")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = mlcycle("deploy", "--image", "--k8s", tmp_path / "k8s", cwd=root)
    assert result.code == 1, result.err
    assert "no Docker engine is reachable" in result.err and "--context-only" in result.err
    assert "Traceback" not in result.err
    manifests = root / ".mlcycle" / "registry" / "live" / "manifests"
    assert not manifests.exists() or not any(manifests.iterdir())  # nothing published
    assert not (tmp_path / "k8s").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw
    finally:
        conn.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path | None = None) -> None:
    """Wait until the server `process` on `port` answers /readyz (60 s at most).

    If it dies or times out, the assertion shows `log`, or its stderr when piped.
    """

    def output() -> str:
        if log is not None:
            return log.read_text()
        return process.stderr.read().decode() if process.stderr else ""

    deadline = time.monotonic() + 60
    while True:
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        assert process.poll() is None, output()
        assert time.monotonic() < deadline, f"the server did not become ready\n{output()}"
        time.sleep(0.2)


def test_serve_answers_with_the_current_release_and_stores_feedback(
    released: Callable[..., Path],
) -> None:
    root = released()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcycle", "serve", "--port", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(port, process)
        status, described = request(port, "GET", "/v1/model")
        assert status == 200
        assert (described["release"], described["generation"]) == ("0.1.0", 1)
        features = [f["name"] for f in described["features"]]
        with sqlite3.connect(root / "data" / "events.db") as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM events ORDER BY seq LIMIT 3")]
        instances = [{name: row[name] for name in features} for row in rows]
        status, answer = request(port, "POST", "/v1/predict", {"instances": instances})
        assert status == 200, answer
        assert answer["model"] == {"name": "churn", "release": "0.1.0", "generation": 1}
        assert len(answer["predictions"]) == 3 and len(answer["ids"]) == 3
        feedback = [
            {"id": pid, "outcome": row["malignant"]}
            for pid, row in zip(answer["ids"], rows, strict=True)
        ]
        status, report = request(port, "POST", "/v1/feedback", feedback)
        assert status == 200, report
        assert report["accepted"] == answer["ids"]
        assert report["unknown"] == [] and report["duplicate"] == []
        status, again = request(port, "POST", "/v1/feedback", feedback[:1])
        assert again["duplicate"] == answer["ids"][:1]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    from mlcycle.serve import PredictionStore

    store = PredictionStore(f"sqlite:///{root / '.mlcycle' / 'store.db'}", create=False)
    try:
        joined = store.joined()
    finally:
        store.close()
    assert len(joined) == 3
    assert sorted(j.id for j in joined) == sorted(answer["ids"])
    assert {j.release for j in joined} == {"0.1.0"}
    assert sorted(j.outcome for j in joined) == sorted(r["malignant"] for r in rows)


def test_serve_refuses_a_project_without_a_current_model(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    assert mlcycle("init", "fresh", "-d", root).code == 0
    result = mlcycle("serve", cwd=root)
    assert result.code == 1
    assert "no model is current" in result.err and "mlcycle release" in result.err


@pytest.mark.slow
def test_the_bundle_cache_follows_the_spec_and_survives_damage(
    released: Callable[..., Path], tmp_path: Path
) -> None:
    root = released()
    assert mlcycle("deploy", "--context-only", tmp_path / "c1", cwd=root).code == 0
    bundle = root / ".mlcycle" / "bundles" / "0.1.0-1"
    spec_copy = next(p for p in bundle.iterdir() if p.name.endswith(".yaml"))
    # Damage the cached bundle: the next deploy makes it again instead of failing.
    spec_copy.write_text("tampered\n")
    assert mlcycle("deploy", "--context-only", tmp_path / "c2", cwd=root).code == 0
    assert spec_copy.read_text() == (root / "lifecycle.yaml").read_text()
    # A changed spec makes a new bundle too.
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("description:", "description: (v2)", 1))
    assert mlcycle("deploy", "--context-only", tmp_path / "c3", cwd=root).code == 0
    assert spec_copy.read_text() == spec.read_text()


def test_the_run_hint_of_an_engine_image_says_how_it_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Rendered from a result as `deploy --image` returns it (building one needs Docker).
    from mlcycle.api.deploy import DeployResult
    from mlcycle.cli.commands.deploy import _render
    from mlcycle.package.image import ImageInfo

    image = ImageInfo(tag="churn-engine:0.1.0", id="sha256:0", size=int(300e6))
    shared = DeployResult(
        project="churn",
        deployment="dynamic",
        image=image,
        engine_env=("MLCYCLE_REGISTRY_URL", "MLCYCLE_ARTIFACTS_URL", "MLCYCLE_API_TOKEN"),
    )
    _render(shared)
    out = " ".join(capsys.readouterr().out.split())
    assert "-v " not in out and "/project" not in out
    assert (
        "docker run -p 8080:8080 -e MLCYCLE_REGISTRY_URL=... -e MLCYCLE_ARTIFACTS_URL=... "
        "-e MLCYCLE_API_TOKEN=... churn-engine:0.1.0"
    ) in out
