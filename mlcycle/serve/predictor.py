"""Predictors: a fitted pipeline in the fastest form that gives sklearn's own answers.

`Predictor.from_estimator` runs the pipeline's ONNX form with ONNX Runtime on one
thread (about 50x faster than `pipeline.predict` on one row; see the serving engine
in docs/architecture.md) when the pipeline converts and the form agrees with sklearn
on a sample of rows (`mlcycle.registry.onnx`, the conversion and check a model's
stored form was made with at registration). A pipeline that does not convert or does
not agree is served by sklearn itself, and the reason is logged.

Every predictor takes an ndarray of rows in feature order (float64 for numeric
features, object for a model with string features) and returns `(labels,
probabilities or None)`; regressors return their values as labels.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ServingError
from mlcycle.registry.onnx import TOLERANCE, SklearnRunner, onnx_form, open_session

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlcycle.registry.features import Feature

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "sklearn")


class Predictor(ABC):
    """Runs one fitted model on a matrix of rows."""

    backend: str = ""
    task: str = "classification"
    classes: tuple[Any, ...] | None = None
    has_probabilities: bool = False
    note: str | None = None
    """Why this backend was chosen, when it was not the first choice."""

    @abstractmethod
    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (or values) and class probabilities (None when not available)."""

    @property
    def input_dtype(self) -> Any:
        """The dtype the engine should build request matrices in."""
        import numpy as np

        return np.float64

    @staticmethod
    def from_estimator(
        estimator: Any,
        features: Sequence[Feature],
        task: str,
        *,
        sample: np.ndarray | pd.DataFrame | None = None,
        backend: str = "auto",
        tolerance: float = TOLERANCE,
    ) -> Predictor:
        """The fastest predictor for `estimator` that agrees with it on `sample`.

        `backend`: "auto" tries ONNX and falls back to sklearn (logging why), "onnx"
        raises ServingError when conversion or verification fails, "sklearn" skips
        conversion.
        """
        if backend not in BACKENDS:
            raise ServingError(
                f"unknown predictor backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}"
            )
        reference = SklearnPredictor(estimator, features, task)
        if backend == "sklearn":
            return reference
        form, reason = onnx_form(estimator, features, task, sample=sample, tolerance=tolerance)
        if form is not None:
            log.info("serving through ONNX Runtime (%s)", form.note)
            return OnnxPredictor(form.model, task=task, classes=form.classes, note=form.note)
        if backend == "onnx":
            raise ServingError(
                f"the pipeline cannot be served through ONNX: {reason}",
                hint="serve it with backend='sklearn'",
            )
        log.warning("serving through sklearn, not ONNX: %s", reason)
        reference.note = reason
        return reference

    @staticmethod
    def from_onnx(
        model: bytes,
        *,
        task: str,
        classes: Sequence[Any] | None = None,
        note: str | None = None,
    ) -> OnnxPredictor:
        """A predictor from ONNX bytes converted earlier (e.g. stored in a bundle)."""
        return OnnxPredictor(model, task=task, classes=classes, note=note)


class SklearnPredictor(SklearnRunner, Predictor):
    """Calls the fitted estimator itself: the reference the ONNX form is checked against,
    and the fallback."""

    backend = "sklearn"


class OnnxPredictor(Predictor):
    """Runs an ONNX model with ONNX Runtime on one intra-op thread.

    Pickles as its ONNX bytes (the session is rebuilt on load), so it can be shipped
    to worker processes whatever Python code the original pipeline used.
    """

    backend = "onnx"

    def __init__(
        self,
        model: bytes,
        *,
        task: str,
        classes: Sequence[Any] | None = None,
        note: str | None = None,
    ) -> None:
        self.onnx_bytes = model
        self.task = task
        self.classes = tuple(classes) if classes is not None else None
        self.note = note
        self._open()

    def _open(self) -> None:
        import numpy as np

        try:
            self._session = open_session(self.onnx_bytes)
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ServingError(f"ONNX Runtime cannot load the model: {e}") from e
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ServingError(f"the ONNX model has {len(inputs)} inputs; the engine needs one")
        self._input_name = inputs[0].name
        self._dtype = np.float64 if inputs[0].type == "tensor(double)" else np.float32
        outputs = [o.name for o in self._session.get_outputs()]
        # ONNX Runtime gives the labels of boolean and float classes as integers; sklearn
        # gives them in the classes' own type (true, 1.0), and so must the engine.
        kind = np.asarray(self.classes).dtype if self.classes else None
        self._labels_as = kind if kind is not None and kind.kind in "bf" else None
        if self.task == "classification":
            self._outputs = outputs[:2]
            self.has_probabilities = len(outputs) >= 2
        else:
            self._outputs = outputs[:1]
            self.has_probabilities = False
        self._run = self._session.run

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_session", "_run", "_dtype", "_labels_as"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    @property
    def input_dtype(self) -> Any:
        """The ONNX input's dtype (float64 or float32)."""
        return self._dtype

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One ONNX Runtime call on the whole matrix."""
        if rows.dtype != self._dtype:
            rows = rows.astype(self._dtype)
        results = self._run(self._outputs, {self._input_name: rows})
        if self.task == "classification":
            labels = results[0] if self._labels_as is None else results[0].astype(self._labels_as)
            return labels, (results[1] if self.has_probabilities else None)
        return results[0].reshape(-1), None
