"""Verbs of the agents: production evaluation (`evaluate --production`) and `update`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from mlcycle.agents.production import ProductionReport
    from mlcycle.agents.update import UpdateResult
    from mlcycle.api.project import Project


def _training_frame(project: Project) -> Any:
    """ref → the feature frame that model was trained on (None when it cannot be told)."""
    from mlcycle.data import Window, load_dataset
    from mlcycle.errors import MlcycleError
    from mlcycle.registry import ModelRef

    cache: dict[str, Any] = {}

    def frame(ref: str) -> Any:
        if ref in cache:
            return cache[ref]
        try:
            entry = project.registry.get(ModelRef.parse(ref))
            if entry.data.get("kind") not in ("sql", "file", "dump"):
                cache[ref] = None
                return None
            dataset = load_dataset(project.spec, Window.from_dict(entry.data.get("window")))
            X = dataset.X
            watermark = entry.data.get("watermark")
            if dataset.ordinal is not None and isinstance(watermark, int | float):
                X = X[(dataset.ordinal <= watermark).to_numpy()]
            cache[ref] = X
        except MlcycleError:
            cache[ref] = None
        return cache[ref]

    return frame


def duration_flag(text: str, flag: str) -> int:
    """Seconds in a command-line duration (`30s`, `5m`, `12h`, `1d`, or plain seconds)."""
    from mlcycle.errors import UsageError
    from mlcycle.spec.model import parse_duration

    try:
        return int(text) if text.isdigit() else parse_duration(text)
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not a duration", hint="write e.g. 30s, 5m, 12h, 1d or 1w"
        ) from None


def production_report(
    project: Project,
    *,
    window: int | None = None,
    since: float | None = None,
    drift: bool = True,
    record: bool = True,
) -> ProductionReport:
    """Take outcomes from the spec's outcomes source, then score the served predictions.

    `window` is the width of each window in seconds, `since` an epoch time.
    """
    import dataclasses

    from mlcycle.agents.production import evaluate_production as run
    from mlcycle.agents.production import import_outcomes
    from mlcycle.api.serving import spec_store_url

    url = spec_store_url(project.spec)
    imported = import_outcomes(project.spec, url)
    report = run(
        project.spec,
        url,
        window=window,
        since=since,
        training_data=_training_frame(project) if drift else None,
        record=record,
    )
    return dataclasses.replace(report, imported_outcomes=imported)


def evaluate_production(
    path: str | Path | None = None,
    *,
    window: str | None = None,
    since: str | None = None,
    drift: bool = True,
    record: bool = True,
) -> ProductionReport:
    """Served predictions joined with their outcomes: metrics per model (and per window), drift.

    `window` and `since` are durations (`1h`, `1d`): the width of each window,
    and how far back to look. With `record`, the figures are kept in the store.
    """
    import time

    from mlcycle.api.project import open_project

    project = open_project(path)
    return production_report(
        project,
        window=None if window is None else duration_flag(window, "--window"),
        since=None if since is None else time.time() - duration_flag(since, "--since"),
        drift=drift,
        record=record,
    )


def update(
    path: str | Path | None = None, *, force: bool = False, progress: Progress = NULL_PROGRESS
) -> UpdateResult:
    """Run the training agent once: check the triggers, train a generation when one fired."""
    from mlcycle.agents.update import require_autonomous
    from mlcycle.agents.update import update as run
    from mlcycle.api.project import open_project

    project = open_project(path)
    require_autonomous(project.spec)

    return run(
        project.spec,
        project.registry,
        production=lambda: production_report(project, record=False),
        force=force,
        spec_hash=project.spec_hash,
        git_commit=project.git_commit(),
        progress=progress,
    )
