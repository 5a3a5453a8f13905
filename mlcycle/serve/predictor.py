"""Predictors: a fitted pipeline in the fastest form that gives sklearn's own answers.

`Predictor.from_estimator` converts the pipeline with skl2onnx and runs it with ONNX
Runtime on one thread (about 50x faster than `pipeline.predict` on one row, DESIGN.md
section 6), but only after checking, on a sample of rows, that the converted model
predicts the same labels and probabilities within 1e-5 of sklearn. Double precision
is tried first (it agrees to ~1e-16), single precision second. A pipeline that does
not convert or does not agree is served by sklearn itself, and the reason is logged.

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
from mlcycle.registry.artifacts import OnnxForm

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlcycle.registry.artifacts import OnnxForm
    from mlcycle.registry.features import Feature

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "sklearn")
TOLERANCE = 1e-5
"""Largest difference allowed between ONNX and sklearn probabilities (or values)."""

_SYNTHETIC_ROWS = 300
_FINAL_STEP_OPTIONS = {"zipmap": False}


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
        if not all(f.numeric for f in features):
            reason = "features of type string are served by sklearn (no ONNX conversion)"
        else:
            rows = _verification_rows(sample, features, estimator)
            onnx, reason = _try_onnx(estimator, reference, features, task, rows, tolerance)
            if onnx is not None:
                log.info("serving through ONNX Runtime (%s)", onnx.note)
                return onnx
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


def onnx_form(
    estimator: Any,
    features: Sequence[Feature],
    task: str,
    *,
    sample: np.ndarray | pd.DataFrame | None = None,
    tolerance: float = TOLERANCE,
) -> tuple[OnnxForm | None, str]:
    """The ONNX form of `estimator` to store with it, and why (or why there is none).

    The same conversion and verification as `Predictor.from_estimator` (on `sample`,
    else synthetic rows), done once when the model is registered: the engine then
    loads the stored bytes and never imports skl2onnx or scikit-learn.
    """
    if not all(f.numeric for f in features):
        return None, "features of type string are served by sklearn (no ONNX conversion)"
    reference = SklearnPredictor(estimator, features, task)
    rows = _verification_rows(sample, features, estimator)
    onnx, reason = _try_onnx(estimator, reference, features, task, rows, tolerance)
    if onnx is None:
        return None, reason
    form = OnnxForm(model=onnx.onnx_bytes, task=task, classes=onnx.classes, note=reason)
    return form, reason


class SklearnPredictor(Predictor):
    """Calls the fitted estimator itself: the reference, and the fallback."""

    backend = "sklearn"

    def __init__(self, estimator: Any, features: Sequence[Feature], task: str) -> None:
        self.estimator = estimator
        self.task = task
        self._names = [f.name for f in features]
        self._types = [f.type for f in features]
        self._numeric = all(f.numeric for f in features)
        # An estimator fitted on a DataFrame wants one back (named columns, or it warns
        # on every call); one fitted on an ndarray takes the matrix as it is.
        self._frame = getattr(estimator, "feature_names_in_", None) is not None or not self._numeric
        classes = getattr(estimator, "classes_", None)
        if task == "classification" and classes is not None:
            self.classes = tuple(classes.tolist())
            self.has_probabilities = hasattr(estimator, "predict_proba")

    @property
    def input_dtype(self) -> Any:
        """float64 when every feature is numeric, else object."""
        import numpy as np

        return np.float64 if self._numeric else object

    def _input(self, rows: np.ndarray) -> Any:
        if not self._frame:
            return rows
        import pandas as pd

        if self._numeric:
            return pd.DataFrame(rows, columns=self._names, copy=False)
        columns = {}
        for j, (name, kind) in enumerate(zip(self._names, self._types, strict=True)):
            column = rows[:, j]
            columns[name] = column if kind == "string" else column.astype("float64")
        return pd.DataFrame(columns)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`estimator.predict`, plus `predict_proba` for classifiers that have it."""
        import numpy as np

        data = self._input(rows)
        labels = np.asarray(self.estimator.predict(data))
        probabilities = None
        if self.has_probabilities:
            probabilities = np.asarray(self.estimator.predict_proba(data))
        return labels, probabilities


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
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: the engine runs one process per core and batches requests itself;
        # more intra-op threads only fight the event loop for the core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                self.onnx_bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ServingError(f"ONNX Runtime cannot load the model: {e}") from e
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ServingError(f"the ONNX model has {len(inputs)} inputs; the engine needs one")
        self._input_name = inputs[0].name
        self._dtype = np.float64 if inputs[0].type == "tensor(double)" else np.float32
        outputs = [o.name for o in self._session.get_outputs()]
        if self.task == "classification":
            self._outputs = outputs[:2]
            self.has_probabilities = len(outputs) >= 2
        else:
            self._outputs = outputs[:1]
            self.has_probabilities = False
        self._run = self._session.run

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_session", "_run", "_dtype"):
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
            return results[0], (results[1] if self.has_probabilities else None)
        return results[0].reshape(-1), None


