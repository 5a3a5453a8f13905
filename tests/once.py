"""Things a test run makes once, whatever the number of pytest-xdist workers.

A session fixture runs once per worker process: with `make test`'s workers each would
build mlcycle's wheel, install it into a fresh venv and so on. `made_once` makes a
directory under a lock in the temporary root the workers share (pytest-xdist's own
advice: `getbasetemp().parent`), so the first worker to need it builds it and the
others wait for it and reuse it. What it makes must never be changed by a test: copy it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary directory every worker of this run shares (the session's own one
    when the tests run in a single process)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def made_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """`shared_root/NAME`, made by `make(path)` (into an absent directory) the first time
    any worker asks for it; a make that failed is tried again by the next to ask."""
    root = shared_root(tmp_path_factory)
    target = root / name
    done = root / f"{name}.done"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            make(target)
            done.touch()
    return target
