"""The registry interface: what every backend (local files now, a remote store later) offers.

A backend implements storage (`register`, `entries`, `current`, `set_current`,
`artifact_path`, `remove_release`); the queries built on them (`get`, `latest`,
`best`, `releases`, `load_model`) are written once here and may be overridden
where a backend can answer them faster.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mlcycle.errors import RegistryError
from mlcycle.registry.artifacts import OnnxForm, read_onnx
from mlcycle.registry.artifacts import load_model as load_artifact
from mlcycle.registry.code import read_code_checked
from mlcycle.registry.entry import Entry, Status
from mlcycle.registry.refs import DEV, ModelRef, as_ref, check_release, release_key
from mlcycle.registry.trust import TrustPolicy
from mlcycle.spec.model import Procurement

if TYPE_CHECKING:
    from mlcycle.registry.manifests import ManifestStore
    from mlcycle.registry.runs import RunStore

log = logging.getLogger(__name__)


class Registry(ABC):
    """Releases and generations of one project's models."""

    project: str
    trust: TrustPolicy  # what a model in this registry may name; see registry/trust.py
    shared: ClassVar[bool] = False
    """Whether other working copies may write to this registry too (a team's database):
    then an entry whose release tag this clone lacks may be another clone's release."""

    # --- storage: each backend implements these ------------------------------------

    @abstractmethod
    def register(
        self,
        model: Any,
        *,
        release: str,
        metrics: Mapping[str, float],
        gate: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        spec_hash: str | None,
        git_commit: str | None,
        procurement: Procurement | str,
        status: Status | str,
        extra: Mapping[str, Any] | None = None,
        make_current: bool = False,
        generation: int | None = None,
        code: Mapping[str, bytes] | None = None,
        onnx: OnnxForm | None = None,
    ) -> Entry:
        """Store `model` as a new generation of `release` and return its entry.

        `code` is the project's model code (relative path → bytes, as
        `registry.code.project_code` reads it): stored with the entry, its hashes
        recorded, its names the only project names the model may hold. `onnx` is the
        model's ONNX form (`mlcycle.registry.onnx.compile_onnx`), stored next to it with
        its SHA-256 so that serving need not convert it again.

        `generation=None` takes the next free number of the release. With
        `make_current`, a candidate becomes current in the same step; a rejected
        entry never does (the flag is then ignored). Raises UsageError for bad
        arguments and RegistryError when the registry cannot be written.
        """

    @abstractmethod
    def entries(self) -> list[Entry]:
        """Every entry, ordered by release (`dev` first, then semver) and generation."""

    @abstractmethod
    def current(self) -> Entry | None:
        """The entry production should serve, or None when none was set."""

    @abstractmethod
    def set_current(self, ref: ModelRef | str) -> Entry:
        """Point `current` at the entry `ref` names; a rejected entry is refused."""

    @abstractmethod
    def artifact_path(self, entry: Entry) -> Path:
        """Local path of the entry's artifact file."""

    @abstractmethod
    def code_dir(self, entry: Entry) -> Path:
        """Local directory of the entry's stored model code (`code/` beside the artifact)."""

    @abstractmethod
    def remove_release(self, release: str) -> list[Entry]:
        """Remove every entry of `release` at once (rollback); returns what was removed.

        When `current` pointed into the release, it falls back to the entry that
        was current before, if that still exists, else it is cleared.
        """

    @abstractmethod
    def remove_entry(self, ref: ModelRef | str) -> Entry | None:
        """Remove the one entry `RELEASE/GENERATION` (the undo of one `register`).

        Other generations of the release stay. When `current` named the entry, it
        falls back as in `remove_release`. Returns the removed entry, None if absent.
        """

    @abstractmethod
    def release_lock(
        self, *, on_wait: Callable[[str], None] | None = None
    ) -> AbstractContextManager[None]:
        """Hold the project's release lock: one release at a time, across processes.

        A release holds it from choosing its version until its tag exists (or its
        registration is undone), so concurrent releases never pick the same
        version nor undo each other. `on_wait(who)` is called once, describing the
        holder, when another process holds it; then the call blocks until it is free.
        """

    @abstractmethod
    def manifests(self) -> ManifestStore:
        """The project's serving manifests: what a dynamic deployment serves, and its history."""

    def runs(self) -> RunStore:
        """The project's run records: every training attempt (`registry/runs.py`).

        A backend keeps them where it keeps its entries, so a shared registry shares
        them too; one that cannot says so here.
        """
        raise RegistryError(f"{self.describe()} keeps no run records")

    @abstractmethod
    def change_token(self) -> Hashable:
        """A value that differs after an entry is registered or removed or a manifest published.

        Cheap enough to poll every few seconds from every serving worker: a dynamic
        engine reads the manifest and the entries again only when it changes. Equal
        tokens mean nothing changed; a new token may also come without a change.
        """

    @abstractmethod
    def retire(self, ref: ModelRef | str, *, note: Mapping[str, Any] | None = None) -> list[Entry]:
        """Retire the entries `ref` names: `RELEASE/GENERATION` one, `RELEASE` all of them.

        A retired entry stays for lineage but is never served, selected or made
        current again (`Entry.is_candidate` is false). When `current` named one, it
        moves to the newest entry of a release that may still serve (else it is
        cleared). `note` (who, why, the git tag) is kept with each. Returns the
        entries now retired; RegistryError when `ref` names none.
        """

    def record_data_rejection(self, record: Mapping[str, Any]) -> None:
        """Keep the record of new rows data validation refused (nothing was trained, so
        no entry holds it): which rows (`window`), against which model (`against`), the
        anomalies and the spec hash. A backend that keeps none leaves the training
        agent to check the same rows again at every run."""
        log.info("%s: this registry keeps no data rejections", self.project)

    def data_rejections(self) -> list[dict[str, Any]]:
        """The records `record_data_rejection` kept, oldest first."""
        return []

    # --- queries, written once on top of the storage methods -------------------------

    def releases(self) -> list[str]:
        """The releases holding at least one entry, in `entries()` order."""
        seen: dict[str, None] = {}
        for entry in self.entries():
            seen.setdefault(entry.release, None)
        return list(seen)

    def latest(
        self, release: str | None = None, status: Status | str | None = Status.CANDIDATE
    ) -> Entry | None:
        """The newest entry (of `release` if given) with `status` (None: any status)."""
        if release is not None:
            check_release(release)
        wanted = None if status is None else Status(status)
        found = [
            e
            for e in self.entries()
            if (release is None or e.release == release) and _has(e, wanted)
        ]
        return found[-1] if found else None

    def best(
        self,
        metric: str,
        higher_is_better: bool = True,
        *,
        release: str | None = None,
        status: Status | str | None = Status.CANDIDATE,
    ) -> Entry | None:
        """The entry with the best value of `metric`; ties go to the newest.

        Entries without the metric (or with NaN) are skipped; None when none has it.
        """
        if release is not None:
            check_release(release)
        wanted = None if status is None else Status(status)
        best: Entry | None = None
        for entry in self.entries():
            if release is not None and entry.release != release:
                continue
            if not _has(entry, wanted):
                continue
            value = entry.metrics.get(metric)
            if value is None or math.isnan(value):
                continue
            if best is None:
                best = entry
                continue
            incumbent = best.metrics[metric]
            if (value >= incumbent) if higher_is_better else (value <= incumbent):
                best = entry
        return best

    def get(self, ref: ModelRef | str) -> Entry:
        """The entry `ref` names; RegistryError when there is none.

        `RELEASE/GENERATION` names an entry whatever its status; `RELEASE` and
        `latest` name the newest candidate; `current` the current entry.
        """
        ref = as_ref(ref)
        if ref.current:
            entry = self.current()
            if entry is None:
                raise RegistryError(
                    f"{self.project}: no current model",
                    hint="register a model that passes its gate, or set one current",
                )
            return entry
        if ref.generation is None:
            entry = self.latest(ref.release)
            if entry is None:
                where = f"release {ref.release}" if ref.release else self.project
                held = [e for e in self.entries() if not ref.release or e.release == ref.release]
                if held:  # there are models, none may serve: say why each may not
                    why = "; ".join(f"{e.ref} {e.unservable}" for e in held[-3:])
                    raise RegistryError(
                        f"{where}: no model that may serve ({why})",
                        hint="name another release (`mlcycle models` lists them), or make "
                        "a new one with `mlcycle release`",
                    )
                raise RegistryError(
                    f"{where}: no candidate model in the registry", hint=self._known_hint()
                )
            return entry
        for entry in self.entries():
            if entry.release == ref.release and entry.generation == ref.generation:
                return entry
        raise RegistryError(
            f"{self.project}: no model {ref} in the registry", hint=self._known_hint()
        )

    def load_model(self, entry: Entry) -> Any:
        """The entry's estimator, after checking the artifact's SHA-256 (IntegrityError if not).

        Only names `trust_for(entry)` trusts are built; a pickle artifact (older mlcycle)
        is refused with the way to re-save it (RegistryError).
        """
        return load_artifact(
            self.artifact_path(entry),
            sha256=entry.artifact.sha256,
            format=entry.artifact.format,
            trust=self.trust_for(entry),
        )

    def trust_for(self, entry: Entry) -> TrustPolicy:
        """The policy the entry loads under: its own stored code's names, imported from there.

        The stored files are checked against their recorded hashes first
        (IntegrityError). An entry without model code loads under `self.trust`.
        """
        if not entry.code:
            return self.trust
        directory = self.code_dir(entry)
        files = read_code_checked(directory, entry.code, where=f"{self.project} {entry.ref}")
        return self.trust.with_code(
            files, root=directory.resolve(), origin=f"model.code of {self.project} {entry.ref}"
        )

    def describe(self) -> str:
        """Where the registry is, for people (a path or an address, never a repr)."""
        return self.project

    def load_onnx(self, entry: Entry) -> bytes | None:
        """The bytes of the entry's ONNX form after checking their SHA-256 (IntegrityError
        if changed), or None when the entry has none."""
        if entry.onnx is None:
            return None
        path = self.artifact_path(entry).with_name(entry.onnx.file)
        return read_onnx(path, sha256=entry.onnx.sha256)

    def pinned_hint(self, ref: ModelRef, verb: str) -> str:
        """The hint for `mlcycle VERB latest|current`, which needs a model that stays put:
        what `ref` names right now, so that the hint names only models that exist."""
        entry = self.current() if ref.current else self.latest()
        if entry is None:
            return self._known_hint()
        return (
            f"{ref} is {entry.ref} now: mlcycle {verb} {entry.ref} (that generation), or "
            f"mlcycle {verb} {entry.release} (its release)"
        )

    def _known_hint(self) -> str:
        if not self.releases():
            return "the registry is empty; train or release a model first"
        return f"releases in the registry: {self.held()}"

    def held(self) -> str:
        """What the registry holds, for a message: the newest five releases (`none`), and
        `dev` apart — it holds `mlcycle train`'s development trainings, not a release."""
        releases = self.releases()
        shown = ", ".join(sorted((r for r in releases if r != DEV), key=release_key)[-5:])
        return (shown or "none") + (f"; development trainings: {DEV}" if DEV in releases else "")


def _has(entry: Entry, wanted: Status | None) -> bool:
    """Whether `entry` has status `wanted` (None: any); a retired entry is no candidate."""
    if wanted is None:
        return True
    if wanted is Status.CANDIDATE:
        return entry.is_candidate
    return entry.status is wanted
