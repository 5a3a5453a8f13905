"""A model a person trained and saved: which file it is, and reading it under the trust policy.

Interactive procurement ships a file made by hand: a skops file, an MLflow model
directory (`MLmodel` with the sklearn flavor), or, only when the user vouches for
that very file (`--trust-pickle`), a pickle. Reading a skops file checks every type
it names against the project's `TrustPolicy`, as every model load does
(`artifacts.py`); unpickling runs whatever code the file holds, so it is refused
unless asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import UsageError
from mlcycle.interop.mlflow import is_model_dir, read_model_dir
from mlcycle.registry.artifacts import SKOPS, load_model, load_untrusted_pickle, sha256_file

if TYPE_CHECKING:
    from mlcycle.registry.trust import TrustPolicy
    from mlcycle.spec.model import Spec

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def model_file(spec: Spec, given: str | Path | None) -> Path:
    """The model file an interactive release reads: `given` (--model, relative to the
    working directory), else the spec's `release.model`; UsageError when there is none
    or it does not exist."""
    if given is not None:
        path = Path(given)
        path = path if path.is_absolute() else Path.cwd() / path
    elif spec.release.model is not None:
        path = spec.resolve(spec.release.model)
    else:
        raise UsageError(
            f"{spec.name} procures models interactively but names no model file",
            hint="pass --model PATH, or set release.model in lifecycle.yaml",
        )
    if not path.is_file() and not is_model_dir(path):
        hint = "train and save the model first (e.g. python train_by_hand.py)"
        if path.is_dir():
            hint = (
                "name a model file (.skops), or an MLflow model directory (one that holds "
                "an MLmodel file)"
            )
        raise UsageError(f"{path}: no such model file", hint=hint)
    return path


def read_model_file(path: Path, *, trust: TrustPolicy, trust_pickle: bool = False) -> Any:
    """A model saved by hand: skops, checked against `trust`; a pickle only with `trust_pickle`.

    Unpickling runs whatever code the file holds, so a pickle is refused
    (UsageError) unless the user vouches for this very file with --trust-pickle.
    An MLflow model directory (`MLmodel` with the sklearn flavor) is read the same
    way: its skops file under `trust` (never under the trusted types its `MLmodel`
    lists: anyone can write those), its pickle or cloudpickle only with `trust_pickle`.
    """
    if is_model_dir(path):
        flavor = read_model_dir(path)
        if flavor.is_pickle:
            check_pickle(path, trust_pickle)
            return load_untrusted_pickle(flavor.model_file)
        return load_model(
            flavor.model_file,
            sha256=sha256_file(flavor.model_file),
            format=SKOPS,
            trust=trust,
        )
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        check_pickle(path, trust_pickle)
        return load_untrusted_pickle(path)
    if suffix != ".skops":
        raise UsageError(
            f"{path}: unknown model file type {suffix or '(none)'}",
            hint="save the model with skops.io.dump(model, 'model.skops')",
        )
    return load_model(path, sha256=sha256_file(path), format=SKOPS, trust=trust)


def check_pickle(path: Path, trust_pickle: bool) -> None:
    """UsageError for a pickle model the user did not vouch for with --trust-pickle."""
    if is_pickle(path) and not trust_pickle:
        what = "model file"
        hint = (
            "save the model as skops instead (skops.io.dump(model, 'model.skops')) and "
            "release that file; only if you made this very file yourself, pass --trust-pickle"
        )
        if is_model_dir(path):
            what = f"{read_model_dir(path).serialization} MLflow model"
            hint = (
                "save it with mlflow.sklearn.save_model(model, DIR, serialization_format="
                "'skops') and release that directory; only if you made this very model "
                "yourself, pass --trust-pickle"
            )
        raise UsageError(
            f"{path}: refusing to unpickle a {what}: loading a pickle runs any code it holds",
            hint=hint,
        )


def is_pickle(path: Path) -> bool:
    """Whether loading the model at `path` means unpickling: a pickle file, or an MLflow
    model directory whose sklearn flavor is pickle or cloudpickle."""
    if is_model_dir(path):
        return read_model_dir(path).is_pickle
    return path.suffix.lower() in PICKLE_SUFFIXES
