"""The selector router: rewards from a real SQLite store, and real servers routing requests.

Two models of the breast cancer data play the arms: a fitted logistic regression (right
about 95% of the time) and a classifier that always says 0 (right 37% of the time).
Arms are newest first, and the worse model is made the newest one, so a bandit has to
move traffic away from the default choice to pass.
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlcycle.errors import ServingError
from mlcycle.serve.model import RequestInfo, Router, ServedModel
from mlcycle.serve.router import RewardLedger, SelectorRouter
from mlcycle.serve.selectors import Reward, arm_key
from mlcycle.spec.model import RewardKind, RewardSpec, SelectorKind, SelectorSpec
from mlcycle.store.predictions import PredictionRecord, PredictionStore, shadow_id
from tests.serve.conftest import Server, free_port, rows_of, save_pickle, wait_ready

NAME = "cancer"
RELEASE = "1.0.0"
GOOD, BAD = 1, 2  # generations: the bad model is the newest


@pytest.fixture(scope="module")
def features(cancer: tuple[Any, Any]) -> list[str]:
    return [str(c) for c in cancer[0].columns]


@pytest.fixture(scope="module")
def constant(cancer: tuple[Any, Any]) -> Any:
    """A classifier that always answers 0 (malignant): right on 212 of 569 rows."""
    from sklearn.dummy import DummyClassifier

    X, y = cancer
    return DummyClassifier(strategy="constant", constant=0).fit(X, y)


def served(estimator: Any, generation: int, features: list[str]) -> ServedModel:
    return ServedModel.from_estimator(
        estimator,
        name=NAME,
        features=features,
        release=RELEASE,
        generation=generation,
        backend="sklearn",
    )


@pytest.fixture(scope="module")
def two_arms(pipeline: Any, constant: Any, features: list[str]) -> list[ServedModel]:
    """[bad (generation 2, newest), good (generation 1)]."""
    return [served(constant, BAD, features), served(pipeline, GOOD, features)]


def key(generation: int) -> str:
    return arm_key(NAME, RELEASE, generation)


def log_and_answer(
    store: PredictionStore,
    rows: list[tuple[str, int, Any, Any]],
) -> None:
    """Log predictions (id, generation, prediction) and record their outcomes."""
    now = time.time()
    store.log_predictions(
        PredictionRecord(pid, NAME, RELEASE, gen, now, {"x": 1.0}, prediction)
        for pid, gen, prediction, _ in rows
    )
    store.record_outcomes(
        [(pid, outcome) for pid, gen, _, outcome in rows if outcome is not None and "-s" not in pid]
    )


# --- the reward ledger ---------------------------------------------------------------------


def test_ledger_counts_each_outcome_once_and_persists(store_url: str) -> None:
    url = store_url
    store = PredictionStore(url)
    ledger = RewardLedger(store, lag=0)
    log_and_answer(
        store,
        [
            ("a1", GOOD, 1, 1),
            ("a2", GOOD, 0, 0),
            ("a3", GOOD, 1, 0),
            ("b1", BAD, 0, 1),
            ("b2", BAD, 0, 0),
            ("c1", GOOD, 1, None),  # no outcome yet
        ],
    )
    assert ledger.advance() == 5
    assert ledger.totals() == {key(GOOD): Reward(3, 2.0), key(BAD): Reward(2, 1.0)}
    assert ledger.advance() == 0
    assert ledger.totals() == {key(GOOD): Reward(3, 2.0), key(BAD): Reward(2, 1.0)}

    store.record_outcomes([("c1", 1)])
    assert ledger.advance() == 1
    store.close()
    # Another process, later: it starts from what the store kept.
    again = RewardLedger(PredictionStore(url), lag=0)
    assert again.totals() == {key(GOOD): Reward(4, 3.0), key(BAD): Reward(2, 1.0)}
    assert again.advance() == 0


def test_ledger_waits_for_outcomes_younger_than_the_lag(store_url: str) -> None:
    store = PredictionStore(store_url)
    log_and_answer(store, [("a1", GOOD, 1, 1)])
    assert RewardLedger(store, lag=3600).advance() == 0
    assert RewardLedger(store, lag=0).advance() == 1


def test_ledger_pages_through_many_outcomes(store_url: str) -> None:
    store = PredictionStore(store_url)
    log_and_answer(store, [(f"p{i:04d}", GOOD, i % 2, 1) for i in range(1000)])
    ledger = RewardLedger(store, lag=0, page=64)
    assert ledger.advance() == 1000
    assert ledger.totals() == {key(GOOD): Reward(1000, 500.0)}


def test_ledger_leaves_a_round_to_the_worker_that_just_counted(store_url: str) -> None:
    url = store_url
    first, second = (
        RewardLedger(PredictionStore(url), lag=0),
        RewardLedger(PredictionStore(url), lag=0),
    )
    log_and_answer(first.store, [("a1", GOOD, 1, 1)])
    assert first.advance(min_gap=60) == 1  # nobody counted yet
    log_and_answer(first.store, [("a2", GOOD, 1, 1)])
    assert second.advance(min_gap=60) == 0  # the first one counted a moment ago
    assert second.advance() == 1
    assert second.totals() == first.totals() == {key(GOOD): Reward(2, 2.0)}


def test_shadow_predictions_are_rewarded_by_the_primarys_outcome(store_url: str) -> None:
    store = PredictionStore(store_url)
    log_and_answer(
        store,
        [
            ("p1", GOOD, 1, 1),
            (shadow_id("p1", 1), BAD, 0, None),
            ("p2", GOOD, 0, 0),
            (shadow_id("p2", 1), BAD, 0, None),
            ("p3", GOOD, 1, None),
            (shadow_id("p3", 1), BAD, 1, None),
        ],
    )
    ledger = RewardLedger(store, lag=0)
    assert ledger.advance() == 2
    assert ledger.totals() == {key(GOOD): Reward(2, 2.0), key(BAD): Reward(2, 1.0)}


def test_regression_arms_earn_the_declared_error_reward(tmp_path: Path) -> None:
    store = PredictionStore(f"sqlite:///{tmp_path / 'store.db'}")
    # GOOD is off by 0, 1 and 2; BAD by 8 (nothing at scale 4) and 3.
    log_and_answer(
        store,
        [
            ("r1", GOOD, 10.0, 10.0),
            ("r2", GOOD, 11.0, 10.0),
            ("r3", GOOD, 8.0, 10.0),
            ("r4", BAD, 18.0, 10.0),
            ("r5", BAD, 13.0, 10.0),
        ],
    )
    ledger = RewardLedger(store, lag=0)
    tasks = {key(GOOD): "regression", key(BAD): "regression"}
    assert ledger.advance(tasks, reward=RewardSpec(RewardKind.ERROR, scale=4.0)) == 5
    assert ledger.totals() == {key(GOOD): Reward(3, 2.25), key(BAD): Reward(2, 0.25)}
    store.close()


def test_a_manifest_keeps_the_selectors_reward() -> None:
    from mlcycle.registry.manifests import selector_document, selector_from_document

    spec = SelectorSpec(SelectorKind.THOMPSON, reward=RewardSpec(RewardKind.ERROR, scale=2.5))
    assert selector_from_document(json.loads(json.dumps(selector_document(spec)))) == spec
    # Manifests published before rewards were declared have none.
    document = selector_document(SelectorSpec(SelectorKind.THOMPSON))
    del document["reward"]
    assert selector_from_document(document).reward is None


def test_ledgers_of_several_workers_never_count_twice(store_url: str) -> None:
    url = store_url
    writer = PredictionStore(url)
    ledgers = [RewardLedger(PredictionStore(url), lag=0, page=50) for _ in range(3)]
    done = threading.Event()
    errors: list[BaseException] = []

    def run(ledger: RewardLedger) -> None:
        try:
            while not done.is_set():
                ledger.advance()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    try:
        for batch in range(20):
            log_and_answer(writer, [(f"b{batch:02d}-{i:03d}", GOOD, 1, i % 4) for i in range(40)])
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert not errors
    ledgers[0].advance()
    # 800 outcomes, one in four equal to the prediction 1.
    assert ledgers[0].totals() == {key(GOOD): Reward(800, 200.0)}


# --- the router in process -----------------------------------------------------------------


def request_info(payload: Any = None) -> RequestInfo:
    return RequestInfo("/v1/predict", [], payload or {"instances": []})


def test_router_is_a_router_and_survives_pickling(two_arms: list[ServedModel]) -> None:
    router = SelectorRouter.from_spec(two_arms, SelectorSpec(kind=SelectorKind.AB, seed=2))
    assert isinstance(router, Router)
    assert list(router.models) == two_arms
    copy = pickle.loads(pickle.dumps(router))  # what a worker process receives
    chosen = Counter(copy.select(request_info()).generation for _ in range(2000))
    assert set(chosen) == {GOOD, BAD}
    assert sum(copy.selected) == 2000
    assert copy.shadows(copy.models[0]) == ()


def test_router_refuses_arms_it_cannot_route(two_arms: list[ServedModel], pipeline: Any) -> None:
    spec = SelectorSpec(kind=SelectorKind.LATEST)
    with pytest.raises(ServingError, match="at least one"):
        SelectorRouter([], spec)
    with pytest.raises(ServingError, match="twice"):
        SelectorRouter([two_arms[0], two_arms[0]], spec)
    other = ServedModel.from_estimator(pipeline, name="other", release="1.0.0", backend="sklearn")
    with pytest.raises(ServingError, match="one name"):
        SelectorRouter([two_arms[0], other], spec)
    with pytest.raises(ServingError, match="not among"):
        SelectorRouter(two_arms, SelectorSpec(kind=SelectorKind.PINNED, model="9.9.9"))


def test_router_learns_from_the_store_and_restarts_from_it(
    two_arms: list[ServedModel], store_url: str
) -> None:
    url = store_url
    spec = SelectorSpec(kind=SelectorKind.THOMPSON, seed=4)
    router = SelectorRouter.from_spec(
        two_arms, spec, reward_source=url, refresh_interval=3600, reward_lag=0
    )
    router.start()
    try:
        before = Counter(router.select(request_info()).generation for _ in range(1000))
        assert 400 < before[GOOD] < 600  # no outcomes yet: a coin toss
        store = PredictionStore(url)
        log_and_answer(
            store,
            [(f"g{i}", GOOD, 1, 1 if i < 45 else 0) for i in range(50)]
            + [(f"b{i}", BAD, 0, 1 if i < 30 else 0) for i in range(50)],
        )
        router.refresh()
        after = Counter(router.select(request_info()).generation for _ in range(1000))
        assert after[GOOD] > 950
    finally:
        router.stop()
    restarted = SelectorRouter.from_spec(two_arms, spec, reward_source=url, reward_lag=0)
    restarted.start()
    try:
        assert restarted.selector.rewards == {
            key(GOOD): Reward(50, 45.0),
            key(BAD): Reward(50, 20.0),
        }
        again = Counter(restarted.select(request_info()).generation for _ in range(1000))
        assert again[GOOD] > 950
        stats = {s["generation"]: s for s in restarted.arm_stats()}
        assert stats[GOOD]["evaluated"] == 50 and stats[GOOD]["reward"] == 45.0
        assert stats[GOOD]["selected"] == again[GOOD]
    finally:
        restarted.stop()


def test_router_without_a_store_keeps_its_priors(two_arms: list[ServedModel]) -> None:
    router = SelectorRouter.from_spec(two_arms, SelectorSpec(kind=SelectorKind.EPSILON_GREEDY))
    router.start(None)
    assert router.refresh() == {}
    router.stop()
    assert router.select(request_info()) in two_arms


def test_router_fails_over_only_where_the_selector_does(two_arms: list[ServedModel]) -> None:
    bad, good = two_arms
    router = SelectorRouter.from_spec(two_arms, SelectorSpec(kind=SelectorKind.LATEST))
    assert router.select(request_info()) is bad
    assert router.fallback_for(bad, RuntimeError("x")) is good
    router.report_error(bad, RuntimeError("x"))
    assert router.select(request_info()) is good
    assert router.fallback_for(good, RuntimeError("y")) is None  # nothing left
    assert router.errors == [1, 0]
    pinned = SelectorRouter.from_spec(two_arms, SelectorSpec(kind=SelectorKind.PINNED))
    assert pinned.fallback_for(bad, RuntimeError("x")) is None


# --- real servers --------------------------------------------------------------------------

LAUNCHER = '''
"""Serve a SelectorRouter over pickled estimators, from a JSON config (test helper)."""
import dataclasses, json, logging, pickle, sys

from mlcycle.serve.app import ServeOptions
from mlcycle.serve.model import ServedModel
from mlcycle.serve.predictor import Predictor
from mlcycle.serve.router import SelectorRouter
from mlcycle.serve.server import serve
from mlcycle.spec.model import SelectorKind, SelectorSpec


class Broken(Predictor):
    """A generation whose every prediction fails."""

    backend = "broken"

    def __init__(self, inner):
        self.task, self.classes = inner.task, inner.classes
        self.has_probabilities = inner.has_probabilities

    def predict(self, rows):
        raise RuntimeError("this generation is broken")


def main():
    config = json.load(open(sys.argv[1]))
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    models = []
    for arm in config["arms"]:
        with open(arm["path"], "rb") as f:
            estimator = pickle.load(f)
        model = ServedModel.from_estimator(
            estimator, name=config["name"], features=config["features"],
            release=arm["release"], generation=arm["generation"], backend="sklearn",
        )
        if arm.get("broken"):
            model = dataclasses.replace(model, predictor=Broken(model.predictor))
        models.append(model)
    selector = dict(config["selector"])
    kind = SelectorKind(selector.pop("kind"))
    spec = SelectorSpec(kind=kind, **selector)
    router = SelectorRouter.from_spec(
        models, spec, refresh_interval=config["refresh_interval"], reward_lag=0
    )
    serve(router, port=config["port"], store_url=config["store"],
          options=ServeOptions(log_interval=0.1, log_level="info"))


# The prediction log writer is a spawned process, which imports this module again.
if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def model_files(
    tmp_path_factory: pytest.TempPathFactory, pipeline: Any, constant: Any
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arms")
    return {
        "good": save_pickle(pipeline, root / "good.pkl"),
        "bad": save_pickle(constant, root / "bad.pkl"),
    }


@pytest.fixture
def start_router_server(
    tmp_path: Path, model_files: dict[str, Path], features: list[str]
) -> Iterator[Callable[..., Server]]:
    """Start a server for a selector over arms [(model file key, generation, broken?)]."""
    script = tmp_path / "launch_router.py"
    script.write_text(LAUNCHER)
    store = tmp_path / "store.db"
    running: list[Server] = []

    def start(selector: dict[str, Any], arms: list[tuple[str, int, bool]]) -> Server:
        port = free_port()
        config = {
            "name": NAME,
            "features": features,
            "port": port,
            "store": f"sqlite:///{store}",
            "refresh_interval": 0.2,
            "selector": selector,
            "arms": [
                {"path": str(model_files[k]), "release": RELEASE, "generation": g, "broken": b}
                for k, g, b in arms
            ],
        }
        config_path = tmp_path / f"router-{port}.json"
        config_path.write_text(json.dumps(config))
        log_path = tmp_path / f"server-{port}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, str(script), str(config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        server = Server(process, port, store, log_path)
        running.append(server)
        wait_ready(server)
        return server

    yield start
    for server in running:
        if server.process.poll() is None:
            server.stop()


def metric_samples(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = server.get("/metrics")
    assert reply.status == 200
    out = {}
    for family in text_string_to_metric_families(reply.raw.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def arm_value(server: Server, name: str, generation: int) -> float:
    labels = (("generation", str(generation)), ("model", NAME), ("release", RELEASE))
    return metric_samples(server).get((f"mlcycle_{name}", labels), 0.0)


def evaluated_total(server: Server) -> float:
    return sum(arm_value(server, "arm_evaluated_predictions", g) for g in (GOOD, BAD))


def wait_for(condition: Callable[[], bool], what: str, server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{server.output()[-3000:]}")


def predict_one(server: Server, X: Any, row: int) -> dict[str, Any]:
    reply = server.post("/v1/predict", {"instances": rows_of(X, row, row + 1)})
    assert reply.status == 200, reply.raw
    body: dict[str, Any] = reply.json
    return body


@pytest.mark.slow
def test_a_bandit_moves_traffic_to_the_better_model_and_keeps_it_after_a_restart(
    start_router_server: Callable[..., Server], cancer: tuple[Any, Any]
) -> None:
    X, y = cancer
    server = start_router_server(
        {"kind": "thompson", "seed": 3}, [("bad", BAD, False), ("good", GOOD, False)]
    )
    rng = random.Random(0)
    sent = 0
    served: Counter[int] = Counter()
    for _ in range(8):
        served = Counter()
        feedback = []
        for _ in range(30):
            row = rng.randrange(len(X))
            body = predict_one(server, X, row)
            assert body["model"]["name"] == NAME
            assert body["model"]["release"] == RELEASE
            served[body["model"]["generation"]] += 1
            feedback.append({"id": body["ids"][0], "outcome": int(y.iloc[row])})
        reply = server.post("/v1/feedback", feedback)
        assert reply.status == 200 and reply.json["ok"], reply.raw
        sent += len(feedback)
        wait_for(
            lambda expected=sent: evaluated_total(server) >= expected,
            "the rewards of every outcome",
            server,
        )
    assert served[GOOD] >= 27, served  # the last round: (almost) all on the better model
    requests = arm_value(server, "arm_requests_total", GOOD) + arm_value(
        server, "arm_requests_total", BAD
    )
    assert requests == sent
    assert arm_value(server, "arm_reward_mean", GOOD) > 0.85
    assert arm_value(server, "arm_reward_mean", BAD) < 0.6
    evaluated = {g: arm_value(server, "arm_evaluated_predictions", g) for g in (GOOD, BAD)}
    server.stop()

    again = start_router_server(
        {"kind": "thompson", "seed": 3}, [("bad", BAD, False), ("good", GOOD, False)]
    )
    assert {g: arm_value(again, "arm_evaluated_predictions", g) for g in (GOOD, BAD)} == evaluated
    after = Counter(predict_one(again, X, i)["model"]["generation"] for i in range(30))
    assert after[GOOD] >= 27, after


@pytest.mark.slow
def test_shadow_answers_are_logged_never_returned(
    start_router_server: Callable[..., Server], cancer: tuple[Any, Any], pipeline: Any
) -> None:
    X, y = cancer
    server = start_router_server({"kind": "shadow"}, [("bad", BAD, False), ("good", GOOD, False)])
    reply = server.post("/v1/predict", {"instances": rows_of(X, 0, 100)})
    assert reply.status == 200
    body = reply.json
    assert body["model"]["generation"] == GOOD
    assert body["predictions"] == pipeline.predict(X.iloc[:100]).tolist()
    ids = body["ids"]
    feedback = [{"id": pid, "outcome": int(y.iloc[i])} for i, pid in enumerate(ids)]
    assert server.post("/v1/feedback", feedback).json["ok"]
    wait_for(
        lambda: arm_value(server, "arm_evaluated_predictions", BAD) >= 100,
        "the shadow's rewards",
        server,
    )
    assert arm_value(server, "arm_evaluated_predictions", GOOD) == 100
    expected_bad = float((y.iloc[:100] == 0).sum())
    assert arm_value(server, "arm_reward", BAD) == expected_bad
    assert arm_value(server, "arm_mirrored_requests_total", BAD) == 1
    assert arm_value(server, "arm_requests_total", BAD) == 0
    server.stop()

    assert server.store is not None
    store = PredictionStore(f"sqlite:///{server.store}")
    shadow_rows = store.joined(generation=BAD, with_outcome=False)
    assert sorted(r.id for r in shadow_rows) == sorted(shadow_id(pid, 1) for pid in ids)
    assert {r.prediction for r in shadow_rows} == {0}
    # A shadow id is not a prediction id a client may give feedback for.
    assert all(r.id not in ids for r in shadow_rows)


@pytest.mark.slow
def test_fallback_serves_a_new_generation_once_it_proved_itself(
    start_router_server: Callable[..., Server], cancer: tuple[Any, Any]
) -> None:
    X, y = cancer
    # The good model is the new generation here; the old one answers until 20 outcomes
    # of the new one's mirrored predictions arrived.
    server = start_router_server(
        {"kind": "fallback", "min_predictions": 20},
        [("good", 3, False), ("bad", BAD, False)],
    )
    first = [predict_one(server, X, i) for i in range(20)]
    assert {b["model"]["generation"] for b in first} == {BAD}
    feedback = [{"id": b["ids"][0], "outcome": int(y.iloc[i])} for i, b in enumerate(first)]
    assert server.post("/v1/feedback", feedback).json["ok"]
    wait_for(
        lambda: predict_one(server, X, 0)["model"]["generation"] == 3,
        "the new generation to serve",
        server,
    )
    assert arm_value(server, "arm_evaluated_predictions", 3) >= 20


@pytest.mark.slow
def test_a_generation_that_errors_is_taken_out_without_failing_a_request(
    start_router_server: Callable[..., Server], cancer: tuple[Any, Any], pipeline: Any
) -> None:
    X, _ = cancer
    server = start_router_server(
        {"kind": "fallback", "min_predictions": 0},
        [("good", BAD, True), ("good", GOOD, False)],
    )
    for i in range(10):
        body = predict_one(server, X, i)
        assert body["model"]["generation"] == GOOD
        assert body["predictions"] == pipeline.predict(X.iloc[i : i + 1]).tolist()
    assert arm_value(server, "arm_errors_total", BAD) == 1  # tried once, then taken out
    assert arm_value(server, "arm_requests_total", BAD) == 0
    assert arm_value(server, "arm_requests_total", GOOD) == 10
    state = (
        "mlcycle_arm_state",
        (
            ("generation", str(BAD)),
            ("model", NAME),
            ("release", RELEASE),
            ("state", "failed"),
        ),
    )
    assert metric_samples(server)[state] == 1
    assert "taken out of the rotation" in server.output()


def test_arm_metrics_add_traffic_and_take_the_freshest_rewards(
    two_arms: list[ServedModel],
) -> None:
    from mlcycle.serve.metrics import Metrics, render

    snapshots = []
    for selected, evaluated in ((30, 10), (50, 12)):  # two workers, one store
        router = SelectorRouter.from_spec(two_arms, SelectorSpec(kind=SelectorKind.LATEST))
        router.selected = [selected, 0]
        router._totals = {key(BAD): Reward(evaluated, evaluated / 2)}
        metrics = Metrics()
        metrics.arms = router.arm_stats()
        snapshots.append(metrics.snapshot())
    samples = {}
    for family in text_string_to_metric_families(render(snapshots)):
        for sample in family.samples:
            samples[(sample.name, sample.labels.get("generation"), sample.labels.get("state"))] = (
                sample.value
            )
    assert samples[("mlcycle_arm_requests_total", str(BAD), None)] == 80  # summed
    assert samples[("mlcycle_arm_requests_total", str(GOOD), None)] == 0
    assert samples[("mlcycle_arm_evaluated_predictions", str(BAD), None)] == 12  # not summed
    assert samples[("mlcycle_arm_reward", str(BAD), None)] == 6
    assert samples[("mlcycle_arm_reward_mean", str(BAD), None)] == 0.5
    assert ("mlcycle_arm_reward_mean", str(GOOD), None) not in samples  # no outcomes yet
    assert samples[("mlcycle_arm_state", str(BAD), "active")] == 2
    assert samples[("mlcycle_arm_state", str(GOOD), "standby")] == 2
