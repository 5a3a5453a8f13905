"""The typed lifecycle spec: frozen dataclasses built from a schema-valid document.

`Spec.from_document` assumes the document already passed the JSON schema (the
loader guarantees it), so it only fills defaults and converts; it never
validates. Defaults live here, in one place, so a minimal spec stays short.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

API_VERSION = "mlcycle/v1"
DEFAULT_TAG_FORMAT = "{name}@v{version}"
DEFAULT_REGISTRY_PATH = ".mlcycle/registry"
DEFAULT_STORE_URL = "sqlite:///.mlcycle/store.db"
DEFAULT_MAX_ROWS = 10_000
"""Rows one prediction request may carry unless `deployment.serve.max_rows` says otherwise."""
DEFAULT_BASE_IMAGE = "python:3.11-slim"


class DataAccess(StrEnum):
    """How data enters the lifecycle."""

    PROGRAMMATIC = "programmatic"
    ADHOC = "adhoc"


class Procurement(StrEnum):
    """How a model comes to be."""

    UNATTENDED = "unattended"
    INTERACTIVE = "interactive"


class Update(StrEnum):
    """How a model is refreshed."""

    AUTONOMOUS = "autonomous"
    RELEASE_FORCED = "release-forced"


class Deployment(StrEnum):
    """How a model is put into service."""

    DYNAMIC = "dynamic"
    WRAPPED = "wrapped"


class Liaison(StrEnum):
    """How research and development work together."""

    JOINT = "joint"
    DUAL = "dual"


class SelectorKind(StrEnum):
    """Routing policies of a dynamic serving engine."""

    LATEST = "latest"
    PINNED = "pinned"
    AB = "ab"
    EPSILON_GREEDY = "epsilon-greedy"
    THOMPSON = "thompson"
    SHADOW = "shadow"
    FALLBACK = "fallback"

    @property
    def needs_feedback(self) -> bool:
        """Whether the selector learns from true outcomes."""
        return self in (SelectorKind.EPSILON_GREEDY, SelectorKind.THOMPSON, SelectorKind.FALLBACK)


@dataclass(frozen=True)
class Classification:
    """The five attributes of the lifecycle taxonomy (docs/lifecycle-patterns.md)."""

    data_access: DataAccess
    procurement: Procurement
    update: Update
    deployment: Deployment
    liaison: Liaison

    ATTRIBUTES = ("data_access", "procurement", "update", "deployment", "liaison")

    def as_dict(self) -> dict[str, str]:
        """The classification as plain strings, keyed by attribute."""
        return {name: getattr(self, name).value for name in self.ATTRIBUTES}


# --- conditions: gates and metric triggers -----------------------------------------

# The one grammar of a condition; the schema's `condition` pattern says the same.
CONDITION_RE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?:(?P<baseline>baseline)(?:\s*(?P<sign>[-+])\s*(?P<delta>[0-9]+(?:\.[0-9]+)?))?"
    r"|(?P<number>[-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?))\s*$"
)


@dataclass(frozen=True)
class Condition:
    """`METRIC OP VALUE`, VALUE absolute or relative to the current model (`baseline`)."""

    metric: str
    op: str
    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parse a condition; raises ValueError on text the grammar does not accept."""
        match = CONDITION_RE.match(text)
        if match is None:
            raise ValueError(f"not a condition: {text!r} (expected e.g. 'roc_auc >= 0.8')")
        if match["baseline"]:
            delta = float(match["delta"] or 0.0)
            return cls(
                match["metric"], match["op"], -delta if match["sign"] == "-" else delta, True
            )
        return cls(match["metric"], match["op"], float(match["number"]))

    def threshold(self, baseline: float | None) -> float | None:
        """The absolute threshold; None when relative and there is no baseline yet."""
        if not self.relative:
            return self.value
        return None if baseline is None else baseline + self.value

    def holds(self, value: float, baseline: float | None = None) -> bool:
        """Whether `value` meets the condition (a relative one holds without a baseline)."""
        limit = self.threshold(baseline)
        if limit is None:
            return True
        return {
            ">=": value >= limit,
            ">": value > limit,
            "<=": value <= limit,
            "<": value < limit,
        }[self.op]

    def __str__(self) -> str:
        if self.relative:
            if self.value == 0:
                return f"{self.metric} {self.op} baseline"
            sign = "-" if self.value < 0 else "+"
            return f"{self.metric} {self.op} baseline {sign} {abs(self.value):g}"
        return f"{self.metric} {self.op} {self.value:g}"


