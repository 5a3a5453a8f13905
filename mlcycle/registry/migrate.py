"""Copying a project's local registry into a shared one (`mlcycle registry migrate`).

Everything the local directory holds for the project goes: the entries (their
records: metrics, gate, data window and lineage, spec hash, git commit) with
every file they name (model, ONNX form, model code) and their retirements, the
current pointer with its history, the serving manifests, the training runs and
data validation's refusals. Stages need no copy: they are git tags, and travel
with `git push --tags`.

The guarantees, in the order the work is done:

1. Nothing is overwritten. The target is read first; a record it holds that
   differs from the source's (another clone migrated first, or released into it)
   is a conflict, and every conflict is named before anything is written.
2. Nothing damaged is copied. Every file is checked against the SHA-256 its entry
   recorded before any is copied; a damaged or missing one is named with its
   entry and nothing is written. Each is checked again as it is copied (a private
   copy is hashed while it is made, and that copy is what is uploaded).
3. No entry is half-copied. An entry's blobs are stored first (content-addressed:
   storing one twice is a no-op), then its row in one transaction, so a migration
   killed anywhere leaves at most blobs nobody names.
4. Running it again is safe. Records the target holds, equal, are skipped; a
   re-run after an interruption copies what is missing and nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlcycle.errors import IntegrityError, RegistryError, UsageError
from mlcycle.faults import checkpoint
from mlcycle.progress import NULL_PROGRESS, Progress
from mlcycle.registry.code import CODE_DIR
from mlcycle.registry.entry import Entry
from mlcycle.registry.local import LocalRegistry
from mlcycle.registry.refs import ModelRef
from mlcycle.registry.sql import Imported, SqlRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobFile:
    """One file an entry names: where it lies in the source and the SHA-256 recorded."""

    entry: str  # RELEASE/GENERATION
    name: str  # as the entry names it: model.skops, model.onnx, code/PATH
    path: Path
    sha256: str  # hex, as entry.json records it

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


@dataclass(frozen=True)
class Migration:
    """What `migrate` copied into the shared registry, and what it found there already.

    Each tuple names what was copied (entries as `RELEASE/GENERATION`, manifests by
    number, runs by id); the `present_*` counts are what the target held, equal.
    """

    project: str
    source: str  # the local registry's directory
    target: str  # the shared registry (database URL, password masked, and artifact store)
    entries: tuple[str, ...] = ()
    retirements: tuple[str, ...] = ()
    current: str | None = None  # the entry made current in the target, if this run did
    manifests: tuple[int, ...] = ()
    runs: tuple[str, ...] = ()
    data_rejections: tuple[int, ...] = ()
    blobs: int = 0  # files uploaded
    size: int = 0  # their bytes
    present_entries: int = 0
    present_blobs: int = 0  # files of copied entries the store already held
    present_records: int = 0  # manifests, runs, rejections, pointer already there
    digests: dict[str, str] = field(default_factory=dict)
    """Each copied file (`RELEASE/GENERATION/NAME`) → its verified digest."""

    @property
    def copied(self) -> int:
        """How many records this run wrote (0: the target held everything already)."""
        return (
            len(self.entries)
            + len(self.retirements)
            + (self.current is not None)
            + len(self.manifests)
            + len(self.runs)
            + len(self.data_rejections)
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for `--json`)."""
        return {
            "project": self.project,
            "source": self.source,
            "target": self.target,
            "copied": {
                "entries": list(self.entries),
                "retirements": list(self.retirements),
                "current": self.current,
                "manifests": list(self.manifests),
                "runs": list(self.runs),
                "data_rejections": list(self.data_rejections),
                "blobs": self.blobs,
                "bytes": self.size,
            },
            "already_there": {
                "entries": self.present_entries,
                "blobs": self.present_blobs,
                "records": self.present_records,
            },
            "nothing_to_copy": self.copied == 0,
            "digests": dict(self.digests),
        }


