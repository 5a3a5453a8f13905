"""A fitted model as an MLflow model directory: the one writer every MLflow path uses.

`mlcycle export --format mlflow` and the tracking of runs (`tracking: {mlflow: URL}`)
both write models through `save_mlflow_model`, so what an MLflow user loads is the
same everywhere: the sklearn flavor plus pyfunc, stored as **skops** (never pickle)
with the exact names mlcycle's trust policy accepted, a signature from the recorded
feature schema, pinned requirements and the project's model code (`model.code`) as
MLflow `code_paths`.

This module needs the `[mlflow]` extra (`mlflow-skinny` is enough); without it the
call raises MissingExtraError. mlflow is imported inside the functions.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from mlcycle.errors import TrainingError
from mlcycle.extras import MLFLOW, require

# mlcycle's JSON feature types → MLflow's column types.
COLUMN_TYPES: Final = {
    "number": "double",
    "integer": "long",
    "boolean": "boolean",
    "string": "string",
}
# What loading the model needs besides mlflow itself (which MLflow adds), pinned to
# the versions the model was written with.
REQUIREMENTS: Final = ("scikit-learn", "skops", "numpy", "scipy", "pandas")


def model_signature(features: Sequence[Mapping[str, Any]]) -> Any:
    """An MLflow input signature from a feature schema (`[{"name", "type", "nullable"}]`,
    as an entry records it in `data.features`)."""
    require(MLFLOW, what="an MLflow model")
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    columns: list[Any] = []
    for feature in features:
        kind = str(feature.get("type", "number"))
        if kind not in COLUMN_TYPES:
            raise TrainingError(f"feature {feature.get('name')!r}: unknown type {kind!r}")
        columns.append(
            ColSpec(
                COLUMN_TYPES[kind],
                str(feature["name"]),
                required=not bool(feature.get("nullable", False)),
            )
        )
    return ModelSignature(inputs=Schema(columns))


def pinned_requirements() -> list[str]:
    """`NAME==VERSION` for each distribution the model needs that is installed here."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def skops_types(model: Any, is_trusted: Callable[[str], bool]) -> list[str]:
    """The names beyond skops' defaults that loading `model` builds, all of them trusted.

    `is_trusted` is the caller's trust policy (`TrustPolicy.is_trusted`); a name it
    refuses is a TrainingError, the same refusal the registry makes.
    """
    import skops.io

    try:
        names = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as e:  # skops raises bare TypeErrors and more for what it cannot store
        raise TrainingError(f"the model cannot be stored as skops: {e}") from e
    refused = sorted(n for n in names if not is_trusted(n))
    if refused:
        raise TrainingError(
            f"the model names types or functions the trust policy refuses: {', '.join(refused)}",
            hint="declare the project's model code in model.code",
        )
    return sorted(names)


def save_mlflow_model(
    model: Any,
    path: Path,
    *,
    features: Sequence[Mapping[str, Any]],
    is_trusted: Callable[[str], bool],
    code_paths: Sequence[Path] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write `model` as an MLflow model directory at `path` (which must not exist).

    The directory holds `MLmodel` (sklearn and python_function flavors, the
    signature), the model as skops with its trusted names, `requirements.txt` with
    pinned versions, and `code/` with `code_paths` (the project's model code, made
    importable by MLflow when the model loads). `metadata` lands in MLmodel's
    `metadata` (release, generation, ...). Returns `path`.
    """
    require(MLFLOW, what="an MLflow model")
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    if path.exists():
        raise TrainingError(
            f"{path} already exists", hint="choose a new directory for the MLflow model"
        )
    try:
        mlflow.sklearn.save_model(
            model,
            str(path),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=skops_types(model, is_trusted),
            signature=model_signature(features),
            pip_requirements=pinned_requirements(),
            code_paths=[str(p) for p in code_paths] or None,
            metadata=dict(metadata) if metadata else None,
        )
    except MlflowException as e:
        raise TrainingError(f"writing the MLflow model failed: {e.message}") from e
    return path
