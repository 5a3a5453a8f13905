"""The YAML layer: positions, refusals (duplicates, anchors, tags, size), and unreadable files."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle.errors import SpecError
from mlcycle.spec import spec_hash, validate_file
from mlcycle.spec.loader import MAX_BYTES, Mark, parse_bytes, parse_text
from tests.spec.helpers import (
    FIXTURES,
    Result,
    assert_clean_failure_output,
    cli,
    write_spec,
)


def test_positions_of_keys_and_values_are_one_based() -> None:
    doc = parse_text("a: 1\nb:\n  c: [x, {d: e}]\n", file="f.yaml")
    assert doc.ok
    assert doc.data == {"a": 1, "b": {"c": ["x", {"d": "e"}]}}
    assert doc.key_mark(("a",)) == Mark(1, 1)
    assert doc.value_mark(("a",)) == Mark(1, 4)
    assert doc.key_mark(("b",)) == Mark(2, 1)
    assert doc.value_mark(("b", "c", 1, "d")) == Mark(3, 14)
    # A path that is not in the file falls back to its nearest ancestor.
    assert doc.value_mark(("b", "c", 1, "zzz")) == Mark(3, 10)


def test_columns_count_characters_not_bytes() -> None:
    doc = parse_text("é: ü\nb: 2\n", file="f.yaml")
    assert doc.value_mark(("é",)) == Mark(1, 4)


def test_timestamps_stay_text_and_merge_keys_are_plain_keys() -> None:
    doc = parse_text("when: 2024-01-01\n<<: x\n", file="f.yaml")
    assert doc.data == {"when": "2024-01-01", "<<": "x"}


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, 1, "duplicate key 'a' (first defined at line 1)"),
        ("a: &x 1\n", 1, 4, "anchor '&x' is not allowed"),
        ("a: 1\nb: *x\n", 2, 4, "alias '*x'"),
        ("a: !!python/object/apply:os.system [ls]\n", 1, 4, "tag '!!python/object/apply"),
        ("a: 1\n---\nb: 2\n", 2, 1, "a second YAML document"),
        ("a:\n\tb: 1\n", 2, 1, "YAML syntax error"),
        ("a: [1, 2\nb: 3\n", 2, 2, "YAML syntax error"),
        ("a: b: c\n", 1, 5, "mapping values are not allowed"),
        ("? [a, b]\n: 1\n", 1, 3, "mapping key must be a plain name"),
        ("a: !!int zz\n", 1, 4, "cannot read 'zz' as int"),
    ],
)
def test_yaml_problems_are_positioned(text: str, line: int, col: int, words: str) -> None:
    doc = parse_text(text, file="f.yaml")
    assert not doc.ok
    assert any((d.line, d.col) == (line, col) and words in d.message for d in doc.diagnostics), [
        d.format() for d in doc.diagnostics
    ]


def test_tabs_get_a_hint() -> None:
    (d,) = parse_text("a:\n\tb: 1\n", file="f.yaml").diagnostics
    assert d.hint == "YAML indents with spaces, not tabs"


def test_alias_bomb_is_refused_without_expansion() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    doc = parse_text("\n".join(lines) + "\n", file="f.yaml")
    assert not doc.ok
    # Every alias became a refusal, none an expansion: the data stays tiny.
    assert len(json.dumps(doc.data)) < 2000
    assert sum("alias" in d.message for d in doc.diagnostics) == 8 * 9


def test_deep_nesting_is_refused() -> None:
    doc = parse_text("[" * 500 + "]" * 500, file="f.yaml")
    assert any("nests deeper" in d.message for d in doc.diagnostics)


def test_binary_garbage_is_positioned() -> None:
    doc = parse_bytes(b"apiVersion: x\nname: \xff\xfe\x00\x01", file="f.yaml")
    (d,) = doc.diagnostics
    assert (d.line, d.col) == (2, 7)
    assert "not UTF-8" in d.message


def test_control_characters_are_positioned() -> None:
    (d,) = parse_bytes(b"a: 1\nb: x\x00y\n", file="f.yaml").diagnostics
    assert (d.line, d.col) == (2, 5)
    assert "U+0000" in d.message


def test_utf16_with_bom_is_read() -> None:
    doc = parse_bytes("a: 1\n".encode("utf-16"), file="f.yaml")
    assert doc.ok and doc.data == {"a": 1}


# --- through the CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "lifecycle.yaml:1:1: error: the spec is empty"),
        (b"# only a comment\n", "lifecycle.yaml:1:1: error: the spec is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "lifecycle.yaml:1:1: error: not UTF-8"),
        (b"\x00\x01\x02\x03", "lifecycle.yaml:1:1: error: unacceptable character U+0000"),
        (b"a: [1,\n", "lifecycle.yaml:2:1: error: YAML syntax error"),
        (b"- a\n- b\n", "lifecycle.yaml:1:1: error: the spec must be a mapping (got a list)"),
        (b"just text\n", "lifecycle.yaml:1:1: error: the spec must be a mapping"),
        (b"a: &x 1\nb: *x\n", "lifecycle.yaml:2:4: error: YAML alias '*x'"),
    ],
)
def test_unreadable_specs_exit_2_with_a_positioned_error(
    content: bytes, expected: str, tmp_path: Path
) -> None:
    write_spec(tmp_path, content)
    result = cli("validate", cwd=tmp_path)
    assert result.code == 2
    assert_clean_failure_output(result)
    assert expected in result.stderr, result.stderr


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    write_spec(tmp_path, b"# " + b"x" * MAX_BYTES + b"\n")
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert "lifecycle.yaml:1:1: error: the file is" in result.stderr
    assert "at most 1,048,576" in result.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("validate", str(tmp_path / "nope.yaml"))
    assert result.code == 2
    assert "nope.yaml: no such file or directory" in result.stderr
    assert "Traceback" not in result.output


def test_directory_without_spec_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert "no lifecycle.yaml in it" in result.stderr
    assert "mlcycle init" in result.stderr  # the hint says what to do


def test_no_spec_in_the_current_directory(tmp_path: Path) -> None:
    result = cli("validate", cwd=tmp_path)
    assert result.code == 2
    assert "no lifecycle.yaml in the current directory" in result.stderr


def test_spec_that_is_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "lifecycle.yaml").mkdir()
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert "is a directory, not a file" in result.stderr


def _unprivileged(run: Callable[[], Result]) -> Result:
    """Run `run` as an unprivileged user: root reads any file, so a permission test run by
    root (as CI is) would prove nothing. A forked child drops to `nobody` and sends back
    its result; as any other user it simply runs here."""
    if os.geteuid() != 0:
        return run()
    nobody = pwd.getpwnam("nobody")
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, run, report, never return
        try:
            os.close(reader)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = run()
            os.write(writer, json.dumps(dataclasses.asdict(result)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        sent = pipe.read()
    os.waitpid(pid, 0)
    assert sent, "the unprivileged child reported nothing"
    return Result(**json.loads(sent))


def test_unreadable_file_is_an_error_not_a_traceback() -> None:
    # Not in tmp_path: pytest makes that 0700 for root, and the unprivileged reader must be
    # able to reach the file and be refused by the file's own mode.
    with tempfile.TemporaryDirectory(prefix="mlcycle-unreadable-") as where:
        directory = Path(where)
        directory.chmod(0o755)
        path = write_spec(directory, "apiVersion: mlcycle/v1\n")
        path.chmod(0)
        result = _unprivileged(lambda: cli("validate", str(path)))
    assert result.code == 2, result
    assert "cannot read the file: Permission denied" in result.stderr
    assert_clean_failure_output(result)


def test_spec_hash_ignores_comments_and_formatting(tmp_path: Path) -> None:
    text = (FIXTURES / "open" / "lifecycle.yaml").read_text()
    a = write_spec(tmp_path / "a", text)
    reformatted = "# a comment\n" + text.replace(
        '  gate: ["roc_auc >= 0.75"]', "  gate:\n    - 'roc_auc >= 0.75'  # why"
    )
    b = write_spec(tmp_path / "b", reformatted)
    assert reformatted != text
    assert spec_hash(a) == spec_hash(b)
    c = write_spec(tmp_path / "c", text.replace("0.75", "0.76"))
    assert spec_hash(c) != spec_hash(a)
    assert len(spec_hash(a)) == 64


def test_spec_hash_of_broken_yaml_raises_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        spec_hash(write_spec(tmp_path, "a: [\n"))
    assert info.value.diagnostics[0].line == 2


def test_yaml_and_schema_errors_are_reported_together(tmp_path: Path) -> None:
    text = (FIXTURES / "open" / "lifecycle.yaml").read_text()
    text = text.replace("name: credit-risk", "name: credit-risk\nname: Bad Name", 1)
    text = text.replace("  label: default", "  label: default\n  lable: x")
    report = validate_file(write_spec(tmp_path, text))
    messages = [d.message for d in report.errors]
    assert any("duplicate key 'name'" in m for m in messages)
    assert any("unknown key 'lable'" in m for m in messages)
