"""Two engine containers of one image, no volume: a shared registry, store and manifest.

An adaptive project declares its registry in PostgreSQL with the artifacts in the OCI
registry on 127.0.0.1:5000, and its prediction store in the same database.
`mlcycle deploy --image` builds the generic engine image (once for the module); two
containers of it run with nothing mounted, given only the URLs and the API token in
their environment, as the Kubernetes manifests give them. Both serve the published
manifest, both swap to the generation another machine publishes, both log to the one
store, and feedback sent to both for one prediction counts once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlcycle import api
from tests.agents.test_update_and_production import append_rows
from tests.conftest import fresh_postgres_database
from tests.learn.conftest import mlcycle
from tests.package.conftest import docker_engine
from tests.serve.test_live import free_port

__all__ = ["docker_engine"]  # a fixture, shared with tests/package

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OCI_REGISTRY = ("127.0.0.1", 5000)  # what `make test` / scripts/docker-env.sh runs
TOKEN = "shared-engines-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "shared-engines"
# The spec names the team's registry and store (the same database) by variables that
# only this machine has: the containers get MLCYCLE_REGISTRY_URL and MLCYCLE_STORE_URL.
SPEC_SHARED = """
registry:
  backend: local
  path: .mlcycle/registry
  url: ${{env:TEAM_REGISTRY_URL}}
  artifacts: {artifacts}

store:
  url: ${{env:TEAM_STORE_URL}}
