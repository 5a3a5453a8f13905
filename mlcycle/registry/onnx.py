"""A fitted pipeline's ONNX form: converted with skl2onnx, verified against scikit-learn.

The ONNX form is the model's second stored form, beside its skops file
(`artifacts.py`): made once when a model is registered (`compile_onnx`), recorded
with its SHA-256, and served by ONNX Runtime without importing skl2onnx or
scikit-learn. It lives here, below the serving engine and the agents, because both
make it: the integration agent and `release --model` at registration, the engine
when it serves a model that has none stored (`serve/predictor.py`).

A form is kept only when it gives scikit-learn's own answers: on a sample of rows
(the training rows at registration, else synthetic ones) the converted model must
predict the same labels and probabilities (or values) within `TOLERANCE`. Double
precision is tried first (it agrees to ~1e-16), single precision second. A pipeline
that does not convert or does not agree has no form, and the reason says why.

`SklearnRunner` is scikit-learn's side of that comparison, and the serving engine's
fallback predictor builds on it, so the answers the form is checked against are the
answers the fallback would give.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ServingError
from mlcycle.registry.artifacts import OnnxForm
from mlcycle.registry.features import Feature, parse_features, resolve_features

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

TOLERANCE = 1e-5
"""Largest difference allowed between ONNX and sklearn probabilities (or values)."""

STRING_FEATURES = "features of type string are served by sklearn (no ONNX conversion)"

_SYNTHETIC_ROWS = 300
_FINAL_STEP_OPTIONS = {"zipmap": False}


class SklearnRunner:
    """Calls a fitted estimator on rows in feature order: `(labels, probabilities or None)`.

    Rows are an ndarray (float64 for numeric features, object for a model with string
    features); regressors return their values as labels.
    """

    task: str
    classes: tuple[Any, ...] | None = None
    has_probabilities: bool = False

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


def open_session(model: bytes) -> Any:
    """An ONNX Runtime session on `model`, on one intra-op thread.

    The one place sessions are opened, so a form is verified under the settings it is
    served with. One thread: the engine runs one process per core and batches requests
    itself; more intra-op threads only fight the event loop for the core.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def onnx_form(
    estimator: Any,
    features: Sequence[Feature],
    task: str,
    *,
    sample: np.ndarray | pd.DataFrame | None = None,
    tolerance: float = TOLERANCE,
) -> tuple[OnnxForm | None, str]:
    """The ONNX form of `estimator` and a note on it, or None and why there is none.

    Verified on `sample` (rows in feature order, or a DataFrame holding the features),
    else on synthetic rows; ServingError for a sample of the wrong shape.
    """
    if not all(f.numeric for f in features):
        return None, STRING_FEATURES
    reference = SklearnRunner(estimator, features, task)
    rows = _verification_rows(sample, features, estimator)
    return _convert(estimator, reference, features, task, rows, tolerance)


def compile_onnx(
    estimator: Any,
    *,
    features: Sequence[Mapping[str, Any]] | None,
    task: str,
    sample: np.ndarray | pd.DataFrame | None = None,
) -> OnnxForm | None:
    """The ONNX form to register with `estimator`, or None when it does not convert.

    `features` is the schema recorded at training (`data.features`, dicts of name,
    type and nullable), else the estimator's own; `task` the one recorded. `sample`
    (training rows) verifies the form on real inputs; at most 1,000 of its rows are
    used. A model that does not convert is served by scikit-learn, and the reason is
    logged here, once, at registration.
    """
    declared = parse_features(features) if features else None
    if sample is not None:
        sample = sample[:1000] if not hasattr(sample, "iloc") else sample.iloc[:1000]
    try:
        resolved = resolve_features(estimator, declared)
        form, reason = onnx_form(estimator, resolved, task, sample=sample)
    except Exception as e:  # the form is an optimisation: never the reason a release fails
        form, reason = None, f"{type(e).__name__}: {e}"
    if form is None:
        log.warning(
            "no ONNX form stored with the model (%s): serving converts it again or runs sklearn",
            reason,
        )
    return form


def _convert(
    estimator: Any,
    reference: SklearnRunner,
    features: Sequence[Feature],
    task: str,
    rows: np.ndarray,
    tolerance: float,
) -> tuple[OnnxForm | None, str]:
    """Convert and verify, double precision first; (form, note) or (None, reason)."""
    import numpy as np

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
    for precision, tensor_type, dtype in (
        ("double", DoubleTensorType, np.float64),
        ("float", FloatTensorType, np.float32),
    ):
        try:
            model = to_onnx(
                estimator,
                initial_types=[("X", tensor_type([None, len(features)]))],
                options=_options(estimator, task),
            ).SerializeToString()
            labels, probabilities = _run(model, task, rows.astype(dtype))
        except Exception as e:  # skl2onnx and onnxruntime raise many unrelated types
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            reasons.append(f"{precision}: {type(e).__name__}: {first_line[:200]}")
            continue
        problem = _disagreement(
            task, expected_labels, expected_probabilities, labels, probabilities, tolerance
        )
        if problem is None:
            note = f"{precision} precision, verified on {len(rows)} rows"
            return OnnxForm(model=model, task=task, classes=reference.classes, note=note), note
        reasons.append(f"{precision}: {problem}")
    return None, "; ".join(reasons)


def _run(model: bytes, task: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The converted model's answers on `rows`, read as the engine reads them: labels
    (values for a regressor) first, then the probability matrix when there is one."""
    session = open_session(model)
    results = session.run(None, {session.get_inputs()[0].name: rows})
    if task == "classification":
        return results[0], (results[1] if len(results) >= 2 else None)
    return results[0].reshape(-1), None


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
