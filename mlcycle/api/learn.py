"""Verbs of the learn half: train a development generation, evaluate a model, list the registry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.api.project import open_project
from mlcycle.api.stages import project_stages, registered_entry
from mlcycle.errors import UsageError
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.registry.refs import DEV

if TYPE_CHECKING:
    from mlcycle.agents import ProcureResult
    from mlcycle.data import SourceInfo, Window
    from mlcycle.data.validation import DataRejection
    from mlcycle.registry import Entry, ModelRef, State
    from mlcycle.registry.runs import Run
    from mlcycle.spec.model import Spec
    from mlcycle.train import GateResult
    from mlcycle.train.tuning import Trial


def train(
    path: str | Path | None = None,
    *,
    lower: str | None = None,
    upper: str | None = None,
    keep_rejected: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> ProcureResult:
    """Fetch, train, evaluate, gate and register a development generation (release `dev`).

    `lower`/`upper` bound the data window on the ordinal column (`[lower, upper)`,
    as text the column's type parses). The gate's relative conditions compare
    with the current model. A rejected model is kept as a rejected entry (unless
    `keep_rejected` is false) and `ProcurementRejected` (exit code 3) is raised.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.agents import procure

    project = open_project(path)
    project.require_unattended("train")
    window = data_window(project.spec, lower, upper)
    return procure(
        project.spec,
        project.registry,
        release=DEV,  # development trainings: the pseudo-release `dev`
        window=window,
        spec_hash=project.spec_hash,
        recipe_hash=project.recipe_hash,
        git_commit=project.git_commit(),
        keep_rejected=keep_rejected,
        validate=True,
        progress=progress,
    )


def data_window(spec: Spec, lower: str | None, upper: str | None) -> Window:
    """The window `[lower, upper)` from command-line text, typed like the ordinal column."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.data import Window, coerce_bound

    return Window(
        lower=None if lower is None else coerce_bound(spec, lower),
        upper=None if upper is None else coerce_bound(spec, upper),
    )


@dataclass(frozen=True)
class EvaluationReport:
    """A registered model scored on a window of the declared data.

    `seen_rows` counts rows of the window the model was trained on (they flatter
    the metrics); None when that cannot be told (no ordinal, or a dump).
    `gate` is the spec's gate applied to these metrics, against the current model.
    """

    entry: Entry
    metrics: Mapping[str, float]
    data: SourceInfo
    seen_rows: int | None
    gate: GateResult

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "ref": str(self.entry.ref),
            "status": self.entry.status.value,
            "metrics": {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()},
            "trained_metrics": {
                k: (None if math.isnan(v) else v) for k, v in self.entry.metrics.items()
            },
            "data": self.data.as_dict(),
            "seen_rows": self.seen_rows,
            "gate": self.gate.as_dict(),
        }


def evaluate(
    ref: str | None = None,
    path: str | Path | None = None,
    *,
    lower: str | None = None,
    upper: str | None = None,
    progress: Progress = NULL_PROGRESS,
) -> EvaluationReport:
    """Score the registered model `ref` (default: current, else latest) on a data window.

    The metrics are the spec's `evaluation.metrics` on every row of the window;
    the registry is only read.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.data import load_dataset
    from mlcycle.registry import ModelRef
    from mlcycle.train import check_gate, default_metrics, infer_task, score

    project = open_project(path)
    registry = project.registry
    current = registry.current()
    if ref is not None:
        entry = registered_entry(registry, ModelRef.parse(ref), ref)
    else:
        entry = current or registry.get("latest")
    dataset = load_dataset(project.spec, data_window(project.spec, lower, upper), progress=progress)
    with step(progress, f"load {entry.ref}"):
        model = registry.load_model(entry)
    metric_names = tuple(entry.metrics) or project.spec.evaluation.metrics
    if not metric_names:
        metric_names = default_metrics(infer_task(model, project.spec.model), dataset.y)
    with step(progress, f"score {entry.ref} on {dataset.n_rows} rows"):
        metrics = score(model, dataset.X, dataset.y, metric_names)
    baseline = dict(current.metrics) if current is not None and current.ref != entry.ref else None
    gate = check_gate(project.spec.evaluation.gate, metrics, baseline)
    return EvaluationReport(
        entry=entry,
        metrics=metrics,
        data=dataset.info,
        seen_rows=_seen_rows(entry, dataset.ordinal),
        gate=gate,
    )


def _seen_rows(entry: Entry, ordinal: Any) -> int | None:
    """Rows whose ordinal lies inside the window the model was trained on."""
    if ordinal is None or entry.data.get("ordinal") is None:
        return None
    watermark = entry.data.get("watermark")
    trained = entry.data.get("window") or {}
    lower = trained.get("lower")
    if not _is_number(watermark) or not (lower is None or _is_number(lower)):
        return None
    inside = ordinal <= watermark
    if lower is not None:
        inside &= ordinal >= lower
    return int(inside.sum())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelListing:
    """The registry of one project: every entry, which one is current, and the stages."""

    project: str
    entries: tuple[Entry, ...]
    current: ModelRef | None
    metrics: tuple[str, ...]
    stages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """`RELEASE/GENERATION` → the stages that entry holds (entries in none are absent)."""
    deregistered: frozenset[str] = frozenset()
    """Releases a GTO deregistration tag retired that the registry does not know retired
    (`gto deprecate` ran, `mlcycle retire` did not): listed as retired, like `history`."""
    deprecation: str | None = None
    """The tag by which GTO deprecated the whole project, if any (`gto deprecate NAME`)."""
    data_rejections: tuple[DataRejection, ...] = ()
    """New rows data validation refused (nothing was trained from them), oldest first."""

    def stages_of(self, entry: Entry) -> tuple[str, ...]:
        """The stages `entry` holds."""
        return self.stages.get(str(entry.ref), ())

    def state_of(self, entry: Entry) -> State:
        """The entry's status as `history` tells it (git's retirements included)."""
        # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
        from mlcycle.registry import State

        if entry.release in self.deregistered and entry.state is State.RELEASED:
            return State.RETIRED
        return entry.state

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the user should fix: retirements git knows and serving does not."""
        found = [
            f"release {v} is retired in git but not in the registry, which still serves it: "
            f"run `mlcycle retire {v}`"
            for v in sorted(self.deregistered)
        ]
        if self.deprecation is not None:
            # GTO hides a deprecated artifact; mlcycle knows no such state, so say
            # that serving goes on, and how to stop it or to undo the tag.
            found.append(
                f"GTO deprecated {self.project} as a whole (tag {self.deprecation}): "
                "`gto show` no longer lists it, but its models are still served; run "
                "`mlcycle retire RELEASE` to take releases out of service, or "
                f"`git tag -d {self.deprecation}` to undo the deprecation"
            )
        return tuple(found)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description: the entries as the registry records them, with their
        status in the vocabulary `history` shares (`State`), stages and current marker."""
        return {
            "project": self.project,
            "current": None if self.current is None else str(self.current),
            "metrics": list(self.metrics),
            "warnings": list(self.warnings),
            "data_rejections": [r.as_dict() for r in self.data_rejections],
            "entries": [
                {
                    **e.as_dict(),
                    "status": self.state_of(e).value,
                    "retired": None if e.retired is None else dict(e.retired),
                    "stages": list(self.stages_of(e)),
                    "current": e.ref == self.current,
                }
                for e in self.entries
            ],
        }


def models(path: str | Path | None = None) -> ModelListing:
    """Every entry in the project's registry, oldest release first, the current one and
    the stages each holds."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.data.validation import DataRejection

    project = open_project(path)
    registry = project.registry
    entries = tuple(registry.entries())
    current = registry.current()
    names: dict[str, None] = dict.fromkeys(project.spec.evaluation.metrics)
    for entry in entries:
        names.update(dict.fromkeys(entry.metrics))
    stages = project_stages(project)
    newest: dict[str, Entry] = {}
    for entry in entries:
        if entry.is_candidate:
            newest[entry.release] = entry
    held = {}
    for entry in entries:
        entry_stages = stages.of_entry(entry, newest.get(entry.release))
        if entry_stages:
            held[str(entry.ref)] = entry_stages
    unsynced = frozenset(
        v for v in stages.deregistered if any(e.release == v and e.is_candidate for e in entries)
    )
    return ModelListing(
        project=project.spec.name,
        entries=entries,
        current=None if current is None else current.ref,
        metrics=tuple(names),
        stages=held,
        deregistered=unsynced,
        deprecation=stages.deprecation,
        data_rejections=tuple(DataRejection.from_dict(r) for r in registry.data_rejections()),
    )


@dataclass(frozen=True)
class RunListing:
    """The project's training runs, oldest first, and the metric names they share."""

    project: str
    runs: tuple[Run, ...]
    metrics: tuple[str, ...]
    total: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description: each run as its record holds it."""
        return {
            "project": self.project,
            "total": self.total,
            "metrics": list(self.metrics),
            "runs": [r.as_dict() for r in self.runs],
        }


def runs(
    path: str | Path | None = None,
    *,
    last: int | None = None,
    ids: tuple[str, ...] = (),
) -> RunListing:
    """Every training run of the project (`train`, `release`, `update`), whatever came of
    it; the `last` N only, or the runs `ids` name (a unique prefix of an id suffices)."""
    project = open_project(path)
    found = project.registry.runs().runs()
    total = len(found)
    if ids:
        chosen = []
        for wanted in ids:
            matches = [r for r in found if r.id.startswith(wanted)]
            if len(matches) != 1:
                known = ", ".join(r.id for r in found[-5:]) or "none yet"
                raise UsageError(
                    f"run {wanted!r} {'matches no run' if not matches else 'is ambiguous'}",
                    hint=f"`mlcycle runs` lists them (latest: {known})",
                )
            chosen.append(matches[0])
        found = chosen
    elif last is not None:
        found = found[-last:] if last > 0 else []
    names: dict[str, None] = dict.fromkeys(project.spec.evaluation.metrics)
    for run in found:
        names.update(dict.fromkeys(run.metrics))
    return RunListing(
        project=project.spec.name, runs=tuple(found), metrics=tuple(names), total=total
    )


@dataclass(frozen=True)
class ModelDetail:
    """One registry entry in full: its record, status, stages, and what tuning tried."""

    entry: Entry
    state: State
    current: bool
    stages: tuple[str, ...]

    @property
    def trials(self) -> tuple[Trial, ...]:
        """Every tuning candidate recorded with the entry (none when it was not tuned)."""
        # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
        from mlcycle.train.tuning import Trial

        tuning = (self.entry.extra.get("training") or {}).get("tuning") or {}
        return tuple(Trial.from_dict(t) for t in tuning.get("trials") or ())

    @property
    def tuning(self) -> Mapping[str, Any] | None:
        """The tuning record (search, scoring, best parameters and score, trials)."""
        return (self.entry.extra.get("training") or {}).get("tuning")

    def as_dict(self) -> dict[str, Any]:
        """The entry as the registry records it, with status, stages and current marker."""
        return {
            **self.entry.as_dict(),
            "status": self.state.value,
            "retired": None if self.entry.retired is None else dict(self.entry.retired),
            "stages": list(self.stages),
            "current": self.current,
            "tuning": self.tuning,
        }


def model(ref: str, path: str | Path | None = None) -> ModelDetail:
    """`models show REF`: one entry (`RELEASE/GENERATION`, `RELEASE` for its newest, or
    `current`) with every tuning candidate it recorded."""
    listing = models(path)

    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.registry import ModelRef

    registry = open_project(path).registry
    entry = registered_entry(registry, ModelRef.parse(ref), ref)
    return ModelDetail(
        entry=entry,
        state=listing.state_of(entry),
        current=entry.ref == listing.current,
        stages=tuple(listing.stages_of(entry)),
    )
