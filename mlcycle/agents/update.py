"""The training agent of an autonomous lifecycle: new generations when a trigger fires.

`check_triggers` looks at the spec's triggers against the current model:

- `every`: the current generation is older than this;
- `new_rows`: at least this many rows arrived after its watermark;
- `metric`: its production metric (served predictions joined with outcomes)
  meets the condition, e.g. `roc_auc < 0.9`, on enough outcomes to trust;
- `drift`: a feature's PSI between its training data and served inputs
  exceeds the threshold.

`update` runs the integration agent when any fired (or when forced): the
increment since the watermark (warm-starting from the current generation where
the estimator can), every row, or the most recent `window` rows; gated
against the current model; registered as the next generation of the current
release and made current when it passes. A dynamic serving engine following
that release picks it up by itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.agents.integration import procure
from mlcycle.data import Window, count_new_rows, load_dataset, next_window
from mlcycle.data.validation import DataRejectedError, DataRejection
from mlcycle.data.window import plain_value
from mlcycle.errors import GitError, RegistryError, UsageError
from mlcycle.gitops import Repo
from mlcycle.progress import NULL_PROGRESS, Progress
from mlcycle.registry import Status
from mlcycle.registry.code import code_drift
from mlcycle.spec import (
    find_spec,
    parse_spec_text,
    recipe_differences,
    recipe_hash,
    spec_hash,
)
from mlcycle.spec.loader import require_document
from mlcycle.spec.model import Update

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mlcycle.agents.integration import ProcureResult
    from mlcycle.agents.production import ProductionReport
    from mlcycle.registry import Entry, Registry
    from mlcycle.spec.model import Spec


@dataclass(frozen=True)
class TriggerCheck:
    """One trigger: whether it fired, and the figures it was decided on."""

    name: str
    fired: bool
    detail: str
    value: Any = None
    threshold: Any = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row."""
        return {
            "trigger": self.name,
            "fired": self.fired,
            "detail": self.detail,
            "value": self.value,
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class UpdateResult:
    """What one run of the agent found and did."""

    current: Entry
    checks: tuple[TriggerCheck, ...]
    forced: bool
    procured: ProcureResult | None
    data_mode: str
    waiting_on: Entry | None = None
    """A rejected generation trained on the rows a new one would see: nothing was trained."""
    waiting_on_data: DataRejection | None = None
    """A data validation refusal of the rows a new generation would see: nothing was trained."""
    forced_note: str | None = None
    """With --force, how the data was chosen when it differs from `data_mode` (no new rows)."""
    waiting_for_rows: str | None = None
    """A trigger fired but the increment holds no row yet (`update.data: increment`): what
    the agent waits for. Nothing was trained; the next run with new rows trains."""

    @property
    def retrained(self) -> bool:
        """Whether a new generation was trained."""
        return self.procured is not None

    @property
    def reason(self) -> str:
        """Why the agent did or did not train, in one sentence."""
        fired = [c for c in self.checks if c.fired]
        if self.forced:
            return "forced with --force" + (f": {self.forced_note}" if self.forced_note else "")
        if self.waiting_on is not None:
            watermark = self.waiting_on.data.get("watermark")
            ordinal = self.waiting_on.data.get("ordinal")
            return (
                f"waiting for new rows since rejection of {self.waiting_on.ref} (no rows after "
                f"{ordinal} {watermark}; it fired on "
                + "; ".join(f"{c.name}: {c.detail}" for c in fired)
                + ")"
            )
        if self.waiting_for_rows is not None:
            return (
                f"waiting for new rows ({self.waiting_for_rows}; it fired on "
                + "; ".join(f"{c.name}: {c.detail}" for c in fired)
                + ")"
            )
        if self.waiting_on_data is not None:
            refused = self.waiting_on_data
            return (
                f"waiting for new rows since data validation refused {refused.rows} rows "
                f"against {refused.against} ({refused.conditions}; no rows after "
                f"{refused.data.get('ordinal')} {refused.data.get('watermark')}; it fired on "
                + "; ".join(f"{c.name}: {c.detail}" for c in fired)
                + ")"
            )
        if fired:
            return "; ".join(f"{c.name}: {c.detail}" for c in fired)
        return "no trigger fired"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "current": str(self.current.ref),
            "triggers": [c.as_dict() for c in self.checks],
            "forced": self.forced,
            "retrained": self.retrained,
            "reason": self.reason,
            "data": self.data_mode,
            "waiting_since_rejection": str(self.waiting_on.ref) if self.waiting_on else None,
            "waiting_since_data_rejection": (
                self.waiting_on_data.as_dict() if self.waiting_on_data else None
            ),
            "waiting_for_rows": self.waiting_for_rows,
            "result": self.procured.as_dict() if self.procured else None,
        }


