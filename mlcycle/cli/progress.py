"""Rich progress bars for the core's `Progress` reports (stderr, so stdout stays clean)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from mlcycle.cli import render

if TYPE_CHECKING:
    from rich.progress import Progress as RichBar
    from rich.progress import TaskID


class RichProgress:
    """A `mlcycle.progress.Progress` drawing one bar per task; use as a context manager."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bar: RichBar | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        if self._enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=render.stderr(),
                transient=False,
            )
            self._bar.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            if self._bar.tasks:
                self._bar.__exit__(exc_type, exc, tb)
            else:
                # Nothing was drawn: rich would still end the display with a newline off a
                # terminal, a blank line before `error: ...` or `published serving ...`.
                self._bar.live.transient = True
                self._bar.live.stop()
            self._bar = None

    def start(self, description: str, total: float | None = None) -> None:
        """Begin a new bar (the previous one stays, completed)."""
        if self._bar is None:
            return
        self.done()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, steps: float = 1) -> None:
        """Advance the current bar."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, steps)

    def done(self) -> None:
        """Complete the current bar."""
        if self._bar is not None and self._task is not None:
            task = self._bar.tasks[self._task] if self._task < len(self._bar.tasks) else None
            total = task.total if task is not None else None
            if total is None:
                self._bar.update(self._task, total=1, completed=1)
            else:
                self._bar.update(self._task, completed=total)
            self._task = None
