"""The project's model code (`model.code`): which files, which modules, which names.

`model.code` lists files and directories of the project (`features.py`,
`mypkg/`) that a trained model refers to: a transformer class, a function a
`FunctionTransformer` holds. Those files are copied with every generation
trained from them, travel in bundles and images, and are imported from that
copy when the model loads; their classes and functions are the only project
names a model file may name (registry/trust.py).

Everything here reads files and parses them with `ast`; nothing is imported,
so `validate` can list a project's code without running it. A path is refused
when it is absolute, missing, not Python, or leads (through `..` or a symbolic
link) outside the project. Where the code is imported (training, loading a model),
`without_bytecode` keeps Python from writing `__pycache__` beside it.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mlcycle.errors import UsageError

SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".mlcycle"})


@contextlib.contextmanager
def without_bytecode() -> Iterator[None]:
    """Import the project's code without writing `__pycache__` beside it.

    Python caches what it imports next to the source: in the project, that makes the
    work tree dirty after `train` (untracked `__pycache__/`, unless .gitignore lists it)
    and the next `release` refuses it; in a generation's copy of the code, it writes
    into the registry. The flag is process-wide, so it is restored afterwards.
    """
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = before


@dataclass(frozen=True)
class CodeFile:
    """One Python file of the model code: its path relative to the project, its module."""

    path: str  # POSIX, relative to the project directory
    module: str  # dotted module name, as imported with the project directory on sys.path


@dataclass(frozen=True)
class CodeProblem:
    """Why the `index`-th entry of `model.code` is refused."""

    index: int
    message: str
    hint: str | None = None


def module_of(path: str) -> str | None:
    """`features.py` → `features`, `pkg/__init__.py` → `pkg`, `pkg/a.py` → `pkg.a`, else None."""
    pure = PurePosixPath(path)
    if pure.suffix != ".py":
        return None
    parts = list(pure.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def scan(
    root: Path, entries: Sequence[str]
) -> tuple[tuple[CodeFile, ...], tuple[CodeProblem, ...]]:
    """The Python files `entries` (as `model.code` writes them) name under `root`.

    Directories are walked (hidden directories and `__pycache__` skipped); files
    are kept once, in path order. Every refused entry is a `CodeProblem`.
    """
    base = Path(root).resolve()
    found: dict[str, CodeFile] = {}
    problems: list[CodeProblem] = []
    for index, entry in enumerate(entries):
        files, problem = _expand(base, index, entry)
        if problem is not None:
            problems.append(problem)
            continue
        for rel in files:
            module = module_of(rel)
            if module is None:
                problems.append(
                    CodeProblem(
                        index,
                        f"model.code: {rel} is not an importable module name",
                        hint="name Python files and directories as identifiers (letters, "
                        "digits, '_'), ending in .py",
                    )
                )
                continue
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "mlcycle":
                problems.append(
                    CodeProblem(
                        index,
                        f"model.code: module '{module}' ({rel}) shadows the installed module "
                        f"'{top}'",
                        hint=f"rename {rel} to a name of its own",
                    )
                )
                continue
            found.setdefault(rel, CodeFile(rel, module))
    return tuple(sorted(found.values(), key=lambda f: f.path)), tuple(problems)


def code_files(root: Path, entries: Sequence[str]) -> tuple[CodeFile, ...]:
    """`scan`'s files; UsageError (exit 2) listing every problem when there is one."""
    files, problems = scan(root, entries)
    if problems:
        raise UsageError(
            "; ".join(p.message for p in problems),
            hint=problems[0].hint or "fix model.code in lifecycle.yaml",
        )
    return files


def read_code(root: Path, entries: Sequence[str]) -> dict[str, bytes]:
    """The bytes of every model-code file, by relative path (UsageError as `code_files`)."""
    base = Path(root)
    return {f.path: (base / f.path).read_bytes() for f in code_files(base, entries)}


def code_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    """SHA-256 (hex) of each file's bytes, by relative path."""
    return {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}


