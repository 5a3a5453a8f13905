"""Selectors: one contract suite for every kind, then each kind's own behaviour.

Everything random is seeded: a selector's choices depend only on its `rng` argument
(and, for sticky A/B, on a BLAKE2b hash), so each assertion here holds for the given
seeds, with tolerances far wider than the sampling noise.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from mlcycle.errors import ServingError
from mlcycle.serve.model import RequestInfo
from mlcycle.serve.selectors import (
    DEGRADE_MIN_EVALUATED,
    SELECTORS,
    ABSelector,
    Arm,
    FallbackSelector,
    Reward,
    Selector,
    make_selector,
    reward_of,
    same_label,
    stable_unit,
)
from mlcycle.spec.model import RewardKind, RewardSpec, SelectorKind, SelectorSpec

NAME = "churn"


def arms(count: int, *, published: Sequence[float | None] | None = None) -> tuple[Arm, ...]:
    """`count` arms of release 1.0.0, newest (highest generation) first."""
    return tuple(
        Arm(
            i,
            NAME,
            "1.0.0",
            count - i,
            None if published is None else published[i],
        )
        for i in range(count)
    )


def request(
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    payload: Any = None,
) -> RequestInfo:
    """A request as the engine hands it to a router."""
    if payload is None:
        payload = {"instances": [{"x": 1.0}]}
    return RequestInfo("/v1/predict", list(headers), payload)


# One spec per kind: each is the selector under the contract suite.
CONTRACT_SPECS = {
    SelectorKind.LATEST: SelectorSpec(kind=SelectorKind.LATEST, seed=3),
    SelectorKind.PINNED: SelectorSpec(kind=SelectorKind.PINNED, seed=3),
    SelectorKind.AB: SelectorSpec(kind=SelectorKind.AB, weights=(0.5, 0.3, 0.2), seed=3),
    SelectorKind.EPSILON_GREEDY: SelectorSpec(kind=SelectorKind.EPSILON_GREEDY, seed=3),
    SelectorKind.THOMPSON: SelectorSpec(kind=SelectorKind.THOMPSON, seed=3),
    SelectorKind.SHADOW: SelectorSpec(kind=SelectorKind.SHADOW, seed=3),
    SelectorKind.FALLBACK: SelectorSpec(kind=SelectorKind.FALLBACK, min_predictions=5, seed=3),
}


def test_every_kind_has_a_selector_and_a_contract_spec() -> None:
    assert set(SELECTORS) == set(SelectorKind) == set(CONTRACT_SPECS)


class TestSelectorContract:
    """What every selector promises; `selector` builds the one under test."""

    @pytest.fixture(params=list(SelectorKind), ids=lambda k: k.value)
    def spec(self, request: pytest.FixtureRequest) -> SelectorSpec:
        return CONTRACT_SPECS[request.param]

    @pytest.fixture
    def selector(self, spec: SelectorSpec) -> Selector:
        selector = make_selector(spec)
        # Some outcomes, uneven across arms, so bandits and fallback have something to use.
        selector.update({a.key: Reward(10 * (a.index + 1), 4.0 * (a.index + 1)) for a in arms(3)})
        return selector

    def test_is_the_declared_kind(self, selector: Selector, spec: SelectorSpec) -> None:
        assert selector.kind == spec.kind
        assert isinstance(selector, SELECTORS[spec.kind])

    @pytest.mark.parametrize("count", [1, 2, 3])
    def test_always_returns_one_of_the_arms(self, selector: Selector, count: int) -> None:
        given = arms(count)
        rng = random.Random(0)
        for i in range(500):
            chosen = selector.choose(given, request(headers=[(b"user", str(i).encode())]), rng)
            assert any(chosen is a for a in given)
            for mirror in selector.mirrors(given, chosen):
                assert mirror is not chosen
                assert any(mirror is a for a in given)

    def test_one_arm_is_always_chosen(self, selector: Selector) -> None:
        only = arms(1)
        rng = random.Random(1)
        assert {selector.choose(only, request(), rng) for _ in range(200)} == {only[0]}
        assert list(selector.mirrors(only, only[0])) == []

    def test_same_seed_same_choices(self, spec: SelectorSpec) -> None:
        def run(seed: int) -> list[int]:
            selector = make_selector(spec)
            selector.update({a.key: Reward(5, 2.0 + a.index) for a in arms(3)})
            rng = random.Random(seed)
            return [selector.choose(arms(3), request(), rng).index for _ in range(300)]

        assert run(11) == run(11)

    def test_request_may_be_none(self, selector: Selector) -> None:
        assert selector.choose(arms(2), None, random.Random(0)) in arms(2)

    def test_an_arm_that_errors_never_answers_again(self, selector: Selector) -> None:
        given = arms(3)
        rng = random.Random(2)
        victim = selector.choose(given, request(), rng)
        selector.report_error(victim, RuntimeError("boom"))
        chosen = {selector.choose(given, request(), rng) for _ in range(300)}
        if selector.failover:
            assert victim not in chosen
            assert all(victim is not m for c in chosen for m in selector.mirrors(given, c))
            assert selector.state(victim, given) == "failed"
        else:
            assert chosen == {victim}  # pinned: there is nothing else to serve

    def test_when_every_arm_failed_one_still_answers(self, selector: Selector) -> None:
        given = arms(2)
        for arm in given:
            selector.report_error(arm, RuntimeError("boom"))
        assert selector.choose(given, request(), random.Random(0)) in given

    def test_describe_is_json(self, selector: Selector, spec: SelectorSpec) -> None:
        described = json.loads(json.dumps(selector.describe()))
        assert described["kind"] == spec.kind.value
        assert described["seed"] == spec.seed


# --- rewards ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "outcome", "right"),
    [
        (1, 1, True),
        (1, 1.0, True),
        (1, True, True),
        (0, False, True),
        (1, "1", True),
        ("yes", "yes", True),
        ("yes", "no", False),
        (0, 1, False),
        ("yes", 1, False),
        (None, 1, False),
    ],
)
def test_classification_reward_is_a_right_label(prediction: Any, outcome: Any, right: bool) -> None:
    assert same_label(prediction, outcome) is right
    assert reward_of("classification", prediction, outcome) == (1.0 if right else 0.0)


def test_regression_reward_is_an_error_within_ten_percent() -> None:
    assert reward_of("regression", 105.0, 100.0) == 1.0
    assert reward_of("regression", 111.0, 100.0) == 0.0
    assert reward_of("regression", 0.05, 0.0) == 1.0  # magnitudes below 1 count as 1
    assert reward_of("regression", 0.2, 0.0) == 0.0
    assert reward_of("regression", "n/a", 1.0) == 0.0


def test_regression_reward_falls_with_the_error_up_to_the_declared_scale() -> None:
    # deployment.selector.reward: {kind: error, scale: 4} (issue 13.5)
    reward = RewardSpec(RewardKind.ERROR, scale=4.0)
    assert reward_of("regression", 10.0, 10.0, reward) == 1.0
    assert reward_of("regression", 11.0, 10.0, reward) == 0.75
    assert reward_of("regression", 7.0, 10.0, reward) == 0.25
    assert reward_of("regression", 20.0, 10.0, reward) == 0.0  # off by the scale or more
    assert reward_of("regression", "n/a", 10.0, reward) == 0.0
    assert reward_of("regression", float("nan"), 10.0, reward) == 0.0
    # Labels are right or wrong whatever the reward says.
    assert reward_of("classification", "yes", "yes", reward) == 1.0


def test_reward_means_start_at_one_half() -> None:
    assert Reward().mean == 0.5
    assert Reward().rate is None
    assert Reward(8, 6.0).rate == 0.75
    assert Reward(2, 1.0) + Reward(3, 3.0) == Reward(5, 4.0)


# --- make_selector ----------------------------------------------------------------------


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ServingError, match="epsilon"):
        make_selector(SelectorSpec(kind=SelectorKind.EPSILON_GREEDY, epsilon=1.5))
    with pytest.raises(ServingError, match="negative"):
        make_selector(SelectorSpec(kind=SelectorKind.AB, weights=(1.0, -1.0)))
    with pytest.raises(ServingError, match="no models"):
        make_selector(SelectorSpec(kind=SelectorKind.LATEST)).check(())


# --- latest and pinned --------------------------------------------------------------------


def test_latest_is_the_newest() -> None:
    selector = make_selector(SelectorSpec(kind=SelectorKind.LATEST))
    given = arms(3)
    assert selector.choose(given, request(), random.Random(0)) is given[0]


def test_states_say_which_arm_answers() -> None:
    given = arms(2)
    latest = make_selector(SelectorSpec(kind=SelectorKind.LATEST))
    assert [latest.state(a, given) for a in given] == ["active", "standby"]
    ab = make_selector(SelectorSpec(kind=SelectorKind.AB))
    assert [ab.state(a, given) for a in given] == ["active", "active"]
    ab.report_error(given[0])
    assert [ab.state(a, given) for a in given] == ["failed", "active"]


def test_pinned_takes_the_named_generation_or_the_newest_of_a_release() -> None:
    given = (
        Arm(0, NAME, "1.1.0", 1),
        Arm(1, NAME, "1.0.0", 3),
        Arm(2, NAME, "1.0.0", 2),
    )
    rng = random.Random(0)
    exact = make_selector(SelectorSpec(kind=SelectorKind.PINNED, model="1.0.0/2"))
    exact.check(given)
    assert exact.choose(given, request(), rng) is given[2]
    release = make_selector(SelectorSpec(kind=SelectorKind.PINNED, model="1.0.0"))
    assert release.choose(given, request(), rng) is given[1]
    missing = make_selector(SelectorSpec(kind=SelectorKind.PINNED, model="2.0.0"))
    with pytest.raises(ServingError, match=r"2\.0\.0 is not among"):
        missing.check(given)


# --- ab ---------------------------------------------------------------------------------


def test_ab_split_follows_the_weights() -> None:
    selector = make_selector(SelectorSpec(kind=SelectorKind.AB, weights=(7, 2, 1), seed=5))
    given = arms(3)
    rng = random.Random(5)
    draws = 20_000
    counts = Counter(selector.choose(given, request(), rng).index for _ in range(draws))
    # Binomial standard deviations are at most 0.0035 here: 0.015 is over 4 of them.
    for index, share in enumerate((0.7, 0.2, 0.1)):
        assert abs(counts[index] / draws - share) < 0.015, counts


def test_ab_without_weights_splits_evenly_and_missing_weights_count_zero() -> None:
    rng = random.Random(9)
    even = make_selector(SelectorSpec(kind=SelectorKind.AB))
    counts = Counter(even.choose(arms(2), request(), rng).index for _ in range(20_000))
    assert abs(counts[0] / 20_000 - 0.5) < 0.015
    # Three weights for a deployment that has two generations so far, and one for three.
    short = make_selector(SelectorSpec(kind=SelectorKind.AB, weights=(1, 3, 6)))
    assert isinstance(short, ABSelector)
    assert short.shares(arms(2)) == [0.25, 0.75]
    assert make_selector(SelectorSpec(kind=SelectorKind.AB, weights=(1,))).shares(arms(3)) == [
        1.0,
        0.0,
        0.0,
    ]
    zero = make_selector(SelectorSpec(kind=SelectorKind.AB, weights=(0, 0)))
    assert zero.shares(arms(2)) == [0.5, 0.5]


def test_ab_is_sticky_per_key_and_still_splits_keys_by_weight() -> None:
    spec = SelectorSpec(kind=SelectorKind.AB, weights=(0.8, 0.2), sticky="user", seed=1)
    given = arms(2)
    first, second = make_selector(spec), make_selector(spec)
    by_user = {}
    for user in range(5000):
        header = request(headers=[(b"user", f"u{user}".encode())])
        chosen = first.choose(given, header, random.Random(user))
        # Another selector, another rng: the same user still gets the same arm.
        assert second.choose(given, header, random.Random(-user)) is chosen
        by_user[user] = chosen.index
    share = sum(1 for i in by_user.values() if i == 0) / len(by_user)
    assert abs(share - 0.8) < 0.03

    # The key may also be a body field or a field of the first instance.
    u7 = by_user[7]
    body = request(payload={"instances": [{"x": 1.0}], "user": "u7"})
    instance = request(payload={"instances": [{"x": 1.0, "user": "u7"}]})
    assert first.choose(given, body, random.Random(1)).index == u7
    assert first.choose(given, instance, random.Random(2)).index == u7


def test_ab_without_the_sticky_key_is_random() -> None:
    selector = make_selector(SelectorSpec(kind=SelectorKind.AB, sticky="user", seed=1))
    rng = random.Random(4)
    seen = {selector.choose(arms(2), request(), rng).index for _ in range(100)}
    assert seen == {0, 1}


def test_sticky_hash_is_stable_across_processes() -> None:
    keys = [f"customer-{i}" for i in range(50)]
    here = [stable_unit(k, 1) for k in keys]
    code = (
        "import json, sys; from mlcycle.serve.selectors import stable_unit; "
        "print(json.dumps([stable_unit(k, 1) for k in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(keys)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(result.stdout) == here
    assert stable_unit("customer-1", 1) != stable_unit("customer-1", 2)  # the seed salts it
    assert all(0.0 <= u < 1.0 for u in here)


# --- bandits ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [SelectorKind.EPSILON_GREEDY, SelectorKind.THOMPSON])
@pytest.mark.parametrize("better", [0, 1])
def test_bandits_converge_to_the_better_arm(kind: SelectorKind, better: int) -> None:
    """Simulated Bernoulli rewards: success 0.7 for the better arm, 0.5 for the other."""
    selector = make_selector(SelectorSpec(kind=kind, epsilon=0.1, seed=7))
    given = arms(2)
    probability = {better: 0.7, 1 - better: 0.5}
    rng, world = random.Random(7), random.Random(8)
    totals = {a.key: Reward() for a in given}
    last_round: Counter[int] = Counter()
    for _ in range(60):  # the router refreshes rewards in rounds, not per request
        last_round = Counter()
        for _ in range(100):
            arm = selector.choose(given, request(), rng)
            last_round[arm.index] += 1
            won = 1.0 if world.random() < probability[arm.index] else 0.0
            totals[arm.key] = totals[arm.key] + Reward(1, won)
        selector.update(totals)
    assert last_round[better] >= 85, last_round
    assert totals[given[better].key].evaluated > totals[given[1 - better].key].evaluated


def test_thompson_explores_while_it_knows_nothing() -> None:
    selector = make_selector(SelectorSpec(kind=SelectorKind.THOMPSON, seed=1))
    rng = random.Random(1)
    counts = Counter(selector.choose(arms(2), request(), rng).index for _ in range(2000))
    assert 0.4 < counts[0] / 2000 < 0.6


def test_epsilon_greedy_explores_epsilon_of_the_time() -> None:
    selector = make_selector(SelectorSpec(kind=SelectorKind.EPSILON_GREEDY, epsilon=0.2, seed=2))
    given = arms(2)
    selector.update({given[0].key: Reward(100, 90.0), given[1].key: Reward(100, 10.0)})
    rng = random.Random(2)
    counts = Counter(selector.choose(given, request(), rng).index for _ in range(20_000))
    # Exploration picks either arm: the worse one gets epsilon / 2.
    assert abs(counts[1] / 20_000 - 0.1) < 0.01


# --- shadow -------------------------------------------------------------------------------


def test_shadow_answers_with_the_oldest_and_mirrors_the_candidates() -> None:
    selector = make_selector(SelectorSpec(kind=SelectorKind.SHADOW, seed=1))
    given = arms(3)
    rng = random.Random(1)
    for _ in range(200):
        chosen = selector.choose(given, request(), rng)
        assert chosen is given[-1]
        assert list(selector.mirrors(given, chosen)) == [given[0], given[1]]
    assert [selector.state(a, given) for a in given] == ["shadow", "shadow", "active"]
    selector.report_error(given[0], RuntimeError("boom"))
    assert list(selector.mirrors(given, given[-1])) == [given[1]]


# --- fallback -----------------------------------------------------------------------------


class Clock:
    """A settable clock for `min_age`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fallback(**settings: Any) -> tuple[FallbackSelector, Clock]:
    clock = Clock(1_000_000.0)
    return FallbackSelector(
        SelectorSpec(kind=SelectorKind.FALLBACK, **settings), clock=clock
    ), clock


