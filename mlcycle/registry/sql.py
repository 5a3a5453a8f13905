"""The shared registry backend: metadata in a SQL database, files in a blob store.

Several machines (clones, CI jobs, serving pods) that name the same database
(`registry.url`, any SQLAlchemy URL: SQLite for one machine, PostgreSQL for a
team) and the same artifact store (`registry.artifacts`, see blobs.py) share
releases, generations, the current pointer, retirements, serving manifests,
training runs and data validation's refusals.

Tables (created by the first write, beside the prediction store's if it is the
same database; readers never create them: a read-only command against a database
without them reads an empty registry):

    registry_projects   one row per project: `version` (the change token, bumped
                        by every write) and `current` (the pointer, with its history)
    registry_entries    one row per generation: the entry's JSON (what entry.json
                        holds elsewhere) and its retirement record
    registry_manifests  one row per serving manifest (numbered per project)
    registry_locks      who holds the release lock (for the waiter's message)
    registry_runs       one row per training run: its record's JSON, whole
                        (registry/runs.py), rewritten when a tracking server answers
    registry_data_rejections  one row per refusal of new rows by data validation
                        (numbered per project; no entry holds them)

How a write stays atomic and serialised: every write transaction starts by
bumping its project's `version`, which takes that row's lock (PostgreSQL holds
it to the commit; SQLite takes its database write lock), so writers of one
project run one at a time and readers see a write whole or not at all. A
registration stores its files first, content-addressed, and only then writes
its row in one transaction; a writer killed before the commit leaves at most
blobs nobody names.

Artifacts are read through a local cache: each entry's files (model, ONNX
form, code) are pulled by digest, verified, and laid out in a directory of
their own, so serving reads a model from the network once; every load checks
the recorded SHA-256 again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
import zlib
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from mlcycle.errors import RegistryError, UsageError
from mlcycle.faults import checkpoint
from mlcycle.redact import mask_url, scrub
from mlcycle.registry.artifacts import OnnxForm, library_versions, save_onnx
from mlcycle.registry.base import Registry
from mlcycle.registry.blobs import BlobStore
from mlcycle.registry.code import CODE_DIR
from mlcycle.registry.entry import Entry, Status, plain
from mlcycle.registry.local import (
    DEFAULT_LOCK_TIMEOUT,
    HISTORY_LIMIT,
    PROJECT_RE,
    check_registration,
    stage_artifact,
    stage_code,
    utc_now,
    whoami,
)
from mlcycle.registry.manifests import ManifestStore, parse_manifest
from mlcycle.registry.refs import DEV, ModelRef, as_ref, check_release, release_key
from mlcycle.registry.runs import RUN_SCHEMA, Run, RunStore
from mlcycle.registry.trust import DEFAULT_POLICY, TrustPolicy
from mlcycle.spec.model import Procurement
from mlcycle.store.schema import create_engine

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from mlcycle.registry.manifests import Manifest

log = logging.getLogger(__name__)

# The first key of the PostgreSQL advisory locks mlcycle takes (the second is the
# project's): an arbitrary constant, so that other applications' locks do not collide.
ADVISORY_CLASS: Final = 0x6D6C6379  # "mlcy"
RELEASE_LOCK: Final = "release"


class Imported(enum.Enum):
    """What copying one record in from another registry came to (the `import_*` methods)."""

    COPIED = "copied"  # it was not there: written
    UPDATED = "updated"  # there, equal, and the copy added what it lacked (a retirement)
    PRESENT = "present"  # there already, equal: nothing written
    CONFLICT = "conflict"  # there already, different: nothing written


def _tables() -> Any:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    name = sa.String(200)
    projects = sa.Table(
        "registry_projects",
        metadata,
        sa.Column("project", name, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("current", sa.Text),  # the pointer as JSON, None when none is current
    )
    entries = sa.Table(
        "registry_entries",
        metadata,
        sa.Column("project", name, primary_key=True),
        sa.Column("release", sa.String(100), primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("retired", sa.Text),
    )
    manifests = sa.Table(
        "registry_manifests",
        metadata,
        sa.Column("project", name, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    locks = sa.Table(
        "registry_locks",
        metadata,
        sa.Column("project", name, primary_key=True),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
    )
    runs = sa.Table(
        "registry_runs",
        metadata,
        sa.Column("project", name, primary_key=True),
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    rejections = sa.Table(
        "registry_data_rejections",
        metadata,
        sa.Column("project", name, primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    return metadata, projects, entries, manifests, locks, runs, rejections


class SqlRegistry(Registry):
    """A registry in a SQL database, its files in a blob store (see the module docstring)."""

    # Even a SQLite file may be one several clones name (registry.url): a team's registry.
    shared: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        project: str,
        *,
        blobs: BlobStore,
        cache: Path,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        trust: TrustPolicy = DEFAULT_POLICY,
    ) -> None:
        if not isinstance(project, str) or PROJECT_RE.match(project) is None:
            raise UsageError(
                f"{project!r} is not a project name",
                hint="use lowercase letters, digits, '-', '_' and '.', as in the spec's `name`",
            )

        self.url = url
        self.project = project
        self.blobs = blobs
        self.cache = Path(cache)  # entries laid out from their blobs, one directory each
        self.lock_timeout = lock_timeout
        self.trust = trust
        self.engine: Engine = create_engine(url, what="the registry")
        (
            self._metadata,
            self._projects,
            self._entries,
            self._manifests,
            self._locks,
            self._runs,
            self._rejections,
        ) = _tables()
        self._ready = False
        self._present: set[str] = set()  # tables seen to exist (they are never dropped)
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()  # release lock of an in-memory database

    def __repr__(self) -> str:
        return f"SqlRegistry({self.describe()!r}, {self.project!r})"

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """The database's URL (password masked) and the artifact store."""
        return f"{mask_url(self.url)} (artifacts {self.blobs.describe()})"

    @property
    def dialect(self) -> str:
        """`postgresql`, `sqlite`, ...: the database's kind."""
        return str(self.engine.dialect.name)

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
        """Store `model` as a new generation of `release` (see Registry.register).

        The files go to the blob store first; one transaction then allocates the
        generation, writes the row and (with `make_current`) the pointer.
        """
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
        doing = f"registering a model of release {release}"
        with tempfile.TemporaryDirectory(prefix="mlcycle-register-") as tmp:
            staging = Path(tmp)
            code_record = stage_code(code or {}, staging)
            artifact = stage_artifact(model, staging, self.trust)
            onnx_artifact = save_onnx(onnx, staging) if onnx is not None else None
            checkpoint("registry:staged")
            files = [staging / artifact.file]
            if onnx_artifact is not None:
                files.append(staging / onnx_artifact.file)
            files += [staging / CODE_DIR / path for path in code_record]
            self._store_blobs(files, doing)
        checkpoint("registry:stored")
        with self._writing(doing) as conn:
            number = self._allocate(conn, release, generation)
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
            conn.execute(
                self._entries.insert().values(
                    project=self.project,
                    release=release,
                    generation=number,
                    status=status_.value,
                    created_at=created_at,
                    document=json.dumps(entry.as_dict(), allow_nan=False),
                )
            )
            if make_current and entry.is_candidate:
                self._write_current(conn, entry.ref)
            checkpoint("registry:written")  # rows written, not committed
        log.info("registered %s/%s as %s", self.project, entry.ref, entry.status.value)
        return entry

    def set_current(self, ref: ModelRef | str) -> Entry:
        """Point `current` at the entry `ref` names; a rejected entry is refused (UsageError)."""
        ref = as_ref(ref)
        with self._writing(f"setting the current model to {ref}") as conn:
            entry = self._get(conn, ref)
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
            self._write_current(conn, entry.ref)
        return entry

    def retire(self, ref: ModelRef | str, *, note: Mapping[str, Any] | None = None) -> list[Entry]:
        """Retire what `ref` names (see Registry.retire), in one transaction."""
        ref = as_ref(ref)
        if ref.release is None:
            raise UsageError(
                f"{ref} moves as models are added; retire a release or RELEASE/GENERATION",
                hint=self.pinned_hint(ref, "retire"),
            )
        with self._writing(f"retiring {ref}") as conn:
            if ref.generation is not None:
                targets = [self._get(conn, ref)]
            else:
                targets = [e for e in self._read_entries(conn) if e.release == ref.release]
                if not targets:
                    raise RegistryError(
                        f"{self.project}: no release {ref.release} in the registry",
                        hint=self._known_hint(),
                    )
            record = {**plain(dict(note or {})), "retired_at": utc_now(), "retired_by": whoami()}
            done = []
            for entry in targets:
                if entry.retired:
                    done.append(entry)
                    continue
                kept = {**record, "sha256": entry.artifact.sha256}
                conn.execute(
                    self._entries.update()
                    .where(*self._row(entry.ref))
                    .values(retired=json.dumps(kept, allow_nan=False))
                )
                done.append(dataclasses.replace(entry, retired=kept))
            current = self._current(conn)
            if current is not None and current.retired:
                fallback = [
                    e for e in self._read_entries(conn) if e.is_candidate and e.release != DEV
                ]
                if fallback:
                    self._write_current(conn, fallback[-1].ref, note=f"{current.ref} was retired")
                else:
                    self._set_pointer(conn, None)
        log.info("retired %s", ", ".join(str(e.ref) for e in done))
        return done

    def record_data_rejection(self, record: Mapping[str, Any]) -> None:
        """Keep a refusal of new rows as the next numbered row (see
        Registry.record_data_rejection), in one write transaction."""
        import sqlalchemy as sa

        kept = {**plain(dict(record)), "at": utc_now(), "by": whoami()}
        c = self._rejections.c
        with self._writing("recording a data rejection") as conn:
            # The write transaction serialises the project's writers: no two take one number.
            last = conn.execute(
                sa.select(sa.func.max(c.number)).where(c.project == self.project)
            ).scalar()
            conn.execute(
                self._rejections.insert().values(
                    project=self.project,
                    number=(last or 0) + 1,
                    at=kept["at"],
                    document=json.dumps(kept, allow_nan=False),
                )
            )

    def remove_release(self, release: str) -> list[Entry]:
        """Remove every entry of `release` in one transaction; returns the removed entries.

        Their blobs stay in the artifact store: other entries may share them.
        """
        release = check_release(release)
        with self._writing(f"removing release {release}") as conn:
            removed = [e for e in self._read_entries(conn) if e.release == release]
            if not removed:
                return []
            self._forget_in_pointer(conn, lambda r: r.release == release, f"release {release}")
            conn.execute(
                self._entries.delete().where(
                    self._entries.c.project == self.project, self._entries.c.release == release
                )
            )
        log.info("removed release %s of %s (%d entries)", release, self.project, len(removed))
        return removed

    def remove_entry(self, ref: ModelRef | str) -> Entry | None:
        """Remove the one entry `ref` names (see Registry.remove_entry)."""
        ref = as_ref(ref)
        if ref.release is None or ref.generation is None:
            raise UsageError(f"{ref} does not name one entry; write RELEASE/GENERATION")
        with self._writing(f"removing {ref}") as conn:
            entry = self._read_entry(conn, ref)
            if entry is None:
                return None
            self._forget_in_pointer(conn, lambda r: r == ref, str(ref))
            conn.execute(self._entries.delete().where(*self._row(ref)))
        log.info("removed %s of %s", ref, self.project)
        return entry

    @contextmanager
    def release_lock(self, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the release lock (see Registry.release_lock), blocking while another holds it.

        PostgreSQL: a session advisory lock on a connection held open meanwhile; it
        dies with the holder's connection, so a killed release frees it. SQLite: a
        database in one file has no session locks, and a transaction held open
        through a whole release would stop the release's own registration, so the
        lock is a flock on a file beside the database, as the local registry does.
        """
        self._ensure()
        if self.dialect == "postgresql":
            lock: contextlib.AbstractContextManager[None] = self._advisory_lock(on_wait)
        else:
            lock = self._file_lock(on_wait)
        with lock:
            self._record_holder(RELEASE_LOCK)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    self._record_holder(RELEASE_LOCK, clear=True)

    # --- records copied in as they are (registry/migrate.py) ---------------------------
    #
    # Each looks at what the database holds and writes in the same write transaction, so
    # a record that arrived meanwhile is compared, never overwritten.

    def import_entry(self, entry: Entry) -> Imported:
        """Insert `entry` as it was written elsewhere (its blobs already stored).

        An equal entry there is PRESENT, or UPDATED when only the source had retired it
        (the retirement is copied); one with another record under the ref is a CONFLICT.
        """
        if entry.project != self.project:
            raise RegistryError(f"{entry.ref} belongs to {entry.project}, not {self.project}")
        with self._writing(f"copying {entry.ref} in") as conn:
            there = self._read_entry(conn, entry.ref)
            retired = None if entry.retired is None else json.dumps(plain(dict(entry.retired)))
            if there is None:
                conn.execute(
                    self._entries.insert().values(
                        project=self.project,
                        release=entry.release,
                        generation=entry.generation,
                        status=entry.status.value,
                        created_at=entry.created_at,
                        document=json.dumps(entry.as_dict(), allow_nan=False),
                        retired=retired,
                    )
                )
                return Imported.COPIED
            if there.as_dict() != entry.as_dict():
                return Imported.CONFLICT
            if entry.retired and not there.retired:
                conn.execute(
                    self._entries.update().where(*self._row(entry.ref)).values(retired=retired)
                )
                return Imported.UPDATED
            return Imported.PRESENT

    def import_pointer(self, pointer: Mapping[str, Any]) -> Imported:
        """Make current what `pointer` (current.json of another registry) names, with its
        history, when nothing is current here; PRESENT when the same entry is, CONFLICT
        when another one is."""
        ref = _pointer_ref(pointer, where="the pointer copied in")
        with self._writing(f"copying the current pointer ({ref}) in") as conn:
            there = self._pointer(conn)
            if there is not None:
                same = _pointer_ref(there, where=self.describe()) == ref
                return Imported.PRESENT if same else Imported.CONFLICT
            entry = self._read_entry(conn, ref)
            if entry is None or not entry.is_candidate:
                return Imported.CONFLICT  # the pointer would name nothing that may serve
            self._set_pointer(conn, plain(dict(pointer)))
            return Imported.COPIED

    def import_data_rejection(self, number: int, record: Mapping[str, Any]) -> Imported:
        """Insert data rejection `number` as it was recorded elsewhere (see import_entry)."""
        import sqlalchemy as sa

        c = self._rejections.c
        document = plain(dict(record))
        with self._writing(f"copying data rejection {number} in") as conn:
            text = conn.execute(
                sa.select(c.document).where(c.project == self.project, c.number == number)
            ).scalar()
            if text is not None:
                return Imported.PRESENT if json.loads(text) == document else Imported.CONFLICT
            conn.execute(
                self._rejections.insert().values(
                    project=self.project,
                    number=number,
                    at=str(document.get("at") or utc_now()),
                    document=json.dumps(document, allow_nan=False),
                )
            )
            return Imported.COPIED

    # --- reading ---------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry, ordered by release (`dev` first, then semver) and generation."""
        with self._reading() as conn:
            return self._read_entries(conn)

    def get(self, ref: ModelRef | str) -> Entry:
        """The entry `ref` names (see Registry.get); one row for `RELEASE/GEN`."""
        ref = as_ref(ref)
        if ref.release is not None and ref.generation is not None:
            with self._reading() as conn:
                return self._get(conn, ref)
        return super().get(ref)

    def current(self) -> Entry | None:
        """The entry the pointer names, or None when no entry was made current."""
        with self._reading() as conn:
            return self._current(conn)

    def current_history(self) -> list[ModelRef]:
        """Entries that were current before, newest first (may name removed entries)."""
        with self._reading() as conn:
            pointer = self._pointer(conn)
        if pointer is None:
            return []
        return [_pointer_ref(h, where=self.describe()) for h in pointer.get("history") or ()]

    def change_token(self) -> Hashable:
        """The project's `version`: every write transaction bumps it (one indexed read)."""
        with self._reading() as conn:
            if not self._has(conn, self._projects):
                return None
            return conn.execute(self._version_query()).scalar()

    def manifests(self) -> SqlManifestStore:
        """The serving manifests, rows of `registry_manifests`."""
        return SqlManifestStore(self)

    def runs(self) -> SqlRunStore:
        """The run records, rows of `registry_runs`: every machine sees the team's runs."""
        return SqlRunStore(self)

    def data_rejections(self) -> list[dict[str, Any]]:
        """The refusals of new rows `record_data_rejection` kept, oldest first."""
        import sqlalchemy as sa

        c = self._rejections.c
        with self._reading() as conn:
            if not self._has(conn, self._rejections):
                return []
            rows = conn.execute(
                sa.select(c.number, c.document).where(c.project == self.project).order_by(c.number)
            ).all()
        found = []
        for number, text in rows:
            try:
                raw = json.loads(text)
            except ValueError as e:
                raise RegistryError(
                    f"{self.describe()}: damaged data rejection {number} of {self.project} ({e})",
                    hint="delete its row: the training agent then checks those rows again",
                ) from e
            if isinstance(raw, dict):
                found.append(raw)
        return found

    def artifact_path(self, entry: Entry) -> Path:
        """The entry's artifact in the local cache (pulled and verified on first use)."""
        return self._local(entry) / entry.artifact.file

    def code_dir(self, entry: Entry) -> Path:
        """The entry's model code in the local cache (pulled and verified on first use)."""
        return self._local(entry) / CODE_DIR

    # --- the database ------------------------------------------------------------------

    def _after_fork(self) -> None:
        if self._pid != os.getpid():
            # A forked serving worker must not share its parent's connections (one
            # socket, two conversations): it opens its own, leaving the parent's alone.
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def _connect(self) -> Connection:
        """A connection to the database; RegistryError saying where when it cannot be had."""
        import sqlalchemy as sa

        self._after_fork()
        try:
            return self.engine.connect()
        except sa.exc.SQLAlchemyError as e:
            raise self._unreachable(e) from e

    def _ensure(self) -> None:
        """Create the tables and this project's row, once per process and registry.

        Only writers call this: reading creates nothing (see `_has`).
        """
        self._after_fork()
        if self._ready:
            return
        import sqlalchemy as sa

        for attempt in range(3):
            try:
                with self._connect() as conn, conn.begin():
                    if self.dialect == "postgresql":
                        # Two first users creating the tables at once would collide.
                        conn.execute(
                            sa.text("SELECT pg_advisory_xact_lock(:a, 0)"), {"a": ADVISORY_CLASS}
                        )
                    self._metadata.create_all(conn, checkfirst=True)
                    found = conn.execute(self._version_query()).first()
                    if found is None:
                        conn.execute(
                            self._projects.insert().values(project=self.project, version=0)
                        )
                break
            except sa.exc.IntegrityError:
                break  # another process inserted the project's row meanwhile
            except sa.exc.OperationalError as e:
                if attempt == 2 or "already exists" not in str(e):
                    raise self._database_error(e, "creating the registry's tables") from e
            except sa.exc.SQLAlchemyError as e:
                raise self._database_error(e, "creating the registry's tables") from e
        self._ready = True

    def _has(self, conn: Connection, table: Any) -> bool:
        """Whether `table` exists. Readers ask instead of creating it: `models` or
        `history` against a database no one has written to must change nothing (and
        may have no right to), so a missing table reads as empty."""
        if self._ready or table.name in self._present:
            return True
        import sqlalchemy as sa

        names = set(sa.inspect(conn).get_table_names())
        self._present |= {t.name for t in self._metadata.sorted_tables if t.name in names}
        return table.name in self._present

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        import sqlalchemy as sa

        conn = self._connect()
        try:
            with conn:
                yield conn
        except sa.exc.SQLAlchemyError as e:
            raise self._database_error(e, "reading the model registry") from e

    @contextmanager
    def _writing(self, doing: str) -> Iterator[Connection]:
        """One write transaction, serialised with every other writer of the project.

        Its first statement bumps the project's `version`: that takes the row's lock
        (PostgreSQL, until the commit) or the database's write lock (SQLite), and is
        the change readers poll for. An error rolls everything back, the bump too.
        """
        import sqlalchemy as sa

        self._ensure()
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    ms = max(1, int(self.lock_timeout * 1000))
                    conn.execute(sa.text(f"SET LOCAL lock_timeout = {ms}"))
                conn.execute(
                    self._projects.update()
                    .where(self._projects.c.project == self.project)
                    .values(version=self._projects.c.version + 1)
                )
                yield conn
        except sa.exc.OperationalError as e:
            if _lock_timed_out(e):
                raise RegistryError(
                    f"{self.describe()}: the registry of {self.project} is locked by another "
                    f"writer; gave up after {self.lock_timeout:g} s while {doing}",
                    hint="wait for that command to finish; the lock is released when its "
                    "transaction ends",
                ) from e
            raise self._database_error(e, doing) from e
        except sa.exc.SQLAlchemyError as e:
            raise self._database_error(e, doing) from e

    def _unreachable(self, e: Exception) -> RegistryError:
        """The database could not be connected to: down, unreachable, or no such database."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            where = f"the registry database {url.database or ':memory:'}"
        else:
            port = f":{url.port}" if url.port else ""
            where = f"the registry database {url.database} at {url.host or 'localhost'}{port}"
        return RegistryError(
            f"cannot reach {where}: {self._driver_words(e)}",
            hint="check that the database server is running and reachable from here and that "
            "the database exists, or fix the URL (registry.url, or MLCYCLE_REGISTRY_URL)",
        )

    def _driver_words(self, e: Exception) -> str:
        reason = getattr(e, "orig", None) or e
        # The driver's words, first line only, and never a URL with its password.
        words = str(reason).strip()
        return scrub(words.splitlines()[0] if words else "", self.url) or type(e).__name__

    def _database_error(self, e: Exception, doing: str) -> RegistryError:
        text = self._driver_words(e)
        return RegistryError(
            f"{self.describe()}: database error while {doing}: {text}",
            hint="check that the database is reachable and writable (registry.url, or "
            "MLCYCLE_REGISTRY_URL)",
        )

    def _version_query(self) -> Any:
        import sqlalchemy as sa

        return sa.select(self._projects.c.version).where(self._projects.c.project == self.project)

    def _row(self, ref: ModelRef) -> tuple[Any, ...]:
        c = self._entries.c
        return (c.project == self.project, c.release == ref.release, c.generation == ref.generation)

    def _entry(self, row: Any) -> Entry:
        where = f"{self.describe()} {self.project} {row.release}/{row.generation}"
        try:
            raw = json.loads(row.document)
        except ValueError as e:
            raise RegistryError(f"{where}: damaged entry (not JSON: {e})") from e
        entry = Entry.from_dict(raw, where=where)
        if (entry.project, entry.release, entry.generation) != (
            self.project,
            row.release,
            row.generation,
        ):
            raise RegistryError(f"{where}: the row holds the entry {entry.project} {entry.ref}")
        if row.retired:
            entry = dataclasses.replace(entry, retired=json.loads(row.retired))
        return entry

    def _read_entries(self, conn: Connection) -> list[Entry]:
        import sqlalchemy as sa

        if not self._has(conn, self._entries):
            return []
        rows = conn.execute(sa.select(self._entries).where(self._entries.c.project == self.project))
        found = [self._entry(row) for row in rows]
        found.sort(key=lambda e: (release_key(e.release), e.generation))
        return found

    def _read_entry(self, conn: Connection, ref: ModelRef) -> Entry | None:
        import sqlalchemy as sa

        if not self._has(conn, self._entries):
            return None
        row = conn.execute(sa.select(self._entries).where(*self._row(ref))).first()
        return None if row is None else self._entry(row)

    def _get(self, conn: Connection, ref: ModelRef) -> Entry:
        if ref.release is None or ref.generation is None:
            return super().get(ref)
        entry = self._read_entry(conn, ref)
        if entry is None:
            raise RegistryError(
                f"{self.project}: no model {ref} in the registry", hint=self._known_hint()
            )
        return entry

    def _allocate(self, conn: Connection, release: str, generation: int | None) -> int:
        import sqlalchemy as sa

        c = self._entries.c
        taken = set(
            conn.execute(
                sa.select(c.generation).where(c.project == self.project, c.release == release)
            ).scalars()
        )
        if generation is None:
            return max(taken, default=0) + 1
        if generation in taken:
            raise RegistryError(
                f"{self.project} {release}/{generation} is already in the registry",
                hint="leave the generation out to take the next free number",
            )
        return generation

    # --- the current pointer (the local registry's current.json, as one column) --------

    def _pointer(self, conn: Connection) -> dict[str, Any] | None:
        import sqlalchemy as sa

        if not self._has(conn, self._projects):
            return None
        text = conn.execute(
            sa.select(self._projects.c.current).where(self._projects.c.project == self.project)
        ).scalar()
        if not text:
            return None
        try:
            pointer = json.loads(text)
        except ValueError as e:
            raise RegistryError(f"{self.describe()}: damaged current pointer ({e})") from e
        if not isinstance(pointer, dict):
            raise RegistryError(f"{self.describe()}: damaged current pointer (not an object)")
        return pointer

    def _set_pointer(self, conn: Connection, pointer: Mapping[str, Any] | None) -> None:
        conn.execute(
            self._projects.update()
            .where(self._projects.c.project == self.project)
            .values(current=None if pointer is None else json.dumps(pointer, allow_nan=False))
        )

    def _current(self, conn: Connection) -> Entry | None:
        pointer = self._pointer(conn)
        if pointer is None:
            return None
        ref = _pointer_ref(pointer, where=self.describe())
        entry = self._read_entry(conn, ref)
        if entry is None:
            raise RegistryError(
                f"{self.describe()}: the current model {ref} is not in the registry",
                hint="set the current model again, e.g. to 'latest'",
            )
        return entry

    def _write_current(
        self,
        conn: Connection,
        ref: ModelRef,
        *,
        history: list[Any] | None = None,
        note: str | None = None,
    ) -> None:
        """Point at `ref`; the previous pointer goes to the history (as the local registry)."""
        if history is None:
            old = self._pointer(conn)
            history = []
            if old is not None:
                previous = {k: old.get(k) for k in ("release", "generation", "set_at")}
                history = [previous, *(old.get("history") or [])]
        key = (ref.release, ref.generation)
        history = [h for h in history if (h.get("release"), h.get("generation")) != key]
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
        self._set_pointer(conn, pointer)

    def _forget_in_pointer(
        self, conn: Connection, gone: Callable[[ModelRef], bool], what: str
    ) -> None:
        """Drop entries `gone` accepts from the pointer; if current, restore the one before."""
        pointer = self._pointer(conn)
        if pointer is None:
            return
        where = self.describe()

        def names_gone(raw: Any) -> bool:
            try:
                return gone(_pointer_ref(raw, where=where))
            except RegistryError:
                return False  # a damaged record names nothing that is going

        history = [h for h in pointer.get("history") or () if not names_gone(h)]
        if not names_gone(pointer):
            if len(history) != len(pointer.get("history") or ()):
                self._set_pointer(conn, {**pointer, "history": history})
            return
        for i, item in enumerate(history):
            ref = _pointer_ref(item, where=where)
            entry = self._read_entry(conn, ref)
            if entry is not None and entry.is_candidate:
                note = f"restored when {what} was removed"
                self._write_current(conn, ref, history=history[i + 1 :], note=note)
                return
        self._set_pointer(conn, None)

    # --- the release lock --------------------------------------------------------------

    @contextmanager
    def _advisory_lock(self, on_wait: Callable[[str], None] | None) -> Iterator[None]:
        import sqlalchemy as sa

        keys = {"a": ADVISORY_CLASS, "b": _project_key(self.project)}
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except sa.exc.SQLAlchemyError as e:
            raise self._database_error(e, "taking the release lock") from e
        try:
            try:
                got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:a, :b)"), keys).scalar()
                if not got:
                    if on_wait is not None:
                        on_wait(self._holder(RELEASE_LOCK))
                    conn.execute(sa.text("SELECT pg_advisory_lock(:a, :b)"), keys)
            except sa.exc.SQLAlchemyError as e:
                raise self._database_error(e, "taking the release lock") from e
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:a, :b)"), keys)
                conn.close()
            except Exception:
                # Closing the session for good frees its lock whatever state it is in.
                conn.invalidate()
                conn.close()

    @contextmanager
    def _file_lock(self, on_wait: Callable[[str], None] | None) -> Iterator[None]:
        database = self.engine.url.database
        if not database or database == ":memory:":
            # An in-memory database lives in this process: a thread lock is enough.
            if not self._thread_lock.acquire(blocking=False):
                if on_wait is not None:
                    on_wait(self._holder(RELEASE_LOCK))
                self._thread_lock.acquire()
            try:
                yield
            finally:
                self._thread_lock.release()
            return
        path = Path(database).expanduser()
        lock_path = path.with_name(f"{path.name}.{self.project}.release.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RegistryError(
                f"{lock_path}: cannot open the release lock: {e.strerror}",
                hint="make the database's directory writable",
            ) from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(self._holder(RELEASE_LOCK))
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _record_holder(self, name: str, *, clear: bool = False) -> None:
        """Write (or clear) who holds lock `name`, for a waiter's message; best effort."""
        import sqlalchemy as sa

        c = self._locks.c
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
        try:
            with self.engine.begin() as conn:
                conn.execute(self._locks.delete().where(c.project == self.project, c.name == name))
                if not clear:
                    conn.execute(
                        self._locks.insert().values(
                            project=self.project, name=name, holder=json.dumps(holder)
                        )
                    )
        except sa.exc.SQLAlchemyError as e:
            log.warning("could not record the release lock's holder: %s", type(e).__name__)

    def _holder(self, name: str) -> str:
        import sqlalchemy as sa

        c = self._locks.c
        try:
            with self.engine.connect() as conn:
                text = conn.execute(
                    sa.select(c.holder).where(c.project == self.project, c.name == name)
                ).scalar()
            holder = json.loads(text or "")
            return f"pid {int(holder['pid'])} on {holder.get('host')} since {holder.get('since')}"
        except (sa.exc.SQLAlchemyError, ValueError, KeyError, TypeError):
            return "another process"

    # --- blobs and the local cache -----------------------------------------------------

    def _store_blobs(self, files: list[Path], doing: str) -> None:
        for path in files:
            try:
                self.blobs.put(path)
            except OSError as e:
                raise RegistryError(
                    f"{self.blobs.describe()}: cannot store {path.name} while {doing}: "
                    f"{e.strerror or e}",
                    hint="make the artifact store writable (registry.artifacts, or "
                    "MLCYCLE_ARTIFACTS_URL)",
                ) from e

    def _local(self, entry: Entry) -> Path:
        """The directory holding the entry's files, laid out from verified blobs.

        Named by the digests of what it holds, so it is never stale; made in a
        temporary directory and renamed into place, so it is complete or absent.
        Reused as it is: the loaders check each file's SHA-256 again.
        """
        if entry.project != self.project:
            raise RegistryError(f"{entry.ref} belongs to {entry.project}, not {self.project}")
        files = {entry.artifact.file: entry.artifact.sha256}
        if entry.onnx is not None:
            files[entry.onnx.file] = entry.onnx.sha256
        files.update({f"{CODE_DIR}/{path}": sha for path, sha in entry.code.items()})
        key = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:32]
        target = self.cache / "entries" / key
        if target.is_dir():
            return target
        partial = self.cache / "entries" / f".{key}.{uuid.uuid4().hex}.part"
        try:
            for name, sha in files.items():
                dest = partial / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.blobs.fetch(f"sha256:{sha}"), dest)
            try:
                partial.rename(target)
            except OSError:
                if not target.is_dir():  # not another reader that made it first
                    raise
        except OSError as e:
            raise RegistryError(
                f"{self.cache}: cannot lay out {self.project} {entry.ref} from "
                f"{self.blobs.describe()}: {e.strerror or e}",
                hint="make the registry's cache directory (registry.path) writable",
            ) from e
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target


