"""Ad-hoc dumps: loaded whole, recorded by SHA-256, never reproducible, never windowed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlcycle.data import Window, coerce_bound, count_new_rows, load_dataset
from mlcycle.errors import DataError
from mlcycle.spec.model import Spec
from tests.data.conftest import events, make_spec


def dump_spec(root: Path, dump: str, **data: object) -> Spec:
    return make_spec(
        root, {"dump": dump, "label": "label", "key": "id", **data}, data_access="adhoc"
    )


@pytest.mark.parametrize("name", ["train.csv", "train.parquet"])
def test_dump_loads_whole_with_sha256(tmp_path: Path, name: str) -> None:
    frame = events(1, 30)
    path = tmp_path / "exports" / name
    path.parent.mkdir()
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    dataset = load_dataset(dump_spec(tmp_path, f"exports/{name}"))
    info = dataset.info
    assert dataset.n_rows == 30 and dataset.ordinal is None
    # No ordinal: seq is an ordinary feature of a dump, in the file's order.
    assert dataset.features == ("seq", "ts", "f1", "f2", "colour")
    assert list(dataset.keys if dataset.keys is not None else ()) == list(frame["id"])
    assert (info.kind, info.location, info.reproducible) == ("dump", f"exports/{name}", False)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (info.watermark, info.ordinal, info.rows) == (None, None, 30)
    assert info.as_dict()["sha256"] == info.sha256


def test_dump_sha256_changes_with_the_file(tmp_path: Path) -> None:
    events(1, 10).to_csv(tmp_path / "d.csv", index=False)
    spec = dump_spec(tmp_path, "d.csv")
    before = load_dataset(spec).info.sha256
    events(1, 11).to_csv(tmp_path / "d.csv", index=False)
    assert load_dataset(spec).info.sha256 != before


def test_dump_refuses_windows_and_increments(tmp_path: Path) -> None:
    events(1, 10).to_csv(tmp_path / "d.csv", index=False)
    spec = dump_spec(tmp_path, "d.csv")
    with pytest.raises(DataError, match=r"d.csv: a dump is loaded whole") as e:
        load_dataset(spec, Window(1, 5))
    assert e.value.hint and "--lower/--upper" in e.value.hint
    with pytest.raises(DataError, match="a dump has no new rows"):
        count_new_rows(spec, 3)
    with pytest.raises(DataError, match="need an ordinal column"):
        coerce_bound(spec, "3")


def test_missing_dump(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^exports/none.csv: no such file"):
        load_dataset(dump_spec(tmp_path, "exports/none.csv"))


def test_dump_missing_label(tmp_path: Path) -> None:
    events(1, 10).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"^d.csv: no column 'target' \(data.label\)"):
        load_dataset(dump_spec(tmp_path, "d.csv", label="target"))


def test_no_data_declared(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"label": "label"})
    with pytest.raises(DataError, match="declares no data"):
        load_dataset(spec)
    with pytest.raises(DataError, match="declares no label"):
        load_dataset(make_spec(tmp_path, {"dump": "d.csv"}))
