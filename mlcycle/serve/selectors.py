"""Selectors: which of a dynamic deployment's models (its *arms*) answers each request.

One interface, `Selector`, and one small class per `SelectorKind` of the spec:

- `latest`: the newest arm.
- `pinned`: the arm the spec names (`model: VERSION` or `VERSION/GENERATION`; without
  it, the newest arm); it never fails over to another arm.
- `ab`: a weighted split (`weights`, newest first; equal shares without them). With
  `sticky: KEY`, requests that carry the same KEY (a header, a top-level field of the
  body, or a field of its first instance, in that order) always get the same arm: the
  value is hashed with BLAKE2b, which is stable across processes and restarts (Python's
  `hash()` is salted per process). Requests without the key are split at random.
- `epsilon-greedy`: with probability `epsilon` a uniformly random arm (explore), else
  the arm with the best estimated reward (exploit).
- `thompson`: Thompson sampling over Beta-Bernoulli posteriors: each request draws
  one sample from Beta(1 + successes, 1 + failures) per arm and takes the largest.
- `shadow`: the oldest arm (the established model) answers every request; every newer
  arm (a candidate) gets the same rows mirrored: its answers are logged, never returned.
- `fallback`: cold start and fall back, see `FallbackSelector`.

**Arms** are given newest first (the order of the registry's generations and of the
spec's `weights`); `Arm.index` is the position in that order.

**Rewards** (`reward_of`): a served prediction whose true outcome arrived earns a
reward in [0, 1], as the spec's `deployment.selector.reward` declares. `correct` (the
default, for classification) earns 1 when the predicted label equals the outcome
(numbers compare as numbers, so `1`, `1.0` and `true` agree; anything else compares as
text) and 0 otherwise. `error` (for regression) earns `1 - min(1, |error| / scale)`:
1 for an exact value, 0 for one off by `scale` or more. A regression model without a
declared reward (a manifest from before rewards were declared) earns 1 when the
absolute error is within `REGRESSION_TOLERANCE` (10%) of the outcome's magnitude (at
least 1). Bandits learn from per-arm totals (`Reward`: evaluated predictions and the
sum of their rewards) handed to `Selector.update`; the router reads them from the
prediction store. A fractional reward counts as that share of a success in the Beta
posteriors of `thompson` (their mean stays the mean reward).

**Errors**: `report_error(arm)` takes an arm out: it no longer answers requests (its
share goes to the remaining arms) nor receives mirrored traffic, for as long as this
selector lives (a new manifest or generation builds a new one). Every kind fails over
this way except `pinned`, which has nothing else to serve. When every arm has failed,
the selector chooses among all of them again rather than answer nothing.

Selectors do no I/O: `choose` runs on the request path and costs a few microseconds.
Randomness comes only from the `rng` argument, so a seeded `random.Random` makes every
choice reproducible.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import json
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from mlcycle.errors import ServingError
from mlcycle.spec.model import RewardKind, RewardSpec, SelectorKind, SelectorSpec

if TYPE_CHECKING:
    from mlcycle.serve.model import RequestInfo, ServedModel

REGRESSION_TOLERANCE = 0.1
"""A regression prediction is right when |error| <= this share of max(1, |outcome|)."""

DEGRADE_MIN_EVALUATED = 30
"""Evaluated predictions both arms need before `fallback` may call one degraded."""

DEGRADE_MARGIN = 0.05
"""How far below its predecessor's success rate a generation falls to count as degraded."""


def arm_key(name: str, release: str | None, generation: int | None) -> str:
    """The identity of a model in reward tables: `NAME:RELEASE/GENERATION`."""
    return f"{name}:{release or ''}/{'' if generation is None else generation}"


@dataclass(frozen=True)
class Arm:
    """One model a selector may choose: its position (newest first) and identity."""

    index: int
    name: str
    release: str | None = None
    generation: int | None = None
    published_at: float | None = None
    """When the model was published (epoch seconds), for `fallback`'s `min_age`."""

    @functools.cached_property
    def key(self) -> str:
        """`NAME:RELEASE/GENERATION`, the key of this arm's rewards (asked per request)."""
        return arm_key(self.name, self.release, self.generation)

    @property
    def label(self) -> str:
        """`RELEASE/GENERATION` (the grammar of the spec's `model`)."""
        release = self.release or "unreleased"
        return release if self.generation is None else f"{release}/{self.generation}"

    @classmethod
    def of(cls, index: int, model: ServedModel) -> Arm:
        """The arm of a served model; `published_at` from its metadata when present."""
        meta = model.metadata
        published = _epoch(meta.get("published_at", meta.get("created_at")))
        return cls(index, model.name, model.release, model.generation, published)


