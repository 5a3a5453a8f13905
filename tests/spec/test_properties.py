"""Property-based tests: whatever the file holds, validate answers 0 or 2, never a traceback.

Random YAML documents and random bytes, and random mutations of valid specs
(every `examples/*/lifecycle.yaml` present when the tests run, plus the
fixtures): a key deleted, a value of another type, a misspelled string, an
unknown key, another allowed value.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.spec import validate_file
from mlcycle.spec.schema import load_schema
from tests.spec.helpers import DIAGNOSTIC_RE, Result, cli, example_specs

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _vocabulary() -> tuple[list[str], list[Any]]:
    """Every property name and every enum value of the schema."""
    keys: set[str] = set()
    values: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update((node.get("properties") or {}).keys())
            values.extend(node.get("enum") or [])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(load_schema())
    return sorted(keys), values


KEYS, ENUM_VALUES = _vocabulary()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(ENUM_VALUES)
)
keys = st.sampled_from(KEYS) | st.text(min_size=1, max_size=12)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


def check(result: Result) -> None:
    """The contract of every run: exit 0 or 2, no traceback, diagnostics in their form."""
    assert result.code in (0, 2), result.output
    assert "Traceback" not in result.output
    assert "this is a bug in mlcycle" not in result.stderr, result.stderr
    for line in result.stderr.splitlines():
        if not line or line.startswith(" ") or line.startswith(("error:", "hint:")):
            continue
        assert DIAGNOSTIC_RE.match(line), line


@pytest.fixture(scope="module")
def spec_dir() -> Iterator[Path]:
    # One directory for every example (hypothesis reruns the body; a function fixture
    # would be shared across examples anyway).
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def run_validate(directory: Path, content: bytes) -> Result:
    (directory / "lifecycle.yaml").write_bytes(content)
    result = cli("validate", str(directory))
    check(result)
    return result


@SETTINGS
@given(doc=documents)
def test_random_yaml_documents(spec_dir: Path, doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    run_validate(spec_dir, text.encode("utf-8"))


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(KEYS), documents, max_size=8))
def test_random_mappings_of_spec_keys(spec_dir: Path, doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    run_validate(spec_dir, text.encode("utf-8"))


@SETTINGS
@given(content=st.binary(max_size=300))
def test_random_bytes(spec_dir: Path, content: bytes) -> None:
    run_validate(spec_dir, content)


@SETTINGS
@given(content=st.text(max_size=300))
def test_random_text(spec_dir: Path, content: str) -> None:
    run_validate(spec_dir, content.encode("utf-8", errors="surrogatepass"))


# --- mutations of valid specs ------------------------------------------------------------

VALID = example_specs()
VALID_DOCS = {p: yaml.safe_load(p.read_text(encoding="utf-8")) for p in VALID}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node


OTHER_TYPES = [None, 0, -1, 1.5, True, "x", "", [], {}, [1, "a"], {"a": 1}]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Path, Any]:
    source = draw(st.sampled_from(VALID))
    doc = copy.deepcopy(VALID_DOCS[source])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(doc, path), path[-1]
        value = parent[last]
        kind = draw(st.sampled_from(["delete", "retype", "misspell", "unknown-key", "enum"]))
        if kind == "delete":
            del parent[last]
        elif kind == "retype":
            # A copy: a later mutation of this example may edit the value in place, and
            # editing OTHER_TYPES' own `{}` made later examples draw differently
            # (hypothesis: FlakyStrategyDefinition, now and then).
            parent[last] = copy.deepcopy(
                draw(st.sampled_from([v for v in OTHER_TYPES if type(v) is not type(value)]))
            )
        elif kind == "misspell" and isinstance(value, str) and value:
            i = draw(st.integers(min_value=0, max_value=len(value) - 1))
            edit = draw(st.sampled_from(["drop", "double", "swap", "case"]))
            if edit == "drop":
                value = value[:i] + value[i + 1 :]
            elif edit == "double":
                value = value[:i] + value[i] + value[i:]
            elif edit == "swap" and i + 1 < len(value):
                value = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
            else:
                value = value.upper()
            parent[last] = value
        elif kind == "unknown-key":
            target = (
                value if isinstance(value, dict) else parent if isinstance(parent, dict) else None
            )
            if target is not None:
                target[draw(keys)] = draw(scalars)
        elif kind == "enum":
            parent[last] = draw(st.sampled_from(ENUM_VALUES))
    return source, doc


def test_there_are_valid_specs_to_mutate() -> None:
    assert len(VALID) >= 4
    for path in VALID:
        assert validate_file(path).ok, path


@SETTINGS
@given(case=mutated())
def test_mutated_valid_specs(spec_dir: Path, case: tuple[Path, Any]) -> None:
    _, doc = case
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    result = run_validate(spec_dir, text.encode("utf-8"))
    as_json = cli("validate", "--json", str(spec_dir))
    assert as_json.code == result.code
    payload = json.loads(as_json.stdout)
    assert payload["valid"] is (result.code == 0)
    for diagnostic in payload["errors"] + payload["warnings"]:
        assert diagnostic["line"] >= 1 and diagnostic["col"] >= 1
        assert diagnostic["message"] and diagnostic["rule"]
    if result.code == 2:
        assert payload["errors"]
