"""Three machines on one host: clones of one project that share only a bare git remote,
one PostgreSQL database (the registry's metadata) and one artifact directory.

Clone A releases; clone B lists it and serves it with a real `mlcycle serve`; clone C's
training agent publishes a generation that B's running engine swaps in under load; A and
C release at the same moment and both releases survive, with distinct versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcycle import api
from tests.agents.test_update_and_production import append_rows
from tests.forked import Command, Zygote
from tests.learn.conftest import mlcycle
from tests.serve.test_live import Load, free_port

SPEC_REGISTRY = """
registry:
  backend: local
  path: .mlcycle/registry
  url: ${env:TEAM_REGISTRY_URL}
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def machines(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, Path]:
    """Clones A, B and C of an adaptive project whose spec names the shared registry."""
    return make_machines(
        tmp_path, monkeypatch, postgres_url, f"file:{tmp_path / 'artifact-storage'}"
    )


def make_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_url: str, artifacts_url: str
) -> tuple[Path, Path, Path]:
    """Clones A, B and C of an adaptive project whose spec names the shared registry
    (`registry_url`, its files in `artifacts_url`), and a bare remote `remote.git`."""
    origin = tmp_path / "origin"
    assert mlcycle("init", "team", "--pattern", "adaptive", "-d", origin).code == 0
    spec = origin / "lifecycle.yaml"
    text = spec.read_text()
    start = text.index("\nregistry:")
    end = text.index("\n# Where served predictions")
    text = text[:start] + SPEC_REGISTRY + text[end:]
    # The data is shared too (a warehouse every machine reads), not a file of one clone.
    warehouse = tmp_path / "warehouse" / "data"
    warehouse.mkdir(parents=True)
    shutil.copy(origin / "data" / "events.db", warehouse / "events.db")
    assert text.count("url: sqlite:///data/events.db") == 2
    spec.write_text(text.replace("url: sqlite:///data/events.db", "url: ${env:TEAM_DATA_URL}"))
    git(origin, "commit", "-qam", "the registry and the data are shared")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(remote))
    clones = tuple(tmp_path / name for name in ("a", "b", "c"))
    for clone in clones:
        git(tmp_path, "clone", "-q", str(remote), str(clone))
    # The environment every machine has: where the database and the artifacts are.
    monkeypatch.setenv("TEAM_REGISTRY_URL", registry_url)
    monkeypatch.setenv("TEAM_DATA_URL", f"sqlite:///{warehouse / 'events.db'}")
    monkeypatch.setenv("MLCYCLE_ARTIFACTS_URL", artifacts_url)
    return clones  # type: ignore[return-value]


def start_serving(clone: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), "--no-auth"],
            cwd=clone,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    import http.client

    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            pass
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"not ready:\n{log.read_text()}"
        time.sleep(0.2)