def test_fallback_skips_a_cold_generation_until_it_has_enough_outcomes() -> None:
    selector, _ = fallback(min_predictions=50)
    new, old = arms(2)
    rng = random.Random(0)
    selector.update({new.key: Reward(49, 45.0), old.key: Reward(500, 400.0)})
    assert selector.choose((new, old), request(), rng) is old
    assert list(selector.mirrors((new, old), old)) == [new]  # it warms up on mirrored rows
    assert selector.state(new, (new, old)) == "cold"
    selector.update({new.key: Reward(50, 46.0), old.key: Reward(500, 400.0)})
    assert selector.choose((new, old), request(), rng) is new
    assert list(selector.mirrors((new, old), new)) == []
    assert [selector.state(a, (new, old)) for a in (new, old)] == ["active", "standby"]


def test_fallback_serves_a_generation_once_it_is_old_enough() -> None:
    selector, clock = fallback(min_predictions=1000, min_age=3600)
    new, old = arms(2, published=[clock.now - 60, clock.now - 86_400])
    rng = random.Random(0)
    assert selector.choose((new, old), request(), rng) is old
    clock.now += 3600
    assert selector.choose((new, old), request(), rng) is new


def test_fallback_without_a_publication_time_counts_from_its_start() -> None:
    selector, clock = fallback(min_predictions=1000, min_age=10)
    new, old = arms(2)
    assert selector.choose((new, old), None, random.Random(0)) is old
    clock.now += 10
    assert selector.choose((new, old), None, random.Random(0)) is new


