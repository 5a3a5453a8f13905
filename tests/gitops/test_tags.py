"""The tag grammar (TagFormat, git's ref name rules, GTO) and release messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.errors import ExitCode, GitError, UsageError
from mlcycle.gitops import (
    METADATA_MARKER,
    Action,
    EventTag,
    TagFormat,
    Version,
    check_ref_name,
    check_stage,
    is_gto_name,
    parse_release_message,
    release_message,
)
from mlcycle.gitops.tags import deprecates_artifact

from .test_version import versions

# --- GTO's tag grammar, copied from iterative/gto, gto/constants.py
# (https://github.com/iterative/gto/blob/0dfde30e0fb0976ea6def059775dd7b43e467f94/gto/constants.py,
# Apache-2.0). `tag_re` is what `gto` uses to read registration (NAME@vX.Y.Z) and
# stage assignment (NAME#STAGE#N) tags; the pieces are kept as GTO writes them.
GTO_SEPARATOR_IN_NAME = ":"
GTO_SEPARATOR_IN_TAG = "="
gto_dirname = "[a-z0-9-_./]+"
gto_name = r"[a-z0-9]([a-z0-9-/]*[a-z0-9])?"
gto_semver = r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"  # noqa: E501
gto_counter = "?P<counter>[0-9]+"
gto_fullname = f"(?P<dirname>{gto_dirname}{GTO_SEPARATOR_IN_NAME})?(?P<name>{gto_name})"
gto_fullname_in_tag = gto_fullname.replace(GTO_SEPARATOR_IN_NAME, GTO_SEPARATOR_IN_TAG)
GTO_TAG_RE = re.compile(
    f"^(?P<artifact>{gto_fullname_in_tag})(((#(?P<stage>{gto_name})|@(?P<version>v{gto_semver}))(?P<cancel>!?))|@((?P<deprecated>deprecated)|(?P<created>created)))(#({gto_counter}))?$"
)
GTO_NAME_RE = re.compile(f"^{gto_name}$")
# --- end of the copy

# Project names as the spec allows them (schemas/lifecycle.schema.json, `name`), less
# those with '..', which git refuses in any ref (see test_a_name_with_two_dots_is_refused).
spec_names = st.from_regex(r"[a-z0-9](?:[a-z0-9._-]{0,20}[a-z0-9])?", fullmatch=True).filter(
    lambda n: ".." not in n
)
gto_names = spec_names.filter(lambda n: GTO_NAME_RE.match(n) is not None)


def test_the_gto_regex_reads_gtos_own_examples() -> None:
    # Guards the copy above: the tags GTO's documentation shows.
    match = GTO_TAG_RE.match("awesome-model@v0.0.1")
    assert match and match["name"] == "awesome-model" and match["version"] == "v0.0.1"
    stage = GTO_TAG_RE.match("churn#prod#3")
    assert stage and stage["stage"] == "prod" and stage["counter"] == "3"
    assert GTO_TAG_RE.match("churn@0.0.1") is None


@given(gto_names, versions)
def test_default_tags_are_read_by_gto(name: str, version: Version) -> None:
    tag = TagFormat().validate(name).format(name, version)
    match = GTO_TAG_RE.match(tag)
    assert match is not None, tag
    assert match["name"] == name
    assert match["version"] == f"v{version}"
    assert match["stage"] is None


@given(spec_names)
def test_is_gto_name_agrees_with_gto(name: str) -> None:
    assert is_gto_name(name) == (GTO_NAME_RE.match(name) is not None)


def test_project_names_gto_cannot_read() -> None:
    assert is_gto_name("churn") and is_gto_name("churn-v2")
    assert not is_gto_name("churn_model") and not is_gto_name("churn.v2")


# --- EventTag: stage assignments and retirements in GTO's grammar --------------------

# Stage names mlcycle writes: those every GTO version reads (see gitops/tags.py).
stages = st.from_regex(r"[a-z0-9](?:[a-z0-9/-]{0,10}[a-z0-9])?", fullmatch=True).filter(
    lambda s: check_ref_name(f"churn#{s}#1") is None
)
counters = st.one_of(st.none(), st.integers(1, 10**6))
event_tags = st.one_of(
    st.builds(
        EventTag,
        name=gto_names,
        action=st.sampled_from([Action.ASSIGN, Action.UNASSIGN]),
        stage=stages,
        counter=counters,
    ),
    st.builds(
        EventTag,
        name=gto_names,
        action=st.just(Action.DEREGISTER),
        version=versions,
        counter=counters,
    ),
)


@given(event_tags)
def test_event_tags_roundtrip_and_gto_reads_them(event: EventTag) -> None:
    tag = event.format()
    assert EventTag.parse(tag) == event
    assert EventTag.parse(tag, event.name) == event
    assert check_ref_name(tag) is None
    # GTO's own regex reads the same action, stage, version and counter.
    match = GTO_TAG_RE.match(tag)
    assert match is not None, tag
    assert match["name"] == event.name
    assert match["stage"] == event.stage
    assert match["version"] == (None if event.version is None else f"v{event.version}")
    assert (match["cancel"] == "!") == (event.action is not Action.ASSIGN)
    assert match["counter"] == (None if event.counter is None else str(event.counter))


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("churn#prod#3", EventTag("churn", Action.ASSIGN, stage="prod", counter=3)),
        ("churn#prod!#4", EventTag("churn", Action.UNASSIGN, stage="prod", counter=4)),
        ("churn#prod", EventTag("churn", Action.ASSIGN, stage="prod")),  # GTO --simple
        (
            "churn@v0.1.0!#5",
            EventTag("churn", Action.DEREGISTER, version=Version(0, 1, 0), counter=5),
        ),
        ("churn@v0.1.0", None),  # a release: TagFormat reads it
        ("churn@deprecated#2", None),  # a whole artifact deprecated: not a model's event
        ("churner#prod#1", None),
        ("churn#-prod#1", None),
    ],
)
def test_event_tags_gto_writes(tag: str, expected: EventTag | None) -> None:
    assert EventTag.parse(tag, "churn") == expected


def test_gtos_artifact_deprecation_is_told_apart() -> None:
    # GTO writes NAME@deprecated (with a counter in its full mode) and reads it back.
    for tag in ("churn@deprecated", "churn@deprecated#7"):
        assert deprecates_artifact(tag, "churn")
        match = GTO_TAG_RE.match(tag)
        assert match is not None and match["deprecated"] == "deprecated"
    assert not deprecates_artifact("churner@deprecated", "churn")
    assert not deprecates_artifact("churn@v0.1.0!#2", "churn")
    assert not deprecates_artifact("churn@deprecated!", "churn")


def test_event_tags_refuse_what_gto_cannot_read() -> None:
    with pytest.raises(UsageError, match="not a stage name"):
        EventTag("churn", Action.ASSIGN, stage="pro d")
    with pytest.raises(UsageError, match="not a stage name"):
        check_stage("Prod")  # newer GTO reads it (and mlcycle does), older GTO does not
    assert EventTag.parse("churn#Prod_1#2", "churn") == EventTag(
        "churn", Action.ASSIGN, stage="Prod_1", counter=2
    )
    with pytest.raises(UsageError, match="cannot name GTO tags"):
        EventTag("my.model", Action.ASSIGN, stage="prod")
    with pytest.raises(UsageError, match="not both"):
        EventTag("churn", Action.DEREGISTER, stage="prod")


# --- TagFormat ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "template", ["{name}@v{version}", "{name}-{version}", "v{version}", "release/{name}/{version}"]
)
@given(name=spec_names, version=versions)
def test_format_parse_roundtrip(template: str, name: str, version: Version) -> None:
    fmt = TagFormat(template).validate(name)
    tag = fmt.format(name, version)
    assert check_ref_name(tag) is None
    assert fmt.parse(tag, name) == version


def test_default_format() -> None:
    fmt = TagFormat()
    assert fmt.template == "{name}@v{version}"
    assert fmt.format("churn", "1.2.3") == "churn@v1.2.3"
    assert fmt.format("churn", Version(1, 0, 0, "rc.1")) == "churn@v1.0.0-rc.1"
    assert fmt.uses_name and not TagFormat("v{version}").uses_name


@pytest.mark.parametrize(
    "tag",
    [
        "churner@v1.0.0",  # another project whose name starts like ours
        "chur@v1.0.0",
        "other@v1.0.0",
        "churn#prod#1",  # a GTO stage assignment
        "churn#prod",
        "churn@deprecated",
        "churn@v1.0",
        "churn@1.0.0",
        "churn@v01.0.0",
        "churn@v1.0.0-",
        "v1.0.0",
        "xchurn@v1.0.0",
        "churn@v1.0.0!",
    ],
)
def test_tags_of_other_projects_and_other_kinds_do_not_parse(tag: str) -> None:
    assert TagFormat().parse(tag, "churn") is None


def test_names_are_literal_in_the_regex() -> None:
    # '.' in a project name matches only a '.', not any character.
    assert TagFormat().parse("aXb@v1.0.0", "a.b") is None
    assert TagFormat().parse("a.b@v1.0.0", "a.b") == Version(1, 0, 0)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{name}@latest", "{version} exactly once"),
        ("{name}@{version}-{version}", "exactly once"),
        ("{name}@v{ver}", "unknown placeholder {ver}"),
        ("{name}@v{version:>8}", "no format spec"),
        ("{name}@v{version!r}", "no format spec"),
        ("{name}@v{version", "literal brace"),
        ("{}@v{version}", "unknown placeholder {}"),
        ("", "non-empty"),
        ("{name} v{version}", "git refuses"),
        ("{name}..{version}", "'..'"),
        ("{name}:{version}", "git refuses"),
        ("{name}@{{{version}", "'@{'"),
        ("-{name}@v{version}", "starts with '-'"),
        ("{name}@v{version}.lock", "'.lock'"),
        ("{name}//{version}", "empty"),
        (".{name}@v{version}", "starts with '.'"),
        ("{name}@v{version}/", "empty"),
    ],
)
def test_invalid_formats_are_usage_errors(template: str, words: str) -> None:
    with pytest.raises(UsageError) as info:
        TagFormat(template).validate("churn")
    assert info.value.exit_code == ExitCode.USAGE
    assert words in str(info.value) or words in (info.value.hint or "")
    assert "release.tag_format" in str(info.value)


def test_a_name_with_two_dots_is_refused() -> None:
    # The spec's name pattern allows "a..b"; git allows no '..' in a tag.
    with pytest.raises(UsageError, match=re.escape("contains '..'")):
        TagFormat().validate("a..b")
    with pytest.raises(UsageError, match=re.escape("contains '..'")):
        TagFormat().format("a..b", "1.0.0")


def test_format_refuses_a_name_that_makes_an_invalid_tag() -> None:
    with pytest.raises(UsageError, match="not a valid git tag"):
        TagFormat().format("bad name", "1.0.0")
    with pytest.raises(UsageError):
        TagFormat().format("churn", "v1.0.0")


# --- git's ref name rules -------------------------------------------------------------


def git_accepts(tag: str, cwd: Path) -> bool:
    done = subprocess.run(
        ["git", "check-ref-format", f"refs/tags/{tag}"], cwd=cwd, capture_output=True
    )
    return done.returncode == 0


REF_SAMPLES = [
    "churn@v1.0.0",
    "a/b/c",
    "a b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[",
    "a\\b",
    "a..b",
    "a.",
    ".a",
    "a/.b",
    "a.lock",
    "a.lock/b",
    "a/",
    "/a",
    "a//b",
    "a@{1}",
    "@",
    "a@b",
    "a\tb",
    "a\x7f",
    "a{b}",
    "x+y",
    "é",
    "a#b!",
]


@pytest.mark.parametrize("tag", REF_SAMPLES)
def test_ref_rules_agree_with_git(tag: str, tmp_path: Path) -> None:
    assert (check_ref_name(tag) is None) == git_accepts(tag, tmp_path), tag


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab./@{}~^:-_ +lock\\", min_size=1, max_size=8))
def test_ref_rules_agree_with_git_on_random_names(tag: str) -> None:
    # '-' at the start is git-tag's rule, not check-ref-format's.
    if tag.startswith("-"):
        assert check_ref_name(tag) is not None
    else:
        assert (check_ref_name(tag) is None) == git_accepts(tag, Path.cwd()), tag


# --- release messages ----------------------------------------------------------------


def test_message_roundtrip() -> None:
    metadata = {
        "release": "0.2.0",
        "metrics": {"accuracy": 0.9375, "f1": 0.91},
        "data": {"window": ["2024-01-01", "2024-06-30"], "rows": 1200},
        "spec_hash": "sha256:" + "ab" * 32,
        "registry": {"release": "0.2.0", "generation": 1},
        "gate": {"passed": True, "failures": []},
        "note": "line one\n# not a comment\nünïcode",
    }
    message = release_message("Release churn 0.2.0", metadata)
    assert message.splitlines()[0] == "Release churn 0.2.0"
    assert message.splitlines()[1] == ""
    assert METADATA_MARKER in message
    assert parse_release_message(message) == metadata


def test_message_tolerates_text_after_the_json() -> None:
    message = release_message("Release", {"a": 1}) + "-----BEGIN PGP SIGNATURE-----\nxyz\n"
    assert parse_release_message(message) == {"a": 1}


def test_messages_without_metadata_parse_empty() -> None:
    assert parse_release_message("") == {}
    assert parse_release_message("Registered by GTO\n\n{json-looking but no marker}") == {}


def test_damaged_metadata_is_a_git_error() -> None:
    damaged = release_message("Release", {"a": 1}).replace('"a": 1', '"a": ')
    with pytest.raises(GitError, match="damaged"):
        parse_release_message(damaged)
    with pytest.raises(GitError, match="not a JSON object"):
        parse_release_message(f"Release\n\n{METADATA_MARKER}\n[1, 2]\n")


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Window:
    start: dt.date
    end: dt.date


def test_metadata_values_become_json() -> None:
    metadata = {
        "when": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 1),
        "path": Path("models") / "m.skops",
        "colour": Colour.RED,
        "version": Version(1, 2, 3),
        "window": Window(dt.date(2024, 1, 1), dt.date(2024, 2, 1)),
        "tags": {"b", "a"},
        "tuple": (1, 2),
        "np_float": np.float64(0.5),
        "np_int": np.int64(7),
        "nan": float("nan"),
        "inf": float("inf"),
        3: "int key",
    }
    assert parse_release_message(release_message("Release", metadata)) == {
        "when": "2024-05-01T12:00:00+00:00",
        "day": "2024-05-01",
        "path": "models/m.skops",
        "colour": "red",
        "version": "1.2.3",
        "window": {"start": "2024-01-01", "end": "2024-02-01"},
        "tags": ["a", "b"],
        "tuple": [1, 2],
        "np_float": 0.5,
        "np_int": 7,
        "nan": None,
        "inf": None,
        "3": "int key",
    }


def test_unwritable_metadata_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"metadata\.model is a object"):
        release_message("Release", {"model": object()})
    with pytest.raises(UsageError, match="summary"):
        release_message("  \n ", {})
    with pytest.raises(UsageError, match="mapping"):
        release_message("Release", [1, 2])  # type: ignore[arg-type]


def test_summary_is_one_line() -> None:
    message = release_message("Release churn\n0.2.0", {})
    assert message.splitlines()[0] == "Release churn 0.2.0"
    assert parse_release_message(message) == {}
