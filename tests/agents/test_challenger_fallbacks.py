"""When the challenger's held-out rows cannot judge the current model, the gate says why
and falls back to the current model's registered figures (agents/integration.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.agents.test_challenger import trained

SPLIT = "  split: time # train on the older rows, measure on the newest 20% (by seq)\n"
TAIL = "the gate compares with 0.1.0/1's registered figures, measured on other rows"


def edit(root: Path, old: str, new: str) -> None:
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new, 1))


def test_cross_validation_has_no_held_out_rows_to_score_the_current_model_on(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    edit(root, SPLIT + "  test_size: 0.2\n", "  split: cross-validation\n  folds: 3\n")
    result = trained(root)
    comparison = result.comparison
    assert comparison is not None
    assert comparison.note == f"cross-validation has no single held-out set; {TAIL}"
    assert (comparison.ref, comparison.same_rows, comparison.rows) == ("0.1.0/1", False, 0)
    assert comparison.metrics == comparison.registered == dict(result.baseline.metrics)


def test_without_an_ordinal_whether_the_rows_were_seen_cannot_be_told(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    edit(root, SPLIT, "  split: holdout\n")
    # No ordinal: no increments either, so the agent learns from all rows.
    edit(root, "    ordinal: seq", "    # ordinal: seq")
    edit(root, "    new_rows: 100", "    # new_rows: 100")
    edit(root, "  data: increment", "  data: all")
    # seq would otherwise become a feature (every column but label, key and ordinal).
    edit(
        root,
        "  # features: [mean_radius, mean_texture]",
        "  features: [mean_radius, mean_texture]",
    )
    result = trained(root)
    comparison = result.comparison
    assert comparison is not None
    assert comparison.note == (
        f"whether 0.1.0/1 was trained on the held-out rows cannot be told; {TAIL}"
    )
    assert comparison.same_rows is False and comparison.metrics == comparison.registered
