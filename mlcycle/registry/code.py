"""A generation's copy of the project's model code, and drift between it and the project.

Every generation trained from a project with `model.code` stores those files
under `code/` beside its artifact, byte for byte what training imported, and
records their SHA-256 in the entry (`Entry.code`). Loading the model imports
them from that copy (never from the project directory), after checking every
hash. A change to the project's code without a new release is drift:
`code_drift` tells what changed, `refuse_code_drift` turns it into the error an
agent raises before it trains a new generation of an old release.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

from mlcycle.errors import IntegrityError, UsageError
from mlcycle.registry.artifacts import fsync_dir, sha256_bytes
from mlcycle.spec.code import CodeDrift, code_hashes, compare, module_of, read_code

if TYPE_CHECKING:
    from mlcycle.spec.model import Spec

CODE_DIR: Final = "code"


def check_code_path(path: str, *, where: str) -> str:
    """`path` if it is a relative POSIX path of a Python module; ValueError otherwise."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or module_of(path) is None:
        raise ValueError(f"{where}: {path!r} is not a model-code file path")
    return path


def write_code(directory: Path, files: Mapping[str, bytes]) -> None:
    """Write `files` (relative path → bytes) under `directory`, fsync'ed."""
    for path, data in sorted(files.items()):
        target = Path(directory) / check_code_path(path, where="model code")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    for parent in sorted({(Path(directory) / p).parent for p in files}, reverse=True):
        fsync_dir(parent)


def read_code_checked(
    directory: Path, hashes: Mapping[str, str], *, where: str
) -> dict[str, bytes]:
    """The stored code files, each checked against its recorded SHA-256.

    IntegrityError names the file that is missing, a link, or not the one recorded.
    """
    files: dict[str, bytes] = {}
    for path, sha256 in sorted(hashes.items()):
        target = Path(directory) / check_code_path(path, where=where)
        if target.is_symlink() or not target.is_file():
            raise IntegrityError(
                f"{target}: model code of {where} is missing",
                hint="the stored copy is damaged; register the model again",
            )
        data = target.read_bytes()
        actual = sha256_bytes(data)
        if actual != sha256:
            raise IntegrityError(
                f"{target}: SHA-256 mismatch: {where} recorded {sha256}, the file has {actual}",
                hint="the model code changed after registration; restore it or register "
                "the model again",
            )
        files[path] = data
    return files


def project_code(spec: Spec) -> dict[str, bytes]:
    """The bytes of the project's `model.code` files now (UsageError for a bad entry)."""
    return read_code(spec.root, spec.model.code) if spec.model.code else {}


def code_drift(spec: Spec, recorded: Mapping[str, str]) -> CodeDrift:
    """How the project's model code now differs from `recorded` (`Entry.code`)."""
    return compare(recorded, code_hashes(project_code(spec)))


def refuse_code_drift(spec: Spec, recorded: Mapping[str, str], *, release: str) -> None:
    """UsageError (exit 2) when the project's model code is not the code `release` recorded.

    A new generation is new data with the same code; different code is a new release.
    """
    drift = code_drift(spec, recorded)
    if drift:
        raise UsageError(
            f"the project's model code differs from release {release}'s ({drift.describe()}); "
            "a generation keeps its release's code",
            hint="release the new code (mlcycle release), or restore the files release "
            f"{release} was made with",
        )