def _try_onnx(
    estimator: Any,
    reference: SklearnPredictor,
    features: Sequence[Feature],
    task: str,
    rows: np.ndarray,
    tolerance: float,
) -> tuple[OnnxPredictor | None, str]:
    """Convert and verify, double precision first; (predictor, note) or (None, reason)."""
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    except ImportError as e:  # pragma: no cover - skl2onnx is a dependency
        return None, f"skl2onnx is not installed ({e})"
    try:
        expected_labels, expected_probabilities = reference.predict(rows)
    except Exception as e:  # the estimator's own error, whatever its type
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, (
            f"sklearn itself fails on the verification rows ({first_line[:200]}); "
            "pass a sample of real rows to verify the ONNX form"
        )
    reasons = []
    for precision, tensor_type in (("double", DoubleTensorType), ("float", FloatTensorType)):
        try:
            model = to_onnx(
                estimator,
                initial_types=[("X", tensor_type([None, len(features)]))],
                options=_options(estimator, task),
            )
            predictor = OnnxPredictor(
                model.SerializeToString(),
                task=task,
                classes=reference.classes,
                note=f"{precision} precision, verified on {len(rows)} rows",
            )
            labels, probabilities = predictor.predict(rows)
        except Exception as e:  # skl2onnx and onnxruntime raise many unrelated types
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            reasons.append(f"{precision}: {type(e).__name__}: {first_line[:200]}")
            continue
        problem = _disagreement(
            task, expected_labels, expected_probabilities, labels, probabilities, tolerance
        )
        if problem is None:
            return predictor, predictor.note or ""
        reasons.append(f"{precision}: {problem}")
    return None, "; ".join(reasons)


def _options(estimator: Any, task: str) -> dict[int, dict[str, bool]] | None:
    """Converter options: classifiers give a probability matrix, not a list of dicts."""
    if task != "classification":
        return None
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return {id(final): dict(_FINAL_STEP_OPTIONS)}


def _disagreement(
    task: str,
    expected_labels: np.ndarray,
    expected_probabilities: np.ndarray | None,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    tolerance: float,
) -> str | None:
    """Why the ONNX outputs differ from sklearn's, or None when they agree."""
    import numpy as np

    if labels.shape[0] != expected_labels.shape[0]:
        return f"ONNX gave {labels.shape[0]} predictions for {expected_labels.shape[0]} rows"
    if task == "regression":
        diff = np.abs(labels.astype(np.float64) - expected_labels.astype(np.float64))
        scale = np.maximum(1.0, np.abs(expected_labels.astype(np.float64)))
        worst = float(np.max(diff / scale)) if len(diff) else 0.0
        if not worst <= tolerance:
            return f"predictions differ from sklearn's by up to {worst:.3g} (relative)"
        return None
    mismatched = int(
        np.sum(np.asarray(labels.tolist(), dtype=object) != expected_labels.astype(object))
    )
    if mismatched:
        return f"{mismatched} of {len(labels)} predicted labels differ from sklearn's"
    if expected_probabilities is not None:
        if probabilities is None or probabilities.shape != expected_probabilities.shape:
            return "ONNX gave no probability matrix of sklearn's shape"
        worst = float(np.max(np.abs(probabilities.astype(np.float64) - expected_probabilities)))
        if not worst <= tolerance:
            return f"probabilities differ from sklearn's by up to {worst:.3g}"
    return None


def _verification_rows(
    sample: np.ndarray | pd.DataFrame | None, features: Sequence[Feature], estimator: Any
) -> np.ndarray:
    """Rows to compare ONNX with sklearn on: the sample given, or synthetic rows."""
    import numpy as np

    if sample is not None:
        if hasattr(sample, "columns"):
            frame: Any = sample
            sample = frame[[f.name for f in features]].to_numpy(dtype=np.float64)
        rows = np.ascontiguousarray(np.asarray(sample, dtype=np.float64))
        if rows.ndim != 2 or rows.shape[1] != len(features) or rows.shape[0] == 0:
            raise ServingError(
                f"the verification sample has shape {rows.shape}; expected (rows, {len(features)})"
            )
        return rows
    log.info("verifying the ONNX form on synthetic rows; pass a sample of real rows to be sure")
    rng = np.random.default_rng(0)
    n = len(features)
    # Rows around the scaler's statistics when the pipeline starts with one, plus rows
    # on several magnitudes, so that both typical and extreme inputs are compared.
    first = estimator.steps[0][1] if hasattr(estimator, "steps") else estimator
    mean = np.zeros(n)
    scale = np.ones(n)
    first_mean = getattr(first, "mean_", None)
    first_scale = getattr(first, "scale_", None)
    if first_mean is not None and first_scale is not None and np.shape(first_mean) == (n,):
        mean = np.asarray(first_mean, dtype=np.float64)
        scale = np.asarray(first_scale, dtype=np.float64)
    blocks = [mean + scale * rng.standard_normal((_SYNTHETIC_ROWS // 2, n))]
    for magnitude in (1.0, 100.0):
        blocks.append(magnitude * rng.standard_normal((_SYNTHETIC_ROWS // 4, n)))
    rows = np.vstack(blocks)
    for j, feature in enumerate(features):
        if feature.type == "integer":
            rows[:, j] = np.round(rows[:, j])
        elif feature.type == "boolean":
            rows[:, j] = rows[:, j] > 0
    return np.ascontiguousarray(rows)
