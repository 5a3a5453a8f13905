"""`export`: a registry entry written in a format other tools load.

- `--format mlflow`: an MLflow model directory (`mlcycle.interop.mlflow`): the
  scikit-learn flavor and `python_function`, stored as skops, with the entry's feature
  schema as signature, its recorded library versions pinned, and its own model code
  (`model.code`, the copy stored with the generation) as MLflow code paths.
  `mlflow.pyfunc.load_model(DIR).predict` and `mlflow models serve -m DIR` answer what
  `mlcycle serve` answers.
- `--format onnx`: the ONNX form the engine serves, byte for byte (its SHA-256 is the
  one the entry records), as `model.onnx`, and beside it `model.json`: the feature
  order of its one input matrix, the input's name and precision, the task and the
  classes. An entry without an ONNX form (its pipeline did not convert) is refused,
  exit 1, with `--format mlflow` as the way out.

The directory must be new or empty; it is written beside itself and renamed into
place, never left half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.api.project import open_project
from mlcycle.api.stages import registered_entry
from mlcycle.errors import RegistryError, UsageError
from mlcycle.interop.mlflow import check_target, save_model_dir
from mlcycle.registry.features import estimator_features, recorded_features

if TYPE_CHECKING:
    from mlcycle.registry import Entry, Registry

MLFLOW: Final = "mlflow"
ONNX: Final = "onnx"
FORMATS: Final = (MLFLOW, ONNX)
ONNX_FILE: Final = "model.onnx"
ONNX_DESCRIPTION: Final = "model.json"
ONNX_DESCRIPTION_FORMAT: Final = "mlcycle/onnx-model@1"


@dataclass(frozen=True)
class ExportResult:
    """A registry entry written to `directory` in `format`."""

    project: str
    ref: str
    state: str
    format: str
    directory: Path
    files: tuple[str, ...]
    features: tuple[str, ...]
    sha256: str
    """The SHA-256 of the model the export holds: the entry's artifact (mlflow) or its
    ONNX form (onnx), as recorded in the registry."""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (`--json`, format `mlcycle/export@1`)."""
        return {
            "project": self.project,
            "ref": self.ref,
            "state": self.state,
            "export_format": self.format,
            "directory": str(self.directory),
            "files": list(self.files),
            "features": list(self.features),
            "sha256": self.sha256,
            **self.details,
        }


def export(
    path: str | Path | None = None, *, ref: str, format: str, directory: str | Path
) -> ExportResult:
    """Write the entry `ref` names (`0.1.0`, `0.1.0/2`, `current`, ...) as `format` into
    `directory` (module doc).

    UsageError (exit 2) for an unknown format or reference, or a directory in the way;
    MissingExtraError (exit 2) for `mlflow` without the [mlflow] extra; RegistryError
    (exit 1) for an entry without an ONNX form, IntegrityError (exit 1) when a stored
    file no longer matches its recorded SHA-256.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.registry import ModelRef

    if format not in FORMATS:
        raise UsageError(
            f"unknown export format {format!r}", hint=f"use one of {', '.join(FORMATS)}"
        )
    parsed = ModelRef.parse(ref)
    target = Path(directory)
    target = target if target.is_absolute() else Path.cwd() / target
    check_target(target)
    project = open_project(path)
    registry = project.registry
    entry = registered_entry(registry, parsed, ref)
    if format == ONNX:
        return _export_onnx(project.spec.name, registry, entry, target)
    return _export_mlflow(project.spec.name, registry, entry, target)


def entry_features(entry: Entry, estimator: Any) -> list[dict[str, Any]]:
    """The entry's feature schema as recorded at training (`data.features`), else the
    estimator's own column names (numbers), as stored dicts."""
    found = recorded_features(entry.data) or estimator_features(estimator) or ()
    return [f.as_dict() for f in found]


# --- internals ----------------------------------------------------------------------


def _export_mlflow(name: str, registry: Registry, entry: Entry, target: Path) -> ExportResult:
    estimator = registry.load_model(entry)  # SHA-256 and trust policy checked here
    features = entry_features(entry, estimator)
    written = save_model_dir(
        estimator,
        target,
        features=features,
        versions=entry.versions,
        # The policy the model was just loaded under: MLflow's loader trusts the same names.
        is_trusted=registry.trust_for(entry).is_trusted,
        code_root=registry.code_dir(entry) if entry.code else None,
        code_files=sorted(entry.code),
        metadata={
            "mlcycle": {
                "project": name,
                "ref": str(entry.ref),
                "sha256": entry.artifact.sha256,
                "git_commit": entry.git_commit,
                "spec_hash": entry.spec_hash,
                "features": features,
            }
        },
    )
    return ExportResult(
        project=name,
        ref=str(entry.ref),
        state=entry.state.value,
        format=MLFLOW,
        directory=target,
        files=tuple(sorted(p.relative_to(target).as_posix() for p in _files(target))),
        features=written.features,
        sha256=entry.artifact.sha256,
        details={
            "serialization": written.serialization,
            "requirements": list(written.requirements),
            "code": list(written.code),
        },
    )


def _export_onnx(name: str, registry: Registry, entry: Entry, target: Path) -> ExportResult:
    import onnx

    data = registry.load_onnx(entry)  # SHA-256 checked
    if data is None or entry.onnx is None:
        raise RegistryError(
            f"{name} {entry.ref} has no ONNX form: its pipeline did not convert to ONNX "
            "when it was registered, so the engine serves it with scikit-learn",
            hint=f"export it as an MLflow model instead: mlcycle export {entry.ref} "
            "--format mlflow DIR",
        )
    graph = onnx.load_from_string(data).graph
    (matrix,) = graph.input  # the engine's forms have one input: the feature matrix
    precision = onnx.helper.tensor_dtype_to_np_dtype(matrix.type.tensor_type.elem_type).name
    features = [f.as_dict() for f in recorded_features(entry.data) or ()]
    description = {
        "format": ONNX_DESCRIPTION_FORMAT,
        "project": name,
        "ref": str(entry.ref),
        "sha256": entry.onnx.sha256,
        "task": entry.onnx.task,
        "input": {
            "name": matrix.name,
            "dtype": precision,
            "columns": [f["name"] for f in features],
        },
        "features": features,
        "outputs": [o.name for o in graph.output],
        "classes": None if entry.onnx.classes is None else list(entry.onnx.classes),
        "note": "one row per instance, the columns in `input.columns` order; booleans as 0/1",
    }
    _write_dir(
        target,
        {
            ONNX_FILE: data,
            ONNX_DESCRIPTION: (json.dumps(description, indent=2) + "\n").encode(),
        },
    )
    return ExportResult(
        project=name,
        ref=str(entry.ref),
        state=entry.state.value,
        format=ONNX,
        directory=target,
        files=(ONNX_DESCRIPTION, ONNX_FILE),
        features=tuple(f["name"] for f in features),
        sha256=entry.onnx.sha256,
        details={"input": description["input"], "task": entry.onnx.task},
    )


def _write_dir(target: Path, files: dict[str, bytes]) -> None:
    """`files` in a fresh directory beside `target`, renamed into place when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for file, data in files.items():
            (staging / file).write_bytes(data)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()]
