"""`mlcycle init`: render a working project of one lifecycle pattern from `templates/`.

A project is the pattern's `lifecycle.yaml` (commented for someone who never read
mlcycle's docs), example data (`datasets.py`), a README, CI files for GitHub
Actions and GitLab CI, a `.gitignore`, and a git repository with one commit.

`init_project` never touches a directory that has anything in it, and fails
clean: if anything goes wrong midway it removes exactly what it created (the
target directory was new or empty, so that is everything in it) and re-raises.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlcycle
from mlcycle.errors import RuntimeFailure, UsageError
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.resources import schema_path
from mlcycle.scaffold import datasets
from mlcycle.scaffold.gitrepo import InitialCommit, create_repository, enclosing_repository
from mlcycle.scaffold.render import TemplateFile, render_file, template_files

__all__ = [
    "DEFAULT_PATTERN",
    "PATTERNS",
    "CreatedFile",
    "InitResult",
    "InitialCommit",
    "check_name",
    "example_name",
    "image_name",
    "init_project",
    "render_project",
    "schema_url",
]

log = logging.getLogger(__name__)

PATTERNS = ("interactive", "open", "adaptive", "dual")
"""The patterns `mlcycle init` has templates for."""

DEFAULT_PATTERN = "open"

SPEC_FILE = "lifecycle.yaml"

_DATA_WRITERS: dict[str, Callable[[Path], list[str]]] = {
    "interactive": datasets.write_dump,
    "open": datasets.write_sqlite,
    "adaptive": datasets.write_sqlite,
    "dual": datasets.write_events_csv,
}

# Placeholders for the first rendering of the dual spec, which only needs its model.
_RESEARCH_DRAFT = {"research_roc_auc": "0", "research_accuracy": "0", "research_rows": "0"}

_ABOUT = {
    SPEC_FILE: "the lifecycle spec: start here",
    "README.md": "what the pattern means, what to run next",
    ".gitignore": "keeps .mlcycle/ (mlcycle's state) out of git",
    ".github/workflows/mlcycle.yml": "CI for GitHub Actions",
    ".gitlab-ci.yml": "CI for GitLab",
    "train_by_hand.py": "trains by hand, saves model.skops",
    "features.py": "research's feature engineering, a pipeline step (model.code)",
    datasets.TRAIN_CSV: "example data: a CSV export, 569 cases",
    datasets.EVENTS_DB: "example data: SQLite, events and outcomes",
    datasets.EVENTS_CSV: "example data: CSV with arrival order (seq), 569 events",
    datasets.REFERENCE_CSV: "research's reference cases",
    datasets.PREDICTIONS_CSV: "research's predictions for them",
}


@dataclass(frozen=True)
class CreatedFile:
    """A file `init` created: its path relative to the project, and what it is for."""

    path: str
    about: str


@dataclass(frozen=True)
class InitResult:
    """A new project: where it is, what it holds, its first commit, what to run next."""

    name: str
    pattern: str
    directory: Path
    files: tuple[CreatedFile, ...]
    commit: InitialCommit | None
    next_steps: tuple[str, ...]
    # The repository the project's own was created inside: it sees the project as an
    # untracked directory (git never tracks a nested repository's files).
    outer_repository: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "pattern": self.pattern,
            "directory": str(self.directory),
            "files": [{"path": f.path, "about": f.about} for f in self.files],
            "git": None
            if self.commit is None
            else {
                "commit": self.commit.sha,
                "branch": self.commit.branch,
                "author": self.commit.author,
                "fallback_identity": self.commit.fallback_identity,
                "outer_repository": None
                if self.outer_repository is None
                else str(self.outer_repository),
            },
            "next_steps": list(self.next_steps),
        }


def init_project(
    name: str,
    *,
    pattern: str = DEFAULT_PATTERN,
    directory: Path | str | None = None,
    git: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> InitResult:
    """Create a project called `name` of `pattern` in `directory` (default `./NAME`).

    The directory must not exist or be empty; with `git` it becomes a repository
    on branch `main` with one commit. Raises UsageError (exit 2) for a bad name or
    pattern or a directory that is not empty, GitError when git fails, and
    RuntimeFailure when a file cannot be written; in every failure the directory
    is left as it was before.
    """
    check_name(name)
    if pattern not in PATTERNS:
        raise UsageError(
            f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}",
            hint="`mlcycle init --help` says what each pattern is",
        )
    root = Path(directory if directory is not None else name).expanduser().absolute()
    outer = enclosing_repository(root) if git else None
    created_top = _prepare_directory(root)
    try:
        files = render_project(name, pattern, root, progress=progress)
        commit = None
        if git:
            with step(progress, "create the git repository"):
                commit = create_repository(
                    root, message=f"Create {name} with mlcycle init ({pattern} pattern)"
                )
    except BaseException:
        _remove_created(root, created_top)
        raise
    return InitResult(
        name=name,
        pattern=pattern,
        directory=root,
        files=tuple(CreatedFile(path, _ABOUT.get(path, "")) for path in _ordered(files)),
        commit=commit,
        next_steps=next_steps(pattern, root),
        outer_repository=outer,
    )


def render_project(
    name: str, pattern: str, root: Path, *, progress: Progress = NULL_PROGRESS
) -> list[str]:
    """Write the files of a `pattern` project called `name` into the existing `root`.

    Returns their paths relative to `root` (POSIX). No git, no checks on `root`:
    `init_project` does those. Raises RuntimeFailure when a file cannot be written.
    """
    try:
        with step(progress, "write the example data"):
            written = _DATA_WRITERS[pattern](root)
        variables = template_variables(name, pattern)
        templates = template_files(pattern)
        if pattern == "dual":
            # Research's model uses the project's feature code: it must be there first.
            code = [t for t in templates if t.target.suffix == ".py"]
            for template in code:
                _write_new(root / template.target, render_file(template, variables))
                written.append(template.target.as_posix())
            templates = [t for t in templates if t not in code]
            with step(progress, "fit research's model and write its predictions"):
                research = _research(root, templates, variables)
            written += research.files
            variables.update(
                research_roc_auc=f"{research.metrics['roc_auc']:.4f}",
                research_accuracy=f"{research.metrics['accuracy']:.4f}",
                research_rows=str(research.rows),
            )
        with step(progress, "render the templates", total=len(templates)):
            for template in templates:
                _write_new(root / template.target, render_file(template, variables))
                written.append(template.target.as_posix())
                progress.advance()
    except OSError as e:
        raise RuntimeFailure(
            f"could not write the project in {root}: {e}",
            hint="check the directory's permissions and free space",
        ) from e
    return written


def template_variables(name: str, pattern: str) -> dict[str, str]:
    """The values every template may use."""
    return {
        "name": name,
        "pattern": pattern,
        "image_name": image_name(name),
        "schema_url": schema_url(),
        # Generated CI installs exactly the mlcycle that generated it.
        "mlcycle_requirement": mlcycle.requirement(),
    }


def check_name(name: str) -> None:
    """Raise UsageError unless `name` matches the schema's pattern for project names."""
    pattern = _name_pattern()
    if re.fullmatch(pattern, name):
        return
    suggestion = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("._-")[:63]
    suggestion = re.sub(r"\.{2,}", ".", suggestion).rstrip("._-")
    hint = f"try '{suggestion}'" if suggestion and re.fullmatch(pattern, suggestion) else None
    raise UsageError(
        f"invalid project name {name!r}: use 1 to 63 lowercase letters, digits, '.', '_' "
        "or '-', starting and ending with a letter or digit, never '..'",
        hint=hint,
    )


