"""Helpers for the spec tests: run the CLI in-process, write specs, find marked lines."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.inprocess import run_in_process

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]

# One diagnostic line, as docs/architecture.md (Spec problems are collected) fixes it.
DIAGNOSTIC_RE = re.compile(r"^.+:\d+:\d+: (error|warning): ")

MARK = "#!"


@dataclass(frozen=True)
class Result:
    """What a CLI run printed and returned."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str, cwd: Path | None = None) -> Result:
    """Run `mlcycle ARGS` in-process through the real error funnel (no traceback flag)."""
    return Result(*run_in_process(list(args), cwd=cwd))


def assert_clean_failure_output(result: Result) -> None:
    """No traceback, no 'bug' message, and every diagnostic line in the contract's form."""
    assert "Traceback" not in result.output
    assert "this is a bug in mlcycle" not in result.stderr, result.stderr
    for line in result.stderr.splitlines():
        if line and not line.startswith(" ") and not line.startswith("error:"):
            if line.startswith("hint:"):
                continue
            assert DIAGNOSTIC_RE.match(line), line


def write_spec(directory: Path, text: str | bytes, name: str = "lifecycle.yaml") -> Path:
    """Write a spec file (text or raw bytes) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def marked_lines(text: str) -> list[int]:
    """1-based numbers of the lines carrying the `#!` marker."""
    return [i for i, line in enumerate(text.splitlines(), 1) if MARK in line]


LIFECYCLE_DEFAULTS: Mapping[str, str] = {
    "data_access": "programmatic",
    "procurement": "unattended",
    "update": "release-forced",
    "deployment": "wrapped",
    "liaison": "joint",
}

GOOD_BODY = """\
data:
  source: {path: d.csv, ordinal: ts}
  label: y
  outcomes: {path: o.csv, key: id, outcome: y}
model:
  pipeline: [sklearn.linear_model.LogisticRegression]
evaluation:
  gate: ["accuracy >= 0.5"]
"""


def spec_text(body: str = GOOD_BODY, **lifecycle: str) -> str:
    """A spec with the given lifecycle attributes (defaults: open) and sections."""
    values = {**LIFECYCLE_DEFAULTS, **lifecycle}
    lines = ["apiVersion: mlcycle/v1", "name: t", "lifecycle:"]
    lines += [f"  {key}: {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n" + body


def example_specs() -> list[Path]:
    """Every valid spec the tests know: `examples/*/lifecycle.yaml` and the fixtures."""
    return sorted(REPO.glob("examples/*/lifecycle.yaml")) + sorted(
        FIXTURES.glob("*/lifecycle.yaml")
    )
