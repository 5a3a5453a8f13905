"""Model artifacts: skops files that run no code on load, checked by SHA-256.

Every model is written as skops, and only when each type and function it names
is one `TrustPolicy` trusts (scikit-learn estimators, NumPy/SciPy data, a few
numeric functions, the project's own declared code): a file the registry
writes is a file the registry will load. Loading checks the names again
against the policy before skops builds anything, so a planted or edited file
cannot make mlcycle call a function it does not trust.

Pickle is never written and never loaded here: unpickling runs whatever the
file says, and a recorded SHA-256 proves only that the file is the one
recorded. Registry entries from older mlcycle versions that hold a pickle are
refused with the way to re-save them as skops; `load_untrusted_pickle` exists
for the one explicit opt-in (`release --model FILE.pkl --trust-pickle`).

Every load reads the file once into memory, hashes those bytes and only then
deserializes them, so the bytes checked are the bytes loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pickle
import platform
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import mlcycle
from mlcycle.errors import IntegrityError, RegistryError, UsageError
from mlcycle.registry.trust import DEFAULT_POLICY, TrustPolicy
from mlcycle.spec.code import without_bytecode

SKOPS: Final = "skops"
PICKLE: Final = "pickle"  # read from older entries only, to refuse them with a way out
FORMATS: Final = (SKOPS, PICKLE)
SUFFIXES: Final = {SKOPS: ".skops", PICKLE: ".pkl"}


@dataclass(frozen=True)
class ArtifactInfo:
    """A stored model file: its name, format, SHA-256 (hex) and size in bytes.

    `trusted_code` is read from entries of older mlcycle versions, which stored
    pickles and listed the code loading them would run; nothing writes it now.
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


ONNX_FILE: Final = "model.onnx"
ONNX_TASKS: Final = ("classification", "regression")


@dataclass(frozen=True)
class OnnxForm:
    """The model converted to ONNX for serving, verified against the model itself.

    Made once at registration (`mlcycle.registry.onnx.compile_onnx`), so that serving
    runs ONNX Runtime on these bytes and never imports skl2onnx or scikit-learn.
    `classes` are the classifier's labels in the order of its probability columns.
    """

    model: bytes = field(repr=False)
    task: str
    classes: tuple[Any, ...] | None = None
    note: str = ""


