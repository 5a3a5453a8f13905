"""`release` and `history`: the R&D → production handover, in git and the registry.

The handover is where every lifecycle pattern (docs/lifecycle-patterns.md) turns research
into a product. This module orchestrates it: git answers where the release goes
(`gitops/point.py`), the integration agent procures the model (`agents/integration.py`:
`procure`, or `procure_by_hand` for a model trained by hand), the registry stores it.

A release is a registry release (generation 1 holding the model) plus an
annotated git tag on HEAD whose message carries the release metadata. Both
exist or neither does. The order that makes this hold:

1. check everything that needs no writing (clean tree, version, tag free);
2. procure the model (train + gate, or read the hand-made file; for a dual
   liaison, reproduce research's results) — nothing is written yet;
3. register it and make it current in one atomic registry write;
4. create the tag; if that fails, remove the entry registered in 3 (which
   restores the previous current model);
5. push the tag when asked; if the remote refuses, delete the tag and remove
   that entry again.

Concurrent releases of one project take turns: each holds the registry's
release lock from step 1 to step 5, so the version is chosen from tags and
entries no other release is changing, and an undo removes only the entry its
own process registered. The lock is held through training as well, although
training could run before it: a gate compares the model with the current one,
and only under the lock is "current" the model this release replaces. A
release that has to wait says for whom (pid) and waits; Ctrl-C stops it.

A crash (kill -9) between 3 and 4 leaves a registry release without a tag: an
*orphan*. In a local registry nothing serves from it for long: the next `release`
of that version (the version computed from the tags is the same one) removes the
orphan first, and `history` marks it. After 4 the release is complete even if the
push never happened (`git push origin TAG` finishes it).

A shared registry (`registry.url`) holds other clones' releases too, and a release
whose tag its clone has not pushed looks exactly like an orphan from here. So there
an untagged release is never removed: the version is bumped past every release the
registry holds as well as every tag (`ReleasePlan.skipped` says which and whose), and
an untagged release of HEAD itself (killed before its tag, or made by another clone
at this commit) is completed: tagged, its registered model kept, nothing trained.
`mlcycle retire` is the way to drop one.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.api.project import open_project
from mlcycle.api.stages import Stages, read_stages
from mlcycle.errors import GitError, MlcycleError, UsageError
from mlcycle.faults import checkpoint
from mlcycle.interop.mlflow import download_model, is_model_uri
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.spec.model import Liaison, Procurement

if TYPE_CHECKING:
    from mlcycle.api.project import Project
    from mlcycle.data import SourceInfo
    from mlcycle.data.validation import DataRejection
    from mlcycle.gitops import ReleaseTag, Repo
    from mlcycle.registry import Entry, State
    from mlcycle.train import GateResult, TrainResult
    from mlcycle.train.reproduce import Reproduction

log = logging.getLogger(__name__)

BUMPS = ("major", "minor", "patch")


@dataclass(frozen=True)
class ReleasePlan:
    """What a release will do, decided before anything is written."""

    project: str
    version: str
    tag: str
    previous: str | None
    commit: str
    branch: str | None
    branch_source: str | None  # "git", "--branch", or the CI variable that named it
    procurement: str
    liaison: str
    push: bool
    remote: str
    orphan: bool  # a crashed release of this version left registry entries to remove first
    stages: tuple[str, ...]
    fetched_tags: tuple[str, ...] = ()  # release tags the remote had and this clone lacked
    completes: bool = False
    """A shared registry holds a release of HEAD without its tag here: tag that release
    (its model is the registry's already) instead of procuring a new one."""
    skipped: tuple[str, ...] = ()
    """Why versions were passed over: a shared registry holds releases this clone has
    no tag of (other clones' releases whose tags are not pushed yet)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "project": self.project,
            "version": self.version,
            "tag": self.tag,
            "previous": self.previous,
            "commit": self.commit,
            "branch": self.branch,
            "branch_source": self.branch_source,
            "procurement": self.procurement,
            "liaison": self.liaison,
            "push": self.push,
            "remote": self.remote if self.push else None,
            "orphan": self.orphan,
            "stages": list(self.stages),
            "fetched_tags": list(self.fetched_tags),
            "completes": self.completes,
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True)
class ReleaseResult:
    """A finished release (or, with `dry_run`, only its plan)."""

    plan: ReleasePlan
    dry_run: bool
    entry: Entry | None = None
    tag: ReleaseTag | None = None
    pushed: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    gate: GateResult | None = None
    data: SourceInfo | None = None
    reproduction: Reproduction | None = None
    warnings: tuple[str, ...] = ()

    @property
    def next_step(self) -> str | None:
        """The command that finishes a release whose tag was made here and not pushed.

        Until the tag reaches the remote, other clones (and a shared registry's other
        users) see the registry entry without its tag: the release shows as incomplete.
        """
        if self.dry_run or self.tag is None or self.pushed:
            return None
        return f"git push {self.plan.remote} {self.plan.tag}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description for CI: version, tag, metrics, gate."""
        return {
            **self.plan.as_dict(),
            "dry_run": self.dry_run,
            "ref": str(self.entry.ref) if self.entry else None,
            "sha256": self.entry.artifact.sha256 if self.entry else None,
            "pushed": self.pushed,
            "next_step": self.next_step,
            "metrics": {k: _num(v) for k, v in self.metrics.items()},
            "gate": self.gate.as_dict() if self.gate else None,
            "data": self.data.as_dict() if self.data else None,
            "reproduction": self.reproduction.as_dict() if self.reproduction else None,
            "warnings": list(self.warnings),
        }


def release(
    path: str | Path | None = None,
    *,
    bump: str | None = None,
    version: str | None = None,
    model: str | Path | None = None,
    push: bool = False,
    remote: str | None = None,
    branch: str | None = None,
    dry_run: bool = False,
    trust_pickle: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> ReleaseResult:
    """Release the project at HEAD: procure the model, register it, tag it (see module doc).

    `bump` (major, minor, patch; default minor) or `version` chooses the
    version. `model` is the hand-made model file of an interactive lifecycle
    (default: the spec's `release.model`); a pickle is read only with
    `trust_pickle`, since unpickling runs any code the file holds (the model
    is stored as skops all the same).

    `remote` is where the release tags live and where `push` pushes (default:
    the branch's upstream remote, else origin). Before anything else the tags it
    has and this clone lacks are fetched (CI clones are often shallow and
    tagless), so no existing version is re-issued; when they cannot be fetched,
    UsageError names the command that fixes it. `branch` names the branch a
    detached HEAD was built from (default: the CI's variables, see
    `mlcycle.gitops.branch`). Raises UsageError for a state git or
    the arguments do not allow (exit 2), GateRejectedError when the gate or the
    reproduction of research's results refuses the model (exit 3), and a
    RuntimeFailure for the rest (exit 1); in every case nothing is left behind.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Repo
    from mlcycle.registry.handmade import check_pickle, model_file

    project = open_project(path)
    asked = remote
    remote, fetched = _sync_tags(project, asked)

    def planned(repo: Repo) -> ReleasePlan:
        plan = _plan(
            project,
            repo,
            bump=bump,
            version=version,
            model=model,
            push=push,
            remote=remote,
            branch=branch,
        )
        return replace(plan, fetched_tags=fetched)

    # Planned once without the lock, so that what is wrong (a dirty tree, a taken
    # version) is said at once rather than after waiting for another release ...
    with Repo.find(project.root) as repo:  # ends GitPython's helpers however this ends
        plan = planned(repo)
        if dry_run:
            return ReleaseResult(plan=plan, dry_run=True)
    with ExitStack() as stack:
        origin = None
        if project.spec.lifecycle.procurement is Procurement.INTERACTIVE:
            if model is not None and is_model_uri(str(model)):
                # A model of the declared tracking server: downloaded once, for this release.
                origin = str(model)
                model = _download(project, origin, stack, progress)
            check_pickle(model_file(project.spec, model), trust_pickle)
        # ... and again under it: the version is the one free now. The tags are fetched
        # again first: the release that held the lock, in this clone or in another one
        # sharing the registry, may have pushed the version this one would have taken.
        with _release_lock(project, progress), Repo.find(project.root) as repo:
            fetched += tuple(_sync_tags(project, asked)[1])
            plan = planned(repo)
            return _carry_out(
                project,
                plan,
                repo,
                model=model,
                origin=origin,
                push=push,
                remote=remote,
                trust_pickle=trust_pickle,
                progress=progress,
            )
    raise AssertionError("unreachable")  # pragma: no cover - the with returns


def _download(project: Project, uri: str, stack: ExitStack, progress: Progress) -> Path:
    """The MLflow model `uri` names, from the spec's tracking server, in a temporary
    directory that lives as long as `stack`."""
    import tempfile

    server = project.spec.tracking.mlflow
    if not server:
        raise UsageError(
            f"--model {uri}: {project.spec.name} declares no MLflow tracking server to "
            "read it from",
            hint="declare it in lifecycle.yaml (tracking: {mlflow: http://HOST:5000}), or "
            "download the model and pass its directory",
        )
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlcycle-model-")))
    with step(progress, f"download {uri}"):
        return download_model(uri, tracking_uri=server, directory=directory)


def _sync_tags(project: Project, remote: str | None) -> tuple[str, tuple[str, ...]]:
    """The remote to use, and the release tags fetched from it (before any version is chosen)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import TagFormat
    from mlcycle.gitops.point import sync_tags

    fmt = TagFormat(project.spec.release.tag_format).validate(project.spec.name)
    chosen, fetched = sync_tags(project.root, fmt, project.spec.name, remote)
    return chosen, tuple(fetched)


@contextmanager
def _release_lock(project: Project, progress: Progress) -> Iterator[None]:
    """The project's release lock, saying whom it waits for when another release holds it."""
    waiting = False

    def on_wait(holder: str) -> None:
        nonlocal waiting
        waiting = True
        name = project.spec.name
        log.warning("waiting for another release of %s (%s) to finish...", name, holder)
        progress.start(f"wait for the other release of {name}")  # the bar shows how long

    with project.registry.release_lock(on_wait=on_wait):
        if waiting:
            progress.done()
        yield


def _carry_out(
    project: Project,
    plan: ReleasePlan,
    repo: Repo,
    *,
    model: str | Path | None,
    origin: str | None = None,
    push: bool,
    remote: str,
    trust_pickle: bool,
    progress: Progress,
) -> ReleaseResult:
    """Steps 2-5 of the module docstring, for a plan that passed every check.

    `origin` is where a downloaded `model` came from (an MLflow model URI), recorded
    instead of its temporary path."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Version

    registry = project.registry
    if plan.orphan:
        registry.remove_release(plan.version)
    if plan.completes:
        procured = _registered(project, plan)
    elif project.spec.lifecycle.procurement is Procurement.INTERACTIVE:
        procured = _procure_by_hand(project, plan, model, trust_pickle, progress, origin=origin)
    else:
        procured = _procure_unattended(project, plan, progress)
    entry = procured.entry
    checkpoint("release:registered")
    try:
        with step(progress, f"tag {plan.tag}"):
            tag = repo.create_tag(
                plan.tag,
                _tag_message(project, plan, procured),
                commit=plan.commit,
                version=Version.parse(plan.version),
            )
        checkpoint("release:tagged")
        pushed = False
        if push:
            with step(progress, f"push {plan.tag} to {remote}"):
                try:
                    repo.push_tag(plan.tag, remote)
                except BaseException:
                    repo.delete_tag(plan.tag)
                    raise
            pushed = True
    except BaseException as e:
        if plan.completes:
            # The entry was registered before this process (maybe by another clone):
            # it stays as it was, still waiting for its tag.
            if isinstance(e, MlcycleError):
                e.message += f" (release {plan.version} not tagged; its registry entry stays)"
            raise
        # No registry entry without its tag: undo this process's registration, and only
        # it (this also puts `current` back to the model that was current before).
        registry.remove_entry(entry.ref)
        if isinstance(e, MlcycleError):
            e.message += f" (release {plan.version} rolled back: no tag, no registry entry)"
        raise
    return ReleaseResult(
        plan=plan,
        dry_run=False,
        entry=entry,
        tag=tag,
        pushed=pushed,
        metrics=procured.metrics,
        gate=procured.gate,
        data=procured.data,
        reproduction=procured.reproduction,
        warnings=plan.skipped + procured.warnings,
    )


# --- planning ------------------------------------------------------------------------


def _plan(
    project: Project,
    repo: Repo,
    *,
    bump: str | None,
    version: str | None,
    model: str | Path | None,
    push: bool,
    remote: str,
    branch: str | None,
) -> ReleasePlan:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import TagFormat, Version
    from mlcycle.gitops.point import release_point
    from mlcycle.registry.refs import DEV

    spec = project.spec
    if bump is not None and version is not None:
        raise UsageError("--bump and --version exclude each other", hint="pass one of them")
    if bump is not None and bump not in BUMPS:
        raise UsageError(f"--bump {bump!r} is not one of {', '.join(BUMPS)}")
    interactive = spec.lifecycle.procurement is Procurement.INTERACTIVE
    if model is not None and not interactive:
        raise UsageError(
            f"--model is for interactive procurement; {spec.name} trains unattended "
            "(lifecycle.procurement: unattended), so the release trains the model itself",
            hint="leave --model out",
        )
    fmt = TagFormat(spec.release.tag_format).validate(spec.name)
    point = release_point(
        repo, fmt, spec.name, bump=bump, version=version, branch=branch, environ=os.environ
    )
    commit, latest, target = point.commit, point.latest, point.version
    registry = project.registry
    # Releases the registry holds and this clone has no tag of. In a local registry they
    # are this working copy's own interrupted releases; in a shared one they may be other
    # clones' releases, current and served, whose tags are not pushed yet.
    tagged = {str(t.version) for t in repo.release_tags(fmt, spec.name)}
    untagged: dict[str, list[Entry]] = {}
    for entry in registry.entries():
        if entry.release != DEV and entry.release not in tagged:
            untagged.setdefault(entry.release, []).append(entry)
    held = untagged if registry.shared else {}
    completes = _release_of(held, commit)
    skipped: tuple[str, ...] = ()
    if completes is not None:
        # HEAD is released already (a release killed before its tag, or one of another
        # clone at this commit): its version is that one, and its model is registered.
        target = Version.parse(completes)
        if version is not None and Version.parse(version.removeprefix("v")) != target:
            raise UsageError(
                f"HEAD ({commit[:12]}) is released already as {target} in the shared "
                f"registry ({_made_by(held[completes])}), without a tag here",
                hint=f"release it as {target} (the tag is all it lacks), or commit the "
                "change you want to release as a new version",
            )
    elif version is not None:
        if str(target) in held:
            raise UsageError(
                f"version {target} is taken: the shared registry holds it "
                f"({_made_by(held[str(target)])}), and this clone has no tag "
                f"{fmt.format(spec.name, target)}",
                hint="fetch its tag (git fetch --tags), or choose another version; "
                f"`mlcycle retire {target}` retires that release",
            )
    else:
        passed = sorted(
            Version.parse(v) for v in held if latest is None or latest < Version.parse(v)
        )
        if passed:
            # Bump past every release the registry holds too, so that this one is a
            # version of its own rather than a second one under another clone's number.
            latest = passed[-1]
            target = latest.bump(bump or "minor")
            skipped = tuple(
                _skipped(str(v), held[str(v)], fmt.format(spec.name, v)) for v in passed
            )
    tag = fmt.format(spec.name, target)
    if target != point.version and repo.tag_exists(tag):
        raise UsageError(
            f"the tag {tag} already exists (but is not a release of {spec.name} "
            "this mlcycle can read)",
            hint="delete it (git tag -d) or choose another version with --version",
        )
    # Only a local registry's untagged entries are this working copy's for certain.
    orphan = not registry.shared and str(target) in untagged
    stages = _stages(project, interactive, push, orphan, str(target), tag, remote)
    if completes is not None:
        stages = (
            f"take registry release {target} of HEAD ({_made_by(held[completes])}), "
            "registered and not tagged",
            f"tag HEAD {tag}",
            *((f"push {tag} to {remote}",) if push else ()),
        )
    return ReleasePlan(
        project=spec.name,
        version=str(target),
        tag=tag,
        previous=None if latest is None else str(latest),
        commit=commit,
        branch=None if point.branch is None else point.branch.name,
        branch_source=None if point.branch is None else point.branch.source,
        procurement=spec.lifecycle.procurement.value,
        liaison=spec.lifecycle.liaison.value,
        push=push,
        remote=remote,
        orphan=orphan,
        stages=stages,
        completes=completes is not None,
        skipped=skipped,
    )


def _release_of(held: Mapping[str, Sequence[Entry]], commit: str) -> str | None:
    """The release in `held` made from `commit` and not retired (the newest, if several)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.registry.refs import release_key

    made = [
        version
        for version, entries in held.items()
        if any(e.git_commit == commit for e in entries) and not all(e.retired for e in entries)
    ]
    return max(made, key=release_key) if made else None


def _skipped(version: str, entries: Sequence[Entry], tag: str) -> str:
    """Why a release passed over `version`, which a shared registry holds without `tag`."""
    held = f"skipped {version}: the shared registry holds it ({_made_by(entries)})"
    if all(e.retired for e in entries):
        return f"{held}, retired: a version is never issued twice"
    return (
        f"{held} and this clone has no tag {tag}: another clone's release whose tag is "
        f"not pushed yet (or `mlcycle retire {version}` drops it)"
    )


def _made_by(entries: Sequence[Entry]) -> str:
    """Where a release's first entry came from: `commit 0123abcd4567, by NAME`."""
    first = entries[0]
    made = f"commit {(first.git_commit or '?')[:12]}"
    return made + (f", by {first.created_by}" if first.created_by else "")


def _stages(
    project: Project,
    interactive: bool,
    push: bool,
    orphan: bool,
    version: str,
    tag: str,
    remote: str,
) -> tuple[str, ...]:
    spec = project.spec
    stages = []
    if orphan:
        stages.append(f"remove registry release {version} left by an interrupted release")
    if interactive:
        stages.append("read the model trained by hand")
        if spec.data.source is not None or spec.data.dump is not None:
            stages.append("evaluate it on the declared data and apply the gate")
    else:
        stages.append("fetch the data")
        stages.append("train and evaluate the model")
        if spec.evaluation.gate:
            stages.append("apply the validation gate")
    if spec.lifecycle.liaison is Liaison.DUAL and spec.release.research is not None:
        stages.append("reproduce research's predictions and metrics")
    stages.append(f"register {version}/1 and make it current")
    stages.append(f"tag HEAD {tag}")
    if push:
        stages.append(f"push {tag} to {remote}")
    return tuple(stages)


# --- procuring the model ----------------------------------------------------------------


@dataclass(frozen=True)
class _Procured:
    entry: Entry
    metrics: Mapping[str, float]
    gate: GateResult | None
    data: SourceInfo | None
    reproduction: Reproduction | None = None
    warnings: tuple[str, ...] = ()
    training: TrainResult | None = None


def _registered(project: Project, plan: ReleasePlan) -> _Procured:
    """The model a release of HEAD registered without tagging it, as a release procures
    one: its first generation still in service (else its first), its recorded metrics."""
    entries = [e for e in project.registry.entries() if e.release == plan.version]
    entry = next((e for e in entries if e.is_candidate), entries[0])
    note = (
        f"{plan.version} was registered from HEAD ({_made_by(entries)}) and never tagged "
        "here: tagged now, with the model it registered (nothing was trained)"
    )
    return _Procured(
        entry=entry, metrics=dict(entry.metrics), gate=None, data=None, warnings=(note,)
    )


def _reproduction(
    project: Project, progress: Progress
) -> tuple[Callable[[Any], None], list[Reproduction]]:
    """The check a dual liaison's model must pass before it is registered (it reproduces
    research's results), and the list its reproduction is left in."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.train.reproduce import reproduce_research

    reproduction: list[Reproduction] = []

    def verify(model: Any) -> None:
        if project.spec.lifecycle.liaison is Liaison.DUAL:
            result = reproduce_research(project.spec, model, progress)
            if result is not None:
                reproduction.append(result)
                result.raise_if_failed()

    return verify, reproduction


def _procure_unattended(project: Project, plan: ReleasePlan, progress: Progress) -> _Procured:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.agents import procure

    verify, reproduction = _reproduction(project, progress)
    result = procure(
        project.spec,
        project.registry,
        release=plan.version,
        purpose="release",
        spec_hash=project.spec_hash,
        recipe_hash=project.recipe_hash,
        git_commit=plan.commit,
        keep_rejected=False,
        make_current=True,
        extra={"tag": plan.tag},
        verify=lambda training: verify(training.model),
        progress=progress,
    )
    assert result.entry is not None  # a passing gate always registers
    return _Procured(
        entry=result.entry,
        metrics=result.training.metrics,
        gate=result.gate,
        data=result.data,
        reproduction=reproduction[0] if reproduction else None,
        training=result.training,
        warnings=result.warnings,
    )


def _procure_by_hand(
    project: Project,
    plan: ReleasePlan,
    model_path: str | Path | None,
    trust_pickle: bool,
    progress: Progress,
    *,
    origin: str | None = None,
) -> _Procured:
    """An interactive release: the file a person trained, evaluated when there is data."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.agents.integration import procure_by_hand
    from mlcycle.registry import TrustPolicy
    from mlcycle.registry.handmade import is_pickle, model_file, read_model_file

    path = model_file(project.spec, model_path)
    with step(progress, f"read {path.name}"):
        trust = TrustPolicy.for_project(project.spec.root, project.spec.model.code)
        model = read_model_file(path, trust=trust, trust_pickle=trust_pickle)
    warnings = (
        [
            f"{path.name} was unpickled because of --trust-pickle, running any code it holds; "
            "save models as skops (skops.io.dump) so that releasing one runs none"
        ]
        if is_pickle(path)
        else []
    )
    warnings += [
        "interactive procurement: nobody but its author can retrain this model, and "
        "mlcycle cannot tell which data or code made it; move to lifecycle.procurement: "
        "unattended to make releases reproducible"
    ]
    location = origin or str(path)
    verify, reproduction = _reproduction(project, progress)
    result = procure_by_hand(
        project.spec,
        project.registry,
        model,
        release=plan.version,
        name=path.name,
        location=location,
        spec_hash=project.spec_hash,
        git_commit=plan.commit,
        extra={"tag": plan.tag, "model_file": location},
        verify=verify,
        progress=progress,
    )
    return _Procured(
        entry=result.entry,
        metrics=result.metrics,
        gate=result.gate,
        data=result.data,
        reproduction=reproduction[0] if reproduction else None,
        warnings=(*warnings, *result.warnings),
    )


def _tag_message(project: Project, plan: ReleasePlan, procured: _Procured) -> str:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import release_message

    entry = procured.entry
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in procured.metrics.items())
    summary = f"{plan.project} {plan.version}" + (f": {metrics}" if metrics else "")
    # Features and the data profile are long and live in the registry entry; the tag
    # keeps the essentials.
    data = (
        {k: v for k, v in entry.data.items() if k not in ("features", "profile")}
        if entry.data
        else None
    )
    metadata: dict[str, Any] = {
        "project": plan.project,
        "version": plan.version,
        "registry": {"ref": str(entry.ref), "sha256": entry.artifact.sha256},
        "procurement": plan.procurement,
        "liaison": plan.liaison,
        "metrics": {k: _num(v) for k, v in procured.metrics.items()},
        "gate": None if procured.gate is None else procured.gate.passed,
        "data": data,
        "spec_hash": project.spec_hash,
        "versions": dict(entry.versions),
    }
    if procured.reproduction is not None:
        metadata["reproduction"] = {
            "passed": procured.reproduction.passed,
            "tolerance": procured.reproduction.tolerance,
            "max_prediction_delta": procured.reproduction.max_prediction_delta,
        }
    return release_message(summary, metadata)


def _num(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


# --- history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryItem:
    """One release: its tag (None for an orphan), its registry entries and its stages."""

    version: str
    tag: ReleaseTag | None
    entries: tuple[Entry, ...]
    current: bool
    stages: tuple[str, ...] = ()
    deregistered: bool = False
    """Whether a GTO deregistration tag (`mlcycle retire`, `gto deprecate`) retired it."""
    hint: str | None = None
    """What to do about an `incomplete` release (see `history`)."""

    @property
    def status(self) -> State:
        """`released` or `retired`; `incomplete` (no tag) or `missing` (no registry entry)."""
        # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
        from mlcycle.registry import State

        if self.tag is None:
            return State.INCOMPLETE
        if self.deregistered or (self.entries and all(e.retired for e in self.entries)):
            return State.RETIRED
        return State.RELEASED if self.entries else State.MISSING

    @property
    def first(self) -> Entry | None:
        """Generation 1 (or the oldest left), the model the release made."""
        return self.entries[0] if self.entries else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row."""
        first = self.first
        return {
            "version": self.version,
            "status": self.status.value,
            "tag": self.tag.name if self.tag else None,
            "date": self.tag.date if self.tag else (first.created_at if first else None),
            "commit": self.tag.commit if self.tag else (first.git_commit if first else None),
            "author": self.tag.tagger if self.tag else (first.created_by if first else None),
            "metrics": {k: _num(v) for k, v in first.metrics.items()} if first else {},
            "generations": [e.generation for e in self.entries],
            "current": self.current,
            "stages": list(self.stages),
            "hint": self.hint,
        }


@dataclass(frozen=True)
class History:
    """A project's releases, oldest first."""

    project: str
    items: tuple[HistoryItem, ...]
    data_rejections: tuple[DataRejection, ...] = ()
    """New rows data validation refused (no generation holds them), oldest first."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "project": self.project,
            "releases": [i.as_dict() for i in self.items],
            "data_rejections": [r.as_dict() for r in self.data_rejections],
        }


def _untagged_hint(tag: str, entries: Sequence[Entry], *, remote: str, shared: bool) -> str:
    """What to do about a release in the registry whose tag this clone lacks.

    In a shared registry the usual cause is another clone's release: its tag is on the
    remote (fetch it) or was never pushed (only that clone can push it). A `mlcycle
    release` here leaves it alone and takes the next free version (or, at its very
    commit, tags it).
    """
    made = entries[0] if entries else None
    where = "" if made is None else f" (commit {(made.git_commit or '?')[:12]}"
    where += "" if made is None or not made.created_by else f", by {made.created_by}"
    where += ")" if where else ""
    if shared:
        return (
            f"this clone has no tag {tag}: fetch it (git fetch --tags {remote}); if the "
            f"remote has none, it was never pushed: in the clone that released it{where}, "
            f"run git push {remote} {tag}"
        )
    return (
        f"registered but never tagged {tag}: an interrupted release, which the next "
        f"`mlcycle release` of this version replaces (git fetch --tags {remote} first, "
        "if it was tagged elsewhere)"
    )


def history(path: str | Path | None = None) -> History:
    """Releases from the git tags joined with their registry entries and stages (and
    orphans marked)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.data.validation import DataRejection
    from mlcycle.gitops import Repo, TagFormat
    from mlcycle.registry.refs import DEV, release_key

    project = open_project(path)
    spec = project.spec
    registry = project.registry
    fmt = TagFormat(spec.release.tag_format).validate(spec.name)
    remote = "origin"
    try:
        with Repo.find(project.root) as repo:
            tags = {str(t.version): t for t in repo.release_tags(fmt, spec.name)}
            stages = read_stages(repo, spec.name, registry, spec.release.tag_format)
            remote = repo.default_remote() or remote
    except GitError as e:
        if "not a git repository" not in e.message:
            raise
        tags, stages = {}, Stages()
    by_release: dict[str, list[Entry]] = {}
    for entry in registry.entries():
        if entry.release != DEV:
            by_release.setdefault(entry.release, []).append(entry)
    current = registry.current()
    versions = sorted(set(tags) | set(by_release), key=release_key)
    items = tuple(
        HistoryItem(
            version=v,
            tag=tags.get(v),
            entries=tuple(by_release.get(v, ())),
            current=current is not None and current.release == v,
            stages=stages.of_version(v),
            deregistered=v in stages.deregistered,
            hint=None
            if v in tags
            else _untagged_hint(
                fmt.format(spec.name, v),
                by_release.get(v, ()),
                remote=remote,
                shared=registry.shared,
            ),
        )
        for v in versions
    )
    refused = tuple(DataRejection.from_dict(r) for r in registry.data_rejections())
    return History(project=spec.name, items=items, data_rejections=refused)
