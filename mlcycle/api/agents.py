"""Verbs of the agents: production evaluation (`evaluate --production`) and `update`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.api.project import open_project
from mlcycle.errors import MlcycleError, UsageError
from mlcycle.progress import NULL_PROGRESS, Progress
from mlcycle.spec.model import parse_duration

if TYPE_CHECKING:
    from mlcycle.agents.production import ProductionReport
    from mlcycle.agents.update import UpdateResult
    from mlcycle.api.project import Project
    from mlcycle.spec.model import RecentWindow
    from mlcycle.train.gate import GateResult


def _training_frame(project: Project) -> Any:
    """ref → the feature frame that model was trained on (None when it cannot be told)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.data import Window, load_dataset
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
    recent: RecentWindow | None = None,
    drift: bool = True,
    record: bool = True,
) -> ProductionReport:
    """Take outcomes from the spec's outcomes source, then score the served predictions.

    `window` is the width of each window in seconds, `since` an epoch time, `recent`
    the recent predictions the overall figures and drift are limited to.
    """
    import dataclasses

    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
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
        recent=recent,
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
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.agents.update import require_autonomous, require_release_recipe
    from mlcycle.agents.update import update as run

    project = open_project(path)
    require_autonomous(project.spec)
    # Before any trigger or --force: a generation is its release's model on new data.
    require_release_recipe(project.spec, project.file, project.registry)

    return run(
        project.spec,
        project.registry,
        # The triggers act on recent predictions only (update.triggers.window).
        production=lambda: production_report(
            project, recent=project.spec.update.triggers.window, record=False
        ),
        force=force,
        spec_hash=project.spec_hash,
        recipe_hash=project.recipe_hash,
        git_commit=project.git_commit(),
        progress=progress,
    )


@dataclass(frozen=True)
class ProductionCheck:
    """The spec's gate held against each served model's production metrics.

    Only models with enough outcomes to trust are judged (`unreliable` lists the
    others); a relative condition (`roc_auc >= current - 0.02`) compares a model's
    production figure with the figure it was registered with.
    """

    checked: tuple[tuple[str, GateResult], ...]
    unreliable: tuple[str, ...]
    unmeasured: tuple[tuple[str, str], ...]
    """(model, metric) pairs the gate names but production could not compute (n/a)."""
    min_outcomes: int

    @property
    def passed(self) -> bool:
        """Whether every judged model met every condition."""
        return all(result.passed for _, result in self.checked)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "passed": self.passed,
            "models": {model: result.as_dict() for model, result in self.checked},
            "unreliable": list(self.unreliable),
            "unmeasured": [{"model": m, "metric": k} for m, k in self.unmeasured],
            "min_outcomes": self.min_outcomes,
        }


def production_check(path: str | Path | None, report: ProductionReport) -> ProductionCheck:
    """Hold each served model's production metrics to `evaluation.gate` (`--check`)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.agents.production import MIN_OUTCOMES
    from mlcycle.registry import ModelRef
    from mlcycle.train.gate import check_gate

    project = open_project(path)
    conditions = project.spec.evaluation.gate
    checked: list[tuple[str, GateResult]] = []
    unreliable: list[str] = []
    unmeasured: list[tuple[str, str]] = []
    for figures in report.overall:
        if not figures.reliable:
            unreliable.append(figures.model)
            continue
        measured = {k: float(v) for k, v in figures.metrics.items() if v is not None}
        unmeasured += [(figures.model, c.metric) for c in conditions if c.metric not in measured]
        try:
            registered = dict(project.registry.get(ModelRef.parse(figures.model)).metrics)
        except MlcycleError:  # a model no longer in the registry: absolute conditions only
            registered = {}
        judged = [c for c in conditions if c.metric in measured]
        checked.append((figures.model, check_gate(judged, measured, registered or None)))
    return ProductionCheck(
        checked=tuple(checked),
        unreliable=tuple(unreliable),
        unmeasured=tuple(unmeasured),
        min_outcomes=MIN_OUTCOMES,
    )
