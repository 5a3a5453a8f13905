"""Logging runs to an MLflow tracking server (`tracking: {mlflow: URL}` in the spec).

Each run becomes an MLflow run in the experiment named after the project: its
parameters, held-out metrics (and fit time, tuning's best score), tags (release,
generation, data window, spec hash, git commit, outcome, mlcycle's run id) and,
when a model was trained, the model as an MLflow model, written by the same
`interop.mlflow.save_model_dir` as `export --format mlflow` (sklearn flavor, skops).
Every tuning candidate is a child run (MLflow's own convention for searches: tag
`mlflow.parentRunId`) with its parameters and its cross-validated mean/std score and
fit time.

The local run record is written first and stays the record of truth: a tracking
server that is down or refuses the run raises `TrackingError`, which the caller
turns into a warning and a note in the local record (`tracking.mlflow.error`),
never a lost run nor a failed release. Retries are bounded (two, unless the user
set `MLFLOW_HTTP_REQUEST_MAX_RETRIES`), so a down server costs seconds, not
MLflow's default four minutes.

Needs the `[mlflow]` extra (mlflow-skinny); mlflow is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import RuntimeFailure
from mlcycle.extras import MLFLOW, require
from mlcycle.interop.mlflow import save_model_dir
from mlcycle.redact import mask_url, scrub
from mlcycle.registry.artifacts import library_versions
from mlcycle.registry.runs import Outcome, Run

if TYPE_CHECKING:
    from mlcycle.registry.trust import TrustPolicy

# Where the model goes inside the MLflow run's artifacts: `runs:/RUN_ID/model`.
MODEL_PATH: Final = "model"
# MLflow's limits: a param value holds at most 6000 characters; keys 250.
_MAX_VALUE: Final = 6000
# What a down server may cost: bounded retries and timeouts, unless the user chose.
_CLIENT_DEFAULTS: Final = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # The MLflow client writes "View run ... at URL" on stdout when a run ends: stdout is
    # the CLI's (and `--json`'s) alone. The URL is in the run record instead.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
_STATUS: Final = {
    Outcome.REGISTERED: "FINISHED",
    Outcome.REJECTED: "FINISHED",  # the run itself finished; the tag says what the gate said
    Outcome.FAILED: "FAILED",
}


class TrackingError(RuntimeFailure):
    """The tracking server could not take the run (the local record keeps it)."""


def log_run(
    url: str,
    run: Run,
    *,
    model: Any = None,
    features: Sequence[Mapping[str, Any]] = (),
    trust: TrustPolicy | None = None,
    versions: Mapping[str, str] | None = None,
    code_root: Path | None = None,
    code_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Log `run` (and `model`, when given with its `trust` policy) to the MLflow server at
    `url`.

    The model is written as `export --format mlflow` writes it (`save_model_dir`):
    `features` its schema, `versions` the library versions it was made with (this
    Python's by default), `code_files` its own code relative to `code_root`.

    Returns what the local record keeps of it: `{"url", "experiment_id", "run_id",
    "model_uri"}`. Raises MissingExtraError without the [mlflow] extra and
    TrackingError when the server cannot be reached or refuses the run.
    """
    require(MLFLOW, what="tracking.mlflow")
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    shown = mask_url(url)
    with _bounded_client():
        try:
            client = MlflowClient(tracking_uri=url)
            experiment = client.get_experiment_by_name(run.project)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(run.project)
            )
            started = _millis(run.started_at)
            parent = client.create_run(
                experiment_id, start_time=started, tags=_tags(run), run_name=run.id
            )
            run_id = parent.info.run_id
            metrics = [
                Metric(k, v, started, 0) for k, v in _metrics(run).items() if math.isfinite(v)
            ]
            params = [Param(k, v) for k, v in _params(run.params).items()]
            client.log_batch(run_id, metrics=metrics, params=params)
            for n, trial in enumerate((run.tuning or {}).get("trials") or ()):
                _log_trial(client, experiment_id, run, run_id, n, trial, started)
            model_uri = None
            if model is not None and trust is not None:
                with tempfile.TemporaryDirectory(prefix="mlcycle-mlflow-") as tmp:
                    written = save_model_dir(
                        model,
                        Path(tmp) / MODEL_PATH,
                        features=features,
                        versions=versions if versions is not None else library_versions(),
                        is_trusted=trust.is_trusted,
                        code_root=code_root,
                        code_files=code_files,
                        metadata={"mlcycle_run": run.id, "release": run.release, "ref": run.ref},
                    )
                    client.log_artifacts(run_id, str(written.directory), MODEL_PATH)
                model_uri = f"runs:/{run_id}/{MODEL_PATH}"
            client.set_terminated(run_id, _STATUS[run.outcome], end_time=_millis(run.finished_at))
        except MlflowException as e:
            said = scrub(str(e.message), url)
            if "Failed to establish a new connection" in said or "Max retries" in said:
                # MLflow wraps the connection error in a paragraph: say it in a line.
                raise TrackingError(
                    f"the MLflow tracking server {shown} is unreachable (no connection)",
                    hint="the run is recorded locally (`mlcycle runs`); check tracking.mlflow",
                ) from e
            raise TrackingError(
                f"the MLflow tracking server {shown} refused run {run.id}: {said}",
                hint="the run is recorded locally (`mlcycle runs`)",
            ) from e
        except OSError as e:  # requests' connection errors are OSErrors
            raise TrackingError(
                f"the MLflow tracking server {shown} is unreachable: {type(e).__name__}",
                hint="the run is recorded locally (`mlcycle runs`); check tracking.mlflow",
            ) from e
    return {
        "url": shown,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "run_url": f"{shown.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
        **({"model_uri": model_uri} if model_uri else {}),
    }


