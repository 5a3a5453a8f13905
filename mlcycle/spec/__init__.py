"""The lifecycle spec: loading, schema validation, taxonomy rules and patterns.

`validate_file` runs the whole check and returns a report (it raises only when
there is no spec to read); `load_spec` returns the typed `Spec` or raises a
`SpecError` carrying every positioned problem. The steps, bottom up:
`loader` (YAML → located data), `schema` (JSON Schema, errors mapped to
positions), `model` (the typed spec), `rules` (taxonomy consistency and
anti-patterns), `patterns` (the derived lifecycle pattern), `plan` (the
stages the lifecycle runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcycle.errors import SpecError, SpecNotFoundError
from mlcycle.spec.diagnostics import Diagnostic
from mlcycle.spec.env import resolve_references
from mlcycle.spec.loader import load_document, require_document
from mlcycle.spec.model import (
    Classification,
    DataAccess,
    Deployment,
    Liaison,
    Procurement,
    Spec,
    Update,
)
from mlcycle.spec.patterns import Pattern, PatternMatch, derive_pattern
from mlcycle.spec.rules import check_rules
from mlcycle.spec.schema import schema_diagnostics

SPEC_FILENAME = "lifecycle.yaml"


def find_spec(path: str | Path | None = None) -> Path:
    """The spec file: `path` itself, or `lifecycle.yaml` in the directory `path` (default: cwd).

    Raises SpecNotFoundError when there is none. The path is returned as given
    (relative paths stay relative), so diagnostics name the file the way the
    user did.
    """
    if path is None:
        candidate = Path(SPEC_FILENAME)
        if not candidate.exists():
            raise SpecNotFoundError(
                path=SPEC_FILENAME, reason=f"no {SPEC_FILENAME} in the current directory"
            )
    else:
        given = Path(path)
        if given.is_dir():
            candidate = given / SPEC_FILENAME
            if not candidate.exists():
                raise SpecNotFoundError(path=str(given), reason=f"no {SPEC_FILENAME} in it")
        elif not given.exists():
            raise SpecNotFoundError(path=str(given), reason="no such file or directory")
        else:
            candidate = given
    if candidate.is_dir():
        raise SpecNotFoundError(path=str(candidate), reason="is a directory, not a file")
    return candidate


@dataclass(frozen=True)
class ValidationReport:
    """Everything `mlcycle validate` found in one spec file."""

    file: Path
    spec: Spec | None  # the typed spec, only when valid
    diagnostics: tuple[Diagnostic, ...]
    pattern: PatternMatch | None  # whenever the lifecycle block is readable
    classification: Classification | None = None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The diagnostics of severity error."""
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The diagnostics of severity warning."""
        return tuple(d for d in self.diagnostics if d.severity == "warning")

    @property
    def ok(self) -> bool:
        """Whether the spec has no errors (warnings allowed)."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by `mlcycle validate --json`."""
        return {
            "file": str(self.file),
            "valid": self.ok,
            "pattern": None if self.pattern is None else self.pattern.as_dict(),
            "classification": (
                None if self.classification is None else self.classification.as_dict()
            ),
            "errors": [d.as_dict() for d in self.errors],
            "warnings": [d.as_dict() for d in self.warnings],
        }


def validate_file(
    path: str | Path | None = None,
    *,
    strict: bool = False,
    environ: Mapping[str, str] | None = None,
    files: bool = True,
    imports: bool = True,
) -> ValidationReport:
    """Check a spec: YAML, schema, taxonomy rules; derive its pattern.

    With `files`, also what the spec says of the project's files (data files and
    model code exist, inside the project); with `imports`, also that class paths
    resolve (`importlib.util.find_spec`, nothing executed but package `__init__`s).
    `load_spec` does neither: a bundle's spec travels without its project.

    Never raises for what the file contains (every problem is a diagnostic);
    raises SpecNotFoundError when there is no spec at `path`. With `strict`,
    warnings count as errors. With `environ`, the typed spec has its
    `${env:NAME}` references resolved from it (an unset one is an error);
    without, they stay as written (validating needs no secrets).
    """
    file = find_spec(path)
    doc = load_document(file, display=str(file))
    diagnostics = list(doc.diagnostics)
    spec: Spec | None = None
    classification: Classification | None = None
    if doc.data is not None:
        taken = {(d.line, d.col) for d in diagnostics}
        # Where YAML itself failed (an alias, say) the schema would only repeat it.
        found = [d for d in schema_diagnostics(doc) if (d.line, d.col) not in taken]
        diagnostics.extend(found)
        classification = _classification(doc.data)
        if not diagnostics:
            data = doc.data
            if environ is not None:
                data, unset = resolve_references(doc, environ)
                diagnostics.extend(unset)
            spec = Spec.from_document(data, root=file.absolute().parent)
            scopes = (
                {"spec"} | ({"files"} if files else set()) | ({"imports"} if imports else set())
            )
            diagnostics.extend(check_rules(spec, doc, scopes=frozenset(scopes)))
    if strict:
        diagnostics = [
            dataclasses.replace(d, severity="error", message=f"{d.message} (--strict)")
            if d.severity == "warning"
            else d
            for d in diagnostics
        ]
    diagnostics.sort(key=lambda d: (d.line, d.col, d.severity != "error", d.message))
    ok = not any(d.severity == "error" for d in diagnostics)
    return ValidationReport(
        file=file,
        spec=spec if ok else None,
        diagnostics=tuple(diagnostics),
        pattern=None if classification is None else derive_pattern(classification),
        classification=classification,
    )