def test_fallback_drops_an_erroring_generation_for_the_previous_one() -> None:
    selector, _ = fallback(min_predictions=0)
    given = arms(3)
    rng = random.Random(0)
    assert selector.choose(given, request(), rng) is given[0]
    selector.report_error(given[0], RuntimeError("model file truncated"))
    assert selector.choose(given, request(), rng) is given[1]
    assert list(selector.mirrors(given, given[1])) == []
    selector.report_error(given[1], RuntimeError("again"))
    assert selector.choose(given, request(), rng) is given[2]
    assert [selector.state(a, given) for a in given] == ["failed", "failed", "active"]


def test_fallback_takes_out_a_generation_that_does_clearly_worse() -> None:
    selector, _ = fallback(min_predictions=10)
    new, old = arms(2)
    rng = random.Random(0)
    n = DEGRADE_MIN_EVALUATED
    selector.update({new.key: Reward(n, 0.80 * n), old.key: Reward(n, 0.90 * n)})
    assert selector.choose((new, old), request(), rng) is old
    assert selector.state(new, (new, old)) == "degraded"
    assert list(selector.mirrors((new, old), old)) == [new]  # it may recover
    selector.update({new.key: Reward(n, 0.87 * n), old.key: Reward(n, 0.90 * n)})
    assert selector.choose((new, old), request(), rng) is new
    # Too few outcomes to judge: no verdict either way.
    selector.update({new.key: Reward(n - 1, 0.0), old.key: Reward(n, n)})
    assert selector.choose((new, old), request(), rng) is new