def require_autonomous(spec: Spec) -> None:
    """UsageError for a release-forced lifecycle: new models come only with releases."""
    if spec.lifecycle.update is not Update.AUTONOMOUS:
        raise UsageError(
            f"{spec.name} updates only by release (lifecycle.update: release-forced): "
            "the training agent does not run for it",
            hint="make a new release (mlcycle release), or set lifecycle.update: autonomous "
            "and declare update.triggers",
        )


@dataclass(frozen=True)
class ReleaseDeparture:
    """How the working project differs from what its release was made from."""

    release: str
    commit: str
    spec: tuple[str, ...]
    """Keys of the training recipe (`model.pipeline`, `evaluation.gate`) that differ."""
    code: tuple[str, ...]
    """Project model code files that differ from the release's commit."""

    def describe(self) -> str:
        """One sentence naming what changed."""
        parts = []
        if self.spec:
            parts.append(f"the spec changes {', '.join(self.spec)}")
        if self.code:
            parts.append(f"the model code changes {', '.join(self.code)}")
        return " and ".join(parts)


def model_code_paths(spec: Spec) -> list[Path]:
    """Project files the model's code comes from.

    The top-level module or package, under the spec's folder, of every name the
    pipeline steps and the entry point import (`features.AddRatio` → `features.py`
    or `features/`); names from installed libraries have none.
    """
    names = [step.class_path for step in spec.model.pipeline]
    if spec.model.entrypoint:
        names.append(spec.model.entrypoint.split(":", 1)[0])
    paths: dict[Path, None] = {}
    for name in names:
        top = name.split(".", 1)[0]
        for candidate in (spec.root / f"{top}.py", spec.root / top):
            if candidate.exists():
                paths[candidate] = None
    return list(paths)


def release_departure(spec: Spec, spec_file: Path, release: Entry) -> ReleaseDeparture | None:
    """What of the training recipe and model code differs from `release`'s commit; None if nothing.

    "Differs" is about the model, not the file: the `data` (less `data.outcomes`),
    `model` and `evaluation` sections of the spec compared as data (comments, layout,
    triggers, deployment and the other operational sections may change between
    releases), and the project's model code (see `model_code_paths`) compared as
    content with the release's commit, uncommitted edits included. UsageError when
    the release's commit cannot be read, so that nothing unverified is published.
    """
    commit = release.git_commit
    if commit is None:
        return None  # a release made outside git: nothing to compare with
    working = require_document(find_spec(spec_file)).data
    try:
        repo = Repo.find(spec.root)
    except GitError as e:
        # No repository here, or no git program (the engine image's agent CronJob):
        # the recipe recorded with the release stands in for its commit; model code
        # cannot be compared without git.
        return _departure_without_git(spec, release, commit, recipe_hash(working), e)
    with repo:
        released = repo.file_at(commit, spec_file)
        if released is None:
            # The commit is not here (a shallow clone): the hashes recorded with the
            # release stand in for its spec; its code is compared below by its own hashes.
            recorded = release.extra.get("recipe_hash")
            if recorded != recipe_hash(working) and release.spec_hash != spec_hash(spec_file):
                raise UsageError(
                    f"{spec.name}: cannot read the spec of release {release.release} at "
                    f"commit {commit[:12]}, so this update cannot be checked against it",
                    hint="fetch that commit (e.g. `git fetch --unshallow --tags`) and run again",
                )
            changed_spec: list[str] = []
        else:
            changed_spec = recipe_differences(
                parse_spec_text(released, file=f"{commit[:12]}:{spec_file.name}"), working
            )
        # Declared model code is compared with the copy the release stored (no git
        # needed); what the pipeline imports beyond it, with the release's commit.
        stored = _recorded_code_departure(spec, release) or ()
        imported = [p for p in model_code_paths(spec) if not _declared(spec, p)]
        changed_code = list(stored)
        if imported and released is not None:
            try:
                changed_code += repo.changed_since(commit, imported)
            except GitError as e:
                raise UsageError(
                    f"{spec.name}: cannot compare the model code with release "
                    f"{release.release}: {e}",
                    hint="fetch the release's commit (`git fetch --tags`) and run again",
                ) from e
        changed_code = sorted(set(changed_code))
    if not changed_spec and not changed_code:
        return None
    return ReleaseDeparture(
        release=release.release, commit=commit, spec=tuple(changed_spec), code=tuple(changed_code)
    )


