"""Verbs about the spec itself: validate it, and plan the stages it runs."""

from __future__ import annotations

from pathlib import Path

from mlcycle.spec import ValidationReport, load_spec, validate_file
from mlcycle.spec.plan import Plan, build_plan


def validate(
    path: str | Path | None = None, *, strict: bool = False, no_import: bool = False
) -> ValidationReport:
    """Validate the spec at `path` (a file, or a directory holding lifecycle.yaml).

    Every problem in the file is a diagnostic of the report; raises
    SpecNotFoundError only when there is no spec to read. Besides the file, the
    project is checked: data files and model code exist, class paths resolve
    (unless `no_import`, for machines without the model libraries).
    """
    return validate_file(path, strict=strict, files=True, imports=not no_import)


def plan(path: str | Path | None = None) -> Plan:
    """The stages the spec at `path` will run; raises SpecError when it is invalid."""
    # A plan only shows the spec: it needs none of the secrets its references name.
    return build_plan(load_spec(path, resolve_env=False))