@dataclass(frozen=True)
class Reward:
    """What feedback says about one arm: predictions with an outcome, and how many were right."""

    evaluated: int = 0
    successes: float = 0.0

    @property
    def rate(self) -> float | None:
        """The observed success rate, None before any outcome."""
        return self.successes / self.evaluated if self.evaluated else None

    @property
    def mean(self) -> float:
        """The posterior mean under a uniform Beta(1, 1) prior (0.5 before any outcome)."""
        return (self.successes + 1.0) / (self.evaluated + 2.0)

    def __add__(self, other: Reward) -> Reward:
        return Reward(self.evaluated + other.evaluated, self.successes + other.successes)


_NO_REWARD = Reward()


def reward_of(task: str, prediction: Any, outcome: Any, reward: RewardSpec | None = None) -> float:
    """What `prediction` earns against `outcome`, in [0, 1] (see the module docstring)."""
    if task == "regression":
        try:
            error = abs(float(prediction) - float(outcome))
        except (TypeError, ValueError):
            return 0.0
        if math.isnan(error):
            return 0.0
        if reward is not None and reward.kind is RewardKind.ERROR and reward.scale:
            return 1.0 - min(1.0, error / reward.scale)
        scale = max(1.0, abs(float(outcome)))
        return 1.0 if error <= REGRESSION_TOLERANCE * scale else 0.0
    return 1.0 if same_label(prediction, outcome) else 0.0


def same_label(a: Any, b: Any) -> bool:
    """Whether two JSON labels are the same class: numbers (and booleans) as numbers."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, int | float) != isinstance(b, int | float):
        # "1" from a form and 1 from the model: compare as numbers when the text is one.
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return bool(a == b) or str(a) == str(b)


def sticky_value(request: RequestInfo | None, field: str) -> str | None:
    """The request's value of the sticky key: a header, a body field, a first-instance field."""
    if request is None:
        return None
    value: Any = request.header(field)
    if value is not None:
        return str(value)
    payload = request.payload
    if type(payload) is not dict:
        return None
    value = payload.get(field)
    if value is None:
        parameters = payload.get("parameters")
        if type(parameters) is dict:
            value = parameters.get(field)
    if value is None:
        instances = payload.get("instances")
        if type(instances) is list and instances and type(instances[0]) is dict:
            value = instances[0].get(field)
    if value is None:
        return None
    return value if type(value) is str else json.dumps(value, sort_keys=True)