def _declared(spec: Spec, path: Path) -> bool:
    """Whether `path` is (inside) one of the spec's `model.code` entries."""
    for entry in spec.model.code:
        declared = spec.root / entry
        if path == declared or declared in path.parents:
            return True
    return False


def _recorded_code_departure(spec: Spec, release: Entry) -> tuple[str, ...] | None:
    """The `model.code` files that differ from the copy `release` stored; None when neither
    declares any (then only git can tell, from the names the pipeline imports).

    The stored hashes are the stronger witness: they need no git (the engine image's
    agent CronJob has none) and they see uncommitted edits as well as committed ones.
    """
    if not release.code and not spec.model.code:
        return None
    drift = code_drift(spec, release.code)
    return tuple(sorted({*drift.changed, *drift.added, *drift.removed}))


def _departure_without_git(
    spec: Spec, release: Entry, commit: str, working: str, why: Exception
) -> ReleaseDeparture | None:
    code = _recorded_code_departure(spec, release) or ()
    recorded = release.extra.get("recipe_hash")
    if recorded is None:
        log.warning(
            "%s: cannot compare the spec with release %s (%s) and the release recorded no "
            "recipe hash; updating without checking the spec",
            spec.name,
            release.release,
            why,
        )
    spec_changed = recorded is not None and recorded != working
    if not spec_changed and not code:
        return None
    return ReleaseDeparture(
        release=release.release,
        commit=commit,
        spec=("data, model or evaluation",) if spec_changed else (),
        code=code,
    )


def require_release_recipe(spec: Spec, spec_file: Path, registry: Registry) -> None:
    """UsageError (exit 2) when the next generation would not be its release's model.

    A generation is new data for the same code: the spec's training recipe and the
    model code must be the release's. Another model needs a release of its own.
    """
    current = registry.current()
    if current is None:
        return
    first = min(
        (e for e in registry.entries() if e.release == current.release),
        key=lambda e: e.generation,
    )
    departure = release_departure(spec, spec_file, first)
    if departure is None:
        return
    raise UsageError(
        f"{spec_file}: {departure.describe()} since release {departure.release} "
        f"(commit {departure.commit[:12]}); a generation is trained by its release's spec "
        "and code, so this change needs `mlcycle release`",
        hint="commit it and run `mlcycle release` to make a new release, or undo it "
        f"(`git checkout {departure.commit[:12]} -- FILE`) to keep updating "
        f"{departure.release}",
    )