def migrate(
    source: LocalRegistry, target: SqlRegistry, *, progress: Progress = NULL_PROGRESS
) -> Migration:
    """Copy everything of `source` into `target` (see the module docstring).

    Raises RegistryError naming every conflicting record, or IntegrityError naming
    every entry with a damaged or missing file, before writing anything.
    """
    if source.project != target.project:
        raise UsageError(f"cannot copy {source.project}'s registry into {target.project}'s")
    project = source.project
    entries = source.entries()
    pointer = source.pointer()
    manifests = source.manifests().history()
    runs = source.runs().runs()
    rejections = source.data_rejections()

    progress.start("reading the shared registry", total=None)
    there = {str(e.ref): e for e in target.entries()}
    there_manifests = {m.number: m for m in target.manifests().history()}
    there_runs = {r.id: r for r in target.runs().runs()}
    there_rejections = target.data_rejections()
    there_current = target.current()
    progress.done()

    conflicts: list[str] = []
    todo: list[Entry] = []
    retire: list[Entry] = []
    present_entries = 0
    for entry in entries:
        held = there.get(str(entry.ref))
        if held is None:
            todo.append(entry)
        elif held.as_dict() != entry.as_dict():
            conflicts.append(f"entry {entry.ref} ({_differs(entry, held)})")
        else:
            present_entries += 1
            if entry.retired and not held.retired:
                retire.append(entry)
    present_records = 0
    if pointer is not None and there_current is not None:
        ref = f"{pointer.get('release')}/{pointer.get('generation')}"
        if str(there_current.ref) != ref:
            conflicts.append(f"the current model ({ref} here, {there_current.ref} there)")
        present_records += 1
        pointer = None  # the target's pointer stays as it is
    new_manifests = []
    for manifest in manifests:
        other = there_manifests.get(manifest.number)
        if other is None:
            new_manifests.append(manifest)
        elif other.as_dict() != manifest.as_dict():
            conflicts.append(f"serving manifest {manifest.number}")
        else:
            present_records += 1
    new_runs = []
    for run in runs:
        held_run = there_runs.get(run.id)
        if held_run is None:
            new_runs.append(run)
        elif held_run.as_dict() != run.as_dict():
            conflicts.append(f"run {run.id}")
        else:
            present_records += 1
    new_rejections = []
    for number, record in enumerate(rejections, start=1):
        if number > len(there_rejections):
            new_rejections.append((number, record))
        elif there_rejections[number - 1] != record:
            conflicts.append(f"data rejection {number}")
        else:
            present_records += 1
    if conflicts:
        raise _conflict_error(source, target, conflicts, written=False)

    files = [f for entry in todo for f in _files(source, entry)]
    progress.start(f"checking {len(files)} files of {len(todo)} models", total=len(files))
    damaged: dict[str, list[str]] = {}
    for blob in files:
        problem = _check(blob)
        if problem:
            damaged.setdefault(blob.entry, []).append(f"{blob.name} {problem}")
        progress.advance()
    progress.done()
    if damaged:
        named = "; ".join(f"{project} {ref}: {', '.join(p)}" for ref, p in damaged.items())
        raise IntegrityError(
            f"{source.describe()}: damaged model files, so nothing was copied to "
            f"{target.describe()}: {named}",
            hint="restore the files from a backup, or leave those models behind (remove "
            f"their directories under {source.releases_dir}) and migrate again",
        )

    tally = _Tally(present_records=present_records)
    work = len(todo) + len(retire) + (pointer is not None)
    work += len(new_manifests) + len(new_runs) + len(new_rejections)
    progress.start(f"copying {project}'s records and files", total=work)
    with tempfile.TemporaryDirectory(prefix="mlcycle-migrate-") as scratch:
        for entry in todo:
            for blob in _files(source, entry):
                tally.digests[f"{blob.entry}/{blob.name}"] = blob.digest
                if target.blobs.has(blob.digest):
                    tally.present_blobs += 1
                    continue
                copy = _verified_copy(blob, Path(scratch), source)
                stored = target.blobs.put(copy)
                if stored != blob.digest:  # put names what it read: it must agree
                    raise IntegrityError(
                        f"{target.blobs.describe()}: {project} {blob.entry} {blob.name} was "
                        f"stored as {stored}, not {blob.digest}"
                    )
                tally.blobs += 1
                tally.size += copy.stat().st_size
                copy.unlink()
            checkpoint("migrate:blobs-stored")
            tally.add(target.import_entry(entry), f"entry {entry.ref}", tally.entries, entry.ref)
            log.info("copied %s %s to %s", project, entry.ref, target.describe())
            progress.advance()
            checkpoint("migrate:entry-copied")
    for entry in retire:
        tally.add(target.import_entry(entry), f"entry {entry.ref}", tally.retired, entry.ref)
        progress.advance()
    if pointer is not None:
        ref = f"{pointer.get('release')}/{pointer.get('generation')}"
        tally.add(target.import_pointer(pointer), f"the current model ({ref})", tally.current, ref)
        progress.advance()
    store = target.manifests()
    for manifest in new_manifests:
        number = manifest.number
        tally.add(
            store.import_manifest(manifest), f"serving manifest {number}", tally.manifests, number
        )
        progress.advance()
    run_store = target.runs()
    for run in new_runs:
        tally.add(run_store.import_run(run), f"run {run.id}", tally.runs, run.id)
        progress.advance()
    for number, record in new_rejections:
        outcome = target.import_data_rejection(number, record)
        tally.add(outcome, f"data rejection {number}", tally.rejections, number)
        progress.advance()
    progress.done()
    if tally.late:
        raise _conflict_error(source, target, tally.late, written=True)
    return Migration(
        project=project,
        source=source.describe(),
        target=target.describe(),
        entries=tuple(tally.entries),
        retirements=tuple(tally.retired),
        current=tally.current[0] if tally.current else None,
        manifests=tuple(tally.manifests),
        runs=tuple(tally.runs),
        data_rejections=tuple(tally.rejections),
        blobs=tally.blobs,
        size=tally.size,
        present_entries=present_entries,
        present_blobs=tally.present_blobs,
        present_records=tally.present_records,
        digests=tally.digests,
    )


