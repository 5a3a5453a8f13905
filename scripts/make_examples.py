"""Regenerate `examples/` from `templates/`: one project per pattern, as `mlcycle init` makes it.

    python scripts/make_examples.py

Each `examples/PATTERN/` is what `mlcycle init cancer-PATTERN --pattern PATTERN
--no-git` renders. Text files are replaced; a data file (CSV, Parquet, SQLite) is
replaced only when its content changed, so that a new library version writing
different bytes for the same tables does not churn the repository. Files under
`examples/PATTERN/` that the templates no longer render are removed, except
mlcycle's working state (`.mlcycle/`).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from mlcycle.scaffold import PATTERNS, example_name, init_project
from mlcycle.scaffold.datasets import same_data

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA_SUFFIXES = {".csv", ".parquet", ".db"}
KEPT = {".mlcycle", "__pycache__"}


def regenerate(pattern: str, target: Path) -> list[str]:
    """Bring `target` up to date with the templates; returns the paths that changed."""
    changed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / pattern
        result = init_project(example_name(pattern), pattern=pattern, directory=staged, git=False)
        rendered = {f.path for f in result.files}
        for path in sorted(rendered):
            new, old = staged / path, target / path
            if old.exists():
                if old.read_bytes() == new.read_bytes():
                    continue
                if old.suffix in DATA_SUFFIXES and same_data(old, new):
                    continue
            old.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(new, old)
            changed.append(path)
    if target.exists():
        for old in sorted(target.rglob("*"), reverse=True):
            relative = old.relative_to(target)
            if KEPT.intersection(relative.parts):
                continue
            if old.is_file() and relative.as_posix() not in rendered:
                old.unlink()
                changed.append(f"{relative.as_posix()} (removed)")
            elif old.is_dir() and not any(old.iterdir()):
                old.rmdir()
    return changed


def main() -> int:
    """Regenerate every example; prints what changed."""
    for pattern in PATTERNS:
        changed = regenerate(pattern, EXAMPLES / pattern)
        summary = ", ".join(changed) if changed else "up to date"
        print(f"examples/{pattern}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