@pytest.mark.slow
def test_three_clones_share_one_registry(
    machines: tuple[Path, Path, Path], tmp_path: Path, postgres_url: str
) -> None:
    a, b, c = machines

    # A releases 0.1.0 and publishes the serving manifest.
    released = api.release(a, push=True)
    assert (released.plan.version, released.pushed) == ("0.1.0", True)
    api.deploy(a)

    # B has none of A's files, yet lists the release (tags come with git) ...
    git(b, "fetch", "-q", "--tags")
    assert [str(e.ref) for e in api.models(b).entries] == ["0.1.0/1"]
    history = api.history(b).as_dict()
    assert [(r["version"], r["status"]) for r in history["releases"]] == [("0.1.0", "released")]
    assert not (b / ".mlcycle" / "registry" / "team" / "releases").exists()

    # ... and serves it, following the shared manifest.
    port = free_port()
    log = tmp_path / "serve-b.log"
    server = start_serving(b, port, log)
    try:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/model")
        features = [f["name"] for f in json.loads(conn.getresponse().read())["features"]]
        body = json.dumps({"instances": [dict.fromkeys(features, 1.0)]}).encode()
        with Load(port, body) as load:
            load.wait_for("0.1.0/1")
            # New rows arrive; C's training agent makes generation 2 from them, and B's
            # engine swaps it in under load.
            append_rows(tmp_path / "warehouse", 120)
            updated = api.update(c, force=True)
            assert updated.procured is not None and updated.procured.entry is not None
            assert str(updated.procured.entry.ref) == "0.1.0/2"
            load.wait_for("0.1.0/2", timeout=120)
        assert load.failures == []
    finally:
        server.terminate()
        server.wait(timeout=60)

    # Their training runs are the team's too: B lists A's release and C's update.
    assert not any("not recorded" in w for w in released.warnings)
    runs = api.runs(b).runs
    assert [(r.purpose, r.outcome.value, r.ref) for r in runs] == [
        ("release", "registered", "0.1.0/1"),
        ("update", "registered", "0.1.0/2"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("push", [True, False], ids=["pushed", "not-pushed"])
def test_clones_releasing_at_the_same_moment_get_distinct_versions(
    machines: tuple[Path, Path, Path], zygote: Zygote, tmp_path: Path, push: bool
) -> None:
    """The shared registry's release lock serialises them; under the lock the second one
    sees the first one's release — its pushed tag, or (not pushed: the default) its
    entries in the registry — so it neither re-issues the version nor takes the first
    one's entries for leftovers of an interrupted release."""
    a, b, c = machines
    assert api.release(a, push=True).plan.version == "0.1.0"
    # A commit holds one version (branch `fixes`): each clone releases a change of its own.
    for clone in (a, c):
        git(clone, "commit", "--allow-empty", "-qm", f"a change made on {clone.name}")
    argv = ["release", *(["--push"] if push else []), "--json"]
    finished = zygote.run([Command(argv, cwd=clone) for clone in (a, c)])  # at one instant
    versions = []
    for done in finished:
        assert done.returncode == 0, done.stderr
        versions.append(json.loads(done.stdout)["version"])
    assert sorted(versions) == ["0.2.0", "0.3.0"]
    if not push:  # each clone pushes its own tag afterwards: nothing clashes
        assert git(tmp_path / "remote.git", "tag").split() == ["team@v0.1.0"]
        for clone in (a, c):
            git(clone, "push", "-q", "origin", "--tags")
    assert set(git(tmp_path / "remote.git", "tag").split()) == {
        "team@v0.1.0", "team@v0.2.0", "team@v0.3.0",
    }  # fmt: skip
    refs = [str(e.ref) for e in api.models(b).entries]
    assert refs == ["0.1.0/1", "0.2.0/1", "0.3.0/1"]
    for clone in (a, b, c):
        git(clone, "fetch", "-q", "--tags")
        history = api.history(clone).as_dict()["releases"]
        assert [(r["version"], r["status"]) for r in history] == [
            ("0.1.0", "released"), ("0.2.0", "released"), ("0.3.0", "released"),
        ]  # fmt: skip


@pytest.mark.slow
def test_a_release_whose_tag_was_never_pushed_says_to_push_it(
    machines: tuple[Path, Path, Path],
) -> None:
    """A released without --push: the shared registry has 0.1.0, the remote no tag. B
    cannot fetch a tag the remote lacks; what it shows names the command A must run."""
    a, b, _ = machines
    assert api.release(a).pushed is False
    git(b, "fetch", "-q", "--tags")
    [item] = api.history(b).as_dict()["releases"]
    assert (item["version"], item["status"], item["tag"]) == ("0.1.0", "incomplete", None)
    commit = git(a, "rev-parse", "HEAD")[:12]
    assert item["hint"] == (
        "this clone has no tag team@v0.1.0: fetch it (git fetch --tags origin); if the "
        f"remote has none, it was never pushed: in the clone that released it (commit "
        f"{commit}, by {item['author']}), run git push origin team@v0.1.0"
    )
    # `models` lists the registry alone (it knows no git): the model may serve.
    assert [(str(e.ref), e.state.value) for e in api.models(b).entries] == [("0.1.0/1", "released")]
    shown = mlcycle("history", cwd=b)
    assert shown.code == 0, shown.err
    assert "git push origin team@v0.1.0" in " ".join(shown.err.split())
    # Pushing the tag from A completes it everywhere.
    git(a, "push", "-q", "origin", "team@v0.1.0")
    git(b, "fetch", "-q", "--tags")
    [item] = api.history(b).as_dict()["releases"]
    assert (item["status"], item["hint"]) == ("released", None)
