"""Project templates: where they are, which files a pattern has, and their substitution.

A template file is a `string.Template` whose delimiter is `@@` (`@@name`), so the
`$` of shells and CI files passes through untouched. Substitution is strict: a
template naming a variable nobody provides is a bug, reported as such. Values are
inserted as data, never re-parsed as template text. A path component `dot-X`
renders as `.X`, so the templates' `.gitignore` and `.github/` do not act on the
repository that ships them.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlcycle.resources import templates_path

COMMON = "_common"
DOT_PREFIX = "dot-"
_SKIPPED = {"__pycache__", ".DS_Store"}


class _Template(string.Template):
    delimiter = "@@"


@dataclass(frozen=True)
class TemplateFile:
    """One file of a pattern's template: where it comes from and where it goes."""

    source: Path
    target: PurePosixPath  # relative to the new project


def pattern_dir(pattern: str) -> Path:
    """The template directory of `pattern`."""
    return templates_path() / pattern


def available_patterns() -> tuple[str, ...]:
    """Patterns that have a template directory (one holding a lifecycle.yaml), sorted.

    Other directories under templates/ (`_common`, `docker`, ...) are not patterns.
    """
    root = templates_path()
    return tuple(
        sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "lifecycle.yaml").is_file()
        )
    )


def template_files(pattern: str) -> list[TemplateFile]:
    """The files a project of `pattern` gets: `_common/`, then `PATTERN/` overriding it."""
    files: dict[PurePosixPath, Path] = {}
    for directory in (templates_path() / COMMON, pattern_dir(pattern)):
        if not directory.is_dir():
            continue
        for source in sorted(directory.rglob("*")):
            relative = source.relative_to(directory)
            if source.is_dir() or _SKIPPED.intersection(relative.parts):
                continue
            files[target_path(relative.as_posix())] = source
    return [TemplateFile(source, target) for target, source in sorted(files.items())]


def target_path(relative: str) -> PurePosixPath:
    """The project path of a template path: `dot-github/x.yml` → `.github/x.yml`."""
    parts = [
        "." + part[len(DOT_PREFIX) :] if part.startswith(DOT_PREFIX) else part
        for part in PurePosixPath(relative).parts
    ]
    return PurePosixPath(*parts)


def render_text(text: str, variables: Mapping[str, str], *, where: str) -> str:
    """Substitute `@@name` placeholders; raises KeyError/ValueError naming `where` on a bad one."""
    try:
        return _Template(text).substitute(variables)
    except KeyError as e:
        raise KeyError(f"template {where} uses @@{e.args[0]}, which is not provided") from e
    except ValueError as e:
        raise ValueError(f"template {where}: {e}") from e


def render_file(template: TemplateFile, variables: Mapping[str, str]) -> str:
    """The rendered text of one template file."""
    text = template.source.read_text(encoding="utf-8")
    return render_text(text, variables, where=str(template.source))