def image_name(name: str) -> str:
    """A container image name for project `name` (image names allow fewer separators)."""

    def separator(match: re.Match[str]) -> str:
        text = match.group()
        return text if re.fullmatch(r"[._]|__|-+", text) else "-"

    return re.sub(r"[._-]+", separator, name)


def schema_url() -> str:
    """The URL editors fetch the schema from (the schema's `$id`)."""
    return str(_schema()["$id"])


def example_name(pattern: str) -> str:
    """The project name of `examples/PATTERN/`."""
    return f"cancer-{pattern}"


def next_steps(pattern: str, root: Path) -> tuple[str, ...]:
    """The commands to run next in a new `pattern` project at `root`."""
    steps = {
        "interactive": (
            "mlcycle validate",
            "python train_by_hand.py",
            # A release tags a commit: the hand-made model must be in it.
            'git add model.skops && git commit -m "Model trained by hand"',
            "mlcycle release --bump minor",
            "mlcycle deploy",
        ),
        "open": (
            "mlcycle validate",
            "mlcycle train",
            "mlcycle release --bump minor",
            "mlcycle deploy",
            "mlcycle serve",
        ),
        "adaptive": (
            "mlcycle validate",
            "mlcycle release --bump minor",
            "mlcycle deploy",
            "mlcycle serve",
            "mlcycle update",
        ),
        "dual": (
            "mlcycle validate",
            "mlcycle train",
            "mlcycle release --bump minor",
            "mlcycle deploy",
        ),
    }[pattern]
    cwd = Path.cwd().absolute()
    if root == cwd:
        return steps
    shown = root.relative_to(cwd) if root.is_relative_to(cwd) else root
    return (f"cd {shlex.quote(str(shown))}", *steps)


# --- internals ----------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return document


def _name_pattern() -> str:
    return str(_schema()["properties"]["name"]["pattern"])


def _prepare_directory(root: Path) -> Path | None:
    """Check `root` can take a project and create it; returns the topmost directory created."""
    if root.exists() or root.is_symlink():
        if not root.is_dir():
            raise UsageError(
                f"cannot create the project in {root}: it exists and is not a directory",
                hint="choose another place with --directory",
            )
        if any(root.iterdir()):
            raise UsageError(
                f"refusing to create the project in {root}: the directory is not empty",
                hint="choose a new or empty directory with --directory; "
                "mlcycle init never overwrites files",
            )
        return None
    top = root
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        root.mkdir(parents=True)
    except OSError as e:
        raise RuntimeFailure(
            f"cannot create the directory {root}: {e}", hint="check the parent's permissions"
        ) from e
    return top


def _remove_created(root: Path, created_top: Path | None) -> None:
    """Undo a failed init: everything in `root` is ours; `root` too when we made it."""
    try:
        if created_top is not None:
            shutil.rmtree(created_top)
        else:
            for child in list(root.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    except OSError as e:  # the original error matters more; say what is left behind
        log.warning("could not remove everything created in %s: %s", root, e)


def _ordered(paths: list[str]) -> list[str]:
    """The spec first, then the README, then the rest by path."""
    first = {SPEC_FILE: 0, "README.md": 1}
    return sorted(paths, key=lambda p: (first.get(p, 2), p))


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # "x": never overwrite, whatever happened before; bytes: "\n" on every platform.
    with path.open("xb") as handle:
        handle.write(text.encode("utf-8"))


def _research(
    root: Path, templates: list[TemplateFile], variables: dict[str, str]
) -> datasets.Research:
    """Research's files, from the model the dual spec declares (rendered once as a draft)."""
    import yaml

    spec_template = next(t for t in templates if t.target.as_posix() == SPEC_FILE)
    draft = yaml.safe_load(render_file(spec_template, {**variables, **_RESEARCH_DRAFT}))
    return datasets.write_research(root, draft)