@dataclass(frozen=True)
class OnnxArtifact:
    """A stored ONNX form: its file, SHA-256, size, and what the engine needs to run it.

    The file is data (a graph of operators, no Python code), and like the model
    file it is read only after its SHA-256 matches this record.
    """

    file: str
    sha256: str
    size: int
    task: str
    classes: tuple[Any, ...] | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "task": self.task,
            "classes": None if self.classes is None else list(self.classes),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: str) -> OnnxArtifact:
        """Rebuild from `as_dict`'s output; RegistryError naming `where` if it is damaged."""
        try:
            classes = raw.get("classes")
            info = cls(
                file=str(raw["file"]),
                sha256=str(raw["sha256"]),
                size=int(raw["size"]),
                task=str(raw["task"]),
                classes=None if classes is None else tuple(classes),
                note=str(raw.get("note") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RegistryError(f"{where}: damaged ONNX record ({e})") from e
        if info.file != ONNX_FILE:
            raise RegistryError(f"{where}: ONNX file {info.file!r} is not {ONNX_FILE}")
        if info.task not in ONNX_TASKS:
            raise RegistryError(f"{where}: unknown task {info.task!r} in the ONNX record")
        if info.classes is not None and not all(
            isinstance(c, str | int | float | bool) for c in info.classes
        ):
            raise RegistryError(f"{where}: the ONNX record's classes are not plain values")
        return info


def save_onnx(form: OnnxForm, directory: Path) -> OnnxArtifact:
    """Write `form` as `model.onnx` into `directory` (atomically); returns its record."""
    write_atomic(Path(directory) / ONNX_FILE, form.model)
    return OnnxArtifact(
        file=ONNX_FILE,
        sha256=sha256_bytes(form.model),
        size=len(form.model),
        task=form.task,
        classes=form.classes,
        note=form.note,
    )


def read_onnx(path: Path, *, sha256: str) -> bytes:
    """The bytes of a stored ONNX form, after checking their SHA-256 (IntegrityError if not)."""
    return _read_checked(Path(path), sha256)


def sha256_bytes(data: bytes) -> str:
    """SHA-256 (hex) of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_model(model: Any, path: Path, *, trust: TrustPolicy = DEFAULT_POLICY) -> ArtifactInfo:
    """Write `model` as skops at `path` with the suffix `.skops`; returns what was written.

    The write is atomic (temporary file, fsync, rename). Raises RegistryError
    when skops cannot represent the model, or when it names types or functions
    `trust` does not trust (the file could never be loaded again).
    """
    path = Path(path)
    data = _serialize(model, trust)
    target = path.with_suffix(SUFFIXES[SKOPS])
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    return ArtifactInfo(file=target.name, format=SKOPS, sha256=sha256_bytes(data), size=len(data))


def load_model(path: Path, *, sha256: str, format: str, trust: TrustPolicy = DEFAULT_POLICY) -> Any:
    """Load a model file after checking its SHA-256 and the names it holds against `trust`.

    Raises IntegrityError (naming the file and both hashes) when the file is not
    the one recorded, and RegistryError when it is missing, is a pickle, names
    types or functions outside `trust` (listing them), or cannot be read.
    """
    path = Path(path)
    if format not in FORMATS:
        raise UsageError(f"{path}: unknown model format {format!r} (expected skops)")
    if format == PICKLE:
        raise RegistryError(
            f"{path}: refusing to load a pickle: unpickling runs whatever code the file "
            "holds, and mlcycle loads only skops files",
            hint="re-save it as skops where you trust it: in Python, "
            "`model = pickle.load(open(PATH, 'rb')); skops.io.dump(model, 'model.skops')`, "
            "then register that file (mlcycle release --model model.skops), or retrain "
            "(mlcycle train / release)",
        )
    data = _read_checked(path, sha256)
    return _load_skops(data, path, trust)


def load_untrusted_pickle(path: Path) -> Any:
    """Unpickle `path`: runs any code the file holds. Only for an explicit user opt-in."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the model file: {e.strerror}") from e
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


def library_versions(*, onnx: bool = False) -> dict[str, str]:
    """Versions of Python and the libraries a stored model depends on.

    With `onnx` (the entry has an ONNX form), also the ONNX Runtime that verified it:
    an image serving that form pins exactly this version.
    """
    versions = {"python": platform.python_version()}
    libraries = [
        ("sklearn", "scikit-learn"),
        ("numpy", "numpy"),
        ("pandas", "pandas"),
        ("skops", "skops"),
    ]
    if onnx:
        libraries.append(("onnxruntime", "onnxruntime"))
    for key, dist in libraries:
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


def _serialize(model: Any, trust: TrustPolicy) -> bytes:
    """The skops bytes of `model`; RegistryError when they could not be loaded again."""
    import skops.io as sio

    try:
        data = sio.dumps(model)
        names = sio.get_untrusted_types(data=data)
    except Exception as e:  # skops raises whatever the object's reduction raises
        raise RegistryError(
            f"cannot store the model: skops cannot represent it ({type(e).__name__}: {e})",
            hint="use classes defined at module level (no lambdas or local functions)",
        ) from e
    refused = trust.refused(names)
    if refused:
        raise RegistryError(
            f"cannot store the model: it holds code mlcycle does not trust: {', '.join(refused)}",
            hint=trust.hint(),
        )
    return data


def _read_checked(path: Path, sha256: str) -> bytes:
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
    return data


def _load_skops(data: bytes, path: Path, trust: TrustPolicy) -> Any:
    import skops.io as sio

    try:
        names = sio.get_untrusted_types(data=data)
    except Exception as e:
        raise RegistryError(f"{path}: not a readable skops file ({type(e).__name__}: {e})") from e
    refused = trust.refused(names)
    if refused:
        raise RegistryError(
            f"{path}: refusing to load untrusted types: {', '.join(refused)}",
            hint=trust.hint(),
        )
    try:
        with _project_importable(trust, names):
            return sio.loads(data, trusted=list(names))
    except RegistryError:
        raise
    except Exception as e:
        raise RegistryError(f"{path}: cannot load the model ({type(e).__name__}: {e})") from e


@contextlib.contextmanager
def _project_importable(trust: TrustPolicy, names: list[str]) -> Iterator[None]:
    """Make the model code importable from `trust.root` (and only there) while skops builds.

    A module of the same name imported from another directory (the project's
    working copy, another generation's code) is forgotten first, so the names
    resolve to this copy; models already built keep the module they were built
    with. A standard-library or installed module of that name is never
    replaced: the load is refused instead.
    """
    needed = {n.rsplit(".", 1)[0] for n in names if n in trust.project_code}
    if not needed or trust.root is None:
        yield
        return
    root = trust.root.resolve()
    tops = sorted({module.split(".")[0] for module in needed})
    for top in tops:
        loaded = sys.modules.get(top)
        if loaded is None:
            continue
        origin = _origin(loaded)
        if origin is not None and origin.is_relative_to(root):
            continue
        if origin is None or top in sys.stdlib_module_names or _installed(origin):
            raise RegistryError(
                f"the model needs its module {top} from {root}, but a module of that name "
                f"is already loaded from {origin or 'elsewhere'}",
                hint="rename the project's module so that it does not shadow another one",
            )
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        with without_bytecode():  # nothing written into the registry's copy of the code
            yield
    finally:
        # Only for the duration of the load: the code's path must not leak.
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))


def _origin(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    if file:
        return Path(file).resolve()
    paths = list(getattr(module, "__path__", None) or [])
    return Path(paths[0]).resolve() if paths else None


def _installed(path: Path) -> bool:
    import sysconfig

    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return any(path.is_relative_to(Path(sysconfig.get_paths()[k]).resolve()) for k in keys)
