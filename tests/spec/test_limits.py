"""`deployment.serve.max_rows`, the admission settings beside it (issue 17) and
`store.retention` (issue 10.6): typed, and checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.spec import load_spec, validate_file
from mlcycle.spec.model import DEFAULT_MAX_ROWS, Retention, ServeSpec
from tests.spec.helpers import (
    assert_clean_failure_output,
    cli,
    marked_lines,
    spec_text,
    write_spec,
)


def test_the_keys_reach_the_typed_spec(tmp_path: Path) -> None:
    text = spec_text() + (
        "deployment:\n  serve: {max_rows: 500, max_connections: 0, backlog: 64,"
        " queue_deadline_ms: 12.5}\n"
        "store:\n  url: sqlite:///s.db\n  retention: {age: 30d, rows: 1000000}\n"
    )
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.deployment.serve.max_rows == 500
    assert spec.deployment.serve.max_connections == 0
    assert spec.deployment.serve.backlog == 64
    assert spec.deployment.serve.queue_deadline_ms == 12.5
    assert spec.store.retention == Retention(age=30 * 86_400, rows=1_000_000)
    assert spec.store.url == "sqlite:///s.db"


def test_defaults_cap_rows_and_keep_everything(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, spec_text()))
    assert spec.deployment.serve.max_rows == DEFAULT_MAX_ROWS == 10_000
    assert spec.deployment.serve == ServeSpec()
    assert (ServeSpec().max_connections, ServeSpec().queue_deadline_ms) == (1024, 100)
    assert spec.store.retention == Retention()
    assert not spec.store.retention.active


@pytest.mark.parametrize(
    ("section", "column", "message"),
    [
        (
            "deployment:\n  serve: {max_rows: 0}  #!\n",
            21,
            "deployment.serve.max_rows must be at least 1 (got 0)",
        ),
        (
            "deployment:\n  serve: {max_rows: many}  #!\n",
            21,
            "deployment.serve.max_rows must be a whole number (got 'many')",
        ),
        (
            "deployment:\n  serve: {queue_deadline_ms: -1}  #!\n",
            30,
            "deployment.serve.queue_deadline_ms must be at least 0 (got -1)",
        ),
        (
            "deployment:\n  serve: {backlog: 0}  #!\n",
            20,
            "deployment.serve.backlog must be at least 1 (got 0)",
        ),
        (
            "deployment:\n  serve: {max_connections: 2.5}  #!\n",
            28,
            "deployment.serve.max_connections must be a whole number (got 2.5)",
        ),
        (
            "store:\n  retention: {age: 30days}  #!\n",
            20,
            "store.retention.age must be a duration such as '30m', '12h', '1d' or '2w'",
        ),
        (
            "store:\n  retention: {rows: -5}  #!\n",
            21,
            "store.retention.rows must be at least 1 (got -5)",
        ),
        (
            "store:\n  retention: {ages: 1d}  #!\n",
            15,
            "unknown key 'ages' in store.retention",
        ),
    ],
)
def test_bad_values_are_placed_on_the_node(
    tmp_path: Path, section: str, column: int, message: str
) -> None:
    text = spec_text() + section
    report = validate_file(write_spec(tmp_path, text))
    assert not report.ok
    (error,) = report.errors
    assert (error.line, error.col) == (marked_lines(text)[0], column)
    assert message in error.message, error.message

    result = cli("validate", cwd=tmp_path)
    assert result.code == 2
    assert_clean_failure_output(result)
    assert f"lifecycle.yaml:{error.line}:{column}: error: " in result.stderr
