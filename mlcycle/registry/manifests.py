"""Serving manifests of a dynamic deployment: what the engine serves, and how it routes.

A manifest names the release in play, the selector (the spec's
`deployment.selector`) and how the arms are chosen:

- `follow`: the newest `arms` candidate generations of the release. New
  generations the training agent registers join on their own, so the engine
  picks them up without a new manifest;
- `pinned`: exactly the listed `RELEASE/GENERATION` entries.

Manifests are numbered 1, 2, ..., never overwritten (two publishers never
take one number) and validated against `schemas/manifest.schema.json` when
written and read. Each registry backend keeps them its way: the local one as
files `<project>/manifests/NNNNNN.json` (created with O_EXCL), the SQL one as
rows (sql.py). The active manifest is the highest number; rolling back
publishes a copy of an older one as the next number, so history only grows.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import RegistryError, UsageError
from mlcycle.registry import ModelRef
from mlcycle.registry.local import utc_now, whoami
from mlcycle.resources import schema_path
from mlcycle.spec.model import RewardKind, RewardSpec, SelectorKind, SelectorSpec

if TYPE_CHECKING:
    from mlcycle.registry import Entry, Registry

MANIFEST_SCHEMA: Final = 1
FILE_RE: Final = re.compile(r"^(\d{6})\.json$")
FOLLOW: Final = "follow"
PINNED: Final = "pinned"


@dataclass(frozen=True)
class Manifest:
    """One published serving manifest (see the module docstring)."""

    project: str
    number: int
    release: str
    mode: str  # follow | pinned
    selector: Mapping[str, Any]
    arms: int = 1
    pinned: tuple[str, ...] = ()
    created_at: str = ""
    created_by: str = ""
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON document the registry stores."""
        return {
            "schema": MANIFEST_SCHEMA,
            "project": self.project,
            "number": self.number,
            "release": self.release,
            "mode": self.mode,
            "arms": self.arms,
            "pinned": list(self.pinned),
            "selector": dict(self.selector),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "note": self.note,
        }

    @property
    def wanted(self) -> int:
        """How many entries serve: every pinned one, or `arms` of a followed release."""
        return len(self.pinned) if self.mode == PINNED else self.arms

    def resolve(self, registry: Registry) -> list[Entry]:
        """The entries in play now, newest first; RegistryError when there are none."""
        return self.candidates(registry)[: self.wanted]

    def candidates(self, registry: Registry) -> list[Entry]:
        """Every entry that may serve, newest first: the pinned ones, or each candidate
        generation of the followed release (the serving engine skips one that fails to
        load for the next). RegistryError when there are none.
        """
        if self.mode == PINNED:
            entries = [registry.get(ModelRef.parse(ref)) for ref in self.pinned]
            refused = [str(e.ref) for e in entries if not e.is_candidate]
            if refused:
                raise RegistryError(
                    f"manifest {self.number} pins model(s) that may not serve (rejected or "
                    f"retired): {', '.join(refused)}",
                    hint="deploy another model: mlcycle deploy REF",
                )
            return entries
        candidates = [e for e in registry.entries() if e.release == self.release and e.is_candidate]
        if not candidates:
            held = [e for e in registry.entries() if e.release == self.release]
            why = "; ".join(f"{e.ref} {e.unservable}" for e in held[-3:]) or "it has none"
            raise RegistryError(
                f"manifest {self.number}: release {self.release} has no generation that may "
                f"serve ({why})",
                hint="release or update the model, then deploy again",
            )
        return list(reversed(candidates))


def selector_document(selector: SelectorSpec) -> dict[str, Any]:
    """The spec's selector as plain JSON for a manifest."""
    return {
        "kind": selector.kind.value,
        "arms": selector.arms,
        "model": selector.model,
        "weights": list(selector.weights) if selector.weights else None,
        "sticky": selector.sticky,
        "epsilon": selector.epsilon,
        "min_predictions": selector.min_predictions,
        "min_age": selector.min_age,
        "seed": selector.seed,
        "reward": None
        if selector.reward is None
        else {"kind": selector.reward.kind.value, "scale": selector.reward.scale},
    }


def selector_from_document(doc: Mapping[str, Any]) -> SelectorSpec:
    """The SelectorSpec a manifest's selector document describes."""
    weights = doc.get("weights")
    return SelectorSpec(
        kind=SelectorKind(doc["kind"]),
        arms=int(doc.get("arms") or 1),
        model=doc.get("model"),
        weights=tuple(float(w) for w in weights) if weights else None,
        sticky=doc.get("sticky"),
        epsilon=float(doc.get("epsilon", 0.1)),
        min_predictions=int(doc.get("min_predictions", 100)),
        min_age=doc.get("min_age"),
        seed=int(doc.get("seed", 0)),
        reward=_reward_from_document(doc.get("reward")),
    )


def _reward_from_document(doc: Mapping[str, Any] | None) -> RewardSpec | None:
    """The reward of a manifest's selector (None in manifests from before rewards)."""
    if not doc:
        return None
    scale = doc.get("scale")
    return RewardSpec(RewardKind(doc["kind"]), None if scale is None else float(scale))


