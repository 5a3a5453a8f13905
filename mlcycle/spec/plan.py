"""The stages a lifecycle runs, as data: what `mlcycle plan` shows.

The plan follows the patterns' flow (docs/lifecycle-patterns.md): an R&D side, a
production side, and the agents that keep running after deployment. It is assembled
from the five attributes (not from the pattern name), so a custom lifecycle gets the
plan its attributes imply. Every stage says who carries it out: mlcycle (with the
command that does it) or a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mlcycle.redact import mask_url
from mlcycle.spec.model import (
    Classification,
    DataAccess,
    Deployment,
    Liaison,
    Procurement,
    SelectorKind,
    SelectorSpec,
    SourceSpec,
    Spec,
    Update,
)
from mlcycle.spec.patterns import PatternMatch, derive_pattern


class Actor(StrEnum):
    """Who carries a stage out."""

    MLCYCLE = "mlcycle"
    HAND = "hand"


@dataclass(frozen=True)
class Stage:
    """One step of the lifecycle."""

    key: str
    title: str
    detail: str
    by: Actor
    command: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "key": self.key,
            "title": self.title,
            "detail": self.detail,
            "by": self.by.value,
            "command": self.command,
        }


@dataclass(frozen=True)
class Lane:
    """A side of the lifecycle (R&D, production, agents) and its stages in order."""

    key: str
    title: str
    stages: tuple[Stage, ...]
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "key": self.key,
            "title": self.title,
            "stages": [s.as_dict() for s in self.stages],
            "note": self.note,
        }


@dataclass(frozen=True)
class Plan:
    """The stages a validated spec will run."""

    name: str
    classification: Classification
    pattern: PatternMatch
    lanes: tuple[Lane, ...]

    def stages(self) -> tuple[Stage, ...]:
        """Every stage, lane after lane."""
        return tuple(s for lane in self.lanes for s in lane.stages)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "classification": self.classification.as_dict(),
            "pattern": self.pattern.as_dict(),
            "lanes": [lane.as_dict() for lane in self.lanes],
        }


def build_plan(spec: Spec, pattern: PatternMatch | None = None) -> Plan:
    """The plan of a validated spec."""
    lc = spec.lifecycle
    lanes = (
        Lane("rnd", "R&D", tuple(_rnd(spec))),
        Lane("production", "Production", tuple(_production(spec))),
        _agents(spec),
    )
    return Plan(spec.name, lc, pattern or derive_pattern(lc), lanes)


# --- R&D ----------------------------------------------------------------------------------


def _rnd(spec: Spec) -> list[Stage]:
    lc = spec.lifecycle
    unattended = lc.procurement is Procurement.UNATTENDED
    stages: list[Stage] = []
    if lc.liaison is Liaison.DUAL:
        stages.append(
            Stage(
                "research",
                "Research",
                "data scientists explore, learn and validate a solution, and deliver its "
                f"specification: {_research(spec)}",
                Actor.HAND,
            )
        )
    implement = (
        "development re-implements the research specification as production code"
        if lc.liaison is Liaison.DUAL
        else "write the ML pipeline"
    )
    stages.append(Stage("implement", "Implement", f"{implement}: {_model(spec)}", Actor.HAND))
    if lc.data_access is DataAccess.PROGRAMMATIC:
        stages.append(
            Stage(
                "data-source",
                "Data source descriptor",
                f"formulate how data is fetched on demand: {_source(spec.data.source)}; "
                "`mlcycle validate` checks its form and that its local files exist, "
                "`mlcycle train` runs it",
                Actor.HAND,
            )
        )
    explored = (
        _source(spec.data.source)
        if lc.data_access is DataAccess.PROGRAMMATIC
        else f"the dump {spec.data.dump}"
        if spec.data.dump
        else "an ad-hoc data dump"
    )
    stages.append(Stage("explore", "Explore", f"inspect {explored} (notebook)", Actor.HAND))
    if unattended:
        stages.append(
            Stage(
                "experiment",
                "Experiment",
                "train, tune and evaluate from the data "
                f"({_evaluation(spec)}); nothing trained here ships",
                Actor.MLCYCLE,
                "mlcycle train",
            )
        )
    else:
        model = spec.release.model or "a file given with `mlcycle release --model FILE`"
        stages.append(
            Stage(
                "learn",
                "Learn",
                f"train, tune and evaluate by hand; save the model to {model}",
                Actor.HAND,
            )
        )
    if lc.liaison is Liaison.DUAL:
        tolerance = spec.release.research.tolerance if spec.release.research else 1e-6
        stages.append(
            Stage(
                "reproduce",
                "Reproduction check",
                "the re-implementation must reproduce the research specification within "
                f"tolerance {tolerance:g}, or the release stops",
                Actor.MLCYCLE,
                "mlcycle release",
            )
        )
    tag = spec.release.tag_format.replace("{name}", spec.name).replace("{version}", "X.Y.Z")
    stages.append(
        Stage(
            "finalize",
            "Finalize",
            f"tag the release in git as {tag} (annotated, with the release metadata)",
            Actor.MLCYCLE,
            "mlcycle release",
        )
    )
    return stages


# --- production ---------------------------------------------------------------------------


def _production(spec: Spec) -> list[Stage]:
    lc = spec.lifecycle
    dynamic = lc.deployment is Deployment.DYNAMIC
    unattended = lc.procurement is Procurement.UNATTENDED
    gate = (
        "gates it (" + ", ".join(str(c) for c in spec.evaluation.gate) + ")"
        if spec.evaluation.gate
        else "releases it ungated"
    )
    if dynamic:
        first = (
            f"trains generation 1 at the release commit, {gate}, and registers it"
            if unattended
            else "registers the hand-trained model as generation 1"
        )
        integrate = Stage(
            "integrate",
            "Integrate",
            "yield a bare artifact (code and pipeline definition) common to every generation "
            f"of the release; {first}",
            Actor.MLCYCLE,
            "mlcycle release",
        )
    elif unattended:
        integrate = Stage(
            "integrate",
            "Integration agent",
            f"on release, trains the model from the data at the release commit, {gate}, "
            "and packages it with its assets",
            Actor.MLCYCLE,
            "mlcycle release",
        )
    else:
        integrate = Stage(
            "integrate",
            "Integrate",
            "bundle the hand-trained model with its assets, recording its SHA-256",
            Actor.MLCYCLE,
            "mlcycle release --model FILE",
        )
    image = spec.deployment.image
    if dynamic:
        deploy = Stage(
            "deploy",
            "Deploy",
            "publish the serving manifest with the selector: "
            f"{_selector(spec.deployment.selector)}",
            Actor.MLCYCLE,
            "mlcycle deploy",
        )
        serve = Stage(
            "serve",
            "Serve",
            "a generic engine loads generations from the registry at run time and "
            "dispatches each request through the manifest's selector",
            Actor.MLCYCLE,
            "mlcycle serve",
        )
    else:
        deploy = Stage(
            "deploy",
            "Deploy",
            f"wrap the model and the serving engine into the image {image.name}:VERSION "
            f"(from {image.base})",
            Actor.MLCYCLE,
            "mlcycle deploy",
        )
        serve = Stage(
            "serve",
            "Serve",
            "the engine loads the wrapped model and answers POST /v1/predict",
            Actor.MLCYCLE,
            "mlcycle serve",
        )
    return [integrate, deploy, serve]


# --- agents -------------------------------------------------------------------------------


def _agents(spec: Spec) -> Lane:
    lc = spec.lifecycle
    stages: list[Stage] = []
    if lc.data_access is DataAccess.PROGRAMMATIC:
        outcomes = spec.data.outcomes
        arrive = "POST /v1/feedback"
        if outcomes is not None:
            arrive += f" and the outcomes source {_source(outcomes.source)}"
        stages.append(
            Stage(
                "feedback",
                "Feedback loop",
                f"true outcomes of served predictions arrive through {arrive}",
                Actor.MLCYCLE,
                "mlcycle serve",
            )
        )
        stages.append(
            Stage(
                "evaluate",
                "Evaluation agent",
                "scores served predictions against their true outcomes and reports the "
                "production metrics",
                Actor.MLCYCLE,
                "mlcycle evaluate --production",
            )
        )
    if lc.update is Update.AUTONOMOUS:
        data = {
            "increment": "the rows since the last watermark (warm start)",
            "all": "every row up to now",
            "window": f"the most recent {spec.update.window} rows",
        }.get(spec.update.data, spec.update.data)
        stages.append(
            Stage(
                "train",
                "Training agent",
                f"when {_triggers(spec)}, trains a new generation on {data}, gates it and "
                "publishes it to the registry, where the serving engine picks it up",
                Actor.MLCYCLE,
                "mlcycle update",
            )
        )
    note = None
    if lc.data_access is DataAccess.ADHOC:
        note = (
            "no agents: ad-hoc data access has no feedback loop, so served predictions are "
            "never evaluated and the model never updates by itself"
        )
    elif lc.update is Update.RELEASE_FORCED:
        note = "the model changes only with a new release (`mlcycle release`)"
    return Lane("agents", "Agents", tuple(stages), note)


# --- wording ------------------------------------------------------------------------------


def _model(spec: Spec) -> str:
    m = spec.model
    if m.entrypoint:
        return f"model.entrypoint {m.entrypoint}"
    if m.pipeline:
        return "pipeline " + " → ".join(s.class_path.rsplit(".", 1)[-1] for s in m.pipeline)
    if spec.lifecycle.procurement is Procurement.INTERACTIVE:
        return "in your own workspace (IDE or notebook)"
    return "model.pipeline"


def _source(source: SourceSpec | None) -> str:
    if source is None:
        return "no data source"
    if source.url:
        what = f"table {source.table}" if source.table else "a query"
        text = f"{what} at {mask_url(source.url)}"
    else:
        text = f"the file {source.path}"
    if source.ordinal:
        text += f", ordered by {source.ordinal}"
    return text


def _evaluation(spec: Spec) -> str:
    e = spec.evaluation
    split = {
        "holdout": f"holdout of {e.test_size:g}",
        "cross-validation": f"{e.folds}-fold cross-validation",
        "time": f"time split, latest {e.test_size:g}",
    }.get(e.split, e.split)
    if e.metrics:
        return f"{split}; {', '.join(e.metrics)}"
    return split


def _research(spec: Spec) -> str:
    r = spec.release.research
    if r is None:
        return "reference predictions and expected metrics"
    parts = []
    if r.predictions:
        parts.append(f"reference predictions {r.predictions}")
    if r.metrics:
        parts.append(
            "expected metrics " + ", ".join(f"{k} {v:g}" for k, v in sorted(r.metrics.items()))
        )
    return " and ".join(parts) or "reference predictions and expected metrics"


def _selector(s: SelectorSpec) -> str:
    kind = s.kind
    if kind is SelectorKind.LATEST:
        return "latest (the newest gated generation)"
    if kind is SelectorKind.PINNED:
        return f"pinned to {s.model}"
    if kind is SelectorKind.AB:
        weights = "/".join(f"{w:g}" for w in s.weights) if s.weights else "equal"
        return f"A/B split over {s.arms} arms, weights {weights}"
    if kind is SelectorKind.EPSILON_GREEDY:
        return f"epsilon-greedy bandit over {s.arms} arms (epsilon {s.epsilon:g})"
    if kind is SelectorKind.THOMPSON:
        return f"Thompson-sampling bandit over {s.arms} arms"
    if kind is SelectorKind.SHADOW:
        return "shadow: the newest generation gets mirrored traffic, never answers"
    return (
        "fallback: a new generation serves only after "
        f"{s.min_predictions} evaluated predictions"
        + (f" and {_duration(s.min_age)} of age" if s.min_age else "")
    )


def _triggers(spec: Spec) -> str:
    t = spec.update.triggers
    parts = []
    if t.every is not None:
        parts.append(f"the generation is older than {_duration(t.every)}")
    if t.new_rows is not None:
        parts.append(f"{t.new_rows} new rows arrived")
    if t.metric is not None:
        parts.append(f"the production metric meets {t.metric}")
    if t.drift is not None:
        parts.append(f"feature drift (PSI) exceeds {t.drift:g}")
    return " or ".join(parts) if parts else "run (no trigger declared: on every run)"


def _duration(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


__all__ = ["Actor", "Lane", "Plan", "Stage", "build_plan"]
