"""JSON Schema validation of a located document, with errors a person can act on.

jsonschema finds the problems; this module says them in the spec's own
words: each error is placed on the YAML node it is about (an unknown key on
the key, a bad value on the value, a missing key on the mapping that lacks
it), and its message names the setting, what was expected and what was found,
with a "did you mean" hint for misspellings.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from mlcycle.resources import schema_path
from mlcycle.spec.diagnostics import Diagnostic
from mlcycle.spec.loader import LoadedDocument, Loc

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

RULE = "schema"

# What a value with a pattern should look like, by the JSON pointer of the schema
# node that carries the pattern (resolved to the pattern text when the schema loads).
_EXPECTED_FORMS: dict[str, str] = {
    "/properties/name": "a project name: lowercase letters, digits, '.', '_' and '-', "
    "starting and ending with a letter or digit, at most 63 characters (e.g. 'churn')",
    "/$defs/sql_url": "a database URL such as 'sqlite:///data/events.db' or "
    "'postgresql://user@host/db'",
    "/$defs/table": "a table name: letters, digits, '_' and '.', not starting with a digit",
    "/$defs/class_path": "a class path such as 'sklearn.preprocessing.StandardScaler'",
    "/$defs/duration": "a duration such as '30m', '12h', '1d' or '2w'",
    "/$defs/condition": "a condition such as 'roc_auc >= 0.8' or 'roc_auc >= baseline - 0.02'",
    "/properties/model/properties/entrypoint": "an entry point 'module:function' such as "
    "'churn.model:build'",
    "/properties/release/properties/tag_format": "a tag format containing '{version}', such "
    "as '{name}@v{version}'",
    "/properties/deployment/properties/image/properties/name": "a lowercase image name such "
    "as 'churn' or 'team/churn'",
    "/properties/deployment/properties/image/properties/base": "an image reference without "
    "spaces or newlines, such as 'python:3.11-slim'",
    "/properties/deployment/properties/image/properties/registry": "a registry host such as "
    "'registry.example.com:5000'",
    "/$defs/selector/properties/model": "a model version 'X.Y.Z' or 'X.Y.Z/GENERATION' such "
    "as '1.2.0' or '1.2.0/3'",
}

_SQL_URL_FORM = _EXPECTED_FORMS["/$defs/sql_url"]
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _file_for_url_hint(path: Loc, value: Any) -> str | None:
    """What to write when a database URL is a file path: a SQLite file as its URL, any
    other file under `path:` (data sources and outcomes read CSV and Parquet files)."""
    if not isinstance(value, str) or "://" in value:
        return None
    if value.lower().endswith(_SQLITE_SUFFIXES):
        return f"a SQLite file is named by its URL: write `{_last(path)}: sqlite:///{value}`"
    if path[:-1] in (("data", "source"), ("data", "outcomes")):
        return (
            f"a file (CSV or Parquet) goes under `path:`, not `url:`: write `path: {value}` "
            "(and leave out `table:` and `query:`, which are for databases)"
        )
    return None


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


@dataclass(frozen=True)
class _Compiled:
    validator: Draft202012Validator
    schema: dict[str, Any]
    forms: dict[str, str]  # pattern text → what it means


@cache
def _compiled() -> _Compiled:
    # Compiled once per process: validate, load_spec and the rules share it.
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    forms: dict[str, str] = {}
    for pointer, text in _EXPECTED_FORMS.items():
        node: Any = schema
        for part in pointer.strip("/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and "pattern" in node:
            forms[node["pattern"]] = text
    return _Compiled(Draft202012Validator(schema), schema, forms)


def load_schema() -> dict[str, Any]:
    """The lifecycle JSON schema as a mapping (parsed once per process)."""
    return _compiled().schema


def schema_diagnostics(doc: LoadedDocument) -> list[Diagnostic]:
    """Every schema violation of `doc`, each positioned and worded for people, sorted."""
    compiled = _compiled()
    found: list[_Problem] = []
    for error in compiled.validator.iter_errors(doc.data):
        found.extend(_explain(error, doc, compiled))
    # A misspelled required key shows up twice, as unknown and as missing: keep the
    # unknown key (it carries the "did you mean"), drop the missing one.
    suggested = {(p.parent, p.suggestion) for p in found if p.suggestion is not None}
    kept = [p for p in found if not (p.missing is not None and (p.parent, p.missing) in suggested)]
    unique = {(d.line, d.col, d.message): d for d in (p.diagnostic for p in kept)}
    return sorted(unique.values(), key=lambda d: (d.line, d.col, d.message))


# --- explaining one error ---------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    diagnostic: Diagnostic
    parent: Loc = ()
    suggestion: str | None = None  # an unknown key's closest allowed key
    missing: str | None = None  # a missing required key


def _explain(error: ValidationError, doc: LoadedDocument, compiled: _Compiled) -> list[_Problem]:
    path: Loc = tuple(error.absolute_path)
    keyword = error.validator
    value = error.instance
    where = _where(path)
    schema = error.schema if isinstance(error.schema, dict) else {}

    def at(message: str, *, hint: str | None = None, on_key: bool = False) -> list[_Problem]:
        return [_Problem(doc.diagnostic(path, message, at_key=on_key, hint=hint, rule=RULE))]

    if keyword == "additionalProperties" and isinstance(value, dict):
        return _unknown_keys(path, value, schema, doc)
    if keyword == "required" and isinstance(value, dict):
        return _missing_keys(path, value, error.validator_value, schema, doc)
    if keyword in ("oneOf", "anyOf"):
        return _one_of(error, doc, compiled)
    if keyword == "enum":
        message, hint = _enum_message(where, value, list(error.validator_value))
        return at(message, hint=hint)
    if keyword == "const":
        return at(
            f"{where} must be {_show(error.validator_value)} (got {_show(value)})",
            hint=f"write `{_last(path)}: {error.validator_value}`" if path else None,
        )
    if keyword == "type":
        expected = error.validator_value
        types = [expected] if isinstance(expected, str) else list(expected)
        hint = None
        if value is None:
            hint = "the key has no value: give it one, or remove the key"
        elif "string" in types and isinstance(value, bool):
            hint = "YAML reads yes, no, on, off, true and false as booleans: quote the value"
        elif "string" in types and isinstance(value, (int, float)):
            hint = f"quote it: '{value}'"
        return at(f"{where} must be {_types(types)} (got {_show(value)})", hint=hint)
    if keyword == "pattern":
        if error.relative_schema_path and "propertyNames" in error.relative_schema_path:
            return _bad_key_name(path, value, error.validator_value, doc, compiled)
        form = compiled.forms.get(error.validator_value)
        if form is not None:
            hint = _file_for_url_hint(path, value) if form == _SQL_URL_FORM else None
            return at(f"{where} must be {form} (got {_show(value)})", hint=hint)
        return at(
            f"{where} has an unexpected form (got {_show(value)})",
            hint=schema.get("description"),
        )
    if keyword == "minLength":
        return at(f"{where} must not be empty")
    if keyword == "maxLength":
        return at(f"{where} must be at most {error.validator_value} characters long")
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = _show(error.validator_value)
        relation = {
            "minimum": f"at least {bound}",
            "maximum": f"at most {bound}",
            "exclusiveMinimum": f"greater than {bound}",
            "exclusiveMaximum": f"less than {bound}",
        }[keyword]
        return at(f"{where} must be {relation} (got {_show(value)})")
    if keyword == "minItems":
        n = error.validator_value
        if n == 1:
            return at(f"{where} must not be an empty list")
        return at(f"{where} must have at least {n} items (got {len(value)})")
    if keyword == "uniqueItems":
        repeated = _first_repeated(value)
        return at(f"{where} lists {_show(repeated)} more than once", hint="remove the repetition")
    if keyword == "minProperties":
        options = list((schema.get("properties") or {}).keys())
        hint = f"give at least one of: {', '.join(options)}" if options else None
        return at(f"{where} must not be an empty mapping", hint=hint)
    if keyword == "maxProperties":
        if len(path) >= 2 and path[-2] == "pipeline":
            return at(
                f"{where} must map one class path to its parameters "
                f"(got {len(value)} keys: {', '.join(map(str, value))})",
                hint="put each step in its own list item: `- CLASS.PATH: {PARAM: VALUE}`",
            )
        return at(f"{where} must have at most {error.validator_value} keys")
    # Keywords the schema does not use today: still positioned, in jsonschema's words.
    return at(f"{where}: {error.message}")


def _unknown_keys(
    path: Loc, value: dict[str, Any], schema: dict[str, Any], doc: LoadedDocument
) -> list[_Problem]:
    allowed = list((schema.get("properties") or {}).keys())
    problems = []
    for key in value:
        if key in allowed:
            continue
        suggestion = _closest(str(key), allowed)
        if suggestion is not None:
            hint = f"did you mean '{suggestion}'?"
        elif allowed:
            hint = f"allowed keys here: {', '.join(allowed)}"
        else:
            hint = None
        where = "at the top level" if not path else f"in {_where(path)}"
        message = f"unknown key '{key}' {where}"
        problems.append(
            _Problem(
                doc.diagnostic((*path, key), message, at_key=True, hint=hint, rule=RULE),
                parent=path,
                suggestion=suggestion,
            )
        )
    return problems


def _missing_keys(
    path: Loc,
    value: dict[str, Any],
    required: Sequence[str],
    schema: dict[str, Any],
    doc: LoadedDocument,
) -> list[_Problem]:
    problems = []
    properties = schema.get("properties") or {}
    for key in required:
        if key in value:
            continue
        sub = properties.get(key) or {}
        hint = None
        if "const" in sub:
            hint = f"add `{key}: {sub['const']}`"
        elif "enum" in sub:
            hint = f"add `{key}: VALUE`, one of: {', '.join(map(str, sub['enum']))}"
        elif sub.get("type") == "object" and sub.get("required"):
            hint = f"`{key}` needs: {', '.join(sub['required'])}"
        elif sub.get("description"):
            hint = sub["description"]
        owner = "the spec" if not path else _where(path)
        # On the key that owns the mapping (its line names the section), not its first child.
        diagnostic = doc.diagnostic(
            path,
            f"{owner} is missing the required key '{key}'",
            at_key=True,
            hint=hint,
            rule=RULE,
        )
        problems.append(_Problem(diagnostic, parent=path, missing=key))
    return problems


def _bad_key_name(
    path: Loc, key: Any, pattern: str, doc: LoadedDocument, compiled: _Compiled
) -> list[_Problem]:
    form = compiled.forms.get(pattern, "of the expected form")
    message = f"key {_show(key)} in {_where(path)} must be {form}"
    return [_Problem(doc.diagnostic((*path, key), message, at_key=True, rule=RULE))]


def _one_of(error: ValidationError, doc: LoadedDocument, compiled: _Compiled) -> list[_Problem]:
    # Each alternative that fails only because the value has another type is not what the
    # user meant; explain the alternative(s) whose type did match.
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    type_mismatch = {
        branch for branch, subs in branches.items() if any(_wrong_type(s) for s in subs)
    }
    relevant = [subs for branch, subs in branches.items() if branch not in type_mismatch]
    if len(relevant) == 1:
        problems: list[_Problem] = []
        for sub in relevant[0]:
            problems.extend(_explain(sub, doc, compiled))
        return problems
    path: Loc = tuple(error.absolute_path)
    hint = None
    if not relevant:
        types: list[str] = []
        for subs in branches.values():
            for s in subs:
                if s.relative_path:
                    continue
                if s.validator == "type":
                    v = s.validator_value
                    types.extend([v] if isinstance(v, str) else v)
                elif s.validator == "enum":
                    values = list(s.validator_value)
                    types.extend(_schema_type(v) for v in values)
                    hint = f"as a single value, one of: {', '.join(map(str, values))}"
        message = f"{_where(path)} must be {_types(types)} (got {_show(error.instance)})"
    else:
        message = f"{_where(path)} matches more than one of its allowed forms"
    return [_Problem(doc.diagnostic(path, message, hint=hint, rule=RULE))]


def _schema_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null" if value is None else "object" if isinstance(value, dict) else "array"


def _wrong_type(error: ValidationError) -> bool:
    """Whether the alternative failed because the value is of another kind altogether."""
    if error.relative_path:
        return False
    if error.validator == "type":
        return True
    if error.validator in ("enum", "const"):
        values = error.validator_value if error.validator == "enum" else [error.validator_value]
        return _kind(error.instance) not in {_kind(v) for v in values}
    return False


def _kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "scalar"
    if isinstance(value, (int, float, str)):
        return type(value).__name__ if isinstance(value, str) else "number"
    return "mapping" if isinstance(value, dict) else "list"


# --- wording ----------------------------------------------------------------------------


def _enum_message(where: str, value: Any, allowed: list[Any]) -> tuple[str, str | None]:
    listed = ", ".join(str(a) for a in allowed)
    hint = None
    if isinstance(value, str):
        suggestion = _closest(value, [str(a) for a in allowed])
        if suggestion is not None:
            hint = f"did you mean '{suggestion}'?"
    return f"{where} must be one of {listed} (got {_show(value)})", hint


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    options = list(candidates)
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if matches:
        return matches[0]
    # Case slips ("Programmatic") and separators ("release_forced") count as misspellings.
    folded = {o.lower().replace("_", "-"): o for o in options}
    return folded.get(word.lower().replace("_", "-"))


def _where(path: Loc) -> str:
    """`data.source.url`, `model.pipeline[0]`; the root is `the spec`."""
    if not path:
        return "the spec"
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"['{part}']"
    return text


def _last(path: Loc) -> str:
    return str(path[-1]) if path else ""


def _types(types: Sequence[str]) -> str:
    names = list(dict.fromkeys(_TYPE_NAMES.get(t, t) for t in types))
    return " or ".join(names) if names else "something else"


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, short."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"'{text}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _first_repeated(items: Sequence[Any]) -> Any:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return items[0] if items else None
