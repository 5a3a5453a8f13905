"""The example projects' real data loads through their lifecycle.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.data import count_new_rows, fetch_outcomes, load_dataset, next_window
from mlcycle.errors import DataError
from mlcycle.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/lifecycle.yaml"))


def test_examples_found() -> None:
    assert {"interactive", "open", "adaptive", "dual"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_loads(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths are the spec's, not the cwd's
    spec = load_spec(EXAMPLES / name)
    dataset = load_dataset(spec)
    assert dataset.n_rows == 569
    assert len(dataset.features) == 30
    assert set(dataset.y) == {0, 1}
    dataset.check_label("classification")
    assert "malignant" not in dataset.features and "id" not in dataset.features
    info = dataset.info
    if spec.data.dump:
        assert info.kind == "dump" and not info.reproducible and info.sha256
        return
    assert info.reproducible and info.ordinal == "seq" and info.watermark == 569
    assert count_new_rows(spec, info.watermark) == 0
    assert count_new_rows(spec, 559) == 10
    assert load_dataset(spec, next_window(559)).n_rows == 10
    with pytest.raises(DataError, match="no rows in"):
        load_dataset(spec, next_window(info.watermark))
    if spec.data.outcomes is not None:
        outcomes = fetch_outcomes(spec, list(dataset.keys if dataset.keys is not None else ())[:5])
        assert len(outcomes) == 5 and set(outcomes["outcome"]) <= {0, 1}
