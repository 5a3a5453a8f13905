"""Semantic versions of releases: parsing, printing, bumping and their order.

The grammar and the precedence are the registry's (`mlcycle.registry.refs`):
one semver regex and one sort key for the whole code base. A version is written
without the tag's `v` (`1.2.3`, `1.0.0-rc.1`, `1.0.0+build.5`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Literal

from mlcycle.errors import UsageError
from mlcycle.registry.refs import SEMVER_RE, ReleaseKey, release_key

Bump = Literal["major", "minor", "patch"]
BUMPS: Final[tuple[Bump, ...]] = ("major", "minor", "patch")


@functools.total_ordering
@dataclass(frozen=True, eq=True)
class Version:
    """A semantic version (semver 2.0); ordered by semver precedence.

    Equal versions have equal text; versions that differ only in build metadata
    are unequal and ordered by their text (the registry's tie-break), so sorting
    is total and stable.
    """

    major: int
    minor: int
    patch: int
    prerelease: str | None = None
    build: str | None = None

    def __post_init__(self) -> None:
        for part in (self.major, self.minor, self.patch):
            if isinstance(part, bool) or not isinstance(part, int) or part < 0:
                raise UsageError(f"version part {part!r} is not a whole number 0 or more")
        # One grammar: whatever the fields, the text must be a semver.
        if SEMVER_RE.match(str(self)) is None:
            raise UsageError(f"{str(self)!r} is not a semantic version")

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`; UsageError otherwise."""
        raw = text.strip() if isinstance(text, str) else text
        match = SEMVER_RE.match(raw) if isinstance(raw, str) else None
        if match is None:
            hint = "write a semantic version such as 0.1.0 or 1.0.0-rc.1"
            if isinstance(raw, str) and raw[:1] in ("v", "V") and SEMVER_RE.match(raw[1:]):
                hint = f"write {raw[1:]}, without the tag's `v`"
            raise UsageError(f"{text!r} is not a semantic version", hint=hint)
        return cls(
            int(match["major"]),
            int(match["minor"]),
            int(match["patch"]),
            match["pre"],
            match["build"],
        )

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease is not None:
            text += f"-{self.prerelease}"
        if self.build is not None:
            text += f"+{self.build}"
        return text

    @property
    def key(self) -> ReleaseKey:
        """Sort key by semver precedence (the registry's `release_key`)."""
        return release_key(str(self))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.key < other.key

    def bump(self, part: str) -> Version:
        """The next version after this one, raising `part` (major, minor or patch).

        Build metadata is dropped. A pre-release bumps to the release it leads
        up to when that release is of the requested kind, as npm does:
        `1.2.0-rc.1` bumps minor to `1.2.0`, patch to `1.2.0`, and
        major to `2.0.0`; `2.0.0-rc.1` bumps major to `2.0.0`.
        """
        if part not in BUMPS:
            raise UsageError(
                f"cannot bump {part!r} of a version", hint="bump one of: " + ", ".join(BUMPS)
            )
        pre = self.prerelease is not None
        if part == "major":
            if pre and self.minor == 0 and self.patch == 0:
                return Version(self.major, 0, 0)
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            if pre and self.patch == 0:
                return Version(self.major, self.minor, 0)
            return Version(self.major, self.minor + 1, 0)
        if pre:
            return Version(self.major, self.minor, self.patch)
        return Version(self.major, self.minor, self.patch + 1)


ZERO: Final = Version(0, 0, 0)


def first_version(part: str) -> Version:
    """The version of a first release: 1.0.0 (major), 0.1.0 (minor) or 0.0.1 (patch)."""
    return ZERO.bump(part)
