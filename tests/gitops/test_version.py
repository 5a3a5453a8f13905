"""Version: semver parsing, printing, precedence and bumping."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import ExitCode, UsageError
from mlcycle.gitops import BUMPS, Version, first_version
from mlcycle.registry.refs import release_key

identifier = st.one_of(
    st.integers(min_value=0, max_value=50).map(str),
    st.from_regex(r"[a-zA-Z-][0-9a-zA-Z-]{0,5}", fullmatch=True),
)
versions = st.builds(
    Version,
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 30),
    st.one_of(st.none(), st.lists(identifier, min_size=1, max_size=3).map(".".join)),
    st.one_of(st.none(), st.from_regex(r"[0-9a-zA-Z-]{1,4}(\.[0-9a-zA-Z-]{1,4})?", fullmatch=True)),
)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("0.1.0", Version(0, 1, 0)),
        ("1.2.3", Version(1, 2, 3)),
        ("10.20.30", Version(10, 20, 30)),
        ("1.0.0-rc.1", Version(1, 0, 0, "rc.1")),
        ("1.0.0-alpha.beta.0", Version(1, 0, 0, "alpha.beta.0")),
        ("1.0.0+build.5", Version(1, 0, 0, None, "build.5")),
        ("1.0.0-rc.1+001", Version(1, 0, 0, "rc.1", "001")),
    ],
)
def test_parse_and_print(text: str, version: Version) -> None:
    assert Version.parse(text) == version
    assert str(version) == text


@pytest.mark.parametrize(
    "text", ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3+", "a.b.c"]
)
def test_bad_versions_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        Version.parse(text)
    assert info.value.exit_code == ExitCode.USAGE


def test_a_leading_v_is_refused_with_a_hint() -> None:
    with pytest.raises(UsageError) as info:
        Version.parse("v1.2.3")
    assert info.value.hint is not None and "1.2.3" in info.value.hint


@pytest.mark.parametrize(
    "fields", [(-1, 0, 0), (0, 0, 0, "01"), (0, 0, 0, ""), (0, 0, 0, None, "a..b"), (True, 0, 0)]
)
def test_invalid_fields_are_refused(fields: tuple) -> None:
    with pytest.raises(UsageError):
        Version(*fields)


def test_order_is_semver_precedence() -> None:
    # The example list of semver.org, section 11, plus a build-metadata variant.
    expected = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.0+build.1",
        "1.0.1",
        "1.2.0",
        "1.10.0",
        "2.0.0",
        "10.0.0",
    ]
    shuffled = [Version.parse(v) for v in expected]
    random.Random(4).shuffle(shuffled)
    assert [str(v) for v in sorted(shuffled)] == expected
    assert max(shuffled) == Version(10, 0, 0)
    assert Version(1, 0, 0, "rc.1") < Version(1, 0, 0) <= Version(1, 0, 0) < Version(1, 0, 1)


@given(versions, versions)
def test_order_agrees_with_the_registry(a: Version, b: Version) -> None:
    assert (a < b) == (release_key(str(a)) < release_key(str(b)))
    assert (a == b) == (str(a) == str(b))
    assert hash(a) == hash(Version.parse(str(a)))


@given(versions)
def test_print_parse_roundtrip(v: Version) -> None:
    assert Version.parse(str(v)) == v


@pytest.mark.parametrize(
    ("version", "part", "expected"),
    [
        ("1.2.3", "patch", "1.2.4"),
        ("1.2.3", "minor", "1.3.0"),
        ("1.2.3", "major", "2.0.0"),
        ("1.2.3+build.7", "patch", "1.2.4"),
        # A pre-release bumps to the release it leads up to, when that is of the kind asked for.
        ("1.2.3-rc.1", "patch", "1.2.3"),
        ("1.2.0-rc.1", "minor", "1.2.0"),
        ("1.2.3-rc.1", "minor", "1.3.0"),
        ("2.0.0-rc.1", "major", "2.0.0"),
        ("1.2.0-rc.1", "major", "2.0.0"),
    ],
)
def test_bump(version: str, part: str, expected: str) -> None:
    assert str(Version.parse(version).bump(part)) == expected


@given(versions, st.sampled_from(BUMPS))
def test_a_bump_is_greater_and_final(v: Version, part: str) -> None:
    bumped = v.bump(part)
    assert bumped > v
    assert bumped.prerelease is None and bumped.build is None


def test_unknown_bump_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        Version(1, 0, 0).bump("micro")
    assert info.value.hint is not None and "minor" in info.value.hint


def test_first_versions() -> None:
    assert [str(first_version(p)) for p in ("major", "minor", "patch")] == [
        "1.0.0",
        "0.1.0",
        "0.0.1",
    ]
