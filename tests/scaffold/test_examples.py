"""`examples/` is exactly what the templates render (regenerate: scripts/make_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.scaffold import PATTERNS, example_name, init_project
from mlcycle.scaffold.datasets import same_data
from mlcycle.spec import validate_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA_SUFFIXES = {".csv", ".parquet", ".db"}
FIX = "run `python scripts/make_examples.py` and commit the result"


def _committed_files(root: Path) -> set[str]:
    # mlcycle's working state (from running later commands on an example) is not part of it.
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and not {".mlcycle", "__pycache__"}.intersection(p.relative_to(root).parts)
        and p.name != "model.skops"
    }


@pytest.mark.parametrize("pattern", PATTERNS)
def test_example_is_what_the_templates_render(tmp_path: Path, pattern: str) -> None:
    example = EXAMPLES / pattern
    rendered = init_project(
        example_name(pattern), pattern=pattern, directory=tmp_path / pattern, git=False
    )
    files = {f.path for f in rendered.files}
    assert _committed_files(example) == files, FIX
    for path in sorted(files):
        new, old = rendered.directory / path, example / path
        if old.suffix in DATA_SUFFIXES:
            assert old.read_bytes() == new.read_bytes() or same_data(old, new), f"{path}: {FIX}"
        else:
            assert old.read_bytes() == new.read_bytes(), f"{path}: {FIX}"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_example_spec_validates_as_its_pattern(pattern: str) -> None:
    report = validate_file(EXAMPLES / pattern / "lifecycle.yaml")
    assert report.ok, [d.format() for d in report.errors]
    assert report.pattern.pattern == pattern
