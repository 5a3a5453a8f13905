"""MLflow model directories: written from a model mlcycle holds, read for `release --model`.

An MLflow model directory is an `MLmodel` YAML file naming its flavors, the
serialized model, the environment files (`requirements.txt`, `python_env.yaml`,
`conda.yaml`) and a `code/` directory MLflow puts on `sys.path` before loading.

Written (`save_model_dir`, the one MLflow-model writer: `export --format mlflow` and
the models that run tracking logs to an MLflow server both use it): the scikit-learn
flavor and `python_function`, the model serialized as skops (MLflow's sklearn flavor
reads skops with the list of trusted type names recorded in `MLmodel`: exactly the
names the model holds, each accepted by the caller's trust policy; pickle is never
written), a signature from the recorded feature schema (nullable columns optional),
requirements and `python_env.yaml` pinned to the versions the model was made with,
and the model's own code as MLflow code paths. The directory is written beside its
target and renamed into place.

Read (`read_model_dir`): only `MLmodel` is parsed here (PyYAML, MLflow itself is not
needed); the caller loads the model file under its own trust policy, and a pickle
inside is treated like any pickle: refused without the user's explicit opt-in.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mlcycle.errors import RuntimeFailure, UsageError
from mlcycle.extras import MLFLOW, require

MLMODEL: Final = "MLmodel"
URI_SCHEMES: Final = ("runs:/", "models:/")
SKOPS: Final = "skops"
PICKLE_FORMATS: Final = ("pickle", "cloudpickle")
# JSON types of mlcycle's feature schema → MLflow column types.
COLUMN_TYPES: Final = {
    "number": "double",
    "integer": "long",
    "boolean": "boolean",
    "string": "string",
}
# Versions recorded with a model (`library_versions`) → the distributions to pin.
DISTRIBUTIONS: Final = {
    "sklearn": "scikit-learn",
    "numpy": "numpy",
    "pandas": "pandas",
    "skops": "skops",
}


@dataclass(frozen=True)
class MlflowModel:
    """An MLflow model directory that was written: where, and what it pins."""

    directory: Path
    serialization: str
    requirements: tuple[str, ...]
    features: tuple[str, ...]
    code: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "directory": str(self.directory),
            "serialization": self.serialization,
            "requirements": list(self.requirements),
            "features": list(self.features),
            "code": list(self.code),
        }


@dataclass(frozen=True)
class MlflowModelDir:
    """What an MLflow model directory's `MLmodel` says of its scikit-learn model."""

    directory: Path
    model_file: Path
    serialization: str
    code: Path | None = None
    features: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def is_pickle(self) -> bool:
        """Whether loading the model means unpickling it (runs any code it holds)."""
        return self.serialization in PICKLE_FORMATS


def is_model_uri(text: str) -> bool:
    """Whether `text` is an MLflow model URI of a tracking server (`runs:/`, `models:/`)."""
    return str(text).startswith(URI_SCHEMES)


def download_model(uri: str, *, tracking_uri: str, directory: Path) -> Path:
    """Download the MLflow model `uri` names from the tracking server at `tracking_uri`
    into `directory` (nothing is loaded); returns the model directory.

    MissingExtraError (exit 2) without the [mlflow] extra; RuntimeFailure (exit 1)
    when the server cannot be reached or has no such model.
    """
    require(MLFLOW, what=f"reading {uri}")
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(directory), tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise RuntimeFailure(
            f"cannot download {uri} from the MLflow tracking server {tracking_uri}: {first}",
            hint="check the run id or the model name and version (the MLflow UI shows "
            "them), and that the server is reachable",
        ) from e
    if not is_model_dir(Path(local)):
        raise UsageError(
            f"{uri} is not an MLflow model (no MLmodel file in it)",
            hint="name the logged model: runs:/RUN_ID/ARTIFACT_PATH or models:/NAME/VERSION",
        )
    return Path(local)


def is_model_dir(path: Path) -> bool:
    """Whether `path` is a directory holding an `MLmodel` file."""
    return Path(path).is_dir() and (Path(path) / MLMODEL).is_file()


