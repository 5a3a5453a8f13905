"""A served bundle applies its own lifecycle.yaml: row cap and retention (issue 10.6),
admission settings (issue 17)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlcycle.api.serving import ServeAccess, serve_options, serve_target
from mlcycle.package import Bundle, build_bundle, write_archive
from mlcycle.spec import load_spec
from mlcycle.spec.model import Retention
from tests.package.conftest import Project
from tests.serve.conftest import Reply, Server, free_port, served_connection, wait_ready


def _bundle_with_limits(project: Project, dest: Path) -> Bundle:
    spec_file = project.root / "lifecycle.yaml"
    text = spec_file.read_text(encoding="utf-8")
    text = text.replace(
        "    workers: 1\n",
        "    workers: 1\n    max_rows: 2\n    max_connections: 1\n    backlog: 16\n"
        "    queue_deadline_ms: 0\n",
    )
    text += "  retention: {age: 7d, rows: 5000}\n"
    spec_file.write_text(text, encoding="utf-8")
    spec = load_spec(project.root)
    assert spec.deployment.serve.max_rows == 2
    return build_bundle(spec, project.registry, project.entry, dest)


def _post_alone(server: Server, body: object) -> Reply:
    """POST on a fresh connection once the server has seen the last one close: with a
    budget of one connection, a request sent before that is (rightly) refused 503."""
    deadline = time.monotonic() + 30
    while True:
        reply = server.post("/v1/predict", body)
        if reply.status != 503 or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def test_the_bundle_spec_sets_the_engine_limits(project: Project, tmp_path: Path) -> None:
    bundle = _bundle_with_limits(project, tmp_path / "bundle")
    for source in (bundle.path, write_archive(bundle, tmp_path / "bundle.tar.gz")):
        target = serve_target(bundle=source, no_store=True)
        assert target.max_rows == 2
        assert target.retention == Retention(age=7 * 86_400, rows=5000)
        options = serve_options(target, ServeAccess())
        assert (options.max_connections, options.backlog) == (1, 16)
        assert options.queue_deadline is None  # 0: off
        # The command line's options win over the spec's (0 turns the budget off).
        options = serve_options(
            target, ServeAccess(), max_connections=0, backlog=8, queue_deadline_ms=50
        )
        assert (options.max_connections, options.backlog) == (None, 8)
        assert options.queue_deadline == 0.05


def test_a_served_bundle_refuses_more_rows_than_its_spec_allows(
    project: Project, tmp_path: Path
) -> None:
    directory = _bundle_with_limits(project, tmp_path / "bundle").path
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlcycle", "serve", "--bundle", str(directory)),
                *("--port", str(port), "--store", f"sqlite:///{tmp_path / 'store.db'}"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=os.environ.copy(),
        )
    server = Server(process, port, None, log)
    try:
        wait_ready(server)
        row = {"mean radius": 14.0, "mean texture": 19.0, "mean smoothness": 0.1, "worst area": 800}
        too_many = _post_alone(server, {"instances": [row, row, row]})
        assert too_many.status == 413, too_many.json
        assert "at most 2 per request" in too_many.json["error"]
        assert _post_alone(server, {"instances": [row, row]}).status == 200
        # Its connection budget (1): a second connection open at once gets 503.
        body = json.dumps({"instances": [row]}).encode()
        request = (
            b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        with (
            served_connection(port, request),
            socket.create_connection(("127.0.0.1", port), timeout=30) as extra,
        ):
            extra.sendall(request)
            answer = extra.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"retry-after: 1" in answer.lower()
    finally:
        server.stop()