def check_triggers(
    spec: Spec,
    current: Entry,
    *,
    production: Callable[[], ProductionReport] | None,
    now: float | None = None,
) -> tuple[TriggerCheck, ...]:
    """Evaluate each declared trigger against the current model (see the module doc)."""
    triggers = spec.update.triggers
    now = time.time() if now is None else now
    checks: list[TriggerCheck] = []
    if triggers.every is not None:
        created = dt.datetime.fromisoformat(current.created_at.replace("Z", "+00:00"))
        age = now - created.timestamp()
        checks.append(
            TriggerCheck(
                "every",
                age >= triggers.every,
                f"{current.ref} is {_duration(age)} old (limit {_duration(triggers.every)})",
                round(age),
                triggers.every,
            )
        )
    if triggers.new_rows is not None:
        watermark = current.data.get("watermark")
        if watermark is None:
            checks.append(TriggerCheck("new_rows", False, f"{current.ref} recorded no watermark"))
        else:
            new = count_new_rows(spec, watermark)
            checks.append(
                TriggerCheck(
                    "new_rows",
                    new >= triggers.new_rows,
                    f"{new} new rows after {current.data.get('ordinal')} {watermark} "
                    f"(need {triggers.new_rows})",
                    new,
                    triggers.new_rows,
                )
            )
    report = None
    if (triggers.metric is not None or triggers.drift is not None) and production is not None:
        report = production()
    # What the production figures cover, for the details: " in the last 1d".
    span = f" in {triggers.window}" if triggers.window is not None else ""
    if triggers.metric is not None:
        condition = triggers.metric
        figures = report.for_model(str(current.ref)) if report else None
        value = figures.metrics.get(condition.metric) if figures else None
        if figures is None or value is None:
            checks.append(
                TriggerCheck(
                    "metric",
                    False,
                    f"no production {condition.metric} for {current.ref}{span} yet",
                )
            )
        elif not figures.reliable:
            checks.append(
                TriggerCheck(
                    "metric",
                    False,
                    f"{condition.metric} {value:.4f} on only {figures.outcomes} outcomes{span}: "
                    "too few to act on",
                    value,
                )
            )
        else:
            fired = condition.holds(value, None)
            checks.append(
                TriggerCheck(
                    "metric",
                    fired,
                    f"production {condition.metric} {value:.4f} on {figures.outcomes} outcomes"
                    f"{span} ({'meets' if fired else 'does not meet'} '{condition}')",
                    value,
                    str(condition),
                )
            )
    if triggers.drift is not None:
        drift = (
            next((d for d in report.drift if d.model == str(current.ref)), None) if report else None
        )
        worst = drift.worst if drift else None
        if drift is not None and drift.note is not None:
            checks.append(TriggerCheck("drift", False, f"{drift.note}{span}: not judged"))
        elif drift is None or worst is None:
            checks.append(TriggerCheck("drift", False, f"no served inputs{span} to compare yet"))
        else:
            feature, psi = worst
            checks.append(
                TriggerCheck(
                    "drift",
                    psi > triggers.drift,
                    f"largest PSI {psi:.3f} on {feature} over {drift.served_rows} served "
                    f"inputs{span} (limit {triggers.drift:g})",
                    psi,
                    triggers.drift,
                )
            )
    return tuple(checks)


def update(
    spec: Spec,
    registry: Registry,
    *,
    production: Callable[[], ProductionReport] | None = None,
    force: bool = False,
    spec_hash: str | None = None,
    recipe_hash: str | None = None,
    git_commit: str | None = None,
    progress: Progress = NULL_PROGRESS,
) -> UpdateResult:
    """Check the triggers and, when one fired (or `force`), train the next generation.

    The gate compares with the current model; a rejected generation is kept as
    rejected and `ProcurementRejected` (exit 3) is raised.
    """
    require_autonomous(spec)
    current = registry.current()
    if current is None:
        raise RegistryError(
            f"{spec.name}: no current model to update",
            hint="make the first release: mlcycle release",
        )
    checks = check_triggers(spec, current, production=production)
    mode = spec.update.data
    if not force and not any(c.fired for c in checks):
        return UpdateResult(
            current=current, checks=checks, forced=False, procured=None, data_mode=mode
        )
    rejection = None if force else _standing_rejection(spec, registry, current, spec_hash)
    refused = None if force else _standing_data_rejection(spec, registry, current, spec_hash)
    if rejection is not None or refused is not None:
        return UpdateResult(
            current=current,
            checks=checks,
            forced=False,
            procured=None,
            data_mode=mode,
            waiting_on=rejection,
            waiting_on_data=None if rejection is not None else refused,
        )
    previous: Entry | None = None
    dataset = None
    forced_note = None
    if force:
        _require_rows(spec)
    if mode == "increment":
        watermark = current.data.get("watermark")
        if watermark is None:
            raise RegistryError(
                f"{current.ref} recorded no watermark, so the increment cannot be told",
                hint="set update.data: all, or release a model trained from a source with an "
                "ordinal column",
            )
        if count_new_rows(spec, watermark) == 0:
            if not force:
                # A drift or metric trigger fired, but an increment with no rows has
                # nothing to train on. That is a state to wait in, not a failure: a cron
                # job would otherwise fail on every run until rows come.
                return UpdateResult(
                    current=current,
                    checks=checks,
                    forced=False,
                    procured=None,
                    data_mode=mode,
                    waiting_for_rows=(
                        f"no rows after {current.data.get('ordinal')} {watermark}, the "
                        f"watermark of {current.ref}"
                    ),
                )
            # --force asks for a generation now: with no increment there is nothing to
            # continue from, so it is retrained from scratch on the data there is (as
            # `update.data: all` would), and the gate judges it like any other.
            mode = "all"
            forced_note = (
                f"no rows after {current.data.get('ordinal')} {watermark}, so retrained on "
                "every row"
            )
    if mode == "increment":
        window = next_window(watermark)
        previous = current  # continue its state where the estimator can
    elif mode == "window":
        full = load_dataset(spec, Window(), progress=progress)
        dataset = _tail(full, spec.update.window or full.n_rows)
        window = Window()
    else:
        window = Window()
    try:
        result = procure(
            spec,
            registry,
            release=current.release,
            purpose="update",
            window=window,
            dataset=dataset,
            previous=previous if spec.update.warm_start else None,
            spec_hash=spec_hash,
            recipe_hash=recipe_hash,
            git_commit=git_commit,
            keep_rejected=True,
            make_current=True,
            validate=True,
            extra={
                "update": {
                    "reason": [c.as_dict() for c in checks if c.fired],
                    "forced": force,
                    "data": mode,
                }
            },
            progress=progress,
        )
    except DataRejectedError as e:
        # Kept like a rejected generation, so that the next run waits for new rows
        # instead of refusing the same ones again (and `models`/`history` show it).
        registry.record_data_rejection(e.rejection(spec_hash).as_dict())
        raise
    return UpdateResult(
        current=current,
        checks=checks,
        forced=force,
        procured=result,
        data_mode=mode,
        forced_note=forced_note,
    )


