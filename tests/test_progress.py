"""`progress.step`: one task of a `Progress`, finished however its block ends."""

from __future__ import annotations

import pytest

from mlcycle.progress import step


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def start(self, description: str, total: float | None = None) -> None:
        self.calls.append(("start", description, str(total)))

    def advance(self, steps: float = 1) -> None:
        self.calls.append(("advance", str(steps)))

    def done(self) -> None:
        self.calls.append(("done",))


def test_a_step_starts_and_finishes_its_task() -> None:
    progress = Recorder()
    with step(progress, "fit", total=2):
        progress.advance()
    assert progress.calls == [("start", "fit", "2"), ("advance", "1"), ("done",)]


def test_a_step_finishes_its_task_when_the_block_fails() -> None:
    progress = Recorder()
    with pytest.raises(ValueError, match="boom"), step(progress, "load"):
        raise ValueError("boom")
    assert progress.calls == [("start", "load", "None"), ("done",)]
