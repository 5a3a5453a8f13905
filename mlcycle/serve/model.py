"""What the engine serves: a model with its feature schema, and the router that picks one.

`ServedModel` is everything a worker needs to answer requests for one model: the
project name, release and generation it reports, the features with their JSON types,
the task, and a ready `Predictor`. It holds no sklearn estimator of its own, so a
model served through ONNX can be shipped to worker processes even when its original
pipeline could not be pickled.

The decision "which model answers this request" sits behind `Router`: the engine calls
`router.select(request)` once per request. `SingleModelRouter` always answers with
its one model; a dynamic deployment plugs in a router that applies a selector (A/B,
bandit, fallback) over several models.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from mlcycle.errors import ServingError
from mlcycle.registry.features import Feature, resolve_features
from mlcycle.serve.predictor import Predictor

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlcycle.package.bundle import Bundle

log = logging.getLogger(__name__)


class ProcessLocalState:
    """A router shipped to worker processes by pickle, without its threads and stores.

    `RUNTIME` names the attributes that belong to one process (threads, events, open
    stores, id-keyed indexes); they are left out of the pickle, and `_init_runtime`
    makes them anew on each side.
    """

    RUNTIME: ClassVar[tuple[str, ...]] = ()

    def _init_runtime(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in self.RUNTIME:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()


TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A model ready to serve: identity, feature schema, task and predictor."""

    name: str
    features: tuple[Feature, ...]
    task: str
    predictor: Predictor
    release: str | None = None
    generation: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ServingError(
                f"model {self.name!r}: unknown task {self.task!r}",
                hint=f"use one of {', '.join(TASKS)}",
            )
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ServingError(f"model {self.name!r}: duplicate feature names")
        if not names:
            raise ServingError(f"model {self.name!r}: no features")

    @classmethod
    def from_estimator(
        cls,
        estimator: Any,
        *,
        name: str,
        features: Sequence[Feature | str] | None = None,
        task: str | None = None,
        release: str | None = None,
        generation: int | None = None,
        sample: np.ndarray | pd.DataFrame | None = None,
        backend: str = "auto",
        metadata: Mapping[str, Any] | None = None,
    ) -> ServedModel:
        """Prepare a fitted sklearn estimator for serving.

        `features` defaults to the estimator's `feature_names_in_`, all of type
        "number"; `task` defaults to what the estimator is. The predictor is
        compiled to ONNX when the pipeline converts and agrees with sklearn on
        `sample` (rows in feature order; synthetic rows when None), and falls back
        to sklearn otherwise (`backend="sklearn"` forces sklearn, `"onnx"` makes a
        failed conversion an error).
        """
        resolved = resolve_features(estimator, features)
        resolved_task = task or infer_task(estimator)
        predictor = Predictor.from_estimator(
            estimator, resolved, resolved_task, sample=sample, backend=backend
        )
        return cls(
            name=name,
            features=resolved,
            task=resolved_task,
            predictor=predictor,
            release=release,
            generation=generation,
            metadata=dict(metadata or {}),
        )

    @functools.cached_property
    def feature_names(self) -> tuple[str, ...]:
        """The feature names in the order the model takes them."""
        # Cached: the request path asks for it on every prediction (it is logged with it).
        return tuple(f.name for f in self.features)

    @property
    def version(self) -> str:
        """The version string of the Open Inference Protocol: `RELEASE` or `RELEASE+GEN`."""
        release = self.release or "unreleased"
        return release if self.generation is None else f"{release}+{self.generation}"

    @property
    def ref(self) -> dict[str, Any]:
        """The `model` object of a prediction response."""
        return {"name": self.name, "release": self.release, "generation": self.generation}

    def describe(self) -> dict[str, Any]:
        """The body of `GET /v1/model`."""
        predictor = self.predictor
        output: dict[str, Any] = {"kind": "label" if self.task == "classification" else "value"}
        if predictor.classes is not None:
            output["classes"] = list(predictor.classes)
            output["probabilities"] = predictor.has_probabilities
        return {
            "name": self.name,
            "release": self.release,
            "generation": self.generation,
            "version": self.version,
            "task": self.task,
            "output": output,
            "backend": predictor.backend,
            "features": [f.as_dict() for f in self.features],
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class RequestInfo:
    """What a router may look at to choose a model: the route, headers and parsed body."""

    route: str
    headers: Sequence[tuple[bytes, bytes]]
    payload: Any

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive), or None."""
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None


class Router(ABC):
    """Decides which model answers a request.

    A router implements `models` and `select`; everything else is an optional hook
    with a no-op default here, which the engine calls on every router. A router
    overrides the hooks for what it does (mirroring, failover, arms, a lifecycle).
    """

    @property
    @abstractmethod
    def models(self) -> Sequence[ServedModel]:
        """Every model that may answer; the first one is described by `GET /v1/model`."""

    @abstractmethod
    def select(self, request: RequestInfo) -> ServedModel:
        """The model that answers `request`."""

    def shadows(self, model: ServedModel) -> Sequence[ServedModel]:
        """Models that get a mirrored copy of the requests `model` answered (none)."""
        return ()

    def fallback_for(self, model: ServedModel, error: BaseException) -> ServedModel | None:
        """Another model to answer when `model` failed (None: the request fails)."""
        return None

    def report_error(self, model: ServedModel, error: BaseException) -> None:
        """Learn that `model` failed where another one answered (nothing to learn)."""
        return None

    def arm_stats(self) -> list[dict[str, Any]]:
        """Traffic and reward per arm, for /metrics (no arms)."""
        return []

    def describe(self) -> dict[str, Any] | None:
        """How requests are routed, for `GET /v1/model` (None: one fixed model, no routing)."""
        return None

    def start(self, store_url: str | None = None) -> None:
        """Start background work in this worker process (none), with the store at `store_url`."""
        return None

    def stop(self) -> None:
        """Stop what `start` started."""
        return None


class SingleModelRouter(Router):
    """The default router: one model answers every request."""

    def __init__(self, model: ServedModel) -> None:
        self._models = (model,)

    @property
    def models(self) -> Sequence[ServedModel]:
        """The one model."""
        return self._models

    def select(self, request: RequestInfo) -> ServedModel:
        """Always the one model."""
        return self._models[0]


ModelSource = ServedModel | Router | Callable[[], "ServedModel | Router"]
"""What `serve` accepts: a model, a router, or a function that loads either."""


def served_model_from_bundle(bundle: Bundle) -> ServedModel:
    """The bundled model ready for the engine (what `mlcycle serve --bundle` serves)."""
    metadata = {"sha256": bundle.artifact.sha256, "created_at": bundle.created_at}
    onnx = bundle.load_onnx()  # checked by SHA-256 against bundle.json
    if onnx is not None and bundle.onnx is not None:
        # The form made at release: no conversion, no scikit-learn in the image.
        return ServedModel(
            name=bundle.project,
            features=bundle.features,
            task=bundle.onnx.task,
            predictor=Predictor.from_onnx(
                onnx, task=bundle.onnx.task, classes=bundle.onnx.classes, note=bundle.onnx.note
            ),
            release=bundle.release,
            generation=bundle.generation,
            metadata=metadata,
        )
    return ServedModel.from_estimator(
        bundle.load_model(),
        name=bundle.project,
        features=bundle.features,
        task=bundle.task,
        release=bundle.release,
        generation=bundle.generation,
        metadata=metadata,
    )


def resolve_source(source: ModelSource) -> Router:
    """The router for `source`, calling it first when it is a loader function."""
    if isinstance(source, ServedModel):
        return SingleModelRouter(source)
    if isinstance(source, Router):
        if not source.models:
            raise ServingError("the router has no models to serve")
        return source
    if callable(source):
        loaded = source()
        if isinstance(loaded, ServedModel | Router):
            return resolve_source(loaded)
        raise ServingError(
            f"the model loader returned {type(loaded).__name__}, not a ServedModel or a Router"
        )
    raise ServingError(f"cannot serve {type(source).__name__}: expected a ServedModel or a Router")


def infer_task(estimator: Any) -> str:
    """'classification' for classifiers, else 'regression'."""
    from sklearn.base import is_classifier

    return "classification" if is_classifier(estimator) else "regression"


def warm_up(model: ServedModel) -> None:
    """One prediction on a zero row, so the first request does not pay for lazy setup
    (ONNX Runtime allocates on its first run)."""
    import numpy as np

    if not all(f.numeric for f in model.features):
        return
    row = np.zeros((1, len(model.features)), dtype=model.predictor.input_dtype)
    try:
        model.predictor.predict(row)
    except Exception as e:  # a model may reject zeros; serving still works
        log.warning("warm-up prediction failed (%s); the first request may be slower", e)
