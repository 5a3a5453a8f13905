"""The router of a dynamic deployment: several models (arms) behind one selector.

`SelectorRouter` implements the engine's `Router` protocol (`models`, `select`) and the
optional hooks the engine calls when a router has them:

- `shadows(model)`: the models that get a mirror of the rows `model` just answered
  (shadow candidates, cold generations); their answers are logged, never returned;
- `fallback_for(model, error)`: the model that answers instead when `model` raised;
- `report_error(model, error)`: `model` failed where another model succeeded on the
  same rows (or failed as a shadow): the selector takes it out;
- `start(store_url)` / `stop()`: begin and end the reward refresher;
- `arm_stats()`: traffic and reward per arm, for `/metrics`.

`select` does no I/O: it asks the selector, which reads totals held in memory. The
totals come from the prediction store: a background thread, every `refresh_interval`
seconds, counts the outcomes that arrived since the last count (`RewardLedger`), adds
their rewards to per-model totals kept in the store (so a restart starts from them),
and hands the new totals to the selector. Outcomes younger than `reward_lag` seconds
wait for the next round: a feedback transaction that started earlier may still be
committing them, and the cursor only moves forward.

Arms are given newest first (see `mlcycle.serve.selectors`).

    router = SelectorRouter.from_spec(models, spec.deployment.selector)
    serve(router, store_url=spec.store.url, workers=2)

With several workers, each gets a pickled copy of the router and runs its own
refresher; they share the totals through the store (one of them counts each round).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ServingError
from mlcycle.serve.model import ProcessLocalState, Router
from mlcycle.serve.selectors import (
    Arm,
    Reward,
    Selector,
    arm_key,
    arms_of,
    make_selector,
    reward_of,
)
from mlcycle.spec.model import RewardSpec, SelectorSpec
from mlcycle.store.predictions import ArmTotals, PredictionStore

if TYPE_CHECKING:
    from mlcycle.serve.model import RequestInfo, ServedModel

log = logging.getLogger(__name__)


class RewardLedger:
    """Per-model reward totals in the store, advanced from the outcomes that arrived.

    Safe to run from several processes on one store: each round reads the cursor,
    counts the outcomes after it, and moves cursor and totals in one compare-and-set
    transaction; a round that loses the race reads again.
    """

    def __init__(
        self,
        store: PredictionStore,
        *,
        lag: float = 2.0,
        page: int = 2000,
        max_pages: int = 20,
    ) -> None:
        self.store = store
        self.lag = lag
        self.page = page
        self.max_pages = max_pages

    def totals(self) -> dict[str, Reward]:
        """The totals of every model in the store, by `arm_key`."""
        return {t.arm: Reward(t.evaluated, t.reward) for t in self.store.arm_totals()}

    def advance(
        self,
        tasks: Mapping[str, str] | None = None,
        *,
        min_gap: float = 0.0,
        reward: RewardSpec | None = None,
    ) -> int:
        """Count the outcomes recorded since the last round; returns how many were counted.

        `tasks` gives the task of known models by `arm_key`; a model not in it is taken
        for a regression when its prediction is a non-integral number. `reward` is the
        spec's `deployment.selector.reward` (see `reward_of`). With `min_gap`,
        the round is skipped when the cursor moved less than `min_gap` seconds ago: with
        several workers, one of them counting per refresh interval is enough.
        """
        tasks = tasks or {}
        counted = 0
        pages = 0
        conflicts = 0
        while pages < self.max_pages and conflicts < 10:
            old, moved_at = self.store.reward_cursor()
            if (
                pages == 0
                and moved_at is not None
                and min_gap > 0
                and time.time() - moved_at < min_gap
            ):
                break
            rows, new = self.store.evaluated_since(
                old, until=time.time() - self.lag, limit=self.page
            )
            if new is None:
                break
            deltas: dict[str, list[Any]] = {}
            outcomes = 0
            for row in rows:
                key = arm_key(row.model, row.release, row.generation)
                task = tasks.get(key) or _guess_task(row.prediction)
                entry = deltas.get(key)
                if entry is None:
                    entry = deltas[key] = [row.model, row.release, row.generation, 0, 0.0]
                entry[3] += 1
                entry[4] += reward_of(task, row.prediction, row.outcome, reward)
                outcomes += row.id == row.outcome_id
            totals = [ArmTotals(k, m, r, g, n, s) for k, (m, r, g, n, s) in deltas.items()]
            if not self.store.add_rewards(totals, old=old, new=new):
                conflicts += 1  # another process counted these first: read again
                continue
            counted += outcomes
            pages += 1
            if outcomes < self.page:
                break
        return counted


def _guess_task(prediction: Any) -> str:
    if isinstance(prediction, float) and not prediction.is_integer():
        return "regression"
    return "classification"


class SelectorRouter(ProcessLocalState, Router):
    """Routes each request to one of `arms` (newest first) through `selector`.

    `selector` is a `Selector` or the `SelectorSpec` to build one from. Rewards come
    from `reward_source` (a SQLAlchemy URL of the prediction store), or, when None,
    from the store the serving engine uses (it passes its URL to `start`). Without
    either, bandits stay at their priors.
    """

    def __init__(
        self,
        arms: Sequence[ServedModel],
        selector: Selector | SelectorSpec,
        *,
        reward_source: str | None = None,
        refresh_interval: float = 5.0,
        reward_lag: float = 2.0,
        seed: int | None = None,
    ) -> None:
        if not arms:
            raise ServingError("a selector router needs at least one model")
        names = {m.name for m in arms}
        if len(names) != 1:
            raise ServingError(
                f"the models of one deployment must share one name, got {sorted(names)}"
            )
        keys = [arm_key(m.name, m.release, m.generation) for m in arms]
        if len(set(keys)) != len(keys):
            raise ServingError(f"the same model appears twice among the arms: {keys}")
        self._selector = make_selector(selector) if isinstance(selector, SelectorSpec) else selector
        self._models: tuple[ServedModel, ...] = tuple(arms)
        self._arms: tuple[Arm, ...] = arms_of(self._models)
        self._selector.check(self._arms)
        self._tasks = {a.key: m.task for a, m in zip(self._arms, self._models, strict=True)}
        self.reward_source = reward_source
        self.refresh_interval = refresh_interval
        self.reward_lag = reward_lag
        self._rng = random.Random(self._selector.spec.seed if seed is None else seed)
        count = len(self._models)
        self.selected = [0] * count
        """Requests each arm answered (in this process)."""
        self.mirrored = [0] * count
        """Requests mirrored to each arm (in this process)."""
        self.errors = [0] * count
        """Predict calls of each arm that raised (in this process)."""
        self._totals: dict[str, Reward] = {}
        self._init_runtime()

    @classmethod
    def from_spec(
        cls,
        models: Sequence[ServedModel],
        spec: SelectorSpec,
        *,
        reward_source: str | None = None,
        **options: Any,
    ) -> SelectorRouter:
        """The router for a deployment's models (newest first) and its selector spec."""
        return cls(models, make_selector(spec), reward_source=reward_source, **options)

    # Shipped to worker processes by pickle: the thread and the store stay behind.
    RUNTIME = ("_index", "_ledger", "_thread", "_stopping")

    def _init_runtime(self) -> None:
        self._index = {id(m): i for i, m in enumerate(self._models)}
        self._ledger: RewardLedger | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- the Router protocol ------------------------------------------------------------

    @property
    def models(self) -> Sequence[ServedModel]:
        """Every arm, newest first."""
        return self._models

    @property
    def selector(self) -> Selector:
        """The selector in use."""
        return self._selector

    @property
    def arms(self) -> tuple[Arm, ...]:
        """The arms, newest first (`arms[i]` is `models[i]`)."""
        return self._arms

    def select(self, request: RequestInfo) -> ServedModel:
        """The model the selector chooses for `request` (no I/O)."""
        arm = self._selector.choose(self._arms, request, self._rng)
        self.selected[arm.index] += 1
        return self._models[arm.index]

    # --- engine hooks -------------------------------------------------------------------

    def shadows(self, model: ServedModel) -> Sequence[ServedModel]:
        """The models that get a mirror of the rows `model` answered."""
        index = self._index.get(id(model))
        if index is None:
            return ()
        mirrors = self._selector.mirrors(self._arms, self._arms[index])
        if not mirrors:
            return ()
        for arm in mirrors:
            self.mirrored[arm.index] += 1
        return [self._models[a.index] for a in mirrors]

    def fallback_for(self, model: ServedModel, error: BaseException) -> ServedModel | None:
        """The model that answers when `model` raised, or None when there is none."""
        index = self._index.get(id(model))
        if index is None or not self._selector.failover:
            return None
        failed = self._selector.failed
        others = [a for a in self._arms if a.index != index and a.key not in failed]
        if not others:
            return None
        chosen = self._selector.choose(others, None, self._rng).index
        # The request counts for the arm that answers it, not the one that failed.
        self.selected[index] = max(0, self.selected[index] - 1)
        self.selected[chosen] += 1
        return self._models[chosen]

    def report_error(self, model: ServedModel, error: BaseException) -> None:
        """`model` failed on rows another model answered: the selector takes it out."""
        index = self._index.get(id(model))
        if index is None:
            return
        self.errors[index] += 1
        arm = self._arms[index]
        if arm.key not in self._selector.failed and self._selector.failover:
            log.warning(
                "model %s failed (%s: %s); it is taken out of the rotation",
                arm.label,
                type(error).__name__,
                error,
            )
        self._selector.report_error(arm, error)

    # --- rewards ------------------------------------------------------------------------

    def start(self, store_url: str | None = None) -> None:
        """Load the reward totals and start refreshing them (the engine calls this)."""
        if self._thread is not None:
            return
        source = self.reward_source or store_url
        if source is None:
            if self._selector.kind.needs_feedback:
                log.warning(
                    "the %s selector learns from feedback, but there is no prediction store; "
                    "it keeps its starting estimates",
                    self._selector.kind.value,
                )
            return
        self._ledger = RewardLedger(PredictionStore(source), lag=self.reward_lag)
        self._safe_refresh()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name="mlcycle-rewards", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresher and close the store."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._ledger is not None:
            self._ledger.store.close()
            self._ledger = None

    def refresh(self, *, min_gap: float = 0.0) -> dict[str, Reward]:
        """Count new outcomes now and hand the totals to the selector; returns the totals.

        `min_gap`: leave the counting to another process that did it this recently.
        """
        if self._ledger is None:
            return dict(self._totals)
        self._ledger.advance(self._tasks, min_gap=min_gap, reward=self._selector.spec.reward)
        totals = self._ledger.totals()
        self._selector.update(totals)
        self._totals = totals
        return dict(totals)

    def _safe_refresh(self, min_gap: float = 0.0) -> None:
        try:
            self.refresh(min_gap=min_gap)
        except Exception:  # the store may be down for a while: keep serving
            log.exception("could not refresh the reward totals; keeping the previous ones")

    def _refresh_loop(self) -> None:
        while not self._stopping.wait(self.refresh_interval):
            self._safe_refresh(min_gap=self.refresh_interval / 2)

    # --- inspection ---------------------------------------------------------------------

    def arm_stats(self) -> list[dict[str, Any]]:
        """Traffic and reward per arm (traffic of this process, rewards of the store)."""
        stats = []
        for arm in self._arms:
            reward = self._totals.get(arm.key, Reward())
            stats.append(
                {
                    "model": arm.name,
                    "release": arm.release,
                    "generation": arm.generation,
                    "arm": arm.label,
                    # Which runtime answers for this arm (arms may differ: one converts
                    # to ONNX, a later generation with other steps may not).
                    "backend": self._models[arm.index].predictor.backend,
                    "state": self._selector.state(arm, self._arms),
                    "selected": self.selected[arm.index],
                    "mirrored": self.mirrored[arm.index],
                    "errors": self.errors[arm.index],
                    "evaluated": reward.evaluated,
                    "reward": reward.successes,
                }
            )
        return stats

    def describe(self) -> dict[str, Any]:
        """The selector and its arms, as JSON-able data."""
        return {"selector": self._selector.describe(), "arms": self.arm_stats()}
