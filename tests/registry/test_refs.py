"""ModelRef: the grammar of model references, and the order of releases."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import ExitCode, UsageError
from mlcycle.registry import CURRENT, LATEST, ModelRef
from mlcycle.registry.refs import release_key


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("0.1.0/2", ModelRef("0.1.0", 2)),
        ("0.1.0", ModelRef("0.1.0")),
        ("dev/3", ModelRef("dev", 3)),
        ("dev", ModelRef("dev")),
        ("latest", LATEST),
        ("current", CURRENT),
        ("1.0.0-rc.1+build.5/12", ModelRef("1.0.0-rc.1+build.5", 12)),
        ("  0.1.0/2 ", ModelRef("0.1.0", 2)),
    ],
)
def test_parse(text: str, ref: ModelRef) -> None:
    assert ModelRef.parse(text) == ref
    assert str(ref) == text.strip()


def test_latest_and_current_are_distinct() -> None:
    assert LATEST != CURRENT
    assert LATEST.is_latest and not CURRENT.is_latest
    assert (LATEST.release, LATEST.generation) == (None, None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0.1",
        "0.1.0/",
        "0.1.0/0",
        "0.1.0/-1",
        "0.1.0/x",
        "01.1.0",
        "dev/1/2",
        "Latest",
        "latest/2",
        "0.1.0/02",
        "prod",
    ],
)
def test_bad_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        ModelRef.parse(text)
    assert info.value.exit_code == ExitCode.USAGE
    assert repr(text) in str(info.value)
    hint = info.value.hint or ""
    assert "RELEASE/GENERATION" in hint and "`mlcycle models` lists them" in hint
    # Placeholders only: a hint never names a model that may not exist.
    assert not re.search(r"\d+\.\d+\.\d+", hint), hint


def test_a_tag_style_v_gets_a_pointed_hint() -> None:
    with pytest.raises(UsageError) as info:
        ModelRef.parse("v0.1.0/2")
    assert info.value.hint == "write 0.1.0/2, without the tag's `v`"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"release": None, "generation": 2}, "needs a release"),
        ({"release": "0.1.0", "generation": 0}, "not 1 or more"),
        ({"release": "0.1.0", "current": True}, "no release or generation"),
        ({"release": "0.1"}, "is not a release"),
    ],
)
def test_constructor_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ModelRef(**kwargs)


def test_semver_precedence_with_dev_first() -> None:
    # The ordering example of semver.org section 11, plus dev and multi-digit numbers.
    ordered = [
        "dev",
        "0.2.0",
        "0.10.0",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
    ]
    shuffled = ordered[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(shuffled, key=release_key) == ordered


numbers = st.integers(min_value=0, max_value=10_000).map(str)
identifiers = st.one_of(numbers, st.from_regex(r"\A[0-9]*[a-zA-Z-][0-9a-zA-Z-]{0,6}\Z"))
semvers = st.builds(
    lambda core, pre, build: (
        ".".join(core)
        + (f"-{'.'.join(pre)}" if pre else "")
        + (f"+{'.'.join(build)}" if build else "")
    ),
    st.tuples(numbers, numbers, numbers),
    st.lists(identifiers, max_size=3),
    st.lists(st.from_regex(r"\A[0-9a-zA-Z-]{1,6}\Z"), max_size=2),
)
refs = st.one_of(
    st.just(LATEST),
    st.just(CURRENT),
    st.builds(
        ModelRef,
        st.one_of(st.just("dev"), semvers),
        st.one_of(st.none(), st.integers(min_value=1, max_value=10**9)),
    ),
)


@given(ref=refs)
def test_parse_format_round_trip(ref: ModelRef) -> None:
    assert ModelRef.parse(str(ref)) == ref