def save_model_dir(
    model: Any,
    directory: Path,
    *,
    features: Sequence[Mapping[str, Any]],
    versions: Mapping[str, str],
    is_trusted: Callable[[str], bool],
    code_root: Path | None = None,
    code_files: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> MlflowModel:
    """Write `model` (a fitted scikit-learn estimator) as an MLflow model at `directory`.

    `features` is the feature schema (dicts of `name`, `type` as a JSON type, and
    `nullable`), in the model's column order; `versions` the library versions the
    model was made with (`library_versions()`: `python`, `sklearn`, `numpy`, ...), pinned
    in `requirements.txt` and `python_env.yaml`; `is_trusted` the caller's trust policy
    (`TrustPolicy.is_trusted`): every name the model's skops form builds must pass it,
    and exactly those names are recorded as trusted for MLflow's loader; `code_files`
    the model's own code (paths relative to `code_root`, as `model.code` stores them),
    shipped as MLflow code paths so that loading the model imports it. `metadata` goes
    into `MLmodel` as is.

    `directory` must not exist or be empty; it is written beside itself and renamed
    into place, so it is never seen half-written. MissingExtraError (exit 2) without
    the [mlflow] extra; UsageError for a directory in the way or a feature type MLflow
    has no column for; RuntimeFailure for a model skops cannot store, a name the trust
    policy refuses, or MLflow failing to write.
    """
    require(MLFLOW, what="writing an MLflow model")
    import mlflow
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    target = Path(directory)
    check_target(target)
    if SKOPS not in mlflow.sklearn.SUPPORTED_SERIALIZATION_FORMATS:
        raise UsageError(
            f"MLflow {mlflow.__version__} cannot store scikit-learn models as skops, and "
            "mlcycle writes no pickle",
            hint=f"upgrade MLflow: {MLFLOW.command}",
        )
    signature = model_signature(features)
    requirements = pinned_requirements(versions, mlflow_version=mlflow.__version__)
    trusted = skops_names(model, is_trusted)
    code = sorted({Path(p).parts[0] for p in code_files})
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        written = staging / "model"
        try:
            mlflow.sklearn.save_model(
                model,
                str(written),
                serialization_format=SKOPS,
                skops_trusted_types=trusted,
                signature=signature,
                pip_requirements=list(requirements),
                code_paths=[str(Path(code_root) / c) for c in code] if code and code_root else None,
                metadata=dict(metadata or {}),
            )
        except MlflowException as e:
            raise RuntimeFailure(f"writing the MLflow model {target} failed: {e.message}") from e
        _pin_python(written, versions.get("python"))
        if target.exists():
            target.rmdir()  # empty (checked above): the rename puts the model there
        written.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MlflowModel(
        directory=target,
        serialization=SKOPS,
        requirements=requirements,
        features=tuple(str(f["name"]) for f in features),
        code=tuple(code),
    )


def model_signature(features: Sequence[Mapping[str, Any]]) -> Any:
    """An MLflow input signature from a feature schema; None for an empty schema.

    A nullable feature is an optional column (MLflow's `required: false`), so a model
    trained with missing values accepts them. UsageError for a type with no MLflow column.
    """
    if not features:
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns: list[Any] = []
    for feature in features:
        kind = str(feature.get("type", "number"))
        if kind not in COLUMN_TYPES:
            raise UsageError(
                f"feature {feature.get('name')!r}: type {kind!r} has no MLflow column type",
                hint=f"feature types are {', '.join(COLUMN_TYPES)}",
            )
        columns.append(
            ColSpec(
                COLUMN_TYPES[kind],
                str(feature["name"]),
                required=not bool(feature.get("nullable")),
            )
        )
    return ModelSignature(inputs=Schema(columns))


def skops_names(model: Any, is_trusted: Callable[[str], bool]) -> list[str]:
    """The names beyond skops' defaults that loading `model` builds, each one trusted.

    RuntimeFailure when skops cannot represent the model or `is_trusted` refuses a name:
    the same refusal the registry makes when it stores a model.
    """
    import skops.io as sio

    try:
        names = sio.get_untrusted_types(data=sio.dumps(model))
    except Exception as e:  # skops raises whatever the object's reduction raises
        raise RuntimeFailure(
            f"the model cannot be stored as skops ({type(e).__name__}: {e})",
            hint="use classes defined at module level (no lambdas or local functions)",
        ) from e
    refused = sorted(n for n in names if not is_trusted(n))
    if refused:
        raise RuntimeFailure(
            f"the model holds code mlcycle does not trust: {', '.join(refused)}",
            hint="list the file that defines them in model.code",
        )
    return sorted(names)


def pinned_requirements(versions: Mapping[str, str], *, mlflow_version: str) -> tuple[str, ...]:
    """`requirements.txt` lines: MLflow, and every recorded library at its recorded version."""
    lines = [f"mlflow=={mlflow_version}"]
    for key, dist in DISTRIBUTIONS.items():
        version = versions.get(key)
        if version and version != "not installed":
            lines.append(f"{dist}=={version}")
    return tuple(lines)


def read_model_dir(path: Path) -> MlflowModelDir:
    """What `path/MLmodel` says of the scikit-learn model in it; UsageError if it has none.

    Nothing is loaded or imported: the caller decides, by `serialization`, how (and
    whether) to load `model_file`.
    """
    import yaml

    directory = Path(path)
    where = directory / MLMODEL
    try:
        raw = yaml.safe_load(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UsageError(f"{where}: not a readable MLmodel file ({e})") from e
    flavors = raw.get("flavors") if isinstance(raw, Mapping) else None
    if not isinstance(flavors, Mapping):
        raise UsageError(f"{where}: no `flavors` in the MLmodel file")
    sklearn = flavors.get("sklearn")
    if not isinstance(sklearn, Mapping):
        held = ", ".join(sorted(str(k) for k in flavors)) or "none"
        raise UsageError(
            f"{where}: the MLflow model has no scikit-learn flavor (it has: {held})",
            hint="mlcycle releases scikit-learn models; log or save the model with "
            "mlflow.sklearn (serialization_format='skops')",
        )
    serialization = str(sklearn.get("serialization_format") or "pickle")
    if serialization != SKOPS and serialization not in PICKLE_FORMATS:
        raise UsageError(f"{where}: unknown serialization format {serialization!r}")
    model_file = _inside(directory, str(sklearn.get("pickled_model") or ""), where=where)
    pyfunc = flavors.get("python_function")
    code_dir = pyfunc.get("code") if isinstance(pyfunc, Mapping) else None
    code_dir = code_dir or sklearn.get("code")
    code = _inside(directory, str(code_dir), where=where) if code_dir else None
    return MlflowModelDir(
        directory=directory,
        model_file=model_file,
        serialization=serialization,
        code=code,
        features=_signature_features(raw),
    )


# --- internals ----------------------------------------------------------------------


def check_target(target: Path) -> None:
    """UsageError unless `target` is new or an empty directory (an export never overwrites)."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"{target}: already exists and is not an empty directory",
            hint="name a new directory; an export never overwrites one",
        )


def _pin_python(directory: Path, python: str | None) -> None:
    """Make `python_env.yaml` name the Python the model was made with, not this one."""
    import yaml

    path = directory / "python_env.yaml"
    if not python or not path.is_file():
        return
    env = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    env["python"] = python
    path.write_text(yaml.safe_dump(env, sort_keys=False), encoding="utf-8")


def _inside(directory: Path, name: str, *, where: Path) -> Path:
    """`directory/name`, refusing a name that leaves the directory (a planted MLmodel)."""
    if not name:
        raise UsageError(f"{where}: the scikit-learn flavor names no model file")
    path = (directory / name).resolve()
    if not path.is_relative_to(directory.resolve()):
        raise UsageError(f"{where}: {name!r} points outside the model directory")
    return path


def _signature_features(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The input columns of the MLmodel's signature as mlcycle's feature schema."""
    import json

    signature = raw.get("signature")
    inputs = signature.get("inputs") if isinstance(signature, Mapping) else None
    try:
        columns = json.loads(inputs) if isinstance(inputs, str) else None
    except ValueError:
        return ()
    if not isinstance(columns, list):
        return ()
    json_types = {v: k for k, v in COLUMN_TYPES.items()} | {"float": "number", "integer": "integer"}
    features = []
    for column in columns:
        if not isinstance(column, Mapping) or "name" not in column:
            return ()  # a tensor signature: no named columns
        features.append(
            {
                "name": str(column["name"]),
                "type": json_types.get(str(column.get("type")), "number"),
                "nullable": not column.get("required", True),
            }
        )
    return tuple(features)
