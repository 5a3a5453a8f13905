"""The contract every data source honours; a source's test class supplies only `backend`.

class TestMySource(SourceContract):
    @pytest.fixture
    def make_backend(self):
        return MyBackend
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlcycle.data import (
    Dataset,
    Window,
    check_label,
    coerce_bound,
    count_new_rows,
    fetch_outcomes,
    load_dataset,
    next_window,
)
from mlcycle.errors import DataError, ExitCode, WindowError
from tests.data.conftest import Backend, events


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, description: str, total: float | None = None) -> None:
        self.events.append(("start", description))

    def advance(self, steps: float = 1) -> None:
        self.events.append(("advance", steps))

    def done(self) -> None:
        self.events.append(("done", None))


def seqs(dataset: Dataset) -> list[int]:
    assert dataset.ordinal is not None
    return [int(v) for v in dataset.ordinal]


class SourceContract:
    """Behaviour of a data source behind `load_dataset`, whatever stores the rows."""

    @pytest.fixture
    def make_backend(self) -> type[Backend]:
        raise NotImplementedError("a source's test class supplies make_backend")

    @pytest.fixture
    def backend(self, make_backend: type[Backend], tmp_path: Path) -> Backend:
        backend = make_backend(tmp_path)
        backend.write(events(1, 100))
        return backend

    # --- fetching ----------------------------------------------------------------------

    def test_full_fetch_is_ordered_and_aligned(self, backend: Backend) -> None:
        dataset = load_dataset(backend.spec())
        assert dataset.n_rows == 100
        assert seqs(dataset) == list(range(1, 101))
        # Default features: every column but label, key and ordinal, in the source's order.
        assert dataset.features == ("ts", "f1", "f2", "colour")
        assert dataset.y.name == "label"
        assert dataset.keys is not None
        assert list(dataset.keys) == [10 * s for s in range(1, 101)]
        assert list(dataset.X["f1"]) == [s * 0.5 for s in range(1, 101)]
        assert list(dataset.y) == [s % 2 for s in range(1, 101)]
        assert isinstance(dataset.X.index, pd.RangeIndex)
        info = dataset.info
        assert (info.ordinal, info.watermark, info.rows) == ("seq", 100, 100)
        assert info.reproducible is True and info.window == Window()
        assert type(info.watermark) is int  # plain Python, not numpy: JSON and SQL take it
        json.dumps(info.as_dict())

    def test_window_is_half_open(self, backend: Backend) -> None:
        dataset = load_dataset(backend.spec(), Window(10, 20))
        assert seqs(dataset) == list(range(10, 20))
        assert dataset.info.window == Window(10, 20)
        assert dataset.info.watermark == 19
        assert seqs(load_dataset(backend.spec(), Window(lower=95))) == list(range(95, 101))
        assert seqs(load_dataset(backend.spec(), Window(upper=4))) == [1, 2, 3]

    def test_string_bounds_are_converted(self, backend: Backend) -> None:
        dataset = load_dataset(backend.spec(), Window("10", "20"))
        assert seqs(dataset) == list(range(10, 20))
        assert dataset.info.window == Window(10, 20)
        assert coerce_bound(backend.spec(), " 42 ") == 42

    def test_declared_features_keep_their_order(self, backend: Backend) -> None:
        dataset = load_dataset(backend.spec(features=["f2", "f1"]))
        assert dataset.features == ("f2", "f1")
        assert list(dataset.X.columns) == ["f2", "f1"]

    def test_progress_wraps_the_fetch(self, backend: Backend) -> None:
        progress = RecordingProgress()
        load_dataset(backend.spec(), progress=progress)
        assert progress.events[0][0] == "start"
        assert progress.events[0][1].startswith("fetch ")
        assert progress.events[-1] == ("done", None)

    def test_progress_done_even_on_error(self, backend: Backend) -> None:
        progress = RecordingProgress()
        with pytest.raises(DataError):
            load_dataset(backend.spec(label="nope"), progress=progress)
        assert [e[0] for e in progress.events] == ["start", "done"]

    # --- increments ----------------------------------------------------------------------

    def test_increment_holds_exactly_the_new_rows(self, backend: Backend) -> None:
        spec = backend.spec()
        first = load_dataset(spec)
        assert count_new_rows(spec, first.info.watermark) == 0
        backend.append(events(101, 112))
        assert count_new_rows(spec, first.info.watermark) == 12
        increment = load_dataset(spec, next_window(first.info.watermark))
        assert seqs(increment) == list(range(101, 113))
        assert increment.keys is not None
        assert list(increment.keys) == [10 * s for s in range(101, 113)]
        assert increment.info.watermark == 112
        assert increment.info.window == Window(100, None, lower_inclusive=False)
        # The watermark read back from the registry's JSON windows the same rows.
        recorded = json.loads(json.dumps(first.info.as_dict()))
        again = load_dataset(spec, next_window(recorded["watermark"]))
        assert seqs(again) == list(range(101, 113))
        assert count_new_rows(spec, str(recorded["watermark"])) == 12
        # Windows round-trip through their JSON form.
        window = Window.from_dict(json.loads(json.dumps(increment.info.window.as_dict())))
        assert seqs(load_dataset(spec, window)) == list(range(101, 113))

    def test_count_new_rows(self, backend: Backend) -> None:
        spec = backend.spec()
        assert count_new_rows(spec, None) == 100
        assert count_new_rows(spec, 90) == 10
        assert count_new_rows(spec, 100) == 0
        assert count_new_rows(spec, 0) == 100

    def test_no_new_rows_is_an_empty_window_error(self, backend: Backend) -> None:
        with pytest.raises(DataError, match=r"no rows in \(100, end\) of .* \(column seq\)") as e:
            load_dataset(backend.spec(), next_window(100))
        assert e.value.exit_code == ExitCode.RUNTIME
        assert e.value.hint and "widen" in e.value.hint

    def test_timestamp_ordinal(self, backend: Backend) -> None:
        spec = backend.spec(ordinal="ts", features=["f1", "f2"])
        start = pd.Timestamp("2024-01-01")
        dataset = load_dataset(spec, Window("2024-01-01T10:00:00", "2024-01-01 20:00"))
        assert seqs_from_ts(dataset, start) == list(range(10, 20))
        assert pd.Timestamp(dataset.info.watermark) == start + pd.Timedelta(hours=19)
        recorded = json.loads(json.dumps(dataset.info.as_dict()))
        assert isinstance(recorded["watermark"], str)
        backend.append(events(101, 103))
        assert count_new_rows(spec, recorded["watermark"]) == 100 - 19 + 3
        everything = load_dataset(spec)
        with pytest.raises(DataError, match="no rows"):
            load_dataset(spec, next_window(everything.info.watermark))
        backend.append(events(104, 105))
        json_mark = json.loads(json.dumps(everything.info.as_dict()))["watermark"]
        newer = load_dataset(spec, next_window(json_mark))
        assert seqs_from_ts(newer, start) == [104, 105]

    # --- outcomes ----------------------------------------------------------------------------

    def test_outcomes(self, backend: Backend) -> None:
        spec = backend.spec()
        every = fetch_outcomes(spec)
        assert list(every.columns) == ["key", "outcome"]
        assert sorted(zip(every["key"], every["outcome"], strict=True)) == [
            (10, 1),
            (20, 0),
            (30, 1),
            (40, 1),
        ]
        some = fetch_outcomes(spec, [20, 40, 999])
        assert sorted(some["key"]) == [20, 40]
        none = fetch_outcomes(spec, [])
        assert list(none.columns) == ["key", "outcome"] and len(none) == 0

    def test_outcomes_missing_column(self, backend: Backend) -> None:
        spec = backend.spec(outcomes={**backend.outcomes(), "key": "event", "outcome": "truht"})
        with pytest.raises(DataError, match=r"no column 'truht' \(data.outcomes.outcome\)"):
            fetch_outcomes(spec)

    def test_outcomes_not_declared(self, backend: Backend) -> None:
        spec = backend.spec(outcomes=None)
        with pytest.raises(DataError, match="no outcomes source"):
            fetch_outcomes(spec)

    # --- bad input ------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("label", "lable", r"no column 'lable' \(data.label\); did you mean 'label'\?"),
            ("key", "ID", r"no column 'ID' \(data.key\); did you mean 'id'\?"),
            ("features", ["f1", "f_2"], r"no column 'f_2' \(data.features\); did you mean 'f2'"),
        ],
    )
    def test_missing_column(self, backend: Backend, field: str, value: Any, message: str) -> None:
        with pytest.raises(DataError, match=message) as e:
            load_dataset(backend.spec(**{field: value}))
        assert self.names_source(backend, str(e.value))
        assert e.value.hint and "columns there: id, seq" in e.value.hint

    def test_missing_ordinal_column(self, backend: Backend) -> None:
        with pytest.raises(DataError, match=r"no column 'sequence' \(data.source.ordinal\)"):
            load_dataset(backend.spec(ordinal="sequence"))
        with pytest.raises(DataError, match=r"no column 'sequence'"):
            count_new_rows(backend.spec(ordinal="sequence"), 10)

    def test_feature_that_is_the_label(self, backend: Backend) -> None:
        with pytest.raises(
            DataError, match=r"data.features lists 'label', which is also the label"
        ):
            load_dataset(backend.spec(features=["f1", "label"]))

    def test_one_class_label(self, backend: Backend) -> None:
        # Window [2, 3) holds seq 2 only: label 0, one class.
        dataset = load_dataset(backend.spec(), Window(2, 3))
        with pytest.raises(DataError, match=r"single class \(0\) in all 1 rows") as e:
            dataset.check_label("classification")
        assert "[2, 3)" in str(e.value) and self.names_source(backend, str(e.value))
        assert e.value.hint and "widen" in e.value.hint
        dataset.check_label("regression")  # a constant target is the regressor's business
        check_label(load_dataset(backend.spec()).y, "classification")

    def test_missing_labels(self, make_backend: type[Backend], tmp_path: Path) -> None:
        backend = make_backend(tmp_path)
        frame = events(1, 20)
        frame["label"] = frame["label"].astype(float)
        frame.loc[frame["seq"].isin([5, 6]), "label"] = None
        backend.write(frame)
        with pytest.raises(
            DataError, match=r"label column 'label' has 2 missing values in 20 rows"
        ):
            load_dataset(backend.spec())
        assert load_dataset(backend.spec(), Window(7, None)).n_rows == 14

    def test_text_label_with_one_class_fails_at_load(
        self, make_backend: type[Backend], tmp_path: Path
    ) -> None:
        backend = make_backend(tmp_path)
        frame = events(1, 20)
        frame["label"] = ["spam" if s < 15 else "ham" for s in frame["seq"]]
        backend.write(frame)
        with pytest.raises(DataError, match=r"single class \('spam'\) in all 14 rows"):
            load_dataset(backend.spec(), Window(None, 15))
        assert set(load_dataset(backend.spec()).y) == {"spam", "ham"}

    def test_bad_bound(self, backend: Backend) -> None:
        with pytest.raises(DataError, match=r"'abc' does not fit column 'seq' .* holds integers"):
            coerce_bound(backend.spec(), "abc")
        with pytest.raises(DataError, match=r"does not fit column 'ts'.*timestamps") as e:
            coerce_bound(backend.spec(ordinal="ts"), "2024-13-45")
        assert e.value.hint and "2024-01-31" in e.value.hint
        with pytest.raises(WindowError, match="lower bound 'x'"):
            load_dataset(backend.spec(), Window("x", None))

    def test_inverted_window(self, backend: Backend) -> None:
        with pytest.raises(WindowError, match=r"window \[20, 10\) .* is empty") as e:
            load_dataset(backend.spec(), Window(20, 10))
        assert e.value.exit_code == 2

    def test_window_without_ordinal(self, backend: Backend) -> None:
        spec = backend.spec()
        assert spec.data.source is not None
        source = {k: v for k, v in backend.source().items() if k != "ordinal"}
        spec = backend.spec(source=source)
        with pytest.raises(DataError, match="without an ordinal column"):
            load_dataset(spec, Window(1, 2))
        with pytest.raises(DataError, match="without an ordinal column"):
            count_new_rows(spec, 1)
        assert load_dataset(spec).ordinal is None  # the whole source is fine

    @staticmethod
    def names_source(backend: Backend, message: str) -> bool:
        source = backend.source()
        return (source.get("path") or source["url"]) in message


def seqs_from_ts(dataset: Dataset, start: pd.Timestamp) -> list[int]:
    assert dataset.ordinal is not None
    return [int((pd.Timestamp(v) - start) / pd.Timedelta(hours=1)) for v in dataset.ordinal]