def _log_trial(
    client: Any,
    experiment_id: str,
    run: Run,
    parent_id: str,
    n: int,
    trial: Mapping[str, Any],
    started: int,
) -> None:
    from mlflow.entities import Metric, Param

    tags = {
        "mlflow.parentRunId": parent_id,
        "mlcycle.run_id": run.id,
        "mlcycle.candidate": str(n),
    }
    child = client.create_run(
        experiment_id, start_time=started, tags=tags, run_name=f"{run.id}/candidate-{n}"
    )
    figures = {
        "cv_mean_score": trial.get("mean_score"),
        "cv_std_score": trial.get("std_score"),
        "fit_seconds": trial.get("fit_seconds"),
        "rank": trial.get("rank"),
        "round": trial.get("round"),
        "resources": trial.get("resources"),
    }
    metrics = [
        Metric(k, float(v), started, 0)
        for k, v in figures.items()
        if v is not None and math.isfinite(float(v))
    ]
    params = [Param(k, v) for k, v in _params(trial.get("params") or {}).items()]
    client.log_batch(child.info.run_id, metrics=metrics, params=params)
    client.set_terminated(child.info.run_id, "FINISHED")


def _tags(run: Run) -> dict[str, str]:
    tags = {
        "mlcycle.run_id": run.id,
        "mlcycle.purpose": run.purpose,
        "mlcycle.outcome": run.outcome.value,
        "mlcycle.data_window": json.dumps(run.data.get("window") or {}, sort_keys=True),
        "mlcycle.data_rows": str(run.data.get("rows", "")),
    }
    if run.release is not None:
        tags["mlcycle.release"] = run.release
    if run.generation is not None:
        tags["mlcycle.generation"] = str(run.generation)
    if run.spec_hash:
        tags["mlcycle.spec_hash"] = run.spec_hash
    if run.git_commit:
        tags["mlcycle.git_commit"] = run.git_commit
        tags["mlflow.source.git.commit"] = run.git_commit  # MLflow's own name, shown in its UI
    if run.error:
        tags["mlcycle.error"] = run.error[:_MAX_VALUE]
    return tags


def _metrics(run: Run) -> dict[str, float]:
    found = {k: float(v) for k, v in run.metrics.items()}
    if run.fit_seconds is not None:
        found["fit_seconds"] = float(run.fit_seconds)
    best = (run.tuning or {}).get("best_score")
    if best is not None:
        found["tuning_best_score"] = float(best)
    return found


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(k)[:250]: (v if isinstance(v, str) else json.dumps(v))[:_MAX_VALUE]
        for k, v in params.items()
    }


def _millis(stamp: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


@contextlib.contextmanager
def _bounded_client() -> Iterator[None]:
    added = [k for k in _CLIENT_DEFAULTS if k not in os.environ]
    for key in added:
        os.environ[key] = _CLIENT_DEFAULTS[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
