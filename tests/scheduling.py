"""How `make test` spreads the tests over its pytest-xdist workers.

Most tests go out one by one, long ones first (marked `slow`), each to the worker that
is nearly out of work. Tests that share something wider than a test go to one worker
together: a module's tests that share a module-scoped fixture (a built image, a running
server), since on several workers each would make its own, and one worker's teardown
(untagging an image) would pull it from under another's test; and the tests of the
MLflow server (one start instead of one per worker).

The workers know which tests share a fixture (they collect); the scheduler, in the
controller process, only sees test ids. So each worker writes the groups it found to a
file the controller names (`GROUPS_FILE`), and the scheduler reads it once collection
is complete. (xdist's own `--dist loadgroup` does the same with `xdist_group` marks, by
renaming node ids, which pytest 9.2 no longer lets it do.)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

GROUPS_FILE = "MLCYCLE_TEST_GROUPS_FILE"
"""Environment variable: where the workers write {test file: group name}."""


def configure(config: pytest.Config) -> None:
    """In the controller of a distributed run: name the groups file for the workers."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "numprocesses", None):
        return
    fd, path = tempfile.mkstemp(prefix="mlcycle-test-groups-", suffix=".json")
    os.close(fd)
    os.environ[GROUPS_FILE] = path  # the workers start after this and inherit it
    config.add_cleanup(lambda: Path(path).unlink(missing_ok=True))


def order_and_group(items: list[pytest.Item]) -> None:
    """In a worker: long tests first, and the groups written for the scheduler."""
    target = os.environ.get(GROUPS_FILE)
    if not os.environ.get("PYTEST_XDIST_WORKER") or not target:
        return
    groups: dict[str, str] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        fixtures = getattr(item, "_fixtureinfo", None)
        definitions = fixtures.name2fixturedefs.values() if fixtures else ()
        if "mlflow_server" in getattr(item, "fixturenames", ()):
            groups[path] = "mlflow"
        elif any(d.scope in ("module", "class") for defs in definitions for d in defs):
            groups.setdefault(path, path)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
    # Every worker collects the same tests and writes the same text: whichever lands.
    fd, tmp = tempfile.mkstemp(dir=Path(target).parent)
    with os.fdopen(fd, "w") as out:
        json.dump(groups, out)
    Path(tmp).replace(target)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduler with the scopes above: one per test, or its group."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        _groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._groups is None:  # first called once every worker has collected
                text = Path(os.environ[GROUPS_FILE]).read_text() or "{}"
                self._groups = json.loads(text)
            return self._groups.get(nodeid.split("::")[0], nodeid)

    config.option.loadscopereorder = False  # keep the order: long tests first
    return GroupScheduling(config, log)
