"""Run records: every training attempt, kept whether or not it became a model.

The registry keeps the generations that were registered; a *run* is one attempt
of the integration agent (`train`, `release`, `update`) to make one: its
parameters, the cross-validated scores of every tuning candidate, its held-out
metrics, its data window, spec hash and git commit, and how it ended
(`registered`, `rejected` by the gate, or `failed` with the error). `mlcycle runs`
lists and compares them; a tracking server (MLflow) receives the same record.

Runs are kept behind `RunStore` (two calls: `save`, `runs`), which each registry
backend provides (`Registry.runs()`), so a shared registry keeps the team's runs
in the same place as its models. The local backend writes one JSON file per run
under `.mlcycle/registry/PROJECT/runs/`, atomically; the SQL backend one row per
run in `registry_runs` (sql.py: SqlRunStore). A record is rewritten once more,
whole, when the tracking server's answer (its run id, or why it failed) is known.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from mlcycle.errors import RegistryError
from mlcycle.registry.artifacts import write_atomic
from mlcycle.registry.entry import plain

# Version of a run record's layout; a reader skips records newer than it knows.
RUN_SCHEMA: Final = 1


class Outcome(enum.StrEnum):
    """How a run ended."""

    REGISTERED = "registered"  # the gate passed and the model is a generation
    REJECTED = "rejected"  # the gate rejected it (kept as a rejected entry, or not kept)
    FAILED = "failed"  # an error stopped it before the gate could judge


@dataclass(frozen=True)
class Run:
    """One training attempt and what came of it.

    `purpose` is the command that ran it (`train`, `release`, `update`); `release`
    is the release it was for and `generation` the generation it became (None
    unless registered, or rejected and kept). `params` are the model's declared
    step parameters with the tuned ones over them; `tuning` is the search's record
    (`TuningResult.as_dict()`: every candidate's parameters and fold scores).
    `tracking` says where else the run was logged (`{"mlflow": {"run_id": ...}}`)
    or why it could not be (`{"mlflow": {"error": ...}}`).
    """

    id: str
    project: str
    purpose: str
    started_at: str
    finished_at: str
    outcome: Outcome
    release: str | None = None
    generation: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    spec_hash: str | None = None
    git_commit: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    gate: Mapping[str, Any] | None = None
    tuning: Mapping[str, Any] | None = None
    fit_seconds: float | None = None
    steps: tuple[str, ...] = ()
    error: str | None = None
    created_by: str = ""
    tracking: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str | None:
        """`RELEASE/GENERATION` of the entry the run became, if any."""
        return f"{self.release}/{self.generation}" if self.generation is not None else None

    @property
    def candidates(self) -> int:
        """Tuning candidates tried (0 without tuning)."""
        return len((self.tuning or {}).get("trials") or ())

    def with_tracking(self, name: str, record: Mapping[str, Any]) -> Run:
        """This run, with what tracking server `name` answered."""
        return replace(self, tracking={**self.tracking, name: dict(record)})

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN metrics become null); what the run's file holds."""
        return {
            "schema": RUN_SCHEMA,
            "id": self.id,
            "project": self.project,
            "purpose": self.purpose,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome.value,
            "release": self.release,
            "generation": self.generation,
            "ref": self.ref,
            "data": plain(self.data),
            "spec_hash": self.spec_hash,
            "git_commit": self.git_commit,
            "params": plain(self.params),
            "metrics": plain(dict(self.metrics)),
            "gate": plain(self.gate),
            "tuning": plain(self.tuning),
            "fit_seconds": self.fit_seconds,
            "steps": list(self.steps),
            "error": self.error,
            "created_by": self.created_by,
            "tracking": plain(self.tracking),
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str) -> Run:
        """Rebuild from `as_dict`'s output; RegistryError naming `where` if it is damaged."""
        if not isinstance(raw, Mapping):
            raise RegistryError(f"{where}: damaged run record (not a JSON object)")
        try:
            return cls(
                id=str(raw["id"]),
                project=str(raw["project"]),
                purpose=str(raw.get("purpose") or "train"),
                started_at=str(raw["started_at"]),
                finished_at=str(raw["finished_at"]),
                outcome=Outcome(raw["outcome"]),
                release=raw.get("release"),
                generation=raw.get("generation"),
                data=dict(raw.get("data") or {}),
                spec_hash=raw.get("spec_hash"),
                git_commit=raw.get("git_commit"),
                params=dict(raw.get("params") or {}),
                metrics={
                    str(k): float("nan") if v is None else float(v)
                    for k, v in (raw.get("metrics") or {}).items()
                },
                gate=raw.get("gate"),
                tuning=raw.get("tuning"),
                fit_seconds=raw.get("fit_seconds"),
                steps=tuple(raw.get("steps") or ()),
                error=raw.get("error"),
                created_by=str(raw.get("created_by") or ""),
                tracking=dict(raw.get("tracking") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RegistryError(f"{where}: damaged run record ({type(e).__name__}: {e})") from e


def new_run_id(started_ns: int) -> str:
    """A run id that sorts by start time and never collides: `20261202T043455.123456Z-1a2b3c`.

    Microseconds, not seconds: runs of one process often start within the same second,
    and their order must not come down to the random suffix.
    """
    started = dt.datetime.fromtimestamp(started_ns / 1e9, tz=dt.UTC)
    return f"{started:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(3)}"


class RunStore(ABC):
    """Where a registry keeps its project's run records."""

    @abstractmethod
    def save(self, run: Run) -> None:
        """Write `run` whole (a later save of the same id replaces it whole)."""

    @abstractmethod
    def runs(self) -> list[Run]:
        """Every run, oldest first."""


class LocalRunStore(RunStore):
    """One JSON file per run in a directory; written atomically, read without locks."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(self, run: Run) -> None:
        data = json.dumps(run.as_dict(), indent=2, sort_keys=False).encode() + b"\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.directory / f"{run.id}.json", data)
        except OSError as e:
            raise RegistryError(f"cannot record run {run.id} in {self.directory}: {e}") from e

    def runs(self) -> list[Run]:
        found = []
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise RegistryError(f"cannot list the runs in {self.directory}: {e}") from e
        for path in paths:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise RegistryError(f"{path}: unreadable run record ({e})") from e
            schema = raw.get("schema") if isinstance(raw, Mapping) else None
            if isinstance(schema, int) and schema > RUN_SCHEMA:
                continue  # written by a newer mlcycle: its layout is not ours to guess
            found.append(Run.from_dict(raw, where=str(path)))
        return found
