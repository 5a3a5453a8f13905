"""The release tag grammar and the release metadata carried in a tag's message.

A tag format is a template with the placeholders `{name}` (the project) and
`{version}` (a semantic version without `v`); the default `{name}@v{version}`
makes GTO's tags (`churn@v1.2.0`). `TagFormat.parse(TagFormat.format(n, v)) == v`
for every valid name and version; tags of other projects and tags that do not
fit the template parse to None.

Registry operations are tags too, in GTO's grammar (iterative/gto, `gto/tag.py`),
so that `gto show` and `gto history` read what `mlcycle promote` and `retire`
wrote, and mlcycle reads the stages GTO assigned: `EventTag` (see there).

The message of an annotated release tag is a human first line, a blank line,
and the metadata as JSON after a marker line, so that `git show` stays readable
and `parse_release_message` reads back exactly what `release_message` wrote.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath
from typing import Any, Final

from mlcycle.errors import GitError, UsageError
from mlcycle.gitops.version import Version
from mlcycle.registry.refs import SEMVER_RE
from mlcycle.spec.model import DEFAULT_TAG_FORMAT

PLACEHOLDERS: Final = ("name", "version")
METADATA_MARKER: Final = "--- mlcycle release metadata (JSON) ---"

# The registry's semver regex without its anchors, to embed in a tag's regex.
_SEMVER_BODY: Final = SEMVER_RE.pattern.removeprefix("^").removesuffix("$")

# What GTO accepts as an artifact name: lowercase letters, digits, '-' and '/',
# starting and ending with a letter or digit. Project names may also hold '.'
# and '_', which give tags GTO cannot read.
_GTO_NAME_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9/-]*[a-z0-9])?$")

# Characters git forbids anywhere in a ref name (git-check-ref-format(1), rules 4, 5, 10).
_REF_FORBIDDEN: Final = frozenset(" ~^:?*[\\\x7f") | {chr(c) for c in range(0x20)}


def check_ref_name(tag: str) -> str | None:
    """Why `tag` cannot name a git tag, or None when it can.

    The rules of git-check-ref-format(1) for `refs/tags/TAG`, plus `git tag`'s
    own refusal of names starting with '-'.
    """
    if not tag:
        return "it is empty"
    if tag.startswith("-"):
        return "it starts with '-'"
    bad = sorted({c for c in tag if c in _REF_FORBIDDEN})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"it contains {shown} (spaces, control characters and ~^:?*[\\ are not allowed)"
    if ".." in tag:
        return "it contains '..'"
    if "@{" in tag:
        return "it contains '@{'"
    if tag.startswith("/") or tag.endswith("/") or "//" in tag:
        return "it has an empty '/'-separated part"
    if tag.endswith("."):
        return "it ends with '.'"
    for part in tag.split("/"):
        if part.startswith("."):
            return f"its part {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"its part {part!r} ends with '.lock'"
    return None


def is_gto_name(name: str) -> bool:
    """Whether GTO can read tags of a project called `name` (see `_GTO_NAME_RE`)."""
    return _GTO_NAME_RE.match(name) is not None


@dataclass(frozen=True)
class TagFormat:
    """The git tag of a release, from `release.tag_format` in the spec."""

    template: str = DEFAULT_TAG_FORMAT

    @cached_property
    def _pieces(self) -> tuple[tuple[str, str | None], ...]:
        """(literal, placeholder) pairs; UsageError when the template is malformed."""
        where = f"release.tag_format {self.template!r}"
        if not isinstance(self.template, str) or not self.template:
            raise UsageError(f"{where}: a tag format must be a non-empty text")
        try:
            parsed = list(string.Formatter().parse(self.template))
        except ValueError as e:
            raise UsageError(
                f"{where}: {e}", hint="write '{{' or '}}' for a literal brace"
            ) from None
        pieces: list[tuple[str, str | None]] = []
        for literal, field_name, spec, conversion in parsed:
            if field_name is not None and field_name not in PLACEHOLDERS:
                raise UsageError(
                    f"{where}: unknown placeholder {{{field_name}}}",
                    hint="use only {name} and {version}",
                )
            if spec or conversion:
                raise UsageError(
                    f"{where}: placeholders take no format spec or conversion",
                    hint="write {name} and {version} plainly",
                )
            pieces.append((literal, field_name))
        count = sum(1 for _, f in pieces if f == "version")
        if count != 1:
            raise UsageError(
                f"{where}: a tag format must contain {{version}} exactly once, not {count} times",
                hint="e.g. {name}@v{version} (the default, readable by GTO)",
            )
        return tuple(pieces)

    @property
    def uses_name(self) -> bool:
        """Whether tags carry the project name (a template without it tags one project only)."""
        return any(f == "name" for _, f in self._pieces)

    def validate(self, name: str | None = None) -> TagFormat:
        """This format if it makes valid, parseable git tags; UsageError otherwise.

        Checks the placeholders, then formats sample versions (a plain release
        and a pre-release with build metadata) for `name` (or a sample project
        name) and checks each tag against git's ref name rules.
        """
        sample_name = name if name is not None else "model"
        for version in (Version(1, 2, 3), Version(1, 0, 0, "rc.1", "build.5")):
            tag = self._render(sample_name, version)
            problem = check_ref_name(tag)
            if problem is not None:
                raise UsageError(
                    f"release.tag_format {self.template!r} makes the tag {tag!r}, "
                    f"which git refuses: {problem}",
                    hint="use letters, digits and - _ . / @ around {name} and {version}",
                )
        return self

    def _render(self, name: str, version: Version | str) -> str:
        values = {"name": name, "version": str(version)}
        return "".join(lit + (values[f] if f else "") for lit, f in self._pieces)

    def format(self, name: str, version: Version | str) -> str:
        """The tag of `version` of project `name`; UsageError when git would refuse it."""
        if isinstance(version, str):
            version = Version.parse(version)
        tag = self._render(name, version)
        problem = check_ref_name(tag)
        if problem is not None:
            raise UsageError(
                f"the release tag {tag!r} (release.tag_format {self.template!r}) is not a "
                f"valid git tag: {problem}",
                hint="change release.tag_format or the project name",
            )
        return tag

    def regex(self, name: str) -> re.Pattern[str]:
        """The regex matching this project's release tags; group `version` is the version."""
        parts = []
        for literal, f in self._pieces:
            parts.append(re.escape(literal))
            if f == "name":
                parts.append(re.escape(name))
            elif f == "version":
                parts.append(f"(?P<version>{_SEMVER_BODY})")
        return re.compile("^" + "".join(parts) + "$")

    def parse(self, tag: str, name: str) -> Version | None:
        """The version `tag` releases for project `name`, or None if it is not such a tag."""
        match = self.regex(name).match(tag)
        if match is None:
            return None
        return Version.parse(match["version"])