def load_spec(
    path: str | Path | None = None, *, strict: bool = False, resolve_env: bool = True
) -> Spec:
    """The typed spec at `path` (a file, or a directory holding lifecycle.yaml).

    Raises SpecError carrying every diagnostic when the spec is invalid, and
    SpecNotFoundError when there is none. `Spec.root` is the spec's directory.
    `${env:NAME}` references are resolved from the environment unless
    `resolve_env` is false (for commands that only show the spec).
    """
    report = validate_file(
        path,
        strict=strict,
        environ=os.environ if resolve_env else None,
        files=False,
        imports=False,
    )
    if report.spec is None:
        raise SpecError(diagnostics=report.diagnostics)
    return report.spec


def spec_hash(path: str | Path | None = None) -> str:
    """SHA-256 (hex) of the spec's canonical JSON: comments and formatting do not change it.

    Raises SpecError when the file is not acceptable YAML.
    """
    doc = require_document(find_spec(path))
    canonical = json.dumps(doc.data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# What decides which model a generation is: the data it learns from (not where the
# outcomes of its predictions arrive), the model, and how it is evaluated and gated.
# The rest (lifecycle triggers, deployment, serving, store, registry, descriptions,
# comments) says when and where models are made and served, not what they are.
TRAINING_SECTIONS = ("data", "model", "evaluation")
# Data validation thresholds decide whether new rows are trained on, not what the model is.
_NOT_TRAINING = {"data": ("outcomes", "validation")}


def training_recipe(data: Any) -> dict[str, Any]:
    """The parts of a spec document (parsed YAML) that decide what a generation is."""
    recipe: dict[str, Any] = {}
    for section in TRAINING_SECTIONS:
        value = data.get(section) if isinstance(data, Mapping) else None
        if isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in _NOT_TRAINING.get(section, ())}
        recipe[section] = value
    return recipe


def recipe_hash(data: Any) -> str:
    """SHA-256 (hex) of a spec document's training recipe (see `training_recipe`)."""
    canonical = json.dumps(training_recipe(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def recipe_differences(old: Any, new: Any) -> list[str]:
    """Dotted keys (`model.pipeline`) where two spec documents' training recipes differ."""
    a, b = training_recipe(old), training_recipe(new)
    differences = []
    for section in TRAINING_SECTIONS:
        x, y = a[section], b[section]
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            differences += [
                f"{section}.{key}" for key in sorted({*x, *y}) if x.get(key) != y.get(key)
            ]
        elif x != y:
            differences.append(section)
    return differences


def parse_spec_text(text: str, *, file: str) -> Any:
    """The plain data of a spec given as text (another commit's lifecycle.yaml)."""
    # lazy: import cycle (mlcycle.spec.loader imports this module)
    from mlcycle.spec.loader import parse_text

    doc = parse_text(text, file=file)
    if not doc.ok:
        raise SpecError(diagnostics=doc.diagnostics)
    return doc.data


def _classification(data: Any) -> Classification | None:
    lc = data.get("lifecycle") if isinstance(data, Mapping) else None
    if not isinstance(lc, Mapping):
        return None
    values = [v for v in (lc.get(n) for n in Classification.ATTRIBUTES) if isinstance(v, str)]
    if len(values) != len(Classification.ATTRIBUTES):
        return None
    data_access, procurement, update, deployment, liaison = values
    try:
        return Classification(
            data_access=DataAccess(data_access),
            procurement=Procurement(procurement),
            update=Update(update),
            deployment=Deployment(deployment),
            liaison=Liaison(liaison),
        )
    except ValueError:
        return None


__all__ = [
    "SPEC_FILENAME",
    "Classification",
    "Diagnostic",
    "Pattern",
    "PatternMatch",
    "Spec",
    "ValidationReport",
    "derive_pattern",
    "find_spec",
    "load_spec",
    "parse_spec_text",
    "recipe_differences",
    "recipe_hash",
    "spec_hash",
    "training_recipe",
    "validate_file",
]