class ManifestStore(ABC):
    """The manifests of one project; a registry backend supplies where they are kept.

    A backend implements `numbers`, `get` and `_append`; publishing, the active
    manifest, the history and rollback are written once here.
    """

    project: str

    @abstractmethod
    def numbers(self) -> list[int]:
        """Published manifest numbers, ascending."""

    @abstractmethod
    def get(self, number: int) -> Manifest:
        """Manifest `number`; RegistryError when it is missing or invalid."""

    @abstractmethod
    def _append(self, document: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Store `document(n)` as manifest n, n the next free number; return what was stored.

        Atomic: no reader sees a partial manifest, two publishers never take one number,
        and a manifest is never replaced.
        """

    def active(self) -> Manifest | None:
        """The newest manifest, or None when none was published."""
        numbers = self.numbers()
        return self.get(numbers[-1]) if numbers else None

    def history(self) -> list[Manifest]:
        """Every manifest, oldest first."""
        return [self.get(n) for n in self.numbers()]

    def publish(
        self,
        *,
        release: str,
        selector: Mapping[str, Any],
        mode: str,
        arms: int,
        pinned: Sequence[str] = (),
        note: str | None = None,
    ) -> Manifest:
        """Store the next manifest (validated); never replaces one."""

        def document(number: int) -> dict[str, Any]:
            doc = Manifest(
                project=self.project,
                number=number,
                release=release,
                mode=mode,
                selector=dict(selector),
                arms=arms,
                pinned=tuple(pinned),
                created_at=utc_now(),
                created_by=whoami(),
                note=note,
            ).as_dict()
            _validate(doc, where=f"manifest {number}")
            return doc

        return _from_dict(self._append(document))

    def rollback(self, number: int | None = None) -> Manifest:
        """Publish a copy of manifest `number` (default: the one before the active one)."""
        numbers = self.numbers()
        if number is None:
            if len(numbers) < 2:
                raise UsageError(
                    f"{self.project}: there is no earlier manifest to roll back to",
                    hint="`mlcycle deploy --history` lists the manifests",
                )
            number = numbers[-2]
        old = self.get(number)
        return self.publish(
            release=old.release,
            selector=old.selector,
            mode=old.mode,
            arms=old.arms,
            pinned=old.pinned,
            note=f"rollback to manifest {number}",
        )


class DirectoryManifestStore(ManifestStore):
    """Manifests as numbered JSON files in one directory (the local registry's)."""

    def __init__(self, directory: Path, project: str) -> None:
        self.directory = Path(directory)
        self.project = project

    def numbers(self) -> list[int]:
        """Published manifest numbers, ascending."""
        try:
            names = [p.name for p in self.directory.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(int(m[1]) for n in names if (m := FILE_RE.match(n)))

    def path(self, number: int) -> Path:
        """The file of manifest `number`."""
        return self.directory / f"{number:06d}.json"

    def get(self, number: int) -> Manifest:
        """Manifest `number`; RegistryError when it is missing or invalid."""
        path = self.path(number)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(
                f"{self.project}: no manifest {number}",
                hint=f"published manifests: {self.numbers() or 'none'}",
            ) from None
        except (OSError, ValueError) as e:
            raise RegistryError(f"{path}: unreadable manifest ({e})") from e
        return parse_manifest(raw, where=str(path))

    def _append(self, document: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Write the next file; O_EXCL-like (link), so a race retries with the next number."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            number = (self.numbers() or [0])[-1] + 1
            doc = document(number)
            data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
            tmp = self.directory / f".{number:06d}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            try:
                # link() fails when the name exists: a manifest is never overwritten,
                # and readers never see a half-written file.
                os.link(tmp, self.path(number))
            except FileExistsError:
                continue
            finally:
                tmp.unlink(missing_ok=True)
            return doc
        raise RegistryError(f"{self.directory}: could not take a manifest number (contention)")


def parse_manifest(raw: Any, *, where: str) -> Manifest:
    """The manifest a stored document describes, after checking it against the schema."""
    _validate(raw, where=where)
    return _from_dict(raw)


@cache
def _schema() -> dict[str, Any]:
    path = schema_path().with_name("manifest.schema.json")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _validate(doc: Any, *, where: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.absolute_path) or "(top)"
        raise RegistryError(
            f"{where}: invalid manifest at {at}: {first.message}",
            hint="manifests are written by `mlcycle deploy`; do not edit them by hand",
        )


def _from_dict(raw: Mapping[str, Any]) -> Manifest:
    return Manifest(
        project=str(raw["project"]),
        number=int(raw["number"]),
        release=str(raw["release"]),
        mode=str(raw["mode"]),
        selector=dict(raw["selector"]),
        arms=int(raw.get("arms", 1)),
        pinned=tuple(raw.get("pinned") or ()),
        created_at=str(raw.get("created_at", "")),
        created_by=str(raw.get("created_by", "")),
        note=raw.get("note"),
    )