@dataclass(frozen=True)
class ReleaseTag:
    """A release tag as git holds it."""

    name: str
    """The tag's name, e.g. `churn@v1.2.0`."""
    version: Version
    commit: str
    """Hex SHA-1 of the commit the tag points to."""
    date: str
    """ISO 8601 with offset: when it was tagged (the commit date for a lightweight tag)."""
    tagger: str | None
    """`Name <email>` of who tagged; None for a lightweight tag."""
    message: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    """The release metadata parsed from the message; empty when it carries none."""
    annotated: bool = True

    @property
    def author(self) -> str | None:
        """Who made the release (the tagger)."""
        return self.tagger

    @property
    def summary(self) -> str:
        """The message's first line."""
        return self.message.split("\n", 1)[0].strip()


def release_message(summary: str, metadata: Mapping[str, Any]) -> str:
    """Registry operations are tags too, in GTO's grammar (iterative/gto, `gto/tag.py`),
    so that `gto show` and `gto history` read what `mlcycle promote` and `retire`
    wrote, and mlcycle reads the stages GTO assigned: `EventTag` (see there).

    The message of an annotated release tag: `summary`, a blank line, then the metadata.

        The metadata is written as JSON (sorted keys) after `METADATA_MARKER`.
        Dates become ISO text, paths text, enums their value, sets sorted lists,
        dataclasses dicts, numpy scalars numbers, and non-finite floats null
        (JSON has no NaN); anything else is a UsageError.
    """
    line = " ".join(str(summary).split())
    if not line:
        raise UsageError("a release tag message needs a summary line")
    if not isinstance(metadata, Mapping):
        raise UsageError(f"release metadata must be a mapping, not {type(metadata).__name__}")
    body = json.dumps(_plain(metadata, "metadata"), indent=2, sort_keys=True, ensure_ascii=False)
    return f"{line}\n\n{METADATA_MARKER}\n{body}\n"