@dataclass
class _Tally:
    """What the copying phase did so far (mutable: it is filled record by record)."""

    entries: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    manifests: list[int] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    rejections: list[int] = field(default_factory=list)
    blobs: int = 0
    size: int = 0
    present_blobs: int = 0
    present_records: int = 0
    digests: dict[str, str] = field(default_factory=dict)
    late: list[str] = field(default_factory=list)  # conflicts another writer made meanwhile

    def add(self, outcome: Imported, what: str, copied: list[Any], name: Any) -> None:
        if outcome is Imported.CONFLICT:
            self.late.append(what)
        elif outcome is Imported.PRESENT:
            self.present_records += 1
        else:
            copied.append(str(name) if isinstance(name, ModelRef) else name)


def _files(source: LocalRegistry, entry: Entry) -> Iterator[BlobFile]:
    """The files `entry` names in the local registry, each with its recorded SHA-256."""
    ref = str(entry.ref)
    artifact = source.artifact_path(entry)
    yield BlobFile(ref, entry.artifact.file, artifact, entry.artifact.sha256)
    if entry.onnx is not None:
        yield BlobFile(ref, entry.onnx.file, artifact.with_name(entry.onnx.file), entry.onnx.sha256)
    code = source.code_dir(entry)
    for path, sha in sorted(entry.code.items()):
        yield BlobFile(ref, f"{CODE_DIR}/{path}", code / path, sha)


def _check(blob: BlobFile) -> str:
    """'' when the file's bytes match its recorded SHA-256, else what is wrong with it."""
    try:
        with blob.path.open("rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return "is missing"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if got != blob.sha256:
        return f"is damaged (SHA-256 {got[:12]}…, recorded {blob.sha256[:12]}…)"
    return ""


def _verified_copy(blob: BlobFile, scratch: Path, source: LocalRegistry) -> Path:
    """A private copy of the file, hashed while it is made; IntegrityError if it changed.

    What is uploaded is this copy, so the bytes stored are the bytes checked.
    """
    dest = scratch / blob.sha256
    digest = hashlib.sha256()
    try:
        with blob.path.open("rb") as src, dest.open("wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as e:
        raise RegistryError(
            f"{blob.path}: cannot read {source.project} {blob.entry} {blob.name}: {e.strerror or e}"
        ) from e
    if digest.hexdigest() != blob.sha256:
        dest.unlink(missing_ok=True)
        raise IntegrityError(
            f"{source.describe()}: {source.project} {blob.entry}: {blob.name} changed while "
            "it was being copied (its SHA-256 no longer matches the entry); the entry was "
            "not copied",
            hint="find what writes into the local registry, then migrate again",
        )
    return dest


def _differs(here: Entry, there: Entry) -> str:
    """A short account of how two records of one entry differ, for the conflict message."""
    if here.artifact.sha256 != there.artifact.sha256:
        return (
            f"another model: artifact {here.artifact.sha256[:12]}… here, "
            f"{there.artifact.sha256[:12]}… there"
        )
    mine, theirs = here.as_dict(), there.as_dict()
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    return f"its record differs in {', '.join(keys)}"


def _conflict_error(
    source: LocalRegistry, target: SqlRegistry, conflicts: list[str], *, written: bool
) -> RegistryError:
    done = (
        "the records before them were copied; nothing was overwritten"
        if written
        else "nothing was copied"
    )
    return RegistryError(
        f"{target.describe()} already holds {len(conflicts)} record(s) of {source.project} "
        f"that differ from {source.describe()} ({done}): {'; '.join(conflicts)}",
        hint="the shared registry has a history of its own (another clone migrated or "
        "released into it first); migration never overwrites. Compare them (`mlcycle models` "
        "with MLCYCLE_REGISTRY_URL set to it), then migrate into another database, or remove "
        "those records from one side",
    )


__all__ = ["BlobFile", "Migration", "migrate"]