DURATION_RE = re.compile(r"^(?P<n>[1-9][0-9]*)(?P<unit>[smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """Seconds in a duration such as `30m`, `12h`, `1d`, `2w`."""
    match = DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected e.g. '12h', '1d')")
    return int(match["n"]) * _UNIT_SECONDS[match["unit"]]


# --- sections -------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """A data source descriptor: a SQL table/query (`url`) or a file (`path`)."""

    url: str | None = None
    table: str | None = None
    query: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None
    format: str | None = None
    ordinal: str | None = None

    @property
    def kind(self) -> str:
        """`sql` or `file`."""
        return "sql" if self.url else "file"

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SourceSpec:
        """Build from the schema-valid mapping of a source."""
        return cls(
            url=raw.get("url"),
            table=raw.get("table"),
            query=raw.get("query"),
            params=dict(raw.get("params") or {}),
            path=raw.get("path"),
            format=raw.get("format"),
            ordinal=raw.get("ordinal"),
        )


@dataclass(frozen=True)
class OutcomesSpec:
    """Where true outcomes arrive: a source plus the key and outcome columns."""

    source: SourceSpec
    key: str
    outcome: str


@dataclass(frozen=True)
class ValidationSpec:
    """Data validation: how far new rows may stray from the current generation's data.

    Shares from 0 to 1; None switches that check off. New, missing and retyped
    columns always fail while `enabled`.
    """

    enabled: bool = True
    out_of_range: float | None = 0.1
    """Largest share of a numeric column's values outside the training range."""
    unseen_categories: float | None = 0.1
    """Largest share of a categorical column's values not seen in training."""
    null_increase: float | None = 0.1
    """Largest rise of a column's null share over the training data's."""


@dataclass(frozen=True)
class DataSpec:
    """Training data: a programmatic source or an ad-hoc dump, plus the columns."""

    source: SourceSpec | None = None
    dump: str | None = None
    label: str | None = None
    features: tuple[str, ...] | None = None
    key: str | None = None
    outcomes: OutcomesSpec | None = None
    validation: ValidationSpec = field(default_factory=ValidationSpec)


@dataclass(frozen=True)
class StepSpec:
    """One pipeline step: an importable class path and its constructor parameters."""

    class_path: str
    params: Mapping[str, Any] = field(default_factory=dict)


class DistributionKind(StrEnum):
    """The shapes a tuned parameter may be sampled from."""

    LOG_UNIFORM = "log-uniform"
    UNIFORM = "uniform"
    INT = "int"


@dataclass(frozen=True)
class Distribution:
    """A range a tuned parameter is sampled from (`{distribution, low, high}` in the spec).

    `int` includes both ends; `log-uniform` needs 0 < low.
    """

    kind: DistributionKind
    low: float
    high: float

    def as_dict(self) -> dict[str, Any]:
        """The spec's form of the distribution."""
        return {"distribution": self.kind.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class TuningSpec:
    """Grid, random or successive-halving search with cross-validation.

    Each parameter has a tuple of candidate values or a `Distribution` to sample
    (random and halving search only).
    """

    params: Mapping[str, tuple[Any, ...] | Distribution]
    search: str = "grid"
    cv: int = 3
    iterations: int = 10
    scoring: str | None = None
    n_jobs: int = 1
    factor: int = 3

    @property
    def has_distributions(self) -> bool:
        """Whether some parameter is sampled from a distribution rather than listed."""
        return any(isinstance(v, Distribution) for v in self.params.values())


@dataclass(frozen=True)
class ModelSpec:
    """The estimator to train: pipeline steps or an entry point."""

    pipeline: tuple[StepSpec, ...] = ()
    entrypoint: str | None = None
    code: tuple[str, ...] = ()  # the project's model code, relative paths (spec/code.py)
    task: str | None = None
    seed: int = 0
    tuning: TuningSpec | None = None


@dataclass(frozen=True)
class EvaluationSpec:
    """How a model is evaluated and the gate it must pass."""

    split: str = "holdout"
    test_size: float = 0.2
    folds: int = 5
    metrics: tuple[str, ...] = ()
    gate: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class ResearchSpec:
    """Dual liaison: what research delivered, to be reproduced within tolerance."""

    data: str | None = None
    predictions: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    tolerance: float = 1e-6


@dataclass(frozen=True)
class ReleaseSpec:
    """Release tagging, the hand-trained model and the research specification."""

    tag_format: str = DEFAULT_TAG_FORMAT
    model: str | None = None
    research: ResearchSpec | None = None


@dataclass(frozen=True)
class RecentWindow:
    """The recent served predictions the metric and drift triggers look at.

    Either the last `seconds` of predictions (`window: 1d`) or the last
    `predictions` of them (`window: 500`); exactly one is set.
    """

    seconds: int | None = None
    predictions: int | None = None

    @classmethod
    def parse(cls, raw: str | int) -> RecentWindow:
        """`1d` (a duration) or `500` (a number of predictions)."""
        if isinstance(raw, int) and not isinstance(raw, bool):
            return cls(predictions=raw)
        return cls(seconds=parse_duration(str(raw)))

    def __str__(self) -> str:
        if self.predictions is not None:
            return f"the last {self.predictions} predictions"
        seconds = self.seconds or 0
        for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"the last {seconds // size}{unit}"
        return f"the last {seconds}s"


@dataclass(frozen=True)
class TriggersSpec:
    """Conditions that start a new generation; any one suffices.

    `window` narrows what the metric and drift triggers see to recent predictions
    (None: every prediction of the current model).
    """

    every: int | None = None  # seconds
    new_rows: int | None = None
    metric: Condition | None = None
    drift: float | None = None
    window: RecentWindow | None = None


@dataclass(frozen=True)
class UpdateSpec:
    """When and on which data the training agent produces a generation."""

    triggers: TriggersSpec = field(default_factory=TriggersSpec)
    data: str = "increment"
    window: int | None = None
    warm_start: bool = True


class RewardKind(StrEnum):
    """How a bandit scores one served prediction against its true outcome."""

    CORRECT = "correct"  # 1 when the predicted label is the outcome, else 0 (classification)
    ERROR = "error"  # 1 - min(1, |prediction - outcome| / scale) (regression)


@dataclass(frozen=True)
class RewardSpec:
    """`deployment.selector.reward`: what a served prediction earns once its outcome is known."""

    kind: RewardKind = RewardKind.CORRECT
    scale: float | None = None
    """`error` only: the absolute error (in the label's units) that earns nothing."""


@dataclass(frozen=True)
class SelectorSpec:
    """The routing policy of a dynamic deployment."""

    kind: SelectorKind = SelectorKind.LATEST
    arms: int = 2
    model: str | None = None
    weights: tuple[float, ...] | None = None
    sticky: str | None = None
    epsilon: float = 0.1
    min_predictions: int = 100
    min_age: int | None = None  # seconds
    seed: int = 0
    reward: RewardSpec | None = None  # None: `correct` (a regression spec must declare one)


@dataclass(frozen=True)
class ImageSpec:
    """The container image of a wrapped deployment."""

    name: str
    base: str = DEFAULT_BASE_IMAGE
    registry: str | None = None


SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8080
SERVE_WORKERS = 1
"""Where and how `mlcycle serve` listens when neither the spec nor an option says."""
SERVE_MAX_CONNECTIONS = 1024
"""Open connections per worker; the requests of one opened beyond get 503 (0: no budget)."""
SERVE_BACKLOG = 1024
"""Connections the kernel queues for a worker to accept (capped by net.core.somaxconn)."""
SERVE_QUEUE_DEADLINE_MS = 100.0
"""Milliseconds a request may wait in a worker before its model work; a request that
waited longer, or over twice 25 ms while a queue stands, gets 503 (0: no sojourn check)."""


@dataclass(frozen=True)
class ServeSpec:
    """Defaults of `mlcycle serve`."""

    host: str = SERVE_HOST
    port: int = SERVE_PORT
    workers: int = SERVE_WORKERS
    max_rows: int = DEFAULT_MAX_ROWS
    """Rows one prediction request may carry (more get 413)."""
    max_connections: int = SERVE_MAX_CONNECTIONS
    """Open connections per worker (0: no budget); see `mlcycle/serve/admission.py`."""
    backlog: int = SERVE_BACKLOG
    """Accept backlog of the listening socket."""
    queue_deadline_ms: float = SERVE_QUEUE_DEADLINE_MS
    """Sojourn deadline in milliseconds (0: off)."""


@dataclass(frozen=True)
class DeploymentSpec:
    """Selector, image and server settings."""

    selector: SelectorSpec
    image: ImageSpec
    serve: ServeSpec = field(default_factory=ServeSpec)
    stage: str | None = None  # deploy the model in this stage (GTO stage tag), not current


@dataclass(frozen=True)
class RegistrySpec:
    """Where the model registry lives."""

    backend: str = "local"
    path: str = DEFAULT_REGISTRY_PATH
    url: str | None = None  # a shared registry's metadata database (SQLAlchemy URL)
    artifacts: str | None = None  # where a shared registry keeps model files (oci://, file:)


@dataclass(frozen=True)
class TrackingSpec:
    """Where training runs are logged besides the registry."""

    mlflow: str | None = None  # an MLflow tracking server's URL


@dataclass(frozen=True)
class Retention:
    """How long the prediction log keeps what it holds (`store.retention`).

    `age` (seconds): predictions older than this go, with their outcomes; younger
    ones stay, so a prediction still waiting for its outcome is never lost inside
    the window. `rows`: above this many predictions, the oldest that already have
    their outcome go first; predictions without an outcome go only once they are
    older than `age` (with no `age`, the oldest go, outcome or not, so the cap holds).
    """

    age: int | None = None
    rows: int | None = None

    @property
    def active(self) -> bool:
        """Whether anything is ever pruned."""
        return self.age is not None or self.rows is not None


@dataclass(frozen=True)
class StoreSpec:
    """Database for predictions, outcomes and production metrics."""

    url: str = DEFAULT_STORE_URL
    retention: Retention = field(default_factory=Retention)


@dataclass(frozen=True)
class Spec:
    """A validated lifecycle spec; `root` is the directory paths are relative to."""

    name: str
    lifecycle: Classification
    data: DataSpec
    model: ModelSpec
    evaluation: EvaluationSpec
    release: ReleaseSpec
    update: UpdateSpec
    deployment: DeploymentSpec
    registry: RegistrySpec
    store: StoreSpec
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    root: Path = Path()
    description: str | None = None

    def resolve(self, relative: str) -> Path:
        """A path from the spec, made absolute against the spec's directory."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], *, root: Path = Path()) -> Spec:
        """Build the typed spec from a schema-valid document."""
        lc = doc["lifecycle"]
        lifecycle = Classification(
            data_access=DataAccess(lc["data_access"]),
            procurement=Procurement(lc["procurement"]),
            update=Update(lc["update"]),
            deployment=Deployment(lc["deployment"]),
            liaison=Liaison(lc["liaison"]),
        )
        return cls(
            name=doc["name"],
            description=doc.get("description"),
            lifecycle=lifecycle,
            data=_data(doc.get("data") or {}),
            model=_model(doc.get("model") or {}),
            evaluation=_evaluation(doc.get("evaluation") or {}),
            release=_release(doc.get("release") or {}),
            update=_update(doc.get("update") or {}),
            deployment=_deployment(doc.get("deployment") or {}, name=doc["name"]),
            registry=RegistrySpec(**(doc.get("registry") or {})),
            store=_store(doc.get("store") or {}),
            tracking=TrackingSpec(**(doc.get("tracking") or {})),
            root=root,
        )


def _data(raw: Mapping[str, Any]) -> DataSpec:
    outcomes = None
    if raw.get("outcomes"):
        out = raw["outcomes"]
        outcomes = OutcomesSpec(
            source=SourceSpec.from_mapping(out), key=out["key"], outcome=out["outcome"]
        )
    features = raw.get("features")
    return DataSpec(
        source=SourceSpec.from_mapping(raw["source"]) if raw.get("source") else None,
        dump=raw.get("dump"),
        label=raw.get("label"),
        features=tuple(features) if features else None,
        key=raw.get("key"),
        outcomes=outcomes,
        validation=_validation(raw.get("validation") or {}),
    )


def _validation(raw: Mapping[str, Any]) -> ValidationSpec:
    default = ValidationSpec()
    return ValidationSpec(
        enabled=bool(raw.get("enabled", True)),
        out_of_range=raw.get("out_of_range", default.out_of_range),
        unseen_categories=raw.get("unseen_categories", default.unseen_categories),
        null_increase=raw.get("null_increase", default.null_increase),
    )


def _model(raw: Mapping[str, Any]) -> ModelSpec:
    steps = []
    for item in raw.get("pipeline") or ():
        if isinstance(item, str):
            steps.append(StepSpec(item))
        else:
            ((path, params),) = item.items()
            steps.append(StepSpec(path, dict(params or {})))
    tuning = None
    if raw.get("tuning"):
        t = raw["tuning"]
        tuning = TuningSpec(
            params={k: _tuned(v) for k, v in t["params"].items()},
            search=t.get("search", "grid"),
            cv=t.get("cv", 3),
            iterations=t.get("iterations", 10),
            scoring=t.get("scoring"),
            n_jobs=t.get("n_jobs", 1),
            factor=t.get("factor", 3),
        )
    return ModelSpec(
        pipeline=tuple(steps),
        entrypoint=raw.get("entrypoint"),
        code=tuple(raw.get("code") or ()),
        task=raw.get("task"),
        seed=raw.get("seed", 0),
        tuning=tuning,
    )


def _tuned(raw: Any) -> tuple[Any, ...] | Distribution:
    if isinstance(raw, Mapping):
        return Distribution(
            DistributionKind(raw["distribution"]), float(raw["low"]), float(raw["high"])
        )
    return tuple(raw)


def _evaluation(raw: Mapping[str, Any]) -> EvaluationSpec:
    return EvaluationSpec(
        split=raw.get("split", "holdout"),
        test_size=raw.get("test_size", 0.2),
        folds=raw.get("folds", 5),
        metrics=tuple(raw.get("metrics") or ()),
        gate=tuple(Condition.parse(c) for c in raw.get("gate") or ()),
    )


def _release(raw: Mapping[str, Any]) -> ReleaseSpec:
    research = None
    if raw.get("research") is not None:
        r = raw["research"]
        research = ResearchSpec(
            data=r.get("data"),
            predictions=r.get("predictions"),
            metrics=dict(r.get("metrics") or {}),
            tolerance=r.get("tolerance", 1e-6),
        )
    return ReleaseSpec(
        tag_format=raw.get("tag_format", DEFAULT_TAG_FORMAT),
        model=raw.get("model"),
        research=research,
    )


def _update(raw: Mapping[str, Any]) -> UpdateSpec:
    t = raw.get("triggers") or {}
    triggers = TriggersSpec(
        every=parse_duration(t["every"]) if t.get("every") else None,
        new_rows=t.get("new_rows"),
        metric=Condition.parse(t["metric"]) if t.get("metric") else None,
        drift=t.get("drift"),
        window=RecentWindow.parse(t["window"]) if t.get("window") is not None else None,
    )
    return UpdateSpec(
        triggers=triggers,
        data=raw.get("data", "increment"),
        window=raw.get("window"),
        warm_start=raw.get("warm_start", True),
    )


def _reward(raw: Mapping[str, Any] | None) -> RewardSpec | None:
    if raw is None:
        return None
    scale = raw.get("scale")
    return RewardSpec(
        kind=RewardKind(raw.get("kind", "correct")),
        scale=None if scale is None else float(scale),
    )


def _deployment(raw: Mapping[str, Any], *, name: str) -> DeploymentSpec:
    sel = raw.get("selector", "latest")
    if isinstance(sel, str):
        selector = SelectorSpec(kind=SelectorKind(sel))
    else:
        selector = SelectorSpec(
            kind=SelectorKind(sel["kind"]),
            arms=sel.get("arms", 2),
            model=sel.get("model"),
            weights=tuple(sel["weights"]) if sel.get("weights") else None,
            sticky=sel.get("sticky"),
            epsilon=sel.get("epsilon", 0.1),
            min_predictions=sel.get("min_predictions", 100),
            min_age=parse_duration(sel["min_age"]) if sel.get("min_age") else None,
            seed=sel.get("seed", 0),
            reward=_reward(sel.get("reward")),
        )
    img = raw.get("image") or {}
    image = ImageSpec(
        name=img.get("name", name),
        base=img.get("base", "python:3.11-slim"),
        registry=img.get("registry"),
    )
    serve = ServeSpec(**(raw.get("serve") or {}))
    return DeploymentSpec(selector=selector, image=image, serve=serve, stage=raw.get("stage"))


def _store(raw: Mapping[str, Any]) -> StoreSpec:
    kept = raw.get("retention") or {}
    retention = Retention(
        age=parse_duration(kept["age"]) if kept.get("age") else None,
        rows=kept.get("rows"),
    )
    return StoreSpec(url=raw.get("url", DEFAULT_STORE_URL), retention=retention)
