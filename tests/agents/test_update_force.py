"""`mlcycle update --force`: a generation now, on the data there is."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from mlcycle import api
from tests.spec.helpers import assert_clean_failure_output, cli


def test_force_without_new_rows_retrains_on_every_row(adaptive: Callable[[], Path]) -> None:
    # The adaptive template learns from increments; with none, --force still means
    # "train a generation now": from scratch on every row, judged by the gate.
    root = adaptive()
    result = api.update(root, force=True)
    assert result.forced and result.retrained
    assert result.data_mode == "all"
    assert result.reason == (
        "forced with --force: no rows after seq 569, so retrained on every row"
    )
    procured = result.procured
    assert procured is not None and procured.entry is not None
    assert str(procured.entry.ref) == "0.1.0/2"
    assert procured.training.n_rows == 569
    assert procured.training.warm_started is False
    assert procured.entry.data["rows"] == 569
    assert procured.entry.data["window"]["lower"] is None
    assert procured.entry.extra["update"]["forced"] is True
    assert procured.entry.extra["update"]["data"] == "all"
    assert str(api.models(root).current) == "0.1.0/2"

    # The CLI says the same, and exits 0: a forced generation is not a failure.
    again = cli("update", "--force", cwd=root)
    assert again.code == 0, again.output
    assert (
        "trained 0.1.0/3 (forced with --force: no rows after seq 569, so retrained on every "
        "row) on 569 rows (all)"
    ) in " ".join(again.stdout.split())
    assert "published 0.1.0/3 as the current model" in again.stdout


def test_force_with_no_rows_at_all_is_a_usage_error(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    with sqlite3.connect(root / "data" / "events.db") as db:
        db.execute("DELETE FROM events")
    forced = cli("update", "--force", cwd=root)
    assert forced.code == 2, forced.output
    assert "error: live: the data source has no rows, so --force has nothing to train on" in (
        " ".join(forced.stderr.split())
    )
    assert "hint: load rows into the source declared in `data.source`" in forced.stderr
    assert_clean_failure_output(forced)
    assert [str(e.ref) for e in api.models(root).entries] == ["0.1.0/1"]


def test_a_trigger_with_an_empty_increment_waits_for_rows(adaptive: Callable[[], Path]) -> None:
    # The schedule fires (the model is older than a second) but `update.data: increment`
    # has no row after the watermark: the agent waits, exit 0 — a cron job must not fail
    # on every run until rows come — and says what it waits for and why it looked.
    root = adaptive()
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text().replace("every: 7d", "every: 1s"))
    (released,) = api.models(root).entries
    made = dt.datetime.fromisoformat(released.created_at.replace("Z", "+00:00")).timestamp()
    while time.time() - made <= 1.0:
        time.sleep(0.05)  # the schedule trigger needs a model older than 1 s

    result = api.update(root)
    assert not result.retrained and not result.forced
    assert result.waiting_for_rows == "no rows after seq 569, the watermark of 0.1.0/1"
    assert [c.name for c in result.checks if c.fired] == ["every"]
    assert result.as_dict()["waiting_for_rows"] == result.waiting_for_rows

    human = cli("update", cwd=root)
    assert human.code == 0, human.output
    assert (
        "no new generation: waiting for new rows (no rows after seq 569, the watermark of "
        "0.1.0/1; it fired on every:"
    ) in " ".join(human.stdout.split())
    assert [str(e.ref) for e in api.models(root).entries] == ["0.1.0/1"]
