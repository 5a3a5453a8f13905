"""Model artifacts: persistence that runs no code on load, checked by SHA-256.

The format is skops whenever skops can represent the model with types this
module trusts (scikit-learn, NumPy, SciPy and a short allowlist): loading such a
file builds objects from a schema and never executes code from the file.

A model that needs other code, typically an estimator class from the project's
own entry point, falls back to pickle. Loading a pickle runs code, so the
artifact records which classes it needs (`trusted_code`) and is read only after
its SHA-256 matches the one recorded at registration. Why not refuse: the local
registry lives inside the project beside the code training imports, so whoever
could plant a pickle there could already change that code; refusing would make
every custom estimator unusable with the registry.

Every load reads the file once into memory, hashes those bytes and only then
deserializes them, so the bytes checked are the bytes loaded.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from mlcycle.errors import IntegrityError, RegistryError, UsageError

SKOPS: Final = "skops"
PICKLE: Final = "pickle"
FORMATS: Final = (SKOPS, PICKLE)
SUFFIXES: Final = {SKOPS: ".skops", PICKLE: ".pkl"}

# Types skops may build on load: whole libraries we already depend on and trust ...
TRUSTED_MODULES: Final = ("sklearn", "numpy", "scipy")
# ... and a few standard-library names sklearn models are known to carry.
TRUSTED_NAMES: Final = frozenset(
    {
        "builtins.slice",
        "collections.OrderedDict",
        "collections.defaultdict",
        "math.exp",
        "math.expm1",
        "math.log",
        "math.log1p",
        "math.sqrt",
    }
)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtifactInfo:
    """A stored model file: its name, format, SHA-256 (hex) and size in bytes.

    `trusted_code` lists what loading must import and run (pickle only): the
    types skops could not vouch for.
    """

    file: str
    format: str
    sha256: str
    size: int
    trusted_code: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "file": self.file,
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "trusted_code": list(self.trusted_code),
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str) -> ArtifactInfo:
        """Rebuild from `as_dict`'s output; RegistryError naming `where` if it is damaged."""
        try:
            info = cls(
                file=str(raw["file"]),
                format=str(raw["format"]),
                sha256=str(raw["sha256"]),
                size=int(raw["size"]),
                trusted_code=tuple(str(t) for t in raw.get("trusted_code") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RegistryError(f"{where}: damaged artifact record ({e})") from e
        # The file name comes from disk: never let it point outside the entry.
        if Path(info.file).name != info.file or info.file in ("", ".", ".."):
            raise RegistryError(f"{where}: artifact file {info.file!r} is not a plain file name")
        if info.format not in FORMATS:
            raise RegistryError(f"{where}: unknown artifact format {info.format!r}")
        return info


def is_trusted(name: str) -> bool:
    """Whether skops may build the type or function `name` (e.g. `sklearn.tree._tree.Tree`)."""
    return name.split(".", 1)[0] in TRUSTED_MODULES or name in TRUSTED_NAMES


def sha256_bytes(data: bytes) -> str:
    """SHA-256 (hex) of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: Any, path: Path) -> ArtifactInfo:
    """Write `model` next to `path` as skops (or pickle, see the module docstring).

    The suffix of `path` is set by the format chosen: `.skops` or `.pkl`; the
    returned ArtifactInfo names the file written. The write is atomic (temporary
    file, fsync, rename). Raises RegistryError when neither format can hold the model.
    """
    path = Path(path)
    data, fmt, foreign = _serialize(model)
    target = path.with_suffix(SUFFIXES[fmt])
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    return ArtifactInfo(
        file=target.name,
        format=fmt,
        sha256=sha256_bytes(data),
        size=len(data),
        trusted_code=foreign,
    )


def load_model(path: Path, *, sha256: str, format: str) -> Any:
    """Load a model file after checking its SHA-256 and, for skops, the types it holds.

    Raises IntegrityError (naming the file and both hashes) when the file is not
    the one recorded, and RegistryError when it is missing, holds types outside
    the trusted set, or cannot be read.
    """
    path = Path(path)
    if format not in FORMATS:
        raise UsageError(f"{path}: unknown model format {format!r} (expected skops or pickle)")
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise RegistryError(
            f"{path}: model artifact is missing",
            hint="the registry entry is damaged; register the model again",
        ) from e
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the model artifact: {e.strerror}") from e
    actual = sha256_bytes(data)
    if actual != sha256:
        raise IntegrityError(
            f"{path}: SHA-256 mismatch: the registry recorded {sha256}, the file has {actual}",
            hint="the artifact changed after registration; restore it or register the model again",
        )
    if format == SKOPS:
        return _load_skops(data, path)
    return _load_pickle(data, path)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a stored model depends on."""
    import mlcycle

    versions = {"python": platform.python_version()}
    for key, dist in (
        ("sklearn", "scikit-learn"),
        ("numpy", "numpy"),
        ("pandas", "pandas"),
        ("skops", "skops"),
    ):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "not installed"
    versions["mlcycle"] = mlcycle.__version__
    return versions


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a fsync'ed temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- internals ----------------------------------------------------------------------


def _serialize(model: Any) -> tuple[bytes, str, tuple[str, ...]]:
    """(bytes, format, types needing trusted code) for `model`."""
    import skops.io as sio

    skops_problem: str
    try:
        data = sio.dumps(model)
        foreign = _untrusted(sio.get_untrusted_types(data=data))
    except Exception as e:  # skops raises whatever the object's reduction raises
        skops_problem = f"skops cannot store it ({type(e).__name__}: {e})"
        foreign = ()
    else:
        if not foreign:
            return data, SKOPS, ()
        skops_problem = f"it needs code skops does not trust: {', '.join(foreign)}"
    try:
        data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # pickle raises many types (PicklingError, AttributeError, ...)
        raise RegistryError(
            f"cannot store the model: {skops_problem}, and pickle fails too "
            f"({type(e).__name__}: {e})",
            hint="use classes defined at module level (no lambdas or local functions)",
        ) from e
    return data, PICKLE, foreign or _pickled_code(model)


def _untrusted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({n for n in names if not is_trusted(n)}))


def _pickled_code(model: Any) -> tuple[str, ...]:
    """Best-effort name of the code a pickle needs when skops could not even walk the model."""
    cls = type(model)
    return (f"{cls.__module__}.{cls.__qualname__}",)


def _load_skops(data: bytes, path: Path) -> Any:
    import skops.io as sio

    try:
        names = sio.get_untrusted_types(data=data)
    except Exception as e:
        raise RegistryError(f"{path}: not a readable skops file ({type(e).__name__}: {e})") from e
    refused = _untrusted(names)
    if refused:
        raise RegistryError(
            f"{path}: refusing to load untrusted types: {', '.join(refused)}",
            hint="a skops artifact may hold only scikit-learn, NumPy and SciPy types; "
            "a model with custom classes must be registered by mlcycle, which records it "
            "as trusted code",
        )
    try:
        return sio.loads(data, trusted=list(names))
    except Exception as e:
        raise RegistryError(f"{path}: cannot load the model ({type(e).__name__}: {e})") from e


def _load_pickle(data: bytes, path: Path) -> Any:
    try:
        return pickle.loads(data)
    except (ImportError, AttributeError) as e:
        raise RegistryError(
            f"{path}: cannot load the model: {e}",
            hint="the model's own code must be importable here: install the project "
            "or run from its directory",
        ) from e
    except Exception as e:
        raise RegistryError(f"{path}: cannot load the model ({type(e).__name__}: {e})") from e
