"""`promote` and `retire`: the registry operations peers have (GTO `assign`/`deprecate`).

Both write git tags in GTO's grammar (`gitops/tags.py`, `EventTag`), so that
`gto show` and `gto history` see what mlcycle did, and mlcycle reads the stages
GTO assigned:

- `promote REF --stage prod` tags the commit of REF's release `NAME#prod#N`
  (annotated; N one more than the project's largest GTO counter, as GTO numbers
  them). The message carries the registry entry (`RELEASE/GENERATION`), which GTO,
  knowing versions only, ignores.
- `retire RELEASE` tags `NAME@vX.Y.Z!#N` (GTO's deregistration, what `gto
  deprecate NAME vX.Y.Z` writes) and retires every generation of the release in
  the registry; `retire RELEASE/GENERATION` retires that generation in the registry
  only (GTO has no generations). The registry record is what serving reads: it
  knows no git.

A stage names the newest assignment (by tagging time, then counter) that was not
unassigned and whose version is not retired: retiring the model in `prod` hands
`prod` back to the model promoted there before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.api.project import open_project
from mlcycle.errors import GitError, UsageError

if TYPE_CHECKING:
    from mlcycle.api.project import Project
    from mlcycle.gitops import ReleaseTag, Repo, TagEvent
    from mlcycle.registry import Entry, Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    """A model in a stage: which version (and registry entry), by which tag."""

    stage: str
    version: str
    ref: str | None
    """`RELEASE/GENERATION` mlcycle recorded; None for a stage GTO assigned (a version)."""
    tag: str
    date: str
    author: str | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "stage": self.stage,
            "version": self.version,
            "ref": self.ref,
            "tag": self.tag,
            "date": self.date,
            "author": self.author,
        }


@dataclass(frozen=True)
class Stages:
    """The stages of one project as its git tags say, and the versions GTO retired."""

    assignments: dict[str, Assignment] = field(default_factory=dict)
    deregistered: frozenset[str] = frozenset()
    deprecation: str | None = None
    """The tag by which GTO deprecated the whole project (`gto deprecate NAME`), if any."""

    def of_version(self, version: str) -> tuple[str, ...]:
        """The stages `version` holds now, sorted."""
        return tuple(sorted(s for s, a in self.assignments.items() if a.version == version))

    def of_entry(self, entry: Entry, newest: Entry | None) -> tuple[str, ...]:
        """The stages `entry` holds: an assignment naming it, or its version's when the
        assignment names none (GTO's) and `entry` is the version's `newest` candidate."""
        held = []
        for stage, a in self.assignments.items():
            if a.version != entry.release:
                continue
            if a.ref == str(entry.ref) or (
                a.ref is None and newest is not None and newest == entry
            ):
                held.append(stage)
        return tuple(sorted(held))


def read_stages(repo: Repo | None, name: str, registry: Registry, fmt_template: str) -> Stages:
    """The stages of project `name` from `repo`'s tags (empty without a repository)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Action, TagFormat

    if repo is None:
        return Stages()
    fmt = TagFormat(fmt_template)
    by_commit: dict[str, str] = {}
    for release in repo.release_tags(fmt, name):
        by_commit.setdefault(release.commit, str(release.version))
    events = repo.event_tags(name)
    deregistered = frozenset(
        str(e.tag.version) for e in events if e.tag.action is Action.DEREGISTER
    )
    retired_entries = {str(e.ref) for e in registry.entries() if e.retired}
    open_: dict[str, list[Assignment]] = {}
    for event in events:
        stage = event.tag.stage
        if stage is None:
            continue
        version = _version_of(event, by_commit)
        if version is None:
            log.info("tag %s: no release tag on its commit; ignored", event.name)
            continue
        held = open_.setdefault(stage, [])
        if event.tag.action is Action.UNASSIGN:
            open_[stage] = [a for a in held if a.version != version]
            continue
        ref = event.metadata.get("registry", {}).get("ref") if event.metadata else None
        held.append(
            Assignment(
                stage=stage,
                version=version,
                ref=ref if isinstance(ref, str) else None,
                tag=event.name,
                date=event.date,
                author=event.tagger,
            )
        )
    assignments = {}
    for stage, held in open_.items():
        alive = [
            a
            for a in held
            if a.version not in deregistered and (a.ref is None or a.ref not in retired_entries)
        ]
        if alive:
            assignments[stage] = alive[-1]
    return Stages(
        assignments=assignments,
        deregistered=deregistered,
        deprecation=repo.artifact_deprecation(name),
    )


def _version_of(event: TagEvent, by_commit: dict[str, str]) -> str | None:
    """The version a stage tag names: mlcycle's metadata, else the release on its commit."""
    version = event.metadata.get("version") if event.metadata else None
    if isinstance(version, str):
        return version
    return by_commit.get(event.commit)


def project_stages(project: Project) -> Stages:
    """The project's stages; empty outside a git repository."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Repo

    try:
        repo = Repo.find(project.root)
    except GitError as e:
        if "not a git repository" not in e.message:
            raise
        return Stages()
    with repo:
        spec = project.spec
        return read_stages(repo, spec.name, project.registry, spec.release.tag_format)


def stage_entry(project: Project, stage: str, *, stages: Stages | None = None) -> Entry:
    """The registry entry in `stage` (UsageError when the stage holds none)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import check_stage
    from mlcycle.registry import ModelRef

    check_stage(stage)
    stages = stages if stages is not None else project_stages(project)
    held = stages.assignments.get(stage)
    name = project.spec.name
    if held is None:
        known = ", ".join(sorted(stages.assignments)) or "none"
        raise UsageError(
            f"{name}: no model is in stage {stage!r} (stages: {known})",
            hint=f"promote one: mlcycle promote RELEASE --stage {stage}",
        )
    ref = held.ref or held.version
    entry = named_entry(project.registry, ModelRef.parse(ref), f"stage {stage} ({held.tag})")
    if not entry.is_candidate:
        raise UsageError(
            f"{name}: stage {stage} holds {entry.ref}, which is {entry.state}",
            hint=f"promote another model: mlcycle promote RELEASE --stage {stage}",
        )
    return entry


# --- promote ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PromoteResult:
    """A model assigned to a stage."""

    project: str
    ref: str
    version: str
    stage: str
    tag: str
    commit: str
    previous: str | None
    """What the stage held before (`RELEASE/GENERATION` or a version), None if nothing."""
    pushed: bool
    unchanged: bool = False
    """The model already held the stage: nothing was tagged (`tag` is the tag that put it there)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "project": self.project,
            "ref": self.ref,
            "version": self.version,
            "stage": self.stage,
            "tag": self.tag,
            "commit": self.commit,
            "previous": self.previous,
            "pushed": self.pushed,
            "unchanged": self.unchanged,
        }


def promote(
    path: str | Path | None = None,
    *,
    ref: str,
    stage: str,
    push: bool = False,
    remote: str = "origin",
) -> PromoteResult:
    """Assign the model `ref` names to `stage`: the GTO tag `NAME#STAGE#N` (module doc).

    UsageError (exit 2) for an unknown, rejected or retired model, a model outside a
    release, or a stage name GTO cannot read; GitError (exit 1) when git fails. A
    push the remote refuses leaves no tag behind.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Action, EventTag, Repo, check_stage, release_message
    from mlcycle.registry import ModelRef

    check_stage(stage)
    project = open_project(path)
    spec = project.spec
    registry = project.registry
    entry = named_entry(registry, ModelRef.parse(ref), ref)
    if not entry.is_candidate:
        raise UsageError(
            f"{spec.name} {entry.ref} is {entry.state} and cannot be promoted",
            hint="promote a released model: `mlcycle models` lists them",
        )
    with Repo.find(project.root) as repo:
        release = _release_tag(repo, project, entry.release)
        stages = read_stages(repo, spec.name, registry, spec.release.tag_format)
        before = stages.assignments.get(stage)
        if before is not None and before.version == entry.release and before.ref == str(entry.ref):
            # Already there: another tag would only bump GTO's counter and blur the history.
            # (A stage GTO assigned names a version only: promoting names the generation.)
            return PromoteResult(
                project=spec.name,
                ref=str(entry.ref),
                version=entry.release,
                stage=stage,
                tag=before.tag,
                commit=release.commit,
                previous=before.ref or before.version,
                pushed=False,
                unchanged=True,
            )
        _after_the_last_event(repo, spec.name)
        name = EventTag(
            spec.name, Action.ASSIGN, stage=stage, counter=repo.next_counter(spec.name)
        ).format()
        message = release_message(
            f"{spec.name} {entry.ref} enters {stage}",
            {
                "project": spec.name,
                "action": Action.ASSIGN.value,
                "stage": stage,
                "version": entry.release,
                "registry": {"ref": str(entry.ref), "sha256": entry.artifact.sha256},
            },
        )
        repo.create_tag(name, message, commit=release.commit, version=release.version)
        pushed = _push(repo, name, push, remote)
    return PromoteResult(
        project=spec.name,
        ref=str(entry.ref),
        version=entry.release,
        stage=stage,
        tag=name,
        commit=release.commit,
        previous=None if before is None else (before.ref or before.version),
        pushed=pushed,
    )


# --- retire ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetireResult:
    """Models retired: never served or selected again, kept for lineage."""

    project: str
    refs: tuple[str, ...]
    tag: str | None
    """The GTO deregistration tag; None when a single generation was retired."""
    current: str | None
    """The current model afterwards."""
    pushed: bool
    warnings: tuple[str, ...] = ()
    """What the retirement changed beyond the models, e.g. a stage it left empty."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "project": self.project,
            "retired": list(self.refs),
            "tag": self.tag,
            "current": self.current,
            "pushed": self.pushed,
            "warnings": list(self.warnings),
        }


def retire(
    path: str | Path | None = None,
    *,
    ref: str,
    reason: str | None = None,
    push: bool = False,
    remote: str = "origin",
) -> RetireResult:
    """Retire the release or generation `ref` names (see the module doc).

    Running it again for a release GTO (or an interrupted run) already tagged retires
    the registry's entries without a second tag; once both are retired, running it
    again is refused as GTO's `deprecate` refuses it ("already retired", exit 2).
    UsageError (exit 2) for an unknown REF and for a model the active serving manifest
    needs (deploy another model first); GitError (exit 1) when git fails, and then
    nothing is retired. A stage the retired release held goes back to the model
    promoted there before, or is left empty: the result's warnings say which.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Action, EventTag, Repo, release_message
    from mlcycle.registry import DEV, ModelRef

    project = open_project(path)
    spec = project.spec
    registry = project.registry
    parsed = ModelRef.parse(ref)
    if parsed.release is None:
        raise UsageError(
            f"{ref} moves as models are added; name what to retire",
            hint=registry.pinned_hint(parsed, "retire"),
        )
    if parsed.generation is not None:
        targets = [named_entry(registry, parsed, ref)]
    else:
        targets = [e for e in registry.entries() if e.release == parsed.release]
        if not targets:
            raise UsageError(
                f"{spec.name}: no release {parsed.release} in the registry",
                hint="`mlcycle history` lists the releases",
            )
    _check_retirable(project, parsed, targets)
    stages_before = project_stages(project)
    note: dict[str, Any] = {"reason": reason} if reason else {}
    tag: str | None = None
    pushed = False
    made = False
    repo: Repo | None = None
    if parsed.generation is None and parsed.release != DEV:
        repo = Repo.find(project.root)
    try:
        if repo is not None:
            release = _release_tag(repo, project, parsed.release)
            done = [
                e.tag.format()
                for e in repo.event_tags(spec.name)
                if e.tag.action is Action.DEREGISTER and e.tag.version == release.version
            ]
            if done:
                tag = done[0]
            else:
                _after_the_last_event(repo, spec.name)
                tag = EventTag(
                    spec.name,
                    Action.DEREGISTER,
                    version=release.version,
                    counter=repo.next_counter(spec.name),
                ).format()
                metadata = {
                    "project": spec.name,
                    "action": Action.DEREGISTER.value,
                    "version": parsed.release,
                    "registry": {"refs": [str(e.ref) for e in targets]},
                    **note,
                }
                summary = f"{spec.name} {parsed.release} retired" + (
                    f": {reason}" if reason else ""
                )
                repo.create_tag(
                    tag,
                    release_message(summary, metadata),
                    commit=release.commit,
                    version=release.version,
                )
                made = True
            pushed = _push(repo, tag, push, remote)
            note["tag"] = tag
        try:
            registry.retire(parsed, note=note)
        except BaseException:
            if made and repo is not None and not pushed:
                repo.delete_tag(tag or "")
            raise
    finally:
        if repo is not None:
            repo.close()
    current = registry.current()
    return RetireResult(
        project=spec.name,
        refs=tuple(str(e.ref) for e in targets),
        tag=tag,
        current=None if current is None else str(current.ref),
        pushed=pushed,
        warnings=_stage_changes(stages_before, project_stages(project), targets),
    )


def _check_retirable(project: Project, ref: Any, targets: list[Entry]) -> None:
    """UsageError when there is nothing left to retire, or when serving needs a target."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.registry.manifests import PINNED

    name = project.spec.name
    if all(e.retired for e in targets) and not _deregistration_missing(project, ref):
        raise UsageError(
            f"{name} {ref} is already retired; nothing to do",
            hint="`mlcycle history` and `mlcycle models` show what is retired",
        )
    manifest = project.registry.manifests().active()
    if manifest is None:
        return
    retiring = {e.ref for e in targets}
    if manifest.mode == PINNED:
        needed = sorted(set(manifest.pinned) & {str(r) for r in retiring})
        why = f"pins {', '.join(needed)}"
    else:
        serving = [
            e
            for e in project.registry.entries()
            if e.release == manifest.release and e.is_candidate
        ]
        # Only a retirement that takes the last of them away (a manifest with none left
        # is already broken, and retiring something else does not make it worse).
        needed = [manifest.release] if serving and all(e.ref in retiring for e in serving) else []
        why = f"follows release {manifest.release}, and this retires its last serving generation"
    if needed:
        raise UsageError(
            f"{name}: the active serving manifest ({manifest.number}) {why}; retiring it "
            "would leave the deployment nothing to serve: deploy another model first",
            hint="mlcycle deploy REF (another release or generation), then retire this one",
        )


def _deregistration_missing(project: Project, ref: Any) -> bool:
    """Whether `ref` is a tagged release that has no GTO deregistration tag yet (a
    retirement to finish in git, e.g. after its generations were retired one by one)."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import Action, Repo, TagFormat
    from mlcycle.registry import DEV

    if ref.generation is not None or ref.release == DEV:
        return False
    name = project.spec.name
    try:
        with Repo.find(project.root) as repo:
            tagged = any(
                str(t.version) == ref.release
                for t in repo.release_tags(TagFormat(project.spec.release.tag_format), name)
            )
            return tagged and not any(
                e.tag.action is Action.DEREGISTER and str(e.tag.version) == ref.release
                for e in repo.event_tags(name)
            )
    except GitError:
        return False


def _stage_changes(before: Stages, after: Stages, targets: list[Entry]) -> tuple[str, ...]:
    """Warnings for the stages a retired model held: left empty, or handed back."""
    versions = {e.release for e in targets}
    refs = {str(e.ref) for e in targets}
    said = []
    for stage, held in sorted(before.assignments.items()):
        if held.version not in versions or (held.ref is not None and held.ref not in refs):
            continue
        now = after.assignments.get(stage)
        if now is None:
            said.append(
                f"stage {stage} is left empty (it held {held.ref or held.version}): "
                f"promote another model with `mlcycle promote REF --stage {stage}`"
            )
        elif now != held:
            said.append(
                f"stage {stage} goes back to {now.ref or now.version}, promoted there before"
            )
    return tuple(said)


# --- shared ----------------------------------------------------------------------------


def named_entry(registry: Registry, ref: Any, text: str) -> Entry:
    """The entry `ref` names, whatever its status (the caller says what it may not do
    with a retired or rejected one); UsageError (exit 2) when none does."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.registry import ModelRef

    if ref.release is not None and ref.generation is None:
        found = [e for e in registry.entries() if e.release == ref.release]
        usable = [e for e in found if e.is_candidate]
        if usable or found:
            return (usable or found)[-1]
    elif ref.release is not None:
        for e in registry.entries():
            if e.ref == ModelRef(ref.release, ref.generation):
                return e
    else:
        entry = registry.current() if ref.current else registry.latest()
        if entry is not None:
            return entry
    raise names_nothing(registry, text)


def registered_entry(registry: Registry, ref: Any, text: str) -> Entry:
    """`registry.get(ref)` for a reference a user typed: one that names nothing the
    registry holds (an unknown release or generation) is a usage error (exit 2) that
    lists what it holds, as for every verb that takes a REF; what the registry says
    about a release it holds (none may serve, no current model) stands."""
    if ref.release is not None and not ref.current:
        held = {(e.release, e.generation) for e in registry.entries()}
        if ref.generation is None:
            found = any(release == ref.release for release, _ in held)
        else:
            found = (ref.release, ref.generation) in held
        if not found:
            raise names_nothing(registry, text)
    return registry.get(ref)


def names_nothing(registry: Registry, text: str) -> UsageError:
    """The error for a reference `text` that names no model of `registry` (exit 2)."""
    return UsageError(
        f"{registry.project}: {text} names no model in the registry (releases: {registry.held()})",
        hint="`mlcycle models` lists the models",
    )


def _release_tag(repo: Repo, project: Project, version: str) -> ReleaseTag:
    """The release tag of `version`; UsageError when the version was never released."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.gitops import TagFormat

    spec = project.spec
    fmt = TagFormat(spec.release.tag_format).validate(spec.name)
    for release in repo.release_tags(fmt, spec.name):
        if str(release.version) == version:
            return release
    raise UsageError(
        f"{spec.name} {version} has no release tag, so no commit for a stage to point at",
        hint="promote or retire a released model (`mlcycle release` makes one)",
    )


def _after_the_last_event(repo: Repo, name: str) -> None:
    """Wait, if need be, until the clock has left the second of `name`'s newest event tag.

    GTO orders event tags by tagging time, which git keeps in whole seconds: two
    promotions within one second would tie, and GTO could read them in either order.
    Waiting (never more than a second, only when tags follow each other that fast)
    keeps GTO's order the one mlcycle wrote.
    """
    import datetime as dt
    import time

    events = repo.event_tags(name)
    if not events:
        return
    last = max(dt.datetime.fromisoformat(e.date).timestamp() for e in events)
    now = time.time()
    if int(now) <= int(last):
        time.sleep(int(last) + 1 - now)


def _push(repo: Repo, tag: str, push: bool, remote: str) -> bool:
    """Push `tag` when asked; a refused push deletes it, as a refused release does."""
    if not push:
        return False
    try:
        repo.push_tag(tag, remote)
    except BaseException:
        repo.delete_tag(tag)
        raise
    return True
