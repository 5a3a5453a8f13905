"""Model references: the one grammar for naming an entry, and the order of releases.

A reference is written as

    latest            the newest candidate of the newest release
    current           the entry the `current` pointer names
    0.1.0             the newest candidate generation of release 0.1.0
    0.1.0/2           generation 2 of release 0.1.0 (whatever its status)
    dev, dev/3        the same for the pseudo-release of trainings outside a release

Releases are semantic versions (semver 2.0, without the tag's `v`). They sort by
semver precedence; the pseudo-release `dev` sorts before every release, so
`latest` prefers a released model to a development training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mlcycle.errors import UsageError

DEV: Final = "dev"
LATEST_WORD: Final = "latest"
CURRENT_WORD: Final = "current"

# semver.org's regex for MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD].
SEMVER_RE: Final = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
GENERATION_RE: Final = re.compile(r"^[1-9][0-9]*$")

# Sort key of a release: dev first, then releases by semver precedence; the full
# text breaks ties between versions that differ only in build metadata.
ReleaseKey = tuple[int, tuple[int, int, int], int, tuple[tuple[int, int | str], ...], str]


def is_release(text: str) -> bool:
    """Whether `text` names a release: a semantic version or `dev`."""
    return text == DEV or SEMVER_RE.match(text) is not None


def check_release(text: str, *, where: str = "release") -> str:
    """`text` if it names a release; raises UsageError saying what a release looks like."""
    if not isinstance(text, str) or not is_release(text):
        hint = "write a semantic version such as 0.1.0, or `dev` for trainings outside a release"
        if isinstance(text, str) and text.startswith("v") and is_release(text[1:]):
            hint = f"write {text[1:]}, without the tag's `v`"
        raise UsageError(f"{where}: {text!r} is not a release", hint=hint)
    return text


def release_key(release: str) -> ReleaseKey:
    """Sort key of a release (`dev` first, then semver precedence)."""
    if release == DEV:
        return (0, (0, 0, 0), 0, (), release)
    match = SEMVER_RE.match(release)
    if match is None:
        raise UsageError(f"{release!r} is not a release")
    core = (int(match["major"]), int(match["minor"]), int(match["patch"]))
    pre = match["pre"]
    if pre is None:
        # A release outranks every pre-release of the same version.
        return (1, core, 1, (), release)
    # Numeric identifiers rank below alphanumeric ones and compare as numbers.
    ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (1, core, 0, ids, release)


@dataclass(frozen=True)
class ModelRef:
    """A name for a registry entry; see the module docstring for the grammar.

    `release=None, generation=None` is `latest`; with `current=True` it is
    `current`. A generation needs a release.
    """

    release: str | None
    generation: int | None = None
    current: bool = False

    def __post_init__(self) -> None:
        if self.current and (self.release is not None or self.generation is not None):
            raise UsageError("a `current` reference names no release or generation")
        if self.release is not None:
            check_release(self.release)
        if self.generation is not None:
            if isinstance(self.generation, bool) or not isinstance(self.generation, int):
                raise UsageError(f"generation {self.generation!r} is not a whole number")
            if self.generation < 1:
                raise UsageError(f"generation {self.generation} is not 1 or more")
            if self.release is None:
                raise UsageError("a generation needs a release: RELEASE/GENERATION")

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse `latest`, `current`, `RELEASE` or `RELEASE/GENERATION`; UsageError otherwise."""
        if not isinstance(text, str):
            raise UsageError(f"{text!r} is not a model reference")
        raw = text.strip()
        if raw == LATEST_WORD:
            return LATEST
        if raw == CURRENT_WORD:
            return CURRENT
        release, sep, generation = raw.partition("/")
        if not is_release(release) or (sep and GENERATION_RE.match(generation) is None):
            # Placeholders, not examples: a made-up 0.1.0/2 reads as a model that exists.
            hint = (
                "write latest, current, RELEASE (its newest generation), RELEASE/GENERATION, "
                "dev or dev/GENERATION; `mlcycle models` lists them"
            )
            if release.startswith("v") and is_release(release[1:]):
                hint = f"write {raw[1:]}, without the tag's `v`"
            raise UsageError(f"{text!r} is not a model reference", hint=hint)
        return cls(release, int(generation) if sep else None)

    @property
    def is_latest(self) -> bool:
        """Whether this is `latest` (the newest candidate of the newest release)."""
        return self.release is None and not self.current

    def __str__(self) -> str:
        if self.current:
            return CURRENT_WORD
        if self.release is None:
            return LATEST_WORD
        if self.generation is None:
            return self.release
        return f"{self.release}/{self.generation}"


LATEST: Final = ModelRef(None)
CURRENT: Final = ModelRef(None, current=True)


def as_ref(ref: ModelRef | str) -> ModelRef:
    """A ModelRef from a ModelRef or its text."""
    return ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
