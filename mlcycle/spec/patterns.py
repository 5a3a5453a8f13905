"""The lifecycle patterns, derived (never declared) from the five attributes.

A classification either is one of the named patterns (docs/lifecycle-patterns.md) or
is `custom`; a custom one is described by its nearest named pattern and the
attributes in which it differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from mlcycle.spec.model import (
    Classification,
    DataAccess,
    Deployment,
    Liaison,
    Procurement,
    Update,
)


class Pattern(StrEnum):
    """The lifecycle patterns; `custom` is any classification that names none of them."""

    INTERACTIVE = "interactive"
    OPEN = "open"
    ADAPTIVE = "adaptive"
    DUAL = "dual"
    CUSTOM = "custom"


@dataclass(frozen=True)
class PatternDefinition:
    """A named pattern: the attribute values it fixes (absent: any) and what it does."""

    pattern: Pattern
    attributes: Mapping[str, str]
    description: str


# Order matters: it breaks ties when looking for the nearest pattern of a custom one.
DEFINITIONS: tuple[PatternDefinition, ...] = (
    PatternDefinition(
        Pattern.ADAPTIVE,
        MappingProxyType(
            {
                "data_access": DataAccess.PROGRAMMATIC,
                "procurement": Procurement.UNATTENDED,
                "update": Update.AUTONOMOUS,
                "deployment": Deployment.DYNAMIC,
                "liaison": Liaison.JOINT,
            }
        ),
        "The adaptive lifecycle, the most capable pattern: everything the open lifecycle "
        "does, plus autonomous model updates and dynamic rollout strategies. Integration no "
        "longer trains a model: it yields a bare artifact common to all generations of a "
        "release. Deployment publishes a serving manifest carrying a selector function. A "
        "training agent, triggered by a schedule, data volume or the latest evaluation, "
        "trains new generations (same code, new data) and publishes them to the model "
        "registry. A generic serving engine loads models from the registry at run time and "
        "dispatches each request through the selector (A/B tests, multi-armed bandits, "
        "cold-start and fallback models), and a generic evaluation agent scores served "
        "predictions against true outcomes. The price is more moving parts: agents, "
        "registry, manifests and a metrics store.",
    ),
    PatternDefinition(
        Pattern.OPEN,
        MappingProxyType(
            {
                "data_access": DataAccess.PROGRAMMATIC,
                "procurement": Procurement.UNATTENDED,
                "update": Update.RELEASE_FORCED,
                "deployment": Deployment.WRAPPED,
                "liaison": Liaison.JOINT,
            }
        ),
        "The open lifecycle, the first sound pattern. Research formulates a data source "
        "descriptor so data is fetched on demand through a query API, and experiments "
        "produce nothing that ships. Releasing triggers an unattended integration agent, "
        "much like continuous integration, that trains the model from the data source and "
        "wraps it, with all its assets, together with the serving engine. A second agent "
        "evaluates the served predictions against true outcomes from the event-outcome "
        "feedback loop and reports the real model performance. It is called open because "
        "the outer loop does not iterate by itself: the model stays static until the next "
        "release, and a wrapped model leaves no room for dynamic rollout strategies.",
    ),
    PatternDefinition(
        Pattern.DUAL,
        MappingProxyType(
            {
                "data_access": DataAccess.PROGRAMMATIC,
                "procurement": Procurement.UNATTENDED,
                "update": Update.RELEASE_FORCED,
                "deployment": Deployment.WRAPPED,
                "liaison": Liaison.DUAL,
            }
        ),
        "The dual lifecycle, a half-pattern whose production side is that of the open "
        "lifecycle. Research and development are separate teams: data scientists deliver a "
        "validated specification of the solution (reference predictions and expected "
        "metrics), software engineers re-implement it as production code, and every release "
        "must reproduce the research results within a tolerance. It costs duplicated work, "
        "slow hand-overs and extra result-comparison tests; it pays off where engineering "
        "demands are extreme, such as ultra-low latency.",
    ),
    PatternDefinition(
        Pattern.INTERACTIVE,
        MappingProxyType(
            {
                "procurement": Procurement.INTERACTIVE,
                "update": Update.RELEASE_FORCED,
                "deployment": Deployment.WRAPPED,
                "liaison": Liaison.JOINT,
            }
        ),
        "The interactive lifecycle, an anti-pattern. Everything before deployment happens "
        "by hand in the implementer's workspace: implement the pipeline, explore the data "
        "(typically an ad-hoc dump), learn (train, tune and evaluate by hand). The release "
        "is finalized with a VCS tag, integration wraps the hand-trained model with the "
        "serving engine into an image, which is deployed and serves predictions. Without "
        "programmatic data access there is no continuous evaluation against true outcomes, "
        "and nothing is reproducible: the two worst of its many problems.",
    ),
)

_BY_PATTERN: Mapping[Pattern, PatternDefinition] = MappingProxyType(
    {d.pattern: d for d in DEFINITIONS}
)

CUSTOM_DESCRIPTION = (
    "A custom lifecycle: its attributes match none of the named patterns "
    "(interactive, open, adaptive, dual)."
)


@dataclass(frozen=True)
class PatternMatch:
    """The pattern a classification amounts to; for `custom`, the nearest named one."""

    pattern: Pattern
    nearest: Pattern | None
    differs: tuple[str, ...]
    description: str

    @property
    def label(self) -> str:
        """A short phrase: `adaptive lifecycle`, or `custom lifecycle (nearest: open; ...)`."""
        if self.pattern is not Pattern.CUSTOM:
            return f"{self.pattern.value} lifecycle"
        return f"custom lifecycle (nearest: {self.nearest}; differs in {', '.join(self.differs)})"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        expected: dict[str, str] = {}
        if self.nearest is not None:
            attributes = _BY_PATTERN[self.nearest].attributes
            expected = {a: str(attributes[a]) for a in self.differs}
        return {
            "name": self.pattern.value,
            "nearest": None if self.nearest is None else self.nearest.value,
            "differs": list(self.differs),
            "nearest_values": expected,
            "description": self.description,
        }


def definition(pattern: Pattern) -> PatternDefinition | None:
    """The definition of a named pattern (None for custom)."""
    return _BY_PATTERN.get(pattern)


def _differences(c: Classification, d: PatternDefinition) -> tuple[str, ...]:
    return tuple(
        name
        for name in Classification.ATTRIBUTES
        if name in d.attributes and getattr(c, name) != d.attributes[name]
    )


def derive_pattern(c: Classification) -> PatternMatch:
    """The named pattern `c` amounts to, or `custom` with its nearest pattern and differences.

    The nearest pattern differs in the fewest attributes; ties go to the first of
    adaptive, open, dual, interactive.
    """
    best: tuple[PatternDefinition, tuple[str, ...]] | None = None
    for d in DEFINITIONS:
        differs = _differences(c, d)
        if not differs:
            return PatternMatch(d.pattern, None, (), d.description)
        if best is None or len(differs) < len(best[1]):
            best = (d, differs)
    assert best is not None
    nearest, differs = best
    description = (
        f"{CUSTOM_DESCRIPTION} Nearest is the {nearest.pattern.value} lifecycle, which would "
        + "; ".join(f"have {a} {nearest.attributes[a]}" for a in differs)
        + "."
    )
    return PatternMatch(Pattern.CUSTOM, nearest.pattern, differs, description)


__all__ = [
    "CUSTOM_DESCRIPTION",
    "DEFINITIONS",
    "Pattern",
    "PatternDefinition",
    "PatternMatch",
    "definition",
    "derive_pattern",
]
