"""Releases of clones sharing one registry, whose tags are not pushed yet.

Clone A releases without --push: the shared registry holds A's release, the remote no
tag. Clone B sees registry entries without a tag; they are A's current release, not
an interrupted release of B's, so B never removes or replaces them: it takes the next
free version (or, at A's very commit, completes that release with a tag).
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from mlcycle import api
from tests.forked import Command, Zygote
from tests.learn.conftest import mlcycle
from tests.registry.test_blobs import OCI_REGISTRY
from tests.registry.test_three_machines import git, make_machines


@pytest.fixture(params=["postgresql+oci", "sqlite+file"])
def clones(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path, Path]:
    """Clones A, B and C on one shared registry: PostgreSQL with its files in the real
    OCI registry, or one SQLite file with a file: artifact store."""
    if request.param == "sqlite+file":
        url = f"sqlite:///{tmp_path / 'team-registry.db'}"
        artifacts = f"file:{tmp_path / 'artifact-storage'}"
    else:
        import socket

        url = request.getfixturevalue("postgres_url")
        try:
            socket.create_connection(OCI_REGISTRY, timeout=3).close()
        except OSError:
            pytest.skip("no OCI registry answers on 127.0.0.1:5000; run scripts/docker-env.sh")
        for name in ("USERNAME", "PASSWORD", "INSECURE"):
            monkeypatch.delenv(f"MLCYCLE_ARTIFACTS_{name}", raising=False)
        host = "{}:{}".format(*OCI_REGISTRY)
        artifacts = f"oci://{host}/mlcycle-tests/shared-release-{uuid.uuid4().hex[:12]}"
    return make_machines(tmp_path, monkeypatch, url, artifacts)


def snapshot(clone: Path) -> list[tuple[str, str, str, str | None]]:
    """Each entry's ref, artifact digest, creation time and commit."""
    return [
        (str(e.ref), e.artifact.sha256, e.created_at, e.git_commit)
        for e in api.models(clone).entries
    ]


@pytest.mark.slow
def test_a_release_not_pushed_yet_is_skipped_never_replaced(
    clones: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    a, b, _ = clones
    first = api.release(a)
    assert (first.plan.version, first.pushed) == ("0.1.0", False)
    before = snapshot(a)
    [(_, _, _, a_commit)] = before
    assert a_commit is not None
    # B releases a change of its own: it sees 0.1.0 in the registry and no tag.
    git(b, "commit", "--allow-empty", "-qm", "a change made on b")
    planned = mlcycle("release", "--dry-run", cwd=b)
    assert planned.code == 0, planned.err
    assert "would release team@v0.2.0 (after 0.1.0)" in planned.out
    assert "skipped 0.1.0: the shared registry holds it" in " ".join(planned.err.split())
    second = api.release(b)
    assert second.plan.version == "0.2.0"
    assert second.plan.previous == "0.1.0"
    assert second.plan.orphan is False
    [skipped] = second.plan.skipped
    author = first.entry.created_by if first.entry else "?"
    assert skipped == (
        f"skipped 0.1.0: the shared registry holds it (commit {a_commit[:12]}, by {author}) "
        "and this clone has no tag team@v0.1.0: another clone's release whose tag is not "
        "pushed yet (or `mlcycle retire 0.1.0` drops it)"
    )
    assert skipped in second.warnings
    # A's entries are intact: same artifact, same registration; B's come after.
    after = snapshot(b)
    assert after[0] == before[0]
    assert [ref for ref, *_ in after] == ["0.1.0/1", "0.2.0/1"]
    assert after[1][3] == git(b, "rev-parse", "HEAD")
    current = api.models(a).current
    assert current is not None and str(current) == "0.2.0/1"
    # Both tags reach the remote, and every clone then sees two complete releases.
    git(a, "push", "-q", "origin", "team@v0.1.0")
    git(b, "push", "-q", "origin", "team@v0.2.0")
    assert set(git(tmp_path / "remote.git", "tag").split()) == {"team@v0.1.0", "team@v0.2.0"}
    for clone in (a, b):
        git(clone, "fetch", "-q", "--tags")
        releases = api.history(clone).as_dict()["releases"]
        assert [(r["version"], r["status"]) for r in releases] == [
            ("0.1.0", "released"), ("0.2.0", "released"),
        ]  # fmt: skip


@pytest.mark.slow
def test_a_release_of_the_same_commit_is_completed_not_retrained(
    clones: tuple[Path, Path, Path],
) -> None:
    """B at A's very commit: A's release is that commit's version; B tags it (as a
    release killed between registering and tagging is finished) and trains nothing."""
    a, b, _ = clones
    assert api.release(a).plan.version == "0.1.0"
    before = snapshot(a)
    completed = api.release(b)
    assert snapshot(b) == before
    assert (completed.plan.version, completed.plan.completes) == ("0.1.0", True)
    assert completed.plan.orphan is False
    assert completed.entry is not None and str(completed.entry.ref) == "0.1.0/1"
    assert completed.metrics == dict(completed.entry.metrics)
    assert snapshot(b) == before
    assert git(b, "rev-list", "-n", "1", "team@v0.1.0") == before[0][3]
    [item] = api.history(b).as_dict()["releases"]
    assert (item["version"], item["status"]) == ("0.1.0", "released")


@pytest.mark.slow
def test_a_release_killed_before_its_tag_is_completed_by_the_next(
    clones: tuple[Path, Path, Path], zygote: Zygote
) -> None:
    """Killed between registering and tagging (kill -9), in a shared registry: the next
    release in that clone finds its own commit's release and tags it."""
    a, b, _ = clones
    env = {**os.environ, "MLCYCLE_KILL_AT": "release:registered"}
    (killed,) = zygote.run([Command(["release", "--json"], cwd=a, env=env)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = snapshot(a)
    assert [ref for ref, *_ in before] == ["0.1.0/1"]
    again = mlcycle("release", "--json", cwd=a)
    assert again.code == 0, again.err
    assert snapshot(b) == before  # not removed and trained again
    assert (again.json()["version"], again.json()["completes"]) == ("0.1.0", True)
    assert git(a, "tag") == "team@v0.1.0"
