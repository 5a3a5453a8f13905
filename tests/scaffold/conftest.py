"""Projects rendered once per test module: rendering all four patterns takes a few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.scaffold import PATTERNS, InitResult, init_project


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, InitResult]:
    """One project per pattern, with its git repository, made by `init_project`."""
    root = tmp_path_factory.mktemp("projects")
    return {
        pattern: init_project(f"demo-{pattern}", pattern=pattern, directory=root / pattern)
        for pattern in PATTERNS
    }


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path under `root` with its bytes and mtime (None for a directory)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        if p.is_file()
        else None
        for p in sorted(root.rglob("*"))
    }