def _require_rows(spec: Spec) -> None:
    """UsageError when the data source holds no row at all: even --force has nothing to train on."""
    if spec.data.source is None or spec.data.source.ordinal is None:
        return  # cannot be counted cheaply; loading the data reports an empty source
    if count_new_rows(spec, None) == 0:
        raise UsageError(
            f"{spec.name}: the data source has no rows, so --force has nothing to train on",
            hint="load rows into the source declared in `data.source`, then run "
            "`mlcycle update --force` again",
        )


def _standing_rejection(
    spec: Spec, registry: Registry, current: Entry, spec_hash: str | None
) -> Entry | None:
    """The newest rejected generation after `current` that another run would only repeat.

    The triggers look at the current model, which a rejection leaves in place, so they
    keep firing; training again on the same rows with the same spec gives the same
    rejected model. It stands until rows arrive after its watermark or the spec
    changes (another gate, triggers or model). Without a recorded watermark nothing
    can be told, and the agent trains.
    """
    later = [
        e
        for e in registry.entries()
        if e.release == current.release and e.generation > current.generation
    ]
    if not later:
        return None
    newest = max(later, key=lambda e: e.generation)
    if newest.status is not Status.REJECTED:
        return None
    if spec_hash is not None and newest.spec_hash != spec_hash:
        return None
    watermark = newest.data.get("watermark")
    if watermark is None or count_new_rows(spec, watermark) > 0:
        return None
    return newest


def _standing_data_rejection(
    spec: Spec, registry: Registry, current: Entry, spec_hash: str | None
) -> DataRejection | None:
    """The newest refusal of new rows against `current` that another run would repeat.

    Like `_standing_rejection`: it stands until rows arrive after the refused rows'
    watermark or the spec changes (e.g. looser `data.validation`).
    """
    kept = [r for r in registry.data_rejections() if r.get("against") == str(current.ref)]
    if not kept:
        return None
    newest = DataRejection.from_dict(kept[-1])
    if spec_hash is not None and newest.spec_hash != spec_hash:
        return None
    watermark = newest.data.get("watermark")
    if watermark is None or count_new_rows(spec, watermark) > 0:
        return None
    return newest


def _tail(dataset: Any, rows: int) -> Any:
    """The most recent `rows` rows of a dataset (rows are ordered by the ordinal)."""
    from dataclasses import replace

    if dataset.n_rows <= rows:
        return dataset

    start = dataset.n_rows - rows
    ordinal = None if dataset.ordinal is None else dataset.ordinal.iloc[start:]
    keys = None if dataset.keys is None else dataset.keys.iloc[start:]
    # Record the window these rows are, so that the generation can be reproduced.
    window = dataset.info.window
    if ordinal is not None:
        window = Window(lower=plain_value(ordinal.iloc[0]), upper=window.upper)
    info = replace(dataset.info, rows=rows, window=window)
    return replace(
        dataset,
        X=dataset.X.iloc[start:],
        y=dataset.y.iloc[start:],
        ordinal=ordinal,
        keys=keys,
        info=info,
    )


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"