"""


@dataclass(frozen=True)
class Shared:
    root: Path
    database: str  # the registry's and the store's PostgreSQL database
    artifacts: str  # oci://127.0.0.1:5000/REPOSITORY
    image: str


@pytest.fixture(scope="module")
def shared(docker_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """The project released into the shared registry, and its engine image (built once)."""
    try:
        socket.create_connection(OCI_REGISTRY, timeout=3).close()
    except OSError:
        pytest.skip("no OCI registry answers on 127.0.0.1:5000; run scripts/docker-env.sh")
    root = tmp_path_factory.mktemp("engines") / NAME
    artifacts = f"oci://127.0.0.1:5000/mlcycle-tests/engines-{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(fresh_postgres_database())
        env = stack.enter_context(pytest.MonkeyPatch.context())
        env.setenv("TEAM_REGISTRY_URL", database)
        env.setenv("TEAM_STORE_URL", database)
        assert mlcycle("init", NAME, "--pattern", "adaptive", "-d", root).code == 0
        spec = root / "lifecycle.yaml"
        text = spec.read_text()
        # The registry and the store are the spec's last sections.
        text = text[: text.index("\nregistry:")]
        text += SPEC_SHARED.format(artifacts=artifacts)
        # One model in service, so that "swapped" is one generation number per engine.
        spec.write_text(text.replace("kind: epsilon-greedy", "kind: latest"))
        assert mlcycle("validate", cwd=root).code == 0
        subprocess_git(root, "commit", "-qam", "the registry and the store are shared")
        assert api.release(root).plan.version == "0.1.0"
        built = mlcycle("deploy", "--image", "--json", cwd=root)
        assert built.code == 0, built.err
        image = built.json()["image"]["tag"]
        stack.callback(docker_engine.images.remove, image, noprune=True)
        yield Shared(root=root, database=database, artifacts=artifacts, image=image)


def subprocess_git(cwd: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def start_engine(docker_engine: Any, shared: Shared, port: int) -> Any:
    """A container of the engine image: no volume, the team's URLs in its environment.

    Host networking, so that 127.0.0.1 reaches PostgreSQL and the OCI registry as it
    does here; the port is the command's, as two engines share the host's ports.
    """
    return docker_engine.containers.run(
        shared.image,
        command=["mlcycle", "serve", "--project", "/project", "--port", str(port)],
        detach=True,
        network_mode="host",
        environment={
            "MLCYCLE_REGISTRY_URL": shared.database,
            "MLCYCLE_ARTIFACTS_URL": shared.artifacts,
            "MLCYCLE_STORE_URL": shared.database,
            "MLCYCLE_API_TOKEN": TOKEN,
        },
    )


def call(port: int, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json", **AUTH},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(container: Any, port: int, generation: int, *, timeout: float = 120) -> None:
    """Until the engine in `container` serves `generation` (GET /v1/model)."""
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        try:
            seen = call(port, "/v1/model")["generation"]
            if seen == generation:
                return
        except (urllib.error.URLError, OSError):
            pass
        container.reload()
        logs = container.logs().decode()[-3000:]
        assert container.status != "exited", logs
        assert time.monotonic() < deadline, f"serves generation {seen}, not {generation}\n{logs}"
        time.sleep(0.5)


def cached_files(container: Any) -> dict[str, str]:
    """path → inode of every file and directory the engine keeps under /project/.mlcycle.

    A pull writes a new file and renames it into place, and an entry laid out anew is a
    new directory: an unchanged inode is a file that was not pulled again."""
    code, out = container.exec_run(["find", "/project/.mlcycle", "-printf", "%p %i\\n"])
    assert code == 0, out.decode()
    return dict(line.rsplit(" ", 1) for line in out.decode().splitlines())


def test_two_engines_without_a_volume_follow_one_manifest_and_share_one_store(
    shared: Shared, docker_engine: Any
) -> None:
    ports = [free_port(), free_port()]
    engines = [start_engine(docker_engine, shared, port) for port in ports]
    try:
        for engine, port in zip(engines, ports, strict=True):
            engine.reload()
            assert engine.attrs["Mounts"] == []
            wait_for(engine, port, 1)

        # Another machine (here: this clone) publishes generation 2; both engines take it.
        append_rows(shared.root, 120)
        updated = api.update(shared.root, force=True)
        assert updated.procured is not None and updated.procured.entry is not None
        assert str(updated.procured.entry.ref) == "0.1.0/2"
        for engine, port in zip(engines, ports, strict=True):
            wait_for(engine, port, 2)

        # Each engine predicts; both predictions land in the one store.
        features = [f["name"] for f in call(ports[0], "/v1/model")["features"]]
        with sqlite3.connect(shared.root / "data" / "events.db") as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM events LIMIT 2")]
        ids = []
        for port, row in zip(ports, rows, strict=True):
            answer = call(port, "/v1/predict", {"instances": [{f: row[f] for f in features}]})
            assert (answer["model"]["release"], answer["model"]["generation"]) == ("0.1.0", 2)
            ids.extend(answer["ids"])

        # Feedback for the first engine's prediction, sent to it and again to the other,
        # counts once; the other's prediction takes feedback sent to the first.
        first = call(ports[0], "/v1/feedback", {"id": ids[0], "outcome": 1})
        assert first["accepted"] == [ids[0]]
        again = call(ports[1], "/v1/feedback", {"id": ids[0], "outcome": 1})
        assert (again["accepted"], again["duplicate"]) == ([], [ids[0]])
        crossed = call(ports[0], "/v1/feedback", {"id": ids[1], "outcome": 0})
        assert crossed["accepted"] == [ids[1]]

        import sqlalchemy as sa

        store = sa.create_engine(shared.database)
        try:
            with store.connect() as conn:
                predictions = conn.execute(sa.text("SELECT id, generation FROM predictions"))
                assert sorted(predictions) == sorted((i, 2) for i in ids)
                outcomes = conn.execute(sa.text("SELECT prediction_id FROM outcomes"))
                assert sorted(r[0] for r in outcomes) == sorted(ids)
        finally:
            store.dispose()
        report = api.evaluate_production(shared.root, drift=False, record=False)
        served = report.for_model("0.1.0/2")
        assert served is not None and (served.predictions, served.outcomes) == (2, 2)

        # The artifacts each engine pulled are cached by digest in its own /project: a
        # restarted engine loads generation 2 again without pulling anything.
        before = cached_files(engines[0])
        assert any("/blobs/sha256-" in path for path in before), before
        engines[0].restart()
        wait_for(engines[0], ports[0], 2)
        assert cached_files(engines[0]) == before
    finally:
        for engine in engines:
            engine.remove(force=True)