def defined_names(source: bytes | str, module: str) -> frozenset[str]:
    """`module.Name` of each class and function defined at the top level of `source`.

    Only definitions count: a name the module imports (`LogisticRegression`) is
    someone else's and is never trusted through it. Unparsable source defines nothing.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    kinds = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return frozenset(f"{module}.{node.name}" for node in tree.body if isinstance(node, kinds))


def code_names(files: Mapping[str, bytes]) -> frozenset[str]:
    """Every exact name the model code defines (see `defined_names`)."""
    names: set[str] = set()
    for path, data in files.items():
        module = module_of(path)
        if module is not None:
            names |= defined_names(data, module)
    return frozenset(names)


def project_names(root: Path, entries: Sequence[str]) -> frozenset[str]:
    """The names the project's model code defines now (nothing imported; empty on problems)."""
    files, _ = scan(root, entries)
    names: set[str] = set()
    for f in files:
        try:
            names |= defined_names((Path(root) / f.path).read_bytes(), f.module)
        except OSError:
            continue
    return frozenset(names)


@dataclass(frozen=True)
class CodeDrift:
    """How the project's model code differs from what a generation recorded."""

    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self) -> str:
        """`changed: features.py; added: mypkg/x.py`."""
        parts = [
            f"{label}: {', '.join(paths)}"
            for label, paths in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
            )
            if paths
        ]
        return "; ".join(parts) or "no difference"


def compare(recorded: Mapping[str, str], current: Mapping[str, str]) -> CodeDrift:
    """The difference between recorded and current `{path: sha256}` maps."""
    return CodeDrift(
        changed=tuple(sorted(p for p in recorded if p in current and current[p] != recorded[p])),
        added=tuple(sorted(p for p in current if p not in recorded)),
        removed=tuple(sorted(p for p in recorded if p not in current)),
    )


# --- internals ------------------------------------------------------------------------


def _expand(base: Path, index: int, entry: str) -> tuple[list[str], CodeProblem | None]:
    pure = PurePosixPath(entry)
    if not entry or pure.is_absolute() or "\\" in entry or ".." in pure.parts:
        return [], CodeProblem(
            index,
            f"model.code: '{entry}' must be a path relative to the project, without '..'",
            hint="list files and directories beside lifecycle.yaml, e.g. features.py",
        )
    path = base / pure
    if not path.exists() and not path.is_symlink():
        return [], CodeProblem(
            index,
            f"model.code: {entry} does not exist in {base}",
            hint="create it, or remove it from model.code",
        )
    if not _inside(path, base):
        return [], CodeProblem(
            index,
            f"model.code: {entry} leads outside the project (a symbolic link to {path.resolve()})",
            hint="copy the code into the project instead of linking to it",
        )
    if path.is_file():
        if path.suffix != ".py":
            return [], CodeProblem(
                index,
                f"model.code: {entry} is not a Python file (.py)",
                hint="model.code lists Python files and directories of them",
            )
        return [path.relative_to(base).as_posix()], None
    files: list[str] = []
    for child in _walk(path):
        if not _inside(child, base):
            return [], CodeProblem(
                index,
                f"model.code: {child.relative_to(base).as_posix()} leads outside the project "
                f"(a symbolic link to {child.resolve()})",
                hint="copy the code into the project instead of linking to it",
            )
        files.append(child.relative_to(base).as_posix())
    if not files:
        return [], CodeProblem(
            index,
            f"model.code: {entry} holds no Python file",
            hint="list the directory of your package's .py files, or remove the entry",
        )
    return files, None


def _walk(directory: Path) -> Iterable[Path]:
    for child in sorted(directory.iterdir()):
        if child.name in SKIPPED_DIRS or child.name.startswith("."):
            continue
        if child.is_dir() and not child.is_symlink():
            yield from _walk(child)
        elif child.suffix == ".py" and (child.is_file() or child.is_symlink()):
            yield child


def _inside(path: Path, base: Path) -> bool:
    try:
        return path.resolve().is_relative_to(base)
    except (OSError, RuntimeError):  # a symlink loop
        return False
