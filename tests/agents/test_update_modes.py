"""`update.data`: the increment, every row, or the most recent window, in process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlcycle.agents import procure
from mlcycle.agents.update import update
from mlcycle.registry import open_registry
from mlcycle.spec import load_spec
from mlcycle.spec.model import Spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "adaptive"


def project(tmp_path: Path, update_block: str) -> Spec:
    root = tmp_path / "adaptive"
    shutil.copytree(EXAMPLE, root)
    path = root / "lifecycle.yaml"
    text = path.read_text().replace(
        "data: increment # learn from the rows since the last generation...", update_block
    )
    # A loose relative gate: these tests are about which rows are used, not the gate.
    path.write_text(text.replace("baseline - 0.02", "baseline - 0.5"))
    return load_spec(path)


@pytest.mark.parametrize(
    ("block", "rows", "warm"),
    [("data: all", 569, False), ("data: window\n  window: 120", 120, False)],
)
def test_all_and_window_modes(tmp_path: Path, block: str, rows: int, warm: bool) -> None:
    spec = project(tmp_path, block)
    registry = open_registry(spec)
    first = procure(spec, registry, release="0.1.0", make_current=True)
    assert first.entry is not None and str(first.entry.ref) == "0.1.0/1"
    result = update(spec, registry, force=True)
    assert result.retrained and result.forced
    procured = result.procured
    assert procured is not None and procured.entry is not None
    assert str(procured.entry.ref) == "0.1.0/2"
    assert procured.training.n_rows == rows
    assert procured.entry.data["rows"] == rows
    assert procured.training.warm_started is warm
    expected_lower = None if rows == 569 else 569 - rows + 1
    assert procured.entry.data["window"]["lower"] == expected_lower
    assert str(registry.current().ref) == "0.1.0/2"  # type: ignore[union-attr]