def stable_unit(value: str, salt: int = 0) -> float:
    """A number in [0, 1) that depends only on `value` and `salt` (BLAKE2b, not `hash()`)."""
    digest = hashlib.blake2b(
        value.encode("utf-8"), digest_size=8, salt=salt.to_bytes(8, "big", signed=False)
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class Selector(ABC):
    """Chooses one arm per request; bandits learn from `update`, errors take arms out."""

    kind: ClassVar[SelectorKind]
    failover: ClassVar[bool] = True
    """Whether an arm that errors is taken out and the others answer instead."""
    deterministic: ClassVar[bool] = False
    """Whether the choice depends on the arms and rewards only (no randomness)."""

    def __init__(self, spec: SelectorSpec | None = None) -> None:
        self.spec = spec if spec is not None else SelectorSpec(kind=self.kind)
        self.rewards: Mapping[str, Reward] = {}
        self.failed: frozenset[str] = frozenset()

    # --- the request path ---------------------------------------------------------------

    def choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        """The arm that answers `request`; `arms` newest first, never empty."""
        if self.failed and self.failover:
            usable = [a for a in arms if a.key not in self.failed]
            if usable:
                arms = usable
        return self._choose(arms, request, rng)

    @abstractmethod
    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        """The choice among arms that have not failed."""

    def mirrors(self, arms: Sequence[Arm], chosen: Arm) -> Sequence[Arm]:
        """Arms that get a copy of the rows `chosen` answers (logged, never returned)."""
        return ()

    # --- learning -----------------------------------------------------------------------

    def update(self, rewards: Mapping[str, Reward]) -> None:
        """Take the current totals of every arm (by `Arm.key`); replaces the previous ones."""
        self.rewards = dict(rewards)

    def reward(self, arm: Arm) -> Reward:
        """The totals of `arm` (zero before any outcome)."""
        return self.rewards.get(arm.key, _NO_REWARD)

    def report_error(self, arm: Arm, error: BaseException | None = None) -> None:
        """`arm` failed to answer: take it out (unless this kind never fails over)."""
        if self.failover:
            self.failed = self.failed | {arm.key}

    # --- setup and inspection -----------------------------------------------------------

    def check(self, arms: Sequence[Arm]) -> None:
        """Raise ServingError when this selector cannot work with `arms`."""
        if not arms:
            raise ServingError(f"the {self.kind.value} selector has no models to choose from")

    def describe(self) -> dict[str, Any]:
        """The selector's settings and what it learned, as JSON-able data."""
        return {
            "kind": self.kind.value,
            "seed": self.spec.seed,
            "reward": None
            if self.spec.reward is None
            else {"kind": self.spec.reward.kind.value, "scale": self.spec.reward.scale},
            "failed": sorted(self.failed),
            "rewards": {
                key: {"evaluated": r.evaluated, "successes": r.successes, "mean": r.mean}
                for key, r in sorted(self.rewards.items())
            },
        }

    def state(self, arm: Arm, arms: Sequence[Arm]) -> str:
        """What `arm` does now: 'active' (may answer), 'standby' or 'failed'.

        Random selectors (ab, bandits) keep every arm that has not failed active; the
        others say which arm answers.
        """
        if arm.key in self.failed and self.failover:
            return "failed"
        if not self.deterministic:
            return "active"
        return "active" if self.choose(arms, None, random.Random(0)) is arm else "standby"


class LatestSelector(Selector):
    """The newest arm answers."""

    kind = SelectorKind.LATEST
    deterministic = True

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        return arms[0]


class PinnedSelector(Selector):
    """The arm the spec names (`VERSION` → its newest generation); the newest without one."""

    kind = SelectorKind.PINNED
    failover = False
    deterministic = True

    def _target(self, arms: Sequence[Arm]) -> Arm | None:
        model = self.spec.model
        if model is None:
            return arms[0] if arms else None
        release, _, generation = model.partition("/")
        for arm in arms:  # newest first: a bare VERSION takes its newest generation
            if arm.release == release and (not generation or arm.generation == int(generation)):
                return arm
        return None

    def check(self, arms: Sequence[Arm]) -> None:
        """The pinned model must be one of the arms."""
        super().check(arms)
        if self._target(arms) is None:
            served = ", ".join(a.label for a in arms)
            raise ServingError(
                f"the pinned model {self.spec.model} is not among the served models ({served})",
                hint="pin a release/generation that is in the registry, or publish it first",
            )

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        return self._target(arms) or arms[0]

    def describe(self) -> dict[str, Any]:
        """Settings: the pinned model."""
        return {**super().describe(), "model": self.spec.model}


class ABSelector(Selector):
    """A weighted split, optionally sticky per request key.

    `weights` are read newest first and matched to arms by `Arm.index`: missing weights
    count as 0 and extra ones are ignored (a deployment may have fewer generations than
    `arms` at first); when the weights of the available arms are all 0, the split is
    equal.
    """

    kind = SelectorKind.AB

    def __init__(self, spec: SelectorSpec | None = None) -> None:
        super().__init__(spec)
        self._cache: tuple[tuple[Arm, ...], list[float]] | None = None

    def shares(self, arms: Sequence[Arm]) -> list[float]:
        """The traffic share of each of `arms` (sums to 1)."""
        weights = self.spec.weights or ()
        raw = [float(weights[a.index]) if a.index < len(weights) else 0.0 for a in arms]
        if not self.spec.weights:
            raw = [1.0] * len(arms)
        total = sum(raw)
        if total <= 0:
            return [1.0 / len(arms)] * len(arms)
        return [w / total for w in raw]

    def _cumulative(self, arms: Sequence[Arm]) -> list[float]:
        cache = self._cache
        if cache is not None and (cache[0] is arms or cache[0] == tuple(arms)):
            return cache[1]
        key = arms if isinstance(arms, tuple) else tuple(arms)
        bounds: list[float] = []
        running = 0.0
        for share in self.shares(arms):
            running += share
            bounds.append(running)
        bounds[-1] = 1.0  # no gap at the top from rounding
        self._cache = (key, bounds)
        return bounds

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        if len(arms) == 1:
            return arms[0]
        point: float | None = None
        if self.spec.sticky:
            value = sticky_value(request, self.spec.sticky)
            if value is not None:
                point = stable_unit(value, self.spec.seed)
        if point is None:
            point = rng.random()
        bounds = self._cumulative(arms)
        return arms[min(bisect.bisect_right(bounds, point), len(arms) - 1)]

    def describe(self) -> dict[str, Any]:
        """Settings: weights and sticky key."""
        return {
            **super().describe(),
            "weights": list(self.spec.weights) if self.spec.weights else None,
            "sticky": self.spec.sticky,
        }


class EpsilonGreedySelector(Selector):
    """Explore a random arm with probability `epsilon`, else exploit the best posterior mean.

    The estimate of an arm is its posterior mean under a Beta(1, 1) prior, so an arm
    without outcomes counts as 0.5; ties go to the newer arm.
    """

    kind = SelectorKind.EPSILON_GREEDY

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        if len(arms) == 1:
            return arms[0]
        if rng.random() < self.spec.epsilon:
            return arms[rng.randrange(len(arms))]
        rewards = self.rewards
        best, best_mean = arms[0], -1.0
        for arm in arms:
            mean = rewards.get(arm.key, _NO_REWARD).mean
            if mean > best_mean:
                best, best_mean = arm, mean
        return best

    def describe(self) -> dict[str, Any]:
        """Settings: epsilon."""
        return {**super().describe(), "epsilon": self.spec.epsilon}


class ThompsonSelector(Selector):
    """Thompson sampling: the largest draw from each arm's Beta(1 + s, 1 + n - s) posterior."""

    kind = SelectorKind.THOMPSON

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        if len(arms) == 1:
            return arms[0]
        rewards = self.rewards
        best, best_draw = arms[0], -1.0
        for arm in arms:
            r = rewards.get(arm.key, _NO_REWARD)
            draw = rng.betavariate(1.0 + r.successes, 1.0 + max(0.0, r.evaluated - r.successes))
            if draw > best_draw:
                best, best_draw = arm, draw
        return best


class ShadowSelector(Selector):
    """The oldest arm answers; every newer arm gets the rows mirrored (never returned)."""

    kind = SelectorKind.SHADOW

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        return arms[-1]

    def mirrors(self, arms: Sequence[Arm], chosen: Arm) -> Sequence[Arm]:
        """Every arm other than the one answering, unless it failed."""
        return [a for a in arms if a is not chosen and a.key not in self.failed]

    def state(self, arm: Arm, arms: Sequence[Arm]) -> str:
        """'active' for the primary, 'shadow' for candidates, 'failed'."""
        if arm.key in self.failed:
            return "failed"
        usable = [a for a in arms if a.key not in self.failed] or list(arms)
        return "active" if arm is usable[-1] else "shadow"


class FallbackSelector(Selector):
    """Cold start and fall back: the newest *proven* arm answers.

    Exact semantics, arms newest first:

    - The oldest arm is the baseline: it is always proven.
    - A newer arm is *warm* once `min_predictions` of its predictions have outcomes,
      or, when `min_age` is set, once it was published `min_age` seconds ago
      (whichever comes first; `min_predictions: 0` makes it warm at once).
    - Until it is warm an arm is *cold*: it answers nothing, but receives a mirror of
      the rows the answering arm gets (like a shadow), so its predictions are logged
      and evaluated against the same outcomes, which is how it warms up.
    - A warm arm is *degraded* when both it and the next older arm have at least
      `max(min_predictions, DEGRADE_MIN_EVALUATED)` evaluated predictions and its
      success rate is more than `DEGRADE_MARGIN` below that arm's; a degraded arm
      answers nothing (it keeps its mirror, so it may recover).
    - An arm that errors (`report_error`) is taken out: no traffic, no mirror. The
      request it failed is answered by the arm this selector chooses without it.
    - Each request goes to the newest arm that is warm, not degraded and not failed.
    """

    kind = SelectorKind.FALLBACK

    def __init__(
        self, spec: SelectorSpec | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(spec)
        self.clock = clock
        self._started = clock()
        # The last decision: (arms, rewards, valid until, chosen). It changes only when
        # the arms, the rewards or (through min_age) the time do, and the request path
        # should not redo the arithmetic for each request.
        self._decision: tuple[Sequence[Arm], Mapping[str, Reward], float, Arm] | None = None

    def warm(self, arm: Arm, arms: Sequence[Arm]) -> bool:
        """Whether `arm` has proven itself (see the class docstring)."""
        if arm is arms[-1]:
            return True
        if self.reward(arm).evaluated >= self.spec.min_predictions:
            return True
        min_age = self.spec.min_age
        if min_age is None:
            return False
        published = arm.published_at if arm.published_at is not None else self._started
        return self.clock() - published >= min_age

    def degraded(self, arm: Arm, arms: Sequence[Arm]) -> bool:
        """Whether `arm` does clearly worse than the next older arm."""
        position = arms.index(arm)
        if position + 1 >= len(arms):
            return False
        older = arms[position + 1]
        needed = max(self.spec.min_predictions, DEGRADE_MIN_EVALUATED)
        mine, theirs = self.reward(arm), self.reward(older)
        if mine.evaluated < needed or theirs.evaluated < needed:
            return False
        assert mine.rate is not None and theirs.rate is not None
        return mine.rate < theirs.rate - DEGRADE_MARGIN

    def _choose(self, arms: Sequence[Arm], request: RequestInfo | None, rng: random.Random) -> Arm:
        timed = self.spec.min_age is not None
        now = self.clock() if timed else 0.0
        decision, rewards = self._decision, self.rewards
        if (
            decision is not None
            and decision[0] is arms
            and decision[1] is rewards
            and now < decision[2]
        ):
            return decision[3]
        chosen = arms[-1]
        for arm in arms:
            if self.warm(arm, arms) and not self.degraded(arm, arms):
                chosen = arm
                break
        # With min_age, an arm may warm up with time alone: look again within a second.
        self._decision = (arms, rewards, now + 1.0 if timed else math.inf, chosen)
        return chosen

    def mirrors(self, arms: Sequence[Arm], chosen: Arm) -> Sequence[Arm]:
        """The newer arms that are still cold or degraded (and have not failed)."""
        usable = [a for a in arms if a.key not in self.failed] or list(arms)
        out = []
        for arm in usable:
            if arm is chosen:
                break
            out.append(arm)
        return out

    def state(self, arm: Arm, arms: Sequence[Arm]) -> str:
        """'failed', 'cold', 'degraded', 'active' (answering) or 'standby' (proven, older)."""
        if arm.key in self.failed:
            return "failed"
        usable = [a for a in arms if a.key not in self.failed] or list(arms)
        if not self.warm(arm, usable):
            return "cold"
        if self.degraded(arm, usable):
            return "degraded"
        return "active" if self._choose(usable, None, random.Random(0)) is arm else "standby"

    def describe(self) -> dict[str, Any]:
        """Settings: min_predictions and min_age."""
        return {
            **super().describe(),
            "min_predictions": self.spec.min_predictions,
            "min_age": self.spec.min_age,
        }


SELECTORS: dict[SelectorKind, type[Selector]] = {
    cls.kind: cls
    for cls in (
        LatestSelector,
        PinnedSelector,
        ABSelector,
        EpsilonGreedySelector,
        ThompsonSelector,
        ShadowSelector,
        FallbackSelector,
    )
}
"""The class of each selector kind."""


def make_selector(spec: SelectorSpec) -> Selector:
    """The selector a spec declares."""
    if spec.epsilon < 0 or spec.epsilon > 1 or math.isnan(spec.epsilon):
        raise ServingError(f"selector epsilon must be between 0 and 1, not {spec.epsilon}")
    if spec.weights is not None and any(w < 0 or math.isnan(w) for w in spec.weights):
        raise ServingError(f"selector weights must not be negative: {list(spec.weights)}")
    return SELECTORS[SelectorKind(spec.kind)](spec)


def arms_of(models: Iterable[ServedModel]) -> tuple[Arm, ...]:
    """The arms of `models` (newest first), indexed in that order."""
    return tuple(Arm.of(i, m) for i, m in enumerate(models))


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 string (None when neither)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return None
