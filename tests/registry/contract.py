"""The contract every Registry backend honours; a backend's test class supplies `make_registry`.

class TestMyRegistry(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path):
        return lambda: MyRegistry(...)   # each call opens the same store anew
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mlcycle.errors import ExitCode, IntegrityError, RegistryError, UsageError
from mlcycle.registry import CURRENT, LATEST, Entry, ModelRef, Registry, Status
from mlcycle.registry.manifests import FOLLOW, selector_document
from mlcycle.spec.model import Procurement, SelectorSpec
from tests.registry.conftest import (
    DATA,
    GATE_FAILED,
    GATE_PASSED,
    fit_logit,
    register,
    same_predictions,
)

LATEST_SELECTOR = selector_document(SelectorSpec())


class RegistryContract:
    """Behaviour of the Registry interface, whatever stores it."""

    @pytest.fixture
    def make_registry(self) -> Callable[[], Registry]:
        raise NotImplementedError("a backend's test class supplies make_registry")

    @pytest.fixture
    def registry(self, make_registry: Callable[[], Registry]) -> Registry:
        return make_registry()

    # --- register and read back --------------------------------------------------------

    def test_register_then_get_round_trip(self, registry: Registry, logit: Any) -> None:
        entry = register(registry, logit, extra={"note": "first"})
        assert entry.ref == ModelRef("0.1.0", 1)
        assert (entry.project, entry.release, entry.generation) == (registry.project, "0.1.0", 1)
        assert entry.status is Status.CANDIDATE
        assert entry.metrics == {"accuracy": 0.95, "roc_auc": 0.99}
        assert entry.gate == GATE_PASSED
        assert entry.data == DATA
        assert entry.spec_hash == "ab" * 32
        assert entry.git_commit == "0123456789abcdef0123456789abcdef01234567"
        assert entry.procurement is Procurement.UNATTENDED
        assert entry.extra == {"note": "first"}
        assert entry.artifact.format == "skops"
        assert len(entry.artifact.sha256) == 64 and entry.artifact.size > 0
        assert registry.get("0.1.0/1") == entry
        assert registry.get(ModelRef("0.1.0", 1)) == entry
        assert registry.entries() == [entry]
        assert same_predictions(registry.load_model(entry), logit)

    def test_every_entry_records_where_it_came_from(self, registry: Registry, logit: Any) -> None:
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)
        entry = register(registry, logit, git_commit=None, procurement=Procurement.INTERACTIVE)
        created = dt.datetime.fromisoformat(entry.created_at)
        assert created.utcoffset() == dt.timedelta(0)
        assert before <= created <= dt.datetime.now(dt.UTC)
        user, _, host = entry.created_by.partition("@")
        assert user and host
        assert set(entry.versions) == {"python", "sklearn", "numpy", "pandas", "skops", "mlcycle"}
        assert entry.git_commit is None
        assert entry.procurement is Procurement.INTERACTIVE
        assert registry.get(entry.ref) == entry

    def test_records_are_stored_as_plain_json(self, registry: Registry, logit: Any) -> None:
        entry = register(
            registry,
            logit,
            metrics={"accuracy": np.float64(0.9), "log_loss": float("nan"), "n": np.int64(3)},
            data={"window": (np.int64(0), np.int64(9)), "until": dt.date(2026, 11, 22)},
        )
        again = registry.get(entry.ref)
        assert again == entry
        assert again.metrics["accuracy"] == 0.9 and again.metrics["n"] == 3.0
        assert math.isnan(again.metrics["log_loss"])
        assert again.data == {"window": [0, 9], "until": "2026-11-22"}
        assert entry.as_dict()["metrics"]["log_loss"] is None

    def test_generations_count_per_release(self, registry: Registry, logit: Any) -> None:
        refs = [
            register(registry, logit, release=release).ref
            for release in ("0.1.0", "0.1.0", "0.2.0", "dev", "0.1.0", "dev")
        ]
        assert [str(r) for r in refs] == [
            "0.1.0/1",
            "0.1.0/2",
            "0.2.0/1",
            "dev/1",
            "0.1.0/3",
            "dev/2",
        ]
        assert [str(e.ref) for e in registry.entries()] == [
            "dev/1", "dev/2", "0.1.0/1", "0.1.0/2", "0.1.0/3", "0.2.0/1",
        ]  # fmt: skip
        assert registry.releases() == ["dev", "0.1.0", "0.2.0"]

    def test_releases_sort_by_semver_precedence(self, registry: Registry, logit: Any) -> None:
        for release in ("0.10.0", "1.0.0", "0.2.0", "1.0.0-rc.1", "dev"):
            register(registry, logit, release=release)
        assert registry.releases() == ["dev", "0.2.0", "0.10.0", "1.0.0-rc.1", "1.0.0"]

    def test_explicit_generation(self, registry: Registry, logit: Any) -> None:
        assert register(registry, logit, generation=5).generation == 5
        assert register(registry, logit).generation == 6
        with pytest.raises(RegistryError) as info:
            register(registry, logit, generation=5)
        assert str(info.value) == f"{registry.project} 0.1.0/5 is already in the registry"
        assert [e.generation for e in registry.entries()] == [5, 6]

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"release": "v0.1.0"}, "release: 'v0.1.0' is not a release"),
            ({"release": "latest"}, "release: 'latest' is not a release"),
            ({"status": "approved"}, "status 'approved' is not one of candidate, rejected"),
            ({"procurement": "auto"}, "procurement 'auto' is not one of unattended, interactive"),
            ({"metrics": {"accuracy": "high"}}, "metric 'accuracy' is 'high', not a number"),
            ({"data": {"when": object()}}, "data.when: object is not JSON data"),
            ({"generation": 0}, "generation 0 is not 1 or more"),
            ({"gate": GATE_FAILED}, "the gate record says the model failed"),
        ],
    )
    def test_bad_arguments_are_usage_errors(
        self, registry: Registry, logit: Any, overrides: dict, message: str
    ) -> None:
        with pytest.raises(UsageError) as info:
            register(registry, logit, **overrides)
        assert message in str(info.value)
        assert info.value.exit_code == ExitCode.USAGE
        assert registry.entries() == []

    def test_undeclared_custom_code_is_refused_and_nothing_is_stored(
        self, registry: Registry, custom_model: Any
    ) -> None:
        # Behaviour changed (issue 10): no pickle fallback any more. A custom class is
        # stored as skops when the registry's trust policy names it (test_trust.py).
        with pytest.raises(
            RegistryError, match=r"does not trust: tests\.registry\.custom\.Doubler"
        ):
            register(registry, custom_model)
        assert registry.entries() == []

    def test_remove_entry_removes_that_generation_only(
        self, registry: Registry, logit: Any
    ) -> None:
        first = register(registry, logit, release="0.1.0", make_current=True)
        second = register(registry, logit, release="0.2.0", make_current=True)
        third = register(registry, logit, release="0.2.0", make_current=True)
        assert registry.remove_entry(third.ref) == third
        assert [e.ref for e in registry.entries()] == [first.ref, second.ref]
        current = registry.current()
        assert current is not None and current.ref == second.ref
        assert registry.remove_entry(third.ref) is None
        registry.remove_entry(second.ref)
        assert registry.releases() == ["0.1.0"]
        current = registry.current()
        assert current is not None and current.ref == first.ref

    # --- queries -----------------------------------------------------------------------

    def test_latest(self, registry: Registry, logit: Any) -> None:
        assert registry.latest() is None
        dev = register(registry, logit, release="dev")
        assert registry.latest() == dev  # only dev trainings so far
        first = register(registry, logit, release="0.1.0")
        second = register(registry, logit, release="0.1.0")
        rejected = register(registry, logit, release="0.1.0", status="rejected", gate=GATE_FAILED)
        register(registry, logit, release="dev")
        assert registry.latest() == second  # a release outranks dev; rejected is skipped
        assert registry.latest("0.1.0") == second
        assert registry.latest("0.1.0", status=None) == rejected
        assert registry.latest(status="rejected") == rejected
        assert registry.latest("0.9.0") is None
        assert registry.get("0.1.0") == second
        assert registry.get(LATEST) == second
        assert registry.get("0.1.0/1") == first

    def test_best(self, registry: Registry, logit: Any) -> None:
        assert registry.best("accuracy") is None
        a = register(registry, logit, metrics={"accuracy": 0.90, "log_loss": 0.30})
        b = register(registry, logit, metrics={"accuracy": 0.95, "log_loss": 0.35})
        c = register(registry, logit, release="0.2.0", metrics={"accuracy": 0.95})
        register(registry, logit, metrics={"accuracy": float("nan"), "log_loss": 0.1},
                 release="0.3.0", status="rejected", gate=GATE_FAILED)  # fmt: skip
        register(registry, logit, release="0.3.0", metrics={"accuracy": float("nan")})
        assert registry.best("accuracy") == c  # a tie goes to the newest
        assert registry.best("accuracy", release="0.1.0") == b
        assert registry.best("log_loss", higher_is_better=False) == a
        assert registry.best("log_loss", higher_is_better=False, status=None).release == "0.3.0"
        assert registry.best("f1") is None

    def test_unknown_references_name_what_exists(self, registry: Registry, logit: Any) -> None:
        register(registry, logit)
        for text, message in [
            ("0.1.0/7", f"{registry.project}: no model 0.1.0/7 in the registry"),
            ("0.2.0", "release 0.2.0: no candidate model in the registry"),
            ("current", f"{registry.project}: no current model"),
        ]:
            with pytest.raises(RegistryError) as info:
                registry.get(text)
            assert str(info.value) == message
            assert info.value.exit_code == ExitCode.RUNTIME
        with pytest.raises(RegistryError) as info:
            registry.get("0.2.0/1")
        assert info.value.hint == "releases in the registry: 0.1.0"
        # `dev` (development trainings of `mlcycle train`) is not listed as a release.
        register(registry, logit, release="dev")
        with pytest.raises(RegistryError) as info:
            registry.get("0.2.0/1")
        assert info.value.hint == ("releases in the registry: 0.1.0; development trainings: dev")
        # A release whose models may not serve says why, not that it has none.
        register(registry, logit, release="0.3.0", status="rejected", gate=GATE_FAILED)
        register(registry, logit, release="0.3.0")
        registry.retire("0.3.0/2")
        with pytest.raises(RegistryError) as info:
            registry.get("0.3.0")
        assert str(info.value) == (
            "release 0.3.0: no model that may serve (0.3.0/1 was rejected by its validation "
            "gate; 0.3.0/2 is retired (`mlcycle retire`))"
        )

    def test_runs_are_kept_whole_and_in_order(self, registry: Registry) -> None:
        # Issue 16, item 2: every backend keeps its project's training runs.
        from mlcycle.registry.runs import Outcome, Run

        store = registry.runs()
        assert store.runs() == []
        first = Run(
            id="20260101T000000Z-aaaaaa",
            project=registry.project,
            purpose="train",
            started_at="2026-01-01T00:00:00Z",
            finished_at="2026-01-01T00:01:00Z",
            outcome=Outcome.FAILED,
            error="no rows",
        )
        second = Run(
            id="20260102T000000Z-bbbbbb",
            project=registry.project,
            purpose="release",
            started_at="2026-01-02T00:00:00Z",
            finished_at="2026-01-02T00:01:00Z",
            outcome=Outcome.REGISTERED,
            release="1.0.0",
            generation=1,
            metrics={"accuracy": 0.9, "roc_auc": float("nan")},
            tuning={"trials": [{"params": {"C": 0.1}, "mean_score": 0.8, "rank": 1}]},
        )
        store.save(second)
        store.save(first)
        assert [r.id for r in store.runs()] == [first.id, second.id]
        store.save(second.with_tracking("mlflow", {"run_id": "abc"}))  # replaced, whole
        (_, again) = store.runs()
        assert again.tracking == {"mlflow": {"run_id": "abc"}} and again.ref == "1.0.0/1"
        assert again.metrics["accuracy"] == 0.9 and again.candidates == 1

    def test_runs_survive_reopening(self, make_registry: Callable[[], Registry]) -> None:
        # A shared registry shares its runs: another process opening it sees them.
        from mlcycle.registry.runs import Outcome, Run

        run = Run(
            id="20260103T000000Z-cccccc",
            project=make_registry().project,
            purpose="update",
            started_at="2026-01-03T00:00:00Z",
            finished_at="2026-01-03T00:01:00Z",
            outcome=Outcome.REJECTED,
            gate={"passed": False},
        )
        make_registry().runs().save(run)
        (again,) = make_registry().runs().runs()
        assert again == run

    def test_data_rejections_are_kept_in_order(self, make_registry: Callable[[], Registry]) -> None:
        # Issue fixes/update: a refusal of new rows is kept by every backend, so that
        # `update` waits for new rows instead of refusing the same ones at every run.
        registry = make_registry()
        assert registry.data_rejections() == []
        first = {"against": "1.0.0/1", "rows": 40, "data": {"watermark": 10}, "anomalies": []}
        second = {
            "against": "1.0.0/2",
            "rows": 7,
            "data": {"ordinal": "t", "watermark": 17},
            "anomalies": [{"condition": "plan: new column", "value": float("nan")}],
            "spec_hash": "abc",
        }
        registry.record_data_rejection(first)
        registry.record_data_rejection(second)
        kept = make_registry().data_rejections()  # reopened: kept by the store itself
        assert [r["against"] for r in kept] == ["1.0.0/1", "1.0.0/2"]
        assert kept[1]["data"] == {"ordinal": "t", "watermark": 17}
        assert kept[1]["anomalies"] == [{"condition": "plan: new column", "value": None}]
        assert kept[1]["spec_hash"] == "abc" and kept[0]["rows"] == 40
        assert all(r["at"] and r["by"] for r in kept)

    def test_empty_registry(self, registry: Registry) -> None:
        assert registry.entries() == []
        assert registry.releases() == []
        assert registry.current() is None
        with pytest.raises(RegistryError) as info:
            registry.get(LATEST)
        assert info.value.hint == "the registry is empty; train or release a model first"

    # --- current -----------------------------------------------------------------------

    def test_current(self, registry: Registry, logit: Any) -> None:
        first = register(registry, logit, make_current=True)
        assert registry.current() == first
        second = register(registry, logit)
        assert registry.current() == first  # registering alone does not move it
        assert registry.set_current("latest") == second
        assert registry.current() == second == registry.get(CURRENT)
        assert registry.set_current(ModelRef("0.1.0", 1)) == first
        assert registry.current() == first

    def test_a_rejected_entry_is_never_current(self, registry: Registry, logit: Any) -> None:
        good = register(registry, logit, make_current=True)
        bad = register(registry, logit, status=Status.REJECTED, gate=GATE_FAILED, make_current=True)
        assert bad.status is Status.REJECTED
        assert registry.current() == good
        with pytest.raises(UsageError) as info:
            registry.set_current(bad.ref)
        assert str(info.value) == (
            f"{registry.project} 0.1.0/2 was rejected by its validation gate; "
            "a rejected model can never be current"
        )
        assert info.value.exit_code == ExitCode.USAGE
        assert registry.current() == good
        assert registry.latest() == good

    # --- integrity ---------------------------------------------------------------------

    def test_a_tampered_artifact_is_refused(self, registry: Registry, logit: Any) -> None:
        entry = register(registry, logit)
        path = registry.artifact_path(entry)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(IntegrityError) as info:
            registry.load_model(entry)
        message = str(info.value)
        assert message.startswith(
            f"{path}: SHA-256 mismatch: the registry recorded {entry.artifact.sha256}"
        )
        assert message.endswith(f"the file has {__import__('hashlib').sha256(data).hexdigest()}")
        assert info.value.exit_code == ExitCode.RUNTIME

    # --- removal and persistence -------------------------------------------------------

    def test_remove_release(self, registry: Registry, logit: Any) -> None:
        keep = register(registry, logit, release="0.1.0", make_current=True)
        doomed = [register(registry, logit, release="0.2.0", make_current=True) for _ in range(2)]
        assert registry.current() == doomed[-1]
        removed = registry.remove_release("0.2.0")
        assert removed == doomed
        assert registry.entries() == [keep]
        assert registry.releases() == ["0.1.0"]
        assert registry.latest("0.2.0") is None
        assert registry.current() == keep  # the entry current before the release came back
        with pytest.raises(RegistryError):
            registry.get("0.2.0/1")
        assert registry.remove_release("0.2.0") == []
        # The release can be made again; its generations start over.
        assert register(registry, logit, release="0.2.0").ref == ModelRef("0.2.0", 1)

    def test_removing_the_only_current_release_clears_current(
        self, registry: Registry, logit: Any
    ) -> None:
        register(registry, logit, release="0.1.0", make_current=True)
        registry.remove_release("0.1.0")
        assert registry.current() is None
        assert registry.entries() == []

    def test_entries_survive_reopening(
        self, make_registry: Callable[[], Registry], logit: Any
    ) -> None:
        first = make_registry()
        entries = [register(first, fit_logit(C), release="0.1.0", make_current=C == 1.0)
                   for C in (0.5, 1.0)]  # fmt: skip
        entries.append(register(first, logit, release="dev"))
        again = make_registry()
        assert again.entries() == sorted(entries, key=lambda e: (e.release != "dev", e.generation))
        assert again.current() == entries[1]
        assert isinstance(again.current(), Entry)
        loaded = again.load_model(again.get("0.1.0/1"))
        assert loaded[-1].C == 0.5

    # --- what the registry answers beside its entries ------------------------------------

    def test_manifests_are_kept_by_the_registry(
        self, make_registry: Callable[[], Registry], logit: Any
    ) -> None:
        registry = make_registry()
        assert registry.manifests().active() is None
        assert registry.manifests().history() == []
        register(registry, logit)
        first = registry.manifests().publish(
            release="0.1.0", selector=LATEST_SELECTOR, mode=FOLLOW, arms=1
        )
        again = make_registry().manifests()  # another process sees what was published
        assert again.active() == first
        assert [m.number for m in again.history()] == [1]

    def test_the_change_token_moves_on_every_change_and_only_then(
        self, make_registry: Callable[[], Registry], logit: Any
    ) -> None:
        registry = make_registry()
        quiet = registry.change_token()
        assert registry.change_token() == quiet  # nothing changed: nothing to read again
        seen = [quiet]
        register(registry, logit)
        seen.append(make_registry().change_token())
        register(registry, logit)  # a new generation of the same release
        seen.append(make_registry().change_token())
        registry.manifests().publish(release="0.1.0", selector=LATEST_SELECTOR, mode=FOLLOW, arms=1)
        seen.append(make_registry().change_token())
        registry.remove_entry("0.1.0/2")
        seen.append(make_registry().change_token())
        assert len(set(seen)) == len(seen), seen
