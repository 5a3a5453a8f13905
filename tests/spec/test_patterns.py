"""Pattern derivation for all 32 classifications."""

from __future__ import annotations

import itertools

import pytest

from mlcycle.spec import Pattern, derive_pattern
from mlcycle.spec.model import (
    Classification,
    DataAccess,
    Deployment,
    Liaison,
    Procurement,
    Update,
)
from mlcycle.spec.patterns import DEFINITIONS

ALL = [
    Classification(*values)
    for values in itertools.product(DataAccess, Procurement, Update, Deployment, Liaison)
]

P, A = DataAccess.PROGRAMMATIC, DataAccess.ADHOC
U, IN = Procurement.UNATTENDED, Procurement.INTERACTIVE
AU, RF = Update.AUTONOMOUS, Update.RELEASE_FORCED
DY, WR = Deployment.DYNAMIC, Deployment.WRAPPED
J, D = Liaison.JOINT, Liaison.DUAL

NAMED = {
    Classification(P, U, AU, DY, J): Pattern.ADAPTIVE,
    Classification(P, U, RF, WR, J): Pattern.OPEN,
    Classification(P, U, RF, WR, D): Pattern.DUAL,
    Classification(P, IN, RF, WR, J): Pattern.INTERACTIVE,
    Classification(A, IN, RF, WR, J): Pattern.INTERACTIVE,
}

ORDER = [Pattern.ADAPTIVE, Pattern.OPEN, Pattern.DUAL, Pattern.INTERACTIVE]


def test_there_are_32_classifications() -> None:
    assert len(set(ALL)) == 32


@pytest.mark.parametrize("c", list(NAMED), ids=lambda c: "-".join(c.as_dict().values()))
def test_named_patterns_are_exact(c: Classification) -> None:
    match = derive_pattern(c)
    assert match.pattern is NAMED[c]
    assert match.nearest is None
    assert match.differs == ()
    assert match.label == f"{NAMED[c]} lifecycle"
    assert len(match.description) > 200  # a real paragraph


def _distance(c: Classification, pattern: Pattern) -> tuple[str, ...]:
    (d,) = [d for d in DEFINITIONS if d.pattern is pattern]
    return tuple(
        a
        for a in Classification.ATTRIBUTES
        if a in d.attributes and getattr(c, a) != d.attributes[a]
    )


CUSTOM = [c for c in ALL if c not in NAMED]


def test_27_classifications_are_custom() -> None:
    assert len(CUSTOM) == 27


@pytest.mark.parametrize("c", CUSTOM, ids=lambda c: "-".join(c.as_dict().values()))
def test_custom_patterns_name_the_nearest_and_the_differences(c: Classification) -> None:
    match = derive_pattern(c)
    assert match.pattern is Pattern.CUSTOM
    assert match.nearest is not None
    assert match.differs and set(match.differs) <= set(Classification.ATTRIBUTES)
    # The nearest differs in the fewest attributes; ties go by adaptive, open, dual, interactive.
    distances = {p: len(_distance(c, p)) for p in ORDER}
    fewest = min(distances.values())
    assert match.nearest is next(p for p in ORDER if distances[p] == fewest)
    assert match.differs == _distance(c, match.nearest)
    assert match.label.startswith(f"custom lifecycle (nearest: {match.nearest}; differs in ")
    for attribute in match.differs:
        assert attribute in match.description


def test_a_known_custom_example() -> None:
    # Dual with ad-hoc data: one attribute from dual, two or more from the rest.
    match = derive_pattern(Classification(A, U, RF, WR, D))
    assert (match.nearest, match.differs) == (Pattern.DUAL, ("data_access",))
    assert match.as_dict()["nearest_values"] == {"data_access": "programmatic"}


def test_ties_prefer_adaptive_then_open() -> None:
    # autonomous + wrapped: one away from adaptive (deployment) and one from open (update).
    match = derive_pattern(Classification(P, U, AU, WR, J))
    assert (match.nearest, match.differs) == (Pattern.ADAPTIVE, ("deployment",))
    # ad-hoc open: one away from open (data_access) and from interactive (procurement).
    match = derive_pattern(Classification(A, U, RF, WR, J))
    assert (match.nearest, match.differs) == (Pattern.OPEN, ("data_access",))


def test_pattern_as_dict_shape() -> None:
    d = derive_pattern(Classification(P, U, AU, DY, J)).as_dict()
    assert set(d) == {"name", "nearest", "differs", "nearest_values", "description"}
    assert d["name"] == "adaptive" and d["nearest"] is None and d["differs"] == []
