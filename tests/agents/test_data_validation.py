"""`update` and `train` check new rows against the current generation's data (issue 14.6).

A released adaptive project (real git, registry and SQLite data), in process
through the real error funnel.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.data.validation import DataRejectedError
from tests.agents.test_update_and_production import append_rows
from tests.spec.helpers import cli


def refs(root: Path) -> list[str]:
    return [str(e.ref) for e in api.models(root).entries]


def sql(root: Path, *statements: str) -> None:
    with sqlite3.connect(root / "data" / "events.db") as db:
        for statement in statements:
            db.execute(statement)


def test_the_release_records_the_training_data_profile(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    (entry,) = api.models(root).entries
    columns = {c["name"]: c for c in entry.data["profile"]["columns"]}
    assert entry.data["profile"]["rows"] == 569
    assert columns["mean_radius"]["kind"] == "numeric"
    assert columns["mean_radius"]["min"] < columns["mean_radius"]["max"]
    assert columns["mean_radius"]["null_share"] == 0
    # The label too: new classes or a shifted range are anomalies as much as a feature's.
    assert columns["malignant"]["kind"] == "numeric"
    assert (columns["malignant"]["min"], columns["malignant"]["max"]) == (0, 1)


def test_update_refuses_shifted_rows_then_trains_on_good_ones(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    append_rows(root, 120)
    # A unit change upstream: radii arrive ten times larger.
    sql(root, "UPDATE events SET mean_radius = mean_radius * 10 WHERE seq > 569")
    refused = cli("update", cwd=root)
    assert refused.code == 3, refused.output
    assert "data validation (against the training data of 0.1.0/1)" in refused.stdout
    assert "mean_radius: out of range <= 0.1" in refused.stdout
    assert "120 of 120 values outside" in refused.stdout
    assert "data validation rejected 120 new rows against the training data of 0.1.0/1" in (
        refused.stderr
    )
    assert "Traceback" not in refused.output
    assert refs(root) == ["0.1.0/1"]  # nothing trained, nothing registered

    # The refusal is recorded: the next run waits for new rows instead of refusing the
    # same ones again, as it does after a gate rejection.
    again = cli("update", "--json", cwd=root)
    assert again.code == 0, again.output
    waiting = json.loads(again.stdout)
    assert waiting["retrained"] is False
    assert waiting["reason"].startswith(
        "waiting for new rows since data validation refused 120 rows against 0.1.0/1 "
        "(mean_radius: out of range <= 0.1; no rows after seq 689; it fired on new_rows"
    )
    (anomaly,) = waiting["waiting_since_data_rejection"]["anomalies"]
    assert anomaly["condition"] == "mean_radius: out of range <= 0.1"
    assert anomaly["value"] == 1.0
    # ... and the listings show it.
    for verb in ("models", "history"):
        shown = cli(verb, cwd=root)
        assert "rejected data" in shown.stdout, shown.output
        assert (
            "data validation refused 120 new rows (seq up to 689) against 0.1.0/1: "
            "mean_radius: out of range <= 0.1"
        ) in " ".join(shown.stdout.split())
        (kept,) = json.loads(cli(verb, "--json", cwd=root).stdout)["data_rejections"]
        assert (kept["against"], kept["rows"], kept["data"]["watermark"]) == ("0.1.0/1", 120, 689)

    # The feed is fixed: the spoiled rows are repaired and good ones arrive after them.
    sql(root, "UPDATE events SET mean_radius = mean_radius / 10 WHERE seq > 569")
    append_rows(root, 120)
    result = api.update(root)
    assert result.retrained and result.procured is not None
    assert result.procured.entry is not None and str(result.procured.entry.ref) == "0.1.0/2"
    assert refs(root) == ["0.1.0/1", "0.1.0/2"]


def test_update_and_train_refuse_new_rows_without_a_column(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    append_rows(root, 120)
    # The feed no longer sends a column (SQLite drops it from the old rows too: the
    # new rows are what is checked).
    sql(root, "ALTER TABLE events DROP COLUMN mean_texture")
    with pytest.raises(DataRejectedError) as refused:
        api.update(root)
    assert [a.condition for a in refused.value.anomalies] == ["mean_texture: missing column"]
    trained = cli("train", cwd=root)
    assert trained.code == 3, trained.output
    assert "mean_texture: missing column" in trained.stdout
    assert refs(root) == ["0.1.0/1"]


def test_validation_can_be_switched_off(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    spec = root / "lifecycle.yaml"
    spec.write_text(
        spec.read_text().replace(
            "  key: id # identifies", "  validation:\n    enabled: false\n  key: id # identifies"
        )
    )
    append_rows(root, 120)
    sql(root, "UPDATE events SET mean_radius = mean_radius * 10 WHERE seq > 569")
    result = api.update(root, force=True)
    assert result.procured is not None and result.procured.entry is not None
