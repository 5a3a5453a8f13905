"""A registry entry: one generation of one release, with everything needed to trust it."""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Final

from mlcycle.errors import RegistryError, UsageError
from mlcycle.registry.artifacts import ArtifactInfo, OnnxArtifact
from mlcycle.registry.code import check_code_path
from mlcycle.registry.refs import DEV, ModelRef, check_release
from mlcycle.spec.model import Procurement

# Version of the entry.json layout; a reader refuses entries newer than it knows.
ENTRY_SCHEMA: Final = 1


class Status(enum.StrEnum):
    """What the validation gate said of an entry (recorded once, in entry.json)."""

    CANDIDATE = "candidate"  # registered and the gate passed: may become current
    REJECTED = "rejected"  # kept for inspection, never current


class State(enum.StrEnum):
    """The one status vocabulary users see, in `models`, `history` and their JSON.

    An entry is `candidate` (passed its gate, trained outside a release),
    `released` (passed its gate, a generation of a release), `rejected` (failed its
    gate) or `retired` (`mlcycle retire`: never served or selected again, kept for
    lineage). A release in `history` is `released` or `retired`, or, when git and
    the registry disagree, `incomplete` (registry entries without a tag: an
    interrupted release) or `missing` (a tag whose registry entries are gone).
    Which model is current is a separate marker, not a status.
    """

    CANDIDATE = "candidate"
    RELEASED = "released"
    REJECTED = "rejected"
    RETIRED = "retired"
    INCOMPLETE = "incomplete"
    MISSING = "missing"


@dataclass(frozen=True)
class Entry:
    """One registered model: where it came from, how good it is, and its artifact.

    `metrics` hold floats (NaN for a metric that could not be computed);
    `gate`, `data` and `extra` are the JSON-ready records the trainer, the data
    layer and the caller passed.
    """

    project: str
    release: str
    generation: int
    status: Status
    metrics: Mapping[str, float]
    gate: Mapping[str, Any]
    data: Mapping[str, Any]
    spec_hash: str | None
    git_commit: str | None
    versions: Mapping[str, str]
    procurement: Procurement
    created_at: str
    created_by: str
    artifact: ArtifactInfo
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The project's model code stored with the entry: relative path → SHA-256 (registry/code.py).
    code: Mapping[str, str] = field(default_factory=dict)
    retired: Mapping[str, Any] | None = None
    """When, by whom and why the entry was retired (`Registry.retire`); None while it is not.
    Kept beside the entry, not in entry.json, which never changes once written."""
    onnx: OnnxArtifact | None = None
    """The model's ONNX form, made and verified at registration; None when it does not
    convert (served by scikit-learn) or was registered by an older mlcycle."""

    @property
    def ref(self) -> ModelRef:
        """`RELEASE/GENERATION` of this entry."""
        return ModelRef(self.release, self.generation)

    @property
    def is_candidate(self) -> bool:
        """Whether the entry may be served, selected or made current: it passed its gate
        and was not retired."""
        return self.status is Status.CANDIDATE and not self.retired

    @property
    def unservable(self) -> str:
        """Why the entry may not be served ('' when it may), to finish a sentence."""
        if self.status is Status.REJECTED:
            return "was rejected by its validation gate"
        return "is retired (`mlcycle retire`)" if self.retired else ""

    @property
    def state(self) -> State:
        """The entry's status in the users' vocabulary (see `State`)."""
        if self.status is Status.REJECTED:
            return State.REJECTED
        if self.retired:
            return State.RETIRED
        return State.CANDIDATE if self.release == DEV else State.RELEASED

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN metrics become null); what entry.json holds."""
        return {
            "schema": ENTRY_SCHEMA,
            "project": self.project,
            "release": self.release,
            "generation": self.generation,
            "ref": str(self.ref),
            "status": self.status.value,
            "metrics": plain(dict(self.metrics)),
            "gate": plain(self.gate),
            "data": plain(self.data),
            "spec_hash": self.spec_hash,
            "git_commit": self.git_commit,
            "versions": dict(self.versions),
            "procurement": self.procurement.value,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "artifact": self.artifact.as_dict(),
            "extra": plain(self.extra),
            "code": dict(self.code),
            **({"onnx": self.onnx.as_dict()} if self.onnx is not None else {}),
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str) -> Entry:
        """Rebuild from `as_dict`'s output; RegistryError naming `where` if it is damaged."""
        if not isinstance(raw, Mapping):
            raise RegistryError(f"{where}: damaged entry (not a JSON object)")
        schema = raw.get("schema")
        if isinstance(schema, int) and schema > ENTRY_SCHEMA:
            raise RegistryError(
                f"{where}: entry written by a newer mlcycle (layout {schema})",
                hint="upgrade mlcycle to read this registry",
            )
        try:
            metrics = {
                str(k): math.nan if v is None else float(v)
                for k, v in (raw.get("metrics") or {}).items()
            }
            return cls(
                project=str(raw["project"]),
                release=check_release(str(raw["release"])),
                generation=int(raw["generation"]),
                status=Status(raw["status"]),
                metrics=metrics,
                gate=dict(raw.get("gate") or {}),
                data=dict(raw.get("data") or {}),
                spec_hash=raw.get("spec_hash"),
                git_commit=raw.get("git_commit"),
                versions={str(k): str(v) for k, v in (raw.get("versions") or {}).items()},
                procurement=Procurement(raw["procurement"]),
                created_at=str(raw["created_at"]),
                created_by=str(raw["created_by"]),
                artifact=ArtifactInfo.from_dict(raw["artifact"], where=where),
                extra=dict(raw.get("extra") or {}),
                code={
                    check_code_path(str(k), where=where): str(v)
                    for k, v in (raw.get("code") or {}).items()
                },
                onnx=(
                    OnnxArtifact.from_dict(raw["onnx"], where=where)
                    if raw.get("onnx") is not None
                    else None
                ),
            )
        except (KeyError, TypeError, ValueError, UsageError, AttributeError) as e:
            raise RegistryError(f"{where}: damaged entry ({type(e).__name__}: {e})") from e


def plain(value: Any, *, where: str = "value") -> Any:
    """`value` as plain JSON data: mappings, lists, str, int, float, bool, None.

    NumPy scalars and arrays become Python numbers and lists, datetimes ISO
    strings, enums their values, paths strings; NaN and infinities become null
    (JSON has neither). Raises UsageError for anything else.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return plain(value.value, where=where)
    if isinstance(value, Mapping):
        return {str(k): plain(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        return sorted(plain(v, where=where) for v in value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    # NumPy / pandas scalars and arrays, without importing either.
    if hasattr(value, "isoformat") and callable(value.isoformat):
        return value.isoformat()
    if hasattr(value, "tolist") and callable(value.tolist):
        return plain(value.tolist(), where=where)
    if hasattr(value, "item") and callable(value.item):
        return plain(value.item(), where=where)
    raise UsageError(
        f"{where}: {type(value).__name__} is not JSON data",
        hint="pass numbers, strings, booleans, lists and dicts",
    )
