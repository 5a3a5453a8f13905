"""The integration agent: fetch → train → gate → register, as one step.

The lifecycle patterns (docs/lifecycle-patterns.md) call the automaton that turns
code and data into a checked model the *integration agent*. `procure` is that
automaton, shared by every caller that makes a model unattended: `mlcycle train` (a
development generation), `mlcycle release` (generation 1 of a release) and the update
agent (the next generation from new data). Each caller chooses the release, the data
window, whether a rejected model is kept for inspection and whether a passing one
becomes current; the steps and their order are the same for all. `procure_by_hand`
is the same evaluate → gate → register for a model a person trained (interactive
procurement): no training, and the same registration (`_register`, with the ONNX form).

Order matters for "loses nothing": the data is read and the model trained and
gated before anything is written, and the registry write is the last step and
atomic, so a failure (or Ctrl-C) anywhere leaves the registry as it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlcycle.data import Window, load_dataset
from mlcycle.data.validation import DataProfile, DataRejectedError, check, merge, profile
from mlcycle.errors import GateRejectedError, MlcycleError
from mlcycle.extras import MLFLOW, require
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.redact import mask_url, scrub
from mlcycle.registry import Status
from mlcycle.registry.code import project_code
from mlcycle.registry.features import features_from_frame
from mlcycle.registry.local import utc_now, whoami
from mlcycle.registry.onnx import compile_onnx
from mlcycle.registry.runs import Outcome, Run, new_run_id
from mlcycle.registry.tracking import log_run
from mlcycle.registry.trust import TrustPolicy
from mlcycle.train import check_gate, default_metrics, infer_task, score, train
from mlcycle.train._util import plain, take

if TYPE_CHECKING:
    from mlcycle.data import Dataset, SourceInfo
    from mlcycle.registry import Entry, Registry
    from mlcycle.spec.model import Spec
    from mlcycle.train import GateResult, TrainResult


@dataclass(frozen=True)
class Comparison:
    """The current model beside the challenger: what the gate's relative conditions used.

    `same_rows`: the current model was scored on the challenger's held-out rows
    (`rows` of them), so both figures answer the same question; otherwise `metrics`
    are its registered figures (from another test split) and `note` says why.
    """

    ref: str
    metrics: Mapping[str, float]
    registered: Mapping[str, float]
    same_rows: bool
    rows: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "ref": self.ref,
            "same_rows": self.same_rows,
            "rows": self.rows,
            "metrics": plain(dict(self.metrics)),
            "registered": plain(dict(self.registered)),
            "note": self.note,
        }


@dataclass(frozen=True)
class ProcureResult:
    """What one unattended procurement produced.

    `entry` is the registered model (a candidate, or a rejected one kept for
    inspection); None only when the gate rejected it and it was not kept.
    `baseline` is the entry that was current when the gate ran (relative
    conditions were measured against it); `comparison` its figures the gate used.
    `run` is the run record of this procurement; `warnings` what the user should
    know that did not stop it (a tracking server that could not take the run).
    """

    entry: Entry | None
    training: TrainResult
    gate: GateResult
    data: SourceInfo
    baseline: Entry | None
    comparison: Comparison | None = None
    run: Run | None = None
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether the gate passed."""
        return self.gate.passed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the model itself left out)."""
        return {
            "ref": str(self.entry.ref) if self.entry else None,
            "status": self.entry.status.value if self.entry else "rejected",
            "passed": self.gate.passed,
            "metrics": self.training.as_dict()["metrics"],
            "gate": self.gate.as_dict(),
            "baseline": str(self.baseline.ref) if self.baseline else None,
            "comparison": self.comparison.as_dict() if self.comparison else None,
            "data": self.data.as_dict(),
            "training": {k: v for k, v in self.training.as_dict().items() if k not in ("metrics",)},
            "run": self.run.id if self.run else None,
            "tracking": dict(self.run.tracking) if self.run else {},
            "warnings": list(self.warnings),
        }


class ProcurementRejected(GateRejectedError):
    """The gate rejected a procured model; carries the whole result for reporting."""

    def __init__(self, result: ProcureResult, *, kept: bool) -> None:
        self.result = result
        where = (
            f"; kept as rejected {result.entry.ref} for inspection" if kept and result.entry else ""
        )
        names = ", ".join(f.condition for f in result.gate.failures())
        super().__init__(
            failures=result.gate.failures(),
            message=f"the validation gate rejected the model ({names}){where}",
        )


def procure(
    spec: Spec,
    registry: Registry,
    *,
    release: str,
    purpose: str = "train",
    window: Window | None = None,
    dataset: Dataset | None = None,
    previous: Entry | None = None,
    spec_hash: str | None = None,
    recipe_hash: str | None = None,
    git_commit: str | None = None,
    keep_rejected: bool = True,
    make_current: bool = False,
    validate: bool = False,
    extra: Mapping[str, Any] | None = None,
    verify: Callable[[TrainResult], None] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> ProcureResult:
    """Fetch the spec's data, train and evaluate its model, apply the gate, register.

    `dataset` skips the fetch (the caller already read the window). `previous`
    is the entry to warm-start from (when the spec asks for warm start and the
    estimator supports it). `recipe_hash` (of the spec's data, model and evaluation
    sections) is recorded with the entry. The gate's relative conditions compare with the
    registry's current entry. A passing model is registered as a candidate of
    `release` (current too with `make_current`). A rejected one is registered
    as rejected when `keep_rejected`, then `ProcurementRejected` (exit code 3) is
    raised either way. `verify` runs on a model that passed the gate, before it is
    registered: its error (e.g. a failed reproduction of research's results) stops
    the procurement with nothing written. With `validate`, the fetched rows are first
    checked against the current generation's data profile (`validate_data`):
    failing data raises `DataRejectedError` (exit 3) before anything is trained.

    Every call is recorded as a run (`registry.runs()`, see `registry/runs.py`),
    whatever its outcome, with `purpose` (the command: train, release, update); when
    the spec declares `tracking.mlflow`, the run is logged there too. A tracking
    server that fails leaves a warning in `ProcureResult.warnings` and a note in the
    local record; it never fails the procurement.
    """
    if spec.tracking.mlflow:
        require(MLFLOW, what="tracking.mlflow")  # before an hour of training, not after
    attempt = _Attempt(started_at=_utc_now())
    try:
        result = _procure(
            spec,
            registry,
            attempt,
            release=release,
            window=window,
            dataset=dataset,
            previous=previous,
            keep_rejected=keep_rejected,
            make_current=make_current,
            validate=validate,
            extra={
                **({"recipe_hash": recipe_hash} if recipe_hash else {}),
                **(extra or {}),
            },
            verify=verify,
            progress=progress,
            spec_hash=spec_hash,
            git_commit=git_commit,
        )
    except ProcurementRejected as rejected:
        run, warnings = _record_run(
            spec,
            registry,
            attempt,
            Outcome.REJECTED,
            release,
            purpose,
            spec_hash,
            git_commit,
            entry=rejected.result.entry,
            gate=rejected.result.gate,
            progress=progress,
        )
        rejected.result = replace(rejected.result, run=run, warnings=warnings)
        raise
    except BaseException as e:
        outcome = Outcome.REJECTED if isinstance(e, DataRejectedError) else Outcome.FAILED
        interrupted = isinstance(e, KeyboardInterrupt)
        error = "interrupted" if interrupted else f"{e}"
        # The original error is what the user must see: recording it may not replace it.
        with contextlib.suppress(Exception):
            _, warnings = _record_run(
                spec,
                registry,
                attempt,
                outcome,
                release,
                purpose,
                spec_hash,
                git_commit,
                error=error or type(e).__name__,
                progress=progress,
                track=not interrupted,  # Ctrl-C means stop now, not after a network call
            )
            # No result carries them on this path: the log is their only way out.
            for warning in warnings:
                logging.getLogger(__name__).warning("%s", warning)
        raise
    run, warnings = _record_run(
        spec,
        registry,
        attempt,
        Outcome.REGISTERED,
        release,
        purpose,
        spec_hash,
        git_commit,
        entry=result.entry,
        gate=result.gate,
        progress=progress,
    )
    return replace(result, run=run, warnings=warnings)


@dataclass
class _Attempt:
    """What one procurement got to before it ended, for its run record."""

    started_at: str
    # the same moment, to the nanosecond: run ids sort by it (`new_run_id`)
    started_ns: int = field(default_factory=time.time_ns)
    dataset: Dataset | None = None
    training: TrainResult | None = None
    data: Mapping[str, Any] | None = None


def _procure(
    spec: Spec,
    registry: Registry,
    attempt: _Attempt,
    *,
    release: str,
    window: Window | None,
    dataset: Dataset | None,
    previous: Entry | None,
    keep_rejected: bool,
    make_current: bool,
    validate: bool,
    extra: Mapping[str, Any],
    verify: Callable[[TrainResult], None] | None,
    progress: Progress,
    spec_hash: str | None = None,
    git_commit: str | None = None,
) -> ProcureResult:
    # The model code as it is when training starts: what is stored is what was imported.
    code = project_code(spec)
    if dataset is None:
        dataset = load_dataset(spec, window or Window(), progress=progress)
    attempt.dataset = dataset
    if validate:
        validate_data(spec, registry.current(), dataset)
    previous_model = None
    if previous is not None and spec.update.warm_start:
        with step(progress, f"load {previous.ref} to continue from"):
            previous_model = registry.load_model(previous)
    training = train(
        spec,
        dataset.X,
        dataset.y,
        ordinal=dataset.ordinal,
        previous_model=previous_model,
        progress=progress,
    )
    attempt.training = training
    baseline = registry.current()
    comparison = None
    if baseline is not None:
        comparison = compare_with_current(registry, baseline, training, dataset, progress)
    gate = check_gate(
        spec.evaluation.gate, training.metrics, dict(comparison.metrics) if comparison else None
    )
    if gate.passed and verify is not None:
        verify(training)
    entry = None
    if gate.passed or keep_rejected:
        with step(progress, f"register the model in {release}"):
            data = data_record(spec, dataset, previous if previous_model else None)
            attempt.data = data
            entry = _register(
                spec,
                registry,
                training.model,
                release=release,
                task=training.task,
                sample=dataset.X,
                metrics=training.metrics,
                gate=gate,
                data=data,
                spec_hash=spec_hash,
                git_commit=git_commit,
                extra={
                    **_training_record(training, previous),
                    # recipe_hash: what an update compares with where git cannot tell (no
                    # repository); the caller's extras.
                    **extra,
                },
                make_current=make_current,
                code=code,
            )
    result = ProcureResult(
        entry=entry,
        training=training,
        gate=gate,
        data=dataset.info,
        baseline=baseline,
        comparison=comparison,
    )
    if not gate.passed:
        raise ProcurementRejected(result, kept=entry is not None)
    return result


def _register(
    spec: Spec,
    registry: Registry,
    model: Any,
    *,
    release: str,
    task: str,
    sample: Any,
    metrics: Mapping[str, float],
    gate: GateResult | None,
    data: Mapping[str, Any],
    spec_hash: str | None,
    git_commit: str | None,
    extra: Mapping[str, Any],
    make_current: bool,
    code: Mapping[str, bytes],
) -> Entry:
    """Register `model` in `release`: a candidate (current with `make_current`) when no
    gate rejected it, else a rejected entry kept for inspection."""
    passed = gate is None or gate.passed
    return registry.register(
        model,
        release=release,
        metrics=metrics,
        gate=gate.as_dict() if gate is not None else None,
        data=data,
        spec_hash=spec_hash,
        git_commit=git_commit,
        procurement=spec.lifecycle.procurement,
        status=Status.CANDIDATE if passed else Status.REJECTED,
        extra=extra,
        make_current=make_current and passed,
        code=code,
        # Converted once here, so that serving never converts (nor imports sklearn);
        # only a model that may be served is worth converting. Verified on the rows
        # the model was trained (or evaluated) on, when there are any.
        onnx=compile_onnx(model, features=data.get("features"), task=task, sample=sample)
        if passed
        else None,
    )


@dataclass(frozen=True)
class HandProcurement:
    """A model trained by hand, as `procure_by_hand` registered it.

    `metrics` and `gate` are empty and None when no data is declared (nothing to
    evaluate it on); `warnings` say what the user should know about both cases.
    """

    entry: Entry
    metrics: Mapping[str, float]
    gate: GateResult | None
    data: SourceInfo | None
    warnings: tuple[str, ...] = ()


def procure_by_hand(
    spec: Spec,
    registry: Registry,
    model: Any,
    *,
    release: str,
    name: str,
    location: str,
    spec_hash: str | None = None,
    git_commit: str | None = None,
    extra: Mapping[str, Any] | None = None,
    verify: Callable[[Any], None] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> HandProcurement:
    """Evaluate → gate → register for interactive procurement: `model` is one a person
    trained (`name` its file, `location` where it came from, as recorded).

    With declared data, the model is scored on all of it (which may include the rows
    it was trained on: a warning says so) and gated against the current entry's
    registered figures (`GateRejectedError`, exit 3, with nothing written). Without,
    it is registered unevaluated, with a warning. `verify` runs on a model that
    passed, before it is registered (e.g. the reproduction of research's results).
    It becomes the current candidate of `release`. No run is recorded: nothing was
    trained here.
    """
    metrics: dict[str, float] = {}
    gate = None
    info = None
    sample = None
    warnings = []
    data: dict[str, Any] = {"location": location, "kind": "model file", "reproducible": False}
    if spec.data.source is not None or spec.data.dump is not None:
        dataset = load_dataset(spec, progress=progress)
        sample = dataset.X
        names = spec.evaluation.metrics or default_metrics(infer_task(model, spec.model), dataset.y)
        with step(progress, f"evaluate {name} on {dataset.n_rows} rows"):
            metrics = score(model, dataset.X, dataset.y, names)
        warnings.append(
            "the metrics are measured on the declared data, which may include the rows the "
            "model was trained on: they can flatter it"
        )
        current = registry.current()
        gate = check_gate(spec.evaluation.gate, metrics, dict(current.metrics) if current else None)
        gate.raise_if_rejected()
        data = data_record(spec, dataset)
        info = dataset.info
    else:
        warnings.append("no data is declared, so the model was released without any evaluation")
    if verify is not None:
        verify(model)
    with step(progress, f"register {release}/1"):
        entry = _register(
            spec,
            registry,
            model,
            release=release,
            task=infer_task(model, spec.model),
            sample=sample,
            metrics=metrics,
            gate=gate,
            data=data,
            spec_hash=spec_hash,
            git_commit=git_commit,
            extra=extra or {},
            make_current=True,
            code=project_code(spec),
        )
    return HandProcurement(
        entry=entry, metrics=metrics, gate=gate, data=info, warnings=tuple(warnings)
    )


def _utc_now() -> str:
    return utc_now()


def _record_run(
    spec: Spec,
    registry: Registry,
    attempt: _Attempt,
    outcome: Outcome,
    release: str,
    purpose: str,
    spec_hash: str | None,
    git_commit: str | None,
    *,
    entry: Entry | None = None,
    gate: GateResult | None = None,
    error: str | None = None,
    progress: Progress = NULL_PROGRESS,
    track: bool = True,
) -> tuple[Run | None, tuple[str, ...]]:
    """Write the run record, then log it to the tracking server the spec declares.

    Neither may hide what the procurement did: a run that cannot be recorded is
    logged and reported as a warning, as is a tracking server that fails (the
    local record then says why in `tracking.mlflow.error`).
    """
    training = attempt.training
    run = Run(
        id=new_run_id(attempt.started_ns),
        project=spec.name,
        purpose=purpose,
        started_at=attempt.started_at,
        finished_at=_utc_now(),
        outcome=outcome,
        release=release,
        generation=entry.generation if entry is not None else None,
        data=attempt.dataset.info.as_dict() if attempt.dataset is not None else {},
        spec_hash=spec_hash,
        git_commit=git_commit,
        params=_run_params(spec, training),
        metrics=dict(training.metrics) if training is not None else {},
        gate=gate.as_dict() if gate is not None else None,
        tuning=training.tuning.as_dict() if training and training.tuning else None,
        fit_seconds=training.fit_seconds if training is not None else None,
        steps=training.steps if training is not None else (),
        error=error,
        created_by=whoami(),
    )
    warnings: list[str] = []
    try:
        store = registry.runs()
        store.save(run)
    except MlcycleError as e:
        return None, (f"run {run.id} was not recorded: {e}",)
    # The caller shows the warnings it is given; logging them here as well printed each
    # one twice, once bare (Python's last-resort handler) and once as `warning:`.
    if spec.tracking.mlflow and track:
        run, warning = _track(spec, registry, attempt, run, entry, progress)
        if warning:
            warnings.append(warning)
        try:
            store.save(run)
        except MlcycleError as e:  # the first record stands; only the server's answer is lost
            warnings.append(f"the tracking server's answer was not recorded: {e}")
    return run, tuple(warnings)


def _track(
    spec: Spec,
    registry: Registry,
    attempt: _Attempt,
    run: Run,
    entry: Entry | None,
    progress: Progress,
) -> tuple[Run, str | None]:
    """Log `run` to the spec's MLflow server; the run with its answer, and a warning."""
    url = str(spec.tracking.mlflow)
    training = attempt.training
    features: list[dict[str, Any]] = []
    if attempt.data is not None:
        features = list(attempt.data.get("features") or ())
    elif attempt.dataset is not None and training is not None:
        features = feature_schema(attempt.dataset.X)
    progress.start("log the run to MLflow")
    try:
        trust = registry.trust_for(entry) if entry is not None else None
        if trust is None and training is not None:
            trust = TrustPolicy.for_project(spec.root, spec.model.code)
        # The model code as the registry stores it (the entry's copy when there is one),
        # shipped the way `export --format mlflow` ships it.
        if entry is not None:
            code_root, code_files = registry.code_dir(entry), sorted(entry.code)
        else:
            code_root, code_files = spec.root, sorted(project_code(spec))
        answer = log_run(
            url,
            run,
            model=training.model if training is not None else None,
            features=features,
            trust=trust,
            versions=entry.versions if entry is not None else None,
            code_root=code_root if code_files else None,
            code_files=code_files,
        )
    except Exception as e:  # whatever the client raises, the model stands
        said = str(e) if isinstance(e, MlcycleError) else scrub(f"{type(e).__name__}: {e}", url)
        return run.with_tracking("mlflow", {"url": mask_url(url), "error": said}), (
            f"run {run.id} is recorded locally but not in MLflow: {said}"
        )
    finally:
        progress.done()
    return run.with_tracking("mlflow", answer), None


def _run_params(spec: Spec, training: TrainResult | None) -> dict[str, Any]:
    """The declared step parameters (`STEP__PARAM`, as tuning names them), tuned ones over."""
    params: dict[str, Any] = {}
    lowered = [s.class_path.rpartition(".")[2].lower() for s in spec.model.pipeline]
    for i, declared in enumerate(spec.model.pipeline):
        name = lowered[i]
        if lowered.count(name) > 1:  # make_pipeline numbers repeated steps
            name = f"{name}-{lowered[: i + 1].count(name)}"
        for key, value in declared.params.items():
            params[f"{name}__{key}"] = value
    if training is not None and training.tuning is not None:
        params.update(training.tuning.best_params)
    return params


def compare_with_current(
    registry: Registry,
    current: Entry,
    training: TrainResult,
    dataset: Dataset,
    progress: Progress = NULL_PROGRESS,
) -> Comparison:
    """Score the current model on the challenger's held-out rows, for a fair gate.

    The challenger's metrics come from its own test split; the current model's
    registered ones from another. Where it can, the current model is scored on the
    very rows the challenger was held out on. It falls back to the registered figures,
    saying why, when there is no single held-out set (cross-validation), when the
    current model was trained on some of those rows (its score would be flattered),
    when that cannot be told, or when it cannot be loaded or scored on them (another
    feature set, say).
    """
    ref = str(current.ref)
    registered = dict(current.metrics)
    index = list(training.evaluation.test_index)

    def fallback(why: str) -> Comparison:
        return Comparison(
            ref=ref,
            metrics=registered,
            registered=registered,
            same_rows=False,
            note=f"{why}; the gate compares with {ref}'s registered figures, "
            "measured on other rows",
        )

    if not index:
        return fallback(f"{training.evaluation.split} has no single held-out set")
    seen = _rows_seen(current, dataset, index)
    if seen is None:
        return fallback(f"whether {ref} was trained on the held-out rows cannot be told")
    if seen:
        return fallback(
            f"{ref} was trained on {seen} of the {len(index)} held-out rows (its score on "
            "them would be flattered)"
        )
    metrics = tuple(training.metrics)
    with step(progress, f"score {ref} on the same {len(index)} held-out rows"):
        try:
            model = registry.load_model(current)
            scores = score(model, take(dataset.X, index), take(dataset.y, index), metrics)
        except (MlcycleError, ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
            return fallback(f"{ref} cannot be scored on these rows ({_first_line(e)})")
    return Comparison(
        ref=ref, metrics=scores, registered=registered, same_rows=True, rows=len(index)
    )


def _rows_seen(current: Entry, dataset: Dataset, index: list[int]) -> int | None:
    """How many of the rows at `index` lie in the window `current` was trained on.

    None when it cannot be told: no ordinal column, or no watermark recorded.
    """
    if dataset.ordinal is None or current.data.get("ordinal") is None:
        return None
    watermark = current.data.get("watermark")
    if watermark is None:
        return None
    lower = (current.data.get("window") or {}).get("lower")
    ordinal = dataset.ordinal.iloc[index]
    try:
        inside = ordinal <= _like(watermark, ordinal)
        if lower is not None:
            inside &= ordinal >= _like(lower, ordinal)
        return int(inside.sum())
    except (TypeError, ValueError):
        return None


def _like(bound: Any, ordinal: Any) -> Any:
    """A recorded window bound (JSON) in the type of the ordinal column."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(ordinal.dtype):
        value = pd.Timestamp(bound)
        tz = getattr(ordinal.dtype, "tz", None)
        if tz is not None and value.tzinfo is None:
            value = value.tz_localize(tz)
        return value
    return bound


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def data_record(spec: Spec, dataset: Dataset, continued: Entry | None = None) -> dict[str, Any]:
    """What the registry keeps about the training data: source, window, watermark, columns.

    `features` (name and JSON type, in the model's column order) is what the
    serving engine and bundles describe as the model's input. `profile` is the
    features' and the label's schema and statistics the next generation's data is
    checked against; a model `continued` from another (warm start) has seen that
    one's data too.
    """
    learned = profile(_with_label(dataset, spec.data.label))
    before = DataProfile.from_dict(continued.data.get("profile")) if continued else None
    return {
        **dataset.info.as_dict(),
        "label": spec.data.label,
        "key": spec.data.key,
        "features": feature_schema(dataset.X),
        "profile": (merge(before, learned) if before else learned).as_dict(),
    }


def validate_data(spec: Spec, current: Entry | None, dataset: Dataset) -> None:
    """DataRejectedError (exit 3) when the new rows stray from `current`'s training data.

    The rows checked are those after `current`'s watermark (the ones it has not
    seen), or all fetched rows when that cannot be told. Columns the spec's
    `data.features` leaves out or adds are not anomalies. Nothing to check against
    (no current model, or one registered without a profile), validation switched
    off or no new rows: it passes.
    """
    if current is None or not spec.data.validation.enabled:
        return
    learned = DataProfile.from_dict(current.data.get("profile"))
    if learned is None:
        return
    label = spec.data.label
    # Generations registered before the label was profiled have no profile of it.
    known = label is not None and learned.column(label) is not None
    frame = _with_label(dataset, label) if known else dataset.X
    watermark = current.data.get("watermark")
    if dataset.ordinal is not None and watermark is not None:
        # Another ordinal type than recorded: every row is checked.
        with contextlib.suppress(TypeError, ValueError):
            frame = frame[(dataset.ordinal > _like(watermark, dataset.ordinal)).to_numpy()]
    if not len(frame):
        return
    if spec.data.features is not None:
        # The spec names the columns (a missing one would have failed the fetch): one it
        # adds or leaves out is a change of the model, for `train` to try, not of the data.
        names = {str(c) for c in frame.columns}
        learned = replace(learned, columns=tuple(c for c in learned.columns if c.name in names))
        frame = frame[[c for c in frame.columns if learned.column(str(c)) is not None]]
    anomalies = check(learned, frame, spec.data.validation)
    if anomalies:
        raise DataRejectedError(
            anomalies, against=str(current.ref), rows=len(frame), data=dataset.info.as_dict()
        )


def _with_label(dataset: Dataset, label: str | None) -> Any:
    """The features and the label in one frame: a label that changes (new classes, a
    shifted range) is as much a data anomaly as a feature that does."""
    if label is None or label in dataset.X.columns:
        return dataset.X
    return dataset.X.assign(**{label: dataset.y.to_numpy()})


def feature_schema(frame: Any) -> list[dict[str, Any]]:
    """`[{"name", "type", "nullable"}]` of a frame's columns, with JSON types.

    The serving engine's own reading of a training frame, so that what the registry
    records is exactly what a served model will accept.
    """
    return [f.as_dict() for f in features_from_frame(frame)]


def _training_record(training: TrainResult, previous: Entry | None) -> dict[str, Any]:
    record = {k: v for k, v in training.as_dict().items() if k != "metrics"}
    if previous is not None:
        record["previous"] = str(previous.ref)
    return {"training": record}
