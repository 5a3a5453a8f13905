"""How the core reports progress on long work without printing.

Core functions take a `Progress` and call it; the CLI passes one that draws
rich progress bars, tests and library users pass nothing (`NULL_PROGRESS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    """Receives progress of long-running work: one task at a time."""

    def start(self, description: str, total: float | None = None) -> None:
        """A new task begins; `total` is its size in steps when known."""

    def advance(self, steps: float = 1) -> None:
        """The current task made `steps` of progress."""

    def done(self) -> None:
        """The current task finished."""


class NullProgress:
    """A `Progress` that ignores everything."""

    def start(self, description: str, total: float | None = None) -> None:
        """Ignore the start of a task."""

    def advance(self, steps: float = 1) -> None:
        """Ignore progress."""

    def done(self) -> None:
        """Ignore the end of a task."""


NULL_PROGRESS: Progress = NullProgress()


@contextmanager
def step(progress: Progress, description: str, total: float | None = None) -> Iterator[None]:
    """One task of `progress`, done when the block ends, however it ends.

    with step(progress, f"load {entry.ref}"):
        model = registry.load_model(entry)
    """
    progress.start(description, total)
    try:
        yield
    finally:
        progress.done()
