"""The embedded registry backend: plain files under the project, written atomically.

Layout under `root` (the spec's `registry.path`, default `.mlcycle/registry`):

    <project>/
      releases/<release>/<generation>/entry.json     what the Entry holds
      releases/<release>/<generation>/model.skops    the artifact (see artifacts.py)
      releases/<release>/<generation>/code/          its model code, if any (see code.py)
      current.json     the pointer to the entry production serves, with its history
      retired.json     the retired entries (`retire`), each with who, when and why
      data-rejections.json  new rows data validation refused in `update` (no entry holds them)
      manifests/       reserved for serving manifests (a later issue)
      .lock            flock'ed by every writer; holds the holder's pid
      .release.lock    flock'ed by a release from choosing its version to its tag
      .staging/        entries being written; each directory flock'ed by its writer
      .trash/          releases being removed

How a registration stays atomic: the artifact and entry.json are written into
a fresh directory under `.staging/` and fsync'ed; the generation number is
allocated under the exclusive lock, and one `rename` moves the whole directory
to `releases/<release>/<generation>/`. A reader sees an entry completely or not
at all, so reading never takes the lock. A writer killed at any point leaves
at most a staging directory whose flock died with it; the next writer deletes
those. Removing a release renames it into `.trash/` first, then deletes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import getpass
import json
import logging
import math
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import RegistryError, UsageError
from mlcycle.registry.artifacts import (
    ArtifactInfo,
    OnnxForm,
    fsync_dir,
    library_versions,
    save_model,
    save_onnx,
    write_atomic,
)
from mlcycle.registry.base import Registry
from mlcycle.registry.code import CODE_DIR, write_code
from mlcycle.registry.entry import Entry, Status, plain
from mlcycle.registry.refs import (
    DEV,
    GENERATION_RE,
    ModelRef,
    as_ref,
    check_release,
    is_release,
    release_key,
)
from mlcycle.registry.runs import LocalRunStore
from mlcycle.registry.trust import DEFAULT_POLICY, TrustPolicy
from mlcycle.spec.code import code_hashes
from mlcycle.spec.model import Procurement

if TYPE_CHECKING:
    from mlcycle.registry.manifests import ManifestStore

log = logging.getLogger(__name__)

ENTRY_FILE: Final = "entry.json"
RELEASE_LOCK_FILE: Final = ".release.lock"
CURRENT_FILE: Final = "current.json"
RETIRED_FILE: Final = "retired.json"
DATA_REJECTIONS_FILE: Final = "data-rejections.json"
ARTIFACT_STEM: Final = "model"
DEFAULT_LOCK_TIMEOUT: Final = 30.0
HISTORY_LIMIT: Final = 20
# The spec's `name` pattern: a project name is also a directory name.
PROJECT_RE: Final = re.compile(r"^(?!.*\.\.)[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")


@dataclass
class _Staging:
    """A staging directory and the open descriptor whose flock says its writer is alive."""

    path: Path
    fd: int

    def close(self) -> None:
        os.close(self.fd)


class LocalRegistry(Registry):
    """A registry in a directory of the local file system (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        project: str,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        trust: TrustPolicy = DEFAULT_POLICY,
    ) -> None:
        if not isinstance(project, str) or PROJECT_RE.match(project) is None:
            raise UsageError(
                f"{project!r} is not a project name",
                hint="use lowercase letters, digits, '-', '_' and '.', as in the spec's `name`",
            )
        self.root = Path(root)
        self.project = project
        self.lock_timeout = lock_timeout
        self.trust = trust
        self.base = self.root / project

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r}, {self.project!r})"

    def __str__(self) -> str:
        return str(self.root)  # where it is, as messages name it ("from registry PATH")

    def describe(self) -> str:
        """The registry's directory."""
        return str(self.root)

    # --- paths -----------------------------------------------------------------------

    @property
    def releases_dir(self) -> Path:
        """Directory holding one directory per release."""
        return self.base / "releases"

    @property
    def manifests_dir(self) -> Path:
        """Directory reserved for serving manifests."""
        return self.base / "manifests"

    def runs(self) -> LocalRunStore:
        """The run records, one JSON file per run in `runs/` beside the releases."""
        return LocalRunStore(self.base / "runs")

    def manifests(self) -> ManifestStore:
        """The serving manifests, numbered JSON files in `manifests_dir`."""
        # Imported here: manifests.py takes utc_now and whoami from this module.
        # lazy: import cycle (mlcycle.registry.manifests imports this module)
        from mlcycle.registry.manifests import DirectoryManifestStore

        return DirectoryManifestStore(self.manifests_dir, self.project)

    def change_token(self) -> Hashable:
        """Modification times of the manifest and release directories.

        Publishing a manifest or registering a generation renames a new entry into
        one of them, which changes its mtime; retiring a model replaces retired.json.
        While none changes, nothing needs reading.
        """
        dirs = [self.manifests_dir, self.releases_dir, self.retired_path]
        with contextlib.suppress(OSError):
            dirs += [p for p in self.releases_dir.iterdir() if p.is_dir()]
        found = []
        for path in dirs:
            try:
                found.append((path.name, path.stat().st_mtime_ns))
            except OSError:
                found.append((path.name, -1))
        return tuple(found)

    @property
    def current_path(self) -> Path:
        """The `current` pointer file."""
        return self.base / CURRENT_FILE

    @property
    def retired_path(self) -> Path:
        """The record of retired entries."""
        return self.base / RETIRED_FILE

    @property
    def lock_path(self) -> Path:
        """The file every writer flocks."""
        return self.base / ".lock"

    @property
    def release_lock_path(self) -> Path:
        """The file a release flocks for its whole duration (see `release_lock`)."""
        return self.base / RELEASE_LOCK_FILE

    @property
    def staging_dir(self) -> Path:
        """Where entries are assembled before they appear."""
        return self.base / ".staging"

    @property
    def trash_dir(self) -> Path:
        """Where removed releases wait to be deleted."""
        return self.base / ".trash"

    def entry_dir(self, ref: ModelRef) -> Path:
        """Directory of the entry `RELEASE/GENERATION`."""
        if ref.release is None or ref.generation is None:
            raise UsageError(f"{ref} does not name one entry; write RELEASE/GENERATION")
        return self.releases_dir / ref.release / str(ref.generation)

    def code_dir(self, entry: Entry) -> Path:
        """Directory of the entry's stored model code."""
        if entry.project != self.project:
            raise RegistryError(f"{entry.ref} belongs to {entry.project}, not {self.project}")
        return self.entry_dir(entry.ref) / CODE_DIR

    def artifact_path(self, entry: Entry) -> Path:
        """Path of the entry's artifact file."""
        if entry.project != self.project:
            raise RegistryError(f"{entry.ref} belongs to {entry.project}, not {self.project}")
        return self.entry_dir(entry.ref) / entry.artifact.file

    # --- writing ---------------------------------------------------------------------

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
        """Store `model` as a new generation of `release` (see Registry.register)."""
        release, status_, procurement_, record = check_registration(
            release=release,
            status=status,
            procurement=procurement,
            generation=generation,
            metrics=metrics,
            gate=gate,
            data=data,
            extra=extra,
        )
        versions = library_versions(onnx=onnx is not None)
        created_at, created_by = utc_now(), whoami()

        with self._writing(f"registering a model of release {release}"):
            self._ensure_layout()
            staging = self._open_staging()
        try:
            code_record = self._stage_code(code or {}, staging.path)
            artifact = self._stage_artifact(model, staging.path)
            onnx_artifact = save_onnx(onnx, staging.path) if onnx is not None else None
            with self._locked(f"registering a model of release {release}"):
                self._clean()
                number = self._allocate(release, generation)
                entry = Entry(
                    project=self.project,
                    release=release,
                    generation=number,
                    status=status_,
                    metrics=record["metrics"],
                    gate=record["gate"],
                    data=record["data"],
                    spec_hash=spec_hash,
                    git_commit=git_commit,
                    versions=versions,
                    procurement=procurement_,
                    created_at=created_at,
                    created_by=created_by,
                    artifact=artifact,
                    extra=record["extra"],
                    code=code_record,
                    onnx=onnx_artifact,
                )
                _write_json(staging.path / ENTRY_FILE, entry.as_dict(), atomic=False)
                fsync_dir(staging.path)
                target = self.entry_dir(entry.ref)
                target.parent.mkdir(parents=True, exist_ok=True)
                self._publish(staging.path, target)
                if make_current and entry.is_candidate:
                    try:
                        self._write_current(entry.ref)
                    except OSError as e:
                        raise RegistryError(
                            f"{self.current_path}: registered {entry.ref} but could not make "
                            f"it current: {e.strerror}",
                            hint=f"run set_current('{entry.ref}') once the problem is fixed",
                        ) from e
        except OSError as e:
            raise self._write_error(e, f"registering a model of release {release}") from e
        finally:
            # Nothing is left behind on failure; after the rename the directory is gone.
            shutil.rmtree(staging.path, ignore_errors=True)
            staging.close()
        log.info("registered %s/%s as %s", self.project, entry.ref, entry.status.value)
        return entry

    def set_current(self, ref: ModelRef | str) -> Entry:
        """Point `current` at the entry `ref` names; a rejected entry is refused (UsageError)."""
        ref = as_ref(ref)
        doing = f"setting the current model to {ref}"
        with self._writing(doing), self._locked(doing):
            entry = self.get(ref)
            if entry.retired:
                raise UsageError(
                    f"{self.project} {entry.ref} is retired; a retired model is never current",
                    hint="set a model that is not retired current: `mlcycle models` lists them",
                )
            if not entry.is_candidate:
                raise UsageError(
                    f"{self.project} {entry.ref} was rejected by its validation gate; "
                    "a rejected model can never be current",
                    hint="set a candidate current, e.g. 'latest'",
                )
            self._write_current(entry.ref)
        return entry

    def retire(self, ref: ModelRef | str, *, note: Mapping[str, Any] | None = None) -> list[Entry]:
        """Retire what `ref` names (see Registry.retire); one atomic write of retired.json."""
        ref = as_ref(ref)
        if ref.release is None:
            raise UsageError(
                f"{ref} moves as models are added; retire a release or RELEASE/GENERATION",
                hint=self.pinned_hint(ref, "retire"),
            )
        doing = f"retiring {ref}"
        with self._writing(doing), self._locked(doing):
            if ref.generation is not None:
                targets = [self.get(ref)]
            else:
                targets = [e for e in self.entries() if e.release == ref.release]
                if not targets:
                    raise RegistryError(
                        f"{self.project}: no release {ref.release} in the registry",
                        hint=self._known_hint(),
                    )
            record = {
                **plain(dict(note or {})),
                "retired_at": utc_now(),
                "retired_by": whoami(),
            }
            retired = self._read_retired()
            done = []
            for entry in targets:
                if entry.retired:
                    done.append(entry)
                    continue
                kept = {**record, "sha256": entry.artifact.sha256}
                retired[str(entry.ref)] = kept
                done.append(dataclasses.replace(entry, retired=kept))
            _write_json(self.retired_path, {"schema": 1, "retired": retired}, atomic=True)
            current = self.current()
            if current is not None and current.retired:
                fallback = [e for e in self.entries() if e.is_candidate and e.release != DEV]
                if fallback:
                    self._write_current(fallback[-1].ref, note=f"{current.ref} was retired")
                else:
                    self.current_path.unlink(missing_ok=True)
                    fsync_dir(self.base)
        log.info("retired %s", ", ".join(str(e.ref) for e in done))
        return done

    def record_data_rejection(self, record: Mapping[str, Any]) -> None:
        """Append to data-rejections.json (see Registry.record_data_rejection)."""
        doing = "recording a data rejection"
        with self._writing(doing), self._locked(doing):
            kept = [
                *self.data_rejections(),
                {**plain(dict(record)), "at": utc_now(), "by": whoami()},
            ]
            path = self.base / DATA_REJECTIONS_FILE
            _write_json(path, {"schema": 1, "rejections": kept}, atomic=True)

    def data_rejections(self) -> list[dict[str, Any]]:
        """data-rejections.json's records, oldest first; [] when there are none."""
        path = self.base / DATA_REJECTIONS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise RegistryError(
                f"{path}: unreadable ({e})",
                hint="delete it: the training agent then checks the rejected rows again",
            ) from e
        records = raw.get("rejections") if isinstance(raw, dict) else None
        return (
            [dict(r) for r in records if isinstance(r, dict)] if isinstance(records, list) else []
        )

    def remove_release(self, release: str) -> list[Entry]:
        """Remove every entry of `release` at once; returns the removed entries."""
        release = check_release(release)
        if not self.releases_dir.is_dir():
            return []
        doing = f"removing release {release}"
        with self._writing(doing), self._locked(doing):
            self._clean()
            source = self.releases_dir / release
            if not source.is_dir():
                return []
            removed = self._entries_of(source, self._read_retired())
            # The pointer moves first: should we die before the rename, current still
            # names an entry that exists.
            self._forget_in_pointer(lambda r: r.release == release, f"release {release}")
            self._trash(source, release)
        log.info("removed release %s of %s (%d entries)", release, self.project, len(removed))
        return removed

    def remove_entry(self, ref: ModelRef | str) -> Entry | None:
        """Remove the one entry `ref` names (see Registry.remove_entry)."""
        ref = as_ref(ref)
        source = self.entry_dir(ref)
        doing = f"removing {ref}"
        with self._writing(doing), self._locked(doing):
            self._clean()
            entry = self._read_entry(source)
            if entry is None:
                return None
            self._forget_in_pointer(lambda r: r == ref, str(ref))
            self._trash(source, f"{ref.release}-{ref.generation}")
            # A release left without generations goes too, so it is not listed empty.
            with contextlib.suppress(OSError):
                source.parent.rmdir()
        log.info("removed %s of %s", ref, self.project)
        return entry

    @contextmanager
    def release_lock(self, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the release lock (see Registry.release_lock), blocking while another holds it.

        There is no timeout: a release may train for minutes, and the waiter says
        whom it waits for. Ctrl-C stops the wait; the lock dies with its holder.
        """
        with self._writing("taking the release lock"):
            self.base.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.release_lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(self._holder(self.release_lock_path))
                fcntl.flock(fd, fcntl.LOCK_EX)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
            with self._writing("recording who holds the release lock"):
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(holder).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # --- reading (never locks) -------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every complete entry, ordered by release (`dev` first, then semver) and generation."""
        found: list[Entry] = []
        retired = self._read_retired()
        for release_dir in _children(self.releases_dir):
            if is_release(release_dir.name) and release_dir.is_dir():
                found.extend(self._entries_of(release_dir, retired))
        found.sort(key=lambda e: (release_key(e.release), e.generation))
        return found

    def get(self, ref: ModelRef | str) -> Entry:
        """The entry `ref` names (see Registry.get); reads one directory for `RELEASE/GEN`."""
        ref = as_ref(ref)
        if ref.release is not None and ref.generation is not None:
            entry = self._read_entry(self.entry_dir(ref))
            if entry is None:
                raise RegistryError(
                    f"{self.project}: no model {ref} in the registry", hint=self._known_hint()
                )
            return entry
        return super().get(ref)

    def current(self) -> Entry | None:
        """The entry `current.json` names, or None when no entry was made current."""
        pointer = self._read_pointer()
        if pointer is None:
            return None
        ref = _pointer_ref(pointer, where=str(self.current_path))
        entry = self._read_entry(self.entry_dir(ref))
        if entry is None:
            raise RegistryError(
                f"{self.current_path}: the current model {ref} is not in the registry",
                hint="set the current model again, e.g. to 'latest'",
            )
        return entry

    def pointer(self) -> dict[str, Any] | None:
        """current.json as written (the entry, who set it when, the history), None if absent."""
        return self._read_pointer()

    def current_history(self) -> list[ModelRef]:
        """Entries that were current before, newest first (may name removed entries)."""
        pointer = self._read_pointer()
        if pointer is None:
            return []
        where = str(self.current_path)
        return [_pointer_ref(h, where=where) for h in pointer.get("history") or ()]

    # --- hooks a test may wrap to stop a writer at a chosen point --------------------

    def _stage_artifact(self, model: Any, staging: Path) -> ArtifactInfo:
        """Write the artifact into the staging directory (after the code, see `_stage_code`).

        The model may name what the staged code defines, and nothing else of the project.
        """
        return stage_artifact(model, staging, self.trust)

    def _stage_code(self, code: Mapping[str, bytes], staging: Path) -> dict[str, str]:
        """Write the model code under `code/` of the staging directory; its hashes."""
        return stage_code(code, staging)

    def _publish(self, staging: Path, target: Path) -> None:
        """Move a complete staged entry into place: the one step that makes it visible."""
        staging.rename(target)
        fsync_dir(target.parent)
        fsync_dir(target.parent.parent)

    # --- internals -------------------------------------------------------------------

    def _ensure_layout(self) -> None:
        for path in (self.releases_dir, self.staging_dir, self.trash_dir, self.manifests_dir):
            path.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        """Hold the registry's exclusive lock; RegistryError naming the holder on timeout."""
        self.base.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.lock_timeout
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._locked_error() from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
            holder["what"] = what
            with self._writing("recording who holds the release lock"):
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(holder).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @staticmethod
    def _holder(path: Path) -> str:
        """Who holds the lock file `path`, from what its holder wrote into it."""
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            who = f"pid {int(holder['pid'])}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"
        detail = f" on {holder.get('host')} since {holder.get('since')}"
        if holder.get("what"):
            detail += f" ({holder['what']})"
        return who + detail

    @contextmanager
    def _writing(self, doing: str) -> Iterator[None]:
        """Turn an OSError of a write into a RegistryError saying what, where and what to do."""
        try:
            yield
        except OSError as e:
            raise self._write_error(e, doing) from e

    def _write_error(self, e: OSError, doing: str) -> RegistryError:
        where = e.filename or self.base
        if e.errno == errno.EROFS:
            reason = "the file system is read-only"
        elif e.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied"
        elif e.errno in (errno.ENOSPC, errno.EDQUOT):
            reason = "no space left on the device"
        else:
            reason = e.strerror or str(e)
        return RegistryError(
            f"{where}: cannot write the model registry while {doing}: {reason}",
            hint=f"the registry of {self.project} is {self.base}; make it writable (and free "
            "some space if the disk is full), or point `registry.path` in lifecycle.yaml "
            "to a writable directory",
        )

    def _locked_error(self) -> RegistryError:
        return RegistryError(
            f"{self.base}: registry is locked by {self._holder(self.lock_path)}; "
            f"gave up after {self.lock_timeout:g} s",
            hint="wait for that command to finish; the lock is released when its process exits",
        )

    def _open_staging(self) -> _Staging:
        """A fresh staging directory, flock'ed so that cleaners know its writer is alive."""
        for _ in range(10):
            path = self.staging_dir / uuid.uuid4().hex
            path.mkdir()
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue  # a cleaner took it between mkdir and open
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # A cleaner may have locked and deleted it before we locked it.
                if os.path.samestat(path.stat(), os.fstat(fd)):
                    return _Staging(path, fd)
            except (BlockingIOError, FileNotFoundError):
                pass
            os.close(fd)
        raise RegistryError(f"{self.staging_dir}: cannot create a staging directory")

    def _clean(self) -> None:
        """Delete what dead writers left: unlocked staging dirs, trash, temporary files.

        Runs under the registry lock, so no other cleaner or pointer writer runs.
        """
        for child in _children(self.staging_dir):
            try:
                fd = os.open(child, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            except NotADirectoryError:
                child.unlink(missing_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its writer is alive
            try:
                log.info("removing %s, left by an interrupted registration", child)
                shutil.rmtree(child, ignore_errors=True)
            finally:
                os.close(fd)
        for child in _children(self.trash_dir):
            shutil.rmtree(child, ignore_errors=True)
        for child in _children(self.base):
            if child.name.startswith(".") and child.name.endswith(".tmp"):
                child.unlink(missing_ok=True)

    def _allocate(self, release: str, generation: int | None) -> int:
        taken = {
            int(p.name)
            for p in _children(self.releases_dir / release)
            if GENERATION_RE.match(p.name)
        }
        if generation is None:
            return max(taken, default=0) + 1
        if generation in taken:
            raise RegistryError(
                f"{self.project} {release}/{generation} is already in the registry",
                hint="leave the generation out to take the next free number",
            )
        return generation

    def _entries_of(self, release_dir: Path, retired: Mapping[str, Any]) -> list[Entry]:
        found = []
        for gen_dir in _children(release_dir):
            if GENERATION_RE.match(gen_dir.name):
                entry = self._read_entry(gen_dir, retired)
                if entry is not None:
                    found.append(entry)
        found.sort(key=lambda e: e.generation)
        return found

    def _read_entry(
        self, entry_dir: Path, retired: Mapping[str, Any] | None = None
    ) -> Entry | None:
        """The entry in `entry_dir`, None if there is none (or it was just removed).

        Its retirement comes from retired.json (`retired`, read when not given).
        """
        path = entry_dir / ENTRY_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise RegistryError(f"{path}: cannot read the entry: {e.strerror}") from e
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise RegistryError(f"{path}: damaged entry (not JSON: {e})") from e
        entry = Entry.from_dict(raw, where=str(path))
        expected = (self.project, entry_dir.parent.name, entry_dir.name)
        if (entry.project, entry.release, str(entry.generation)) != expected:
            raise RegistryError(
                f"{path}: the entry says {entry.project} {entry.ref} but lies in "
                f"{entry_dir.relative_to(self.root)}",
                hint="entries must not be moved by hand; move it back or remove it",
            )
        if retired is None:
            retired = self._read_retired()
        record = retired.get(str(entry.ref))
        # The artifact's digest ties a record to this very entry: a release removed and
        # made again under the same version is not retired by the old record.
        if isinstance(record, Mapping) and record.get("sha256") == entry.artifact.sha256:
            entry = dataclasses.replace(entry, retired=dict(record))
        return entry

    def _read_retired(self) -> dict[str, Any]:
        """retired.json's records by `RELEASE/GENERATION`; {} when nothing was retired."""
        try:
            raw = json.loads(self.retired_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RegistryError(
                f"{self.retired_path}: unreadable ({e})",
                hint="restore it from a backup; deleting it brings the retired models back",
            ) from e
        records = raw.get("retired") if isinstance(raw, dict) else None
        if not isinstance(records, dict):
            raise RegistryError(f"{self.retired_path}: damaged (no `retired` object)")
        return dict(records)

    def _read_pointer(self) -> dict[str, Any] | None:
        try:
            raw = json.loads(self.current_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RegistryError(
                f"{self.current_path}: unreadable ({e})",
                hint="set the current model again, e.g. to 'latest'",
            ) from e
        if not isinstance(raw, dict):
            raise RegistryError(f"{self.current_path}: damaged (not a JSON object)")
        return raw

    def _write_current(
        self, ref: ModelRef, *, history: list[Any] | None = None, note: str | None = None
    ) -> None:
        """Replace current.json atomically; the previous pointer goes to the history."""
        if history is None:
            old = self._read_pointer()
            history = []
            if old is not None:
                previous = {k: old.get(k) for k in ("release", "generation", "set_at")}
                history = [previous, *(old.get("history") or [])]
        history = [h for h in history if (h.get("release"), h.get("generation")) != _key(ref)]
        pointer: dict[str, Any] = {
            "release": ref.release,
            "generation": ref.generation,
            "ref": str(ref),
            "set_at": utc_now(),
            "set_by": whoami(),
        }
        if note:
            pointer["note"] = note
        pointer["history"] = history[:HISTORY_LIMIT]
        _write_json(self.current_path, pointer, atomic=True)

    def _trash(self, source: Path, label: str) -> None:
        """Move `source` out of sight in one rename, then delete it."""
        self.trash_dir.mkdir(exist_ok=True)
        trash = self.trash_dir / f"{label}-{uuid.uuid4().hex}"
        source.rename(trash)
        fsync_dir(source.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def _forget_in_pointer(self, gone: Callable[[ModelRef], bool], what: str) -> None:
        """Drop entries `gone` accepts from current.json; if current, restore the one before."""
        pointer = self._read_pointer()
        if pointer is None:
            return
        where = str(self.current_path)

        def names_gone(raw: Any) -> bool:
            try:
                return gone(_pointer_ref(raw, where=where))
            except RegistryError:
                return False  # a damaged record names nothing that is going

        history = [h for h in pointer.get("history") or () if not names_gone(h)]
        if not names_gone(pointer):
            if len(history) != len(pointer.get("history") or ()):
                _write_json(self.current_path, {**pointer, "history": history}, atomic=True)
            return
        for i, item in enumerate(history):
            ref = _pointer_ref(item, where=str(self.current_path))
            entry = self._read_entry(self.entry_dir(ref))
            if entry is not None and entry.is_candidate:
                note = f"restored when {what} was removed"
                self._write_current(ref, history=history[i + 1 :], note=note)
                return
        self.current_path.unlink(missing_ok=True)
        fsync_dir(self.base)


# --- helpers ------------------------------------------------------------------------


def _children(path: Path) -> list[Path]:
    """Entries of a directory; empty when it does not exist (or vanished meanwhile)."""
    try:
        return list(path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        if e.errno == errno.ENOENT:
            return []
        raise RegistryError(f"{path}: cannot list: {e.strerror}") from e


def _write_json(path: Path, doc: Mapping[str, Any], *, atomic: bool) -> None:
    data = (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode("utf-8")
    if atomic:
        write_atomic(path, data)
        return
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _pointer_ref(raw: Any, *, where: str) -> ModelRef:
    try:
        return ModelRef(str(raw["release"]), int(raw["generation"]))
    except (KeyError, TypeError, ValueError, UsageError) as e:
        raise RegistryError(
            f"{where}: damaged pointer ({e})", hint="set the current model again"
        ) from e


def _key(ref: ModelRef) -> tuple[str | None, int | None]:
    return (ref.release, ref.generation)


def check_registration(
    *,
    release: str,
    status: Status | str,
    procurement: Procurement | str,
    generation: int | None,
    metrics: Mapping[str, float],
    gate: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
) -> tuple[str, Status, Procurement, dict[str, Any]]:
    """`register`'s arguments checked (UsageError) and made plain JSON, for every backend.

    Returns the release, status, procurement and the record (metrics, gate, data, extra).
    """
    release = check_release(release)
    status_ = _choice(Status, status, "status")
    procurement_ = _choice(Procurement, procurement, "procurement")
    if generation is not None:
        ModelRef(release, generation)  # validates the number
    record = {
        "metrics": _metrics(metrics),
        "gate": _mapping(gate, "gate"),
        "data": _mapping(data, "data"),
        "extra": _mapping(extra, "extra"),
    }
    if status_ is Status.CANDIDATE and record["gate"].get("passed") is False:
        raise UsageError(
            "register: the gate record says the model failed, but status is 'candidate'",
            hint="register a model that failed its gate with status='rejected'",
        )
    return release, status_, procurement_, record


def stage_artifact(model: Any, staging: Path, trust: TrustPolicy) -> ArtifactInfo:
    """Save the artifact into `staging`, after its model code (see `stage_code`).

    The model may name what the staged code defines, and nothing else of the project.
    """
    staged = staging / CODE_DIR
    if staged.is_dir():
        files = {
            p.relative_to(staged).as_posix(): p.read_bytes() for p in sorted(staged.rglob("*.py"))
        }
        trust = trust.with_code(files, root=None, origin="the model.code stored with it")
    return save_model(model, staging / ARTIFACT_STEM, trust=trust)


def stage_code(code: Mapping[str, bytes], staging: Path) -> dict[str, str]:
    """Write the model code under `code/` of `staging`; its hashes."""
    if not code:
        return {}
    write_code(staging / CODE_DIR, code)
    return code_hashes(code)


def _choice(enum: Any, value: Any, name: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise UsageError(f"register: {name} {value!r} is not one of {allowed}") from None


def _metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise UsageError("register: metrics must be a mapping of name to number")
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if value is None:
            out[str(name)] = math.nan
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"register: metric {name!r} is {value!r}, not a number") from None
        # One NaN object, so that entries read back compare equal to the one returned.
        out[str(name)] = number if not math.isnan(number) else math.nan
    return out


def _mapping(value: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"register: {name} must be a mapping, not {type(value).__name__}")
    result: dict[str, Any] = plain(value, where=name)
    return result


def utc_now() -> str:
    """The current UTC time as ISO 8601 with a `Z`, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def whoami() -> str:
    """`user@host` of this process, for the record of who wrote something."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary uid in a container
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