class SqlManifestStore(ManifestStore):
    """Serving manifests as rows; the next number is taken in the publishing transaction."""

    def __init__(self, registry: SqlRegistry) -> None:
        self.registry = registry
        self.project = registry.project

    def numbers(self) -> list[int]:
        """Published manifest numbers, ascending."""
        import sqlalchemy as sa

        c = self.registry._manifests.c
        with self.registry._reading() as conn:
            if not self.registry._has(conn, self.registry._manifests):
                return []
            found = conn.execute(
                sa.select(c.number).where(c.project == self.project).order_by(c.number)
            ).scalars()
            return list(found)

    def get(self, number: int) -> Manifest:
        """Manifest `number`; RegistryError when it is missing or invalid."""
        import sqlalchemy as sa

        c = self.registry._manifests.c
        with self.registry._reading() as conn:
            present = self.registry._has(conn, self.registry._manifests)
            text = None
            if present:
                text = conn.execute(
                    sa.select(c.document).where(c.project == self.project, c.number == number)
                ).scalar()
        if text is None:
            raise RegistryError(
                f"{self.project}: no manifest {number}",
                hint=f"published manifests: {self.numbers() or 'none'}",
            )
        where = f"{self.registry.describe()} manifest {number}"
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise RegistryError(f"{where}: unreadable manifest ({e})") from e
        return parse_manifest(raw, where=where)

    def import_manifest(self, manifest: Manifest) -> Imported:
        """Insert a manifest published elsewhere under its own number (see
        SqlRegistry.import_entry): PRESENT when an equal one is there, CONFLICT when
        another one holds the number."""
        import sqlalchemy as sa

        c = self.registry._manifests.c
        document = manifest.as_dict()
        if manifest.project != self.project:
            raise RegistryError(f"manifest {manifest.number} belongs to {manifest.project}")
        doing = f"copying serving manifest {manifest.number} in"
        with self.registry._writing(doing) as conn:
            text = conn.execute(
                sa.select(c.document).where(c.project == self.project, c.number == manifest.number)
            ).scalar()
            if text is not None:
                there = parse_manifest(json.loads(text), where=self.registry.describe())
                return Imported.PRESENT if there.as_dict() == document else Imported.CONFLICT
            conn.execute(
                self.registry._manifests.insert().values(
                    project=self.project,
                    number=manifest.number,
                    created_at=manifest.created_at,
                    document=json.dumps(document),
                )
            )
            return Imported.COPIED

    def _append(self, document: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        import sqlalchemy as sa

        c = self.registry._manifests.c
        with self.registry._writing("publishing a serving manifest") as conn:
            last = conn.execute(
                sa.select(sa.func.max(c.number)).where(c.project == self.project)
            ).scalar()
            doc = document((last or 0) + 1)
            conn.execute(
                self.registry._manifests.insert().values(
                    project=self.project,
                    number=doc["number"],
                    created_at=doc["created_at"],
                    document=json.dumps(doc),
                )
            )
        return doc


class SqlRunStore(RunStore):
    """Run records as rows, one per run id; a later save of the same id replaces it.

    A save is its own short transaction and does not bump the project's `version`:
    runs are no part of what serving polls for, and a run's record must not wait
    for (or time out behind) a long registry write.
    """

    def __init__(self, registry: SqlRegistry) -> None:
        self.registry = registry
        self.project = registry.project

    def save(self, run: Run) -> None:
        import sqlalchemy as sa

        registry = self.registry
        table = registry._runs
        document = json.dumps(run.as_dict(), allow_nan=False)
        registry._ensure()
        try:
            with registry.engine.begin() as conn:
                # Delete then insert: a portable upsert, whole, in one transaction.
                conn.execute(
                    table.delete().where(table.c.project == self.project, table.c.id == run.id)
                )
                conn.execute(
                    table.insert().values(
                        project=self.project,
                        id=run.id,
                        started_at=run.started_at,
                        document=document,
                    )
                )
        except sa.exc.SQLAlchemyError as e:
            raise registry._database_error(e, f"recording run {run.id}") from e

    def import_run(self, run: Run) -> Imported:
        """Insert a run recorded elsewhere (see SqlRegistry.import_entry): PRESENT when an
        equal record is there, CONFLICT when another one holds its id."""
        import sqlalchemy as sa

        registry = self.registry
        c = registry._runs.c
        document = run.as_dict()
        with registry._writing(f"copying run {run.id} in") as conn:
            text = conn.execute(
                sa.select(c.document).where(c.project == self.project, c.id == run.id)
            ).scalar()
            if text is not None:
                there = Run.from_dict(json.loads(text), where=f"{registry.describe()} run {run.id}")
                return Imported.PRESENT if there.as_dict() == document else Imported.CONFLICT
            conn.execute(
                registry._runs.insert().values(
                    project=self.project,
                    id=run.id,
                    started_at=run.started_at,
                    document=json.dumps(document, allow_nan=False),
                )
            )
            return Imported.COPIED

    def runs(self) -> list[Run]:
        import sqlalchemy as sa

        c = self.registry._runs.c
        with self.registry._reading() as conn:
            if not self.registry._has(conn, self.registry._runs):
                return []
            rows = conn.execute(sa.select(c.id, c.document).where(c.project == self.project)).all()
        found = []
        # Ids start with the UTC start time: sorted as strings here (as the local
        # store sorts file names), whatever collation the database would use.
        for run_id, text in sorted(rows):
            where = f"{self.registry.describe()} run {run_id}"
            try:
                raw = json.loads(text)
            except ValueError as e:
                raise RegistryError(f"{where}: unreadable run record ({e})") from e
            schema = raw.get("schema") if isinstance(raw, Mapping) else None
            if isinstance(schema, int) and schema > RUN_SCHEMA:
                continue  # written by a newer mlcycle: its layout is not ours to guess
            found.append(Run.from_dict(raw, where=where))
        return found


# --- helpers ------------------------------------------------------------------------


def _project_key(project: str) -> int:
    """A signed 32-bit key for `project` (PostgreSQL advisory locks take int4 pairs)."""
    value = zlib.crc32(project.encode("utf-8"))
    return value - (1 << 32) if value >= 1 << 31 else value


def _pointer_ref(raw: Any, *, where: str) -> ModelRef:
    try:
        return ModelRef(str(raw["release"]), int(raw["generation"]))
    except (KeyError, TypeError, ValueError, UsageError) as e:
        raise RegistryError(
            f"{where}: damaged pointer ({e})", hint="set the current model again"
        ) from e


def _lock_timed_out(e: Exception) -> bool:
    """Whether a database error says a lock wait gave up (PostgreSQL 55P03, SQLite busy)."""
    orig = getattr(e, "orig", None)
    if getattr(orig, "sqlstate", None) == "55P03":
        return True
    return "database is locked" in str(orig or e)