def parse_release_message(message: str) -> dict[str, Any]:
    """The metadata `release_message` wrote into `message`; {} when it carries none.

    Text after the JSON (a signature git appends, say) is ignored. GitError
    when the marker is there but the JSON after it is damaged.
    """
    lines = message.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.strip() == METADATA_MARKER:
            rest = "".join(lines[index + 1 :]).lstrip()
            break
    else:
        return {}
    try:
        value, _end = json.JSONDecoder().raw_decode(rest)
    except json.JSONDecodeError as e:
        raise GitError(
            f"the release metadata in the tag message is damaged: {e}",
            hint="the tag was edited by hand; recreate it with `mlcycle release`",
        ) from None
    if not isinstance(value, dict):
        raise GitError(
            "the release metadata in the tag message is not a JSON object",
            hint="the tag was edited by hand; recreate it with `mlcycle release`",
        )
    return value


def _plain(value: Any, where: str) -> Any:
    """`value` as plain JSON types (see `release_message`)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if isinstance(value, Version | PurePath):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_plain(v, f"{where}[]") for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    # numpy scalars and 0-d arrays (metrics often are) without importing numpy.
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return _plain(item(), where)
    raise UsageError(
        f"release metadata: {where} is a {type(value).__name__}, which cannot be written as JSON"
    )


# --- registry operations: GTO's stage and deregistration tags ---------------------------

# What GTO reads as a stage name (gto/constants.py `name` since GTO 1.x); older GTO
# releases read only lowercase letters, digits, '-' and '/', so mlcycle writes only
# those (`check_stage`) and reads them all.
_STAGE_BODY: Final = r"[a-zA-Z0-9](?:[a-zA-Z0-9/_-]*[a-zA-Z0-9])?"
_READ_STAGE_RE: Final = re.compile(f"^{_STAGE_BODY}$")
STAGE_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9/-]*[a-z0-9])?$")


class Action(enum.StrEnum):
    """What an event tag records (GTO's `Action`, less the ones mlcycle never writes)."""

    ASSIGN = "assign"  # NAME#STAGE#N: the version at this commit enters STAGE
    UNASSIGN = "unassign"  # NAME#STAGE!#N: it leaves STAGE
    DEREGISTER = "deregister"  # NAME@vX.Y.Z!#N: the version is retired (GTO's deprecate)


# The grammar as data: one template per action and one regex that reads them all
# (GTO's `TagTemplates` and `tag_re`). `{counter}` is `#N`, or empty for GTO's
# "simple" tags without a counter.
EVENT_TEMPLATES: Final = {
    Action.ASSIGN: "{name}#{stage}{counter}",
    Action.UNASSIGN: "{name}#{stage}!{counter}",
    Action.DEREGISTER: "{name}@v{version}!{counter}",
}
EVENT_RE: Final = re.compile(
    r"^(?P<name>[a-z0-9](?:[a-z0-9/-]*[a-z0-9])?)"
    rf"(?:#(?P<stage>{_STAGE_BODY})|@v(?P<version>{_SEMVER_BODY}))"
    r"(?P<cancel>!?)(?:#(?P<counter>[0-9]+))?$"
)
# GTO numbers every event tag of an artifact, whatever its action: N is one more
# than the largest counter among that artifact's tags.
COUNTER_RE: Final = re.compile(r"#(?P<counter>[0-9]+)$")


def check_stage(stage: str) -> str:
    """`stage` if GTO can read it as a stage name; UsageError otherwise."""
    if not isinstance(stage, str) or STAGE_RE.match(stage) is None:
        raise UsageError(
            f"{stage!r} is not a stage name",
            hint="use lowercase letters, digits, '-' and '/', starting and ending with a "
            "letter or digit (e.g. prod, staging), as every GTO version reads them",
        )
    return stage


@dataclass(frozen=True)
class EventTag:
    """The name of a registry-operation tag: `churn#prod#3`, `churn@v0.1.0!#4`.

    `EventTag.parse(t.format()) == t` for every valid tag; a release tag, another
    project's tag or any other name parses to None.
    """

    name: str
    action: Action
    stage: str | None = None
    version: Version | None = None
    counter: int | None = None

    def __post_init__(self) -> None:
        staged = self.action in (Action.ASSIGN, Action.UNASSIGN)
        if staged != (self.stage is not None) or staged == (self.version is not None):
            raise UsageError(f"{self.action} tags name a stage or a version, not both")
        if self.stage is not None and _READ_STAGE_RE.match(self.stage) is None:
            raise UsageError(f"{self.stage!r} is not a stage name GTO can read")
        if not is_gto_name(self.name):
            raise UsageError(
                f"{self.name!r} cannot name GTO tags (lowercase letters, digits, '-', '/')",
                hint="rename the project so that GTO can read its stage tags",
            )

    def format(self) -> str:
        """The tag's name."""
        return EVENT_TEMPLATES[self.action].format(
            name=self.name,
            stage=self.stage,
            version=self.version,
            counter="" if self.counter is None else f"#{self.counter}",
        )

    @classmethod
    def parse(cls, tag: str, name: str | None = None) -> EventTag | None:
        """The event `tag` records (for project `name` when given), or None."""
        match = EVENT_RE.match(tag)
        if match is None or (name is not None and match["name"] != name):
            return None
        cancel = match["cancel"] == "!"
        if match["stage"] is not None:
            action = Action.UNASSIGN if cancel else Action.ASSIGN
        elif cancel:
            action = Action.DEREGISTER
        else:
            return None  # a registration: TagFormat reads those
        counter = match["counter"]
        return cls(
            name=match["name"],
            action=action,
            stage=match["stage"],
            version=None if match["version"] is None else Version.parse(match["version"]),
            counter=None if counter is None else int(counter),
        )


# GTO's deprecation of a whole artifact (`gto deprecate NAME`): not an event of any
# model, so no EventTag; `gto show` stops listing the artifact while the tag exists.
ARTIFACT_DEPRECATION_RE: Final = re.compile(r"^(?P<name>.+)@deprecated(?:#[0-9]+)?$")


def deprecates_artifact(tag: str, name: str) -> bool:
    """Whether `tag` is GTO's deprecation of the whole artifact `name` (NAME@deprecated)."""
    match = ARTIFACT_DEPRECATION_RE.match(tag)
    return match is not None and match["name"] == name


def tag_counter(tag: str, name: str) -> int | None:
    """The `#N` counter of one of project `name`'s GTO tags; None for other tags."""
    if not (tag.startswith(f"{name}#") or tag.startswith(f"{name}@")):
        return None
    match = COUNTER_RE.search(tag)
    return None if match is None else int(match["counter"])


@dataclass(frozen=True)
class TagEvent:
    """A registry-operation tag as git holds it (annotated ones only, as GTO reads them)."""

    tag: EventTag
    commit: str
    date: str
    """ISO 8601 with offset: when it was tagged."""
    tagger: str | None
    message: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    """What mlcycle wrote after `METADATA_MARKER`; {} for a tag GTO made."""

    @property
    def name(self) -> str:
        """The tag's name."""
        return self.tag.format()
