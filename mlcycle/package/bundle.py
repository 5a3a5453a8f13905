"""Bundles: a release packaged to be served anywhere, verified on load.

A bundle is a directory (and, for shipping, a `.tar.gz` of that directory):

    bundle.json       what it holds: project, release, generation, the SHA-256 of
                      every file, library versions, serving metadata
    model.skops       the artifact, byte for byte the registry's
    lifecycle.yaml    the spec the release was made with
    code/             the model's project code (`model.code`), when it has any:
                      the generation's stored copy, imported from here on load

`load_bundle` checks every file against bundle.json before anything is used.
Those hashes sit inside the same unsigned archive, so they catch damage, not an
attacker: a bundle therefore never holds a format that runs code on load (a
pickle is refused when building and when loading), and its model is loaded
with the library-only trust policy (registry/trust.py) plus, exactly, the
classes and functions its own `code/` files define. A bundle with model code
runs that code when the model loads, as the project did: ship it like code.
Extracting an archive never writes outside its target: members must be plain
files or directories with relative paths and no `..`, links of any kind are
refused, and the archive is unpacked into a fresh directory that is renamed
into place only when complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import IntegrityError, PackagingError, RegistryError, UsageError
from mlcycle.redact import mask_urls_in_bytes
from mlcycle.registry.artifacts import (
    SKOPS,
    ArtifactInfo,
    OnnxArtifact,
    load_model,
    read_onnx,
    sha256_bytes,
    sha256_file,
)
from mlcycle.registry.code import CODE_DIR, check_code_path, read_code_checked, write_code
from mlcycle.registry.features import Feature, estimator_features
from mlcycle.registry.refs import ModelRef, check_release
from mlcycle.registry.trust import DEFAULT_POLICY, TrustPolicy

if TYPE_CHECKING:
    from mlcycle.registry import Entry, Registry
    from mlcycle.spec.model import Spec

BUNDLE_FILE: Final = "bundle.json"
SPEC_FILE: Final = "lifecycle.yaml"
# Version of the bundle.json layout; a reader refuses bundles newer than it knows.
BUNDLE_SCHEMA: Final = 1
# Distribution names on PyPI of the libraries `library_versions` records.
DISTRIBUTIONS: Final = {
    "sklearn": "scikit-learn",
    "numpy": "numpy",
    "pandas": "pandas",
    "skops": "skops",
    "onnxruntime": "onnxruntime",
}
# PEP 440 public and local versions: digits, letters, '.', '+', '!', '-', '_' only. A
# version lands in requirements.txt, so anything else (spaces, newlines, options) is refused.
_VERSION_RE: Final = re.compile(r"^[0-9][0-9A-Za-z.!+_-]{0,63}$")
_FEATURE_NAME_MAX: Final = 256
# An archive bigger than this when unpacked is refused (a model bundle is megabytes).
MAX_UNPACKED_BYTES: Final = 4 << 30


def pinned_requirements(versions: Mapping[str, str], *, where: str, hint: str) -> list[str]:
    """`DIST==VERSION` lines for the libraries in `versions` (as `library_versions` records).

    Raises PackagingError, naming `where`, when a version is not a plain version
    string: it is written into requirements.txt, so options or newlines must never pass.
    """
    pins = []
    for key, dist in DISTRIBUTIONS.items():
        version = versions.get(key)
        if version is None or version == "not installed":
            continue
        if _VERSION_RE.match(version) is None:
            raise PackagingError(
                f"{where}: library version {key}={version!r} is not a version number",
                hint=hint,
            )
        pins.append(f"{dist}=={version}")
    return pins


@dataclass(frozen=True)
class Bundle:
    """A bundle on disk (a directory) and what its bundle.json says.

    `features` and `output` are the serving metadata: the input schema and the
    kind of answer (`{"kind": "label", "classes": [...]}` for a classifier,
    `{"kind": "value"}` for a regressor).
    """

    path: Path
    project: str
    release: str
    generation: int
    artifact: ArtifactInfo
    spec_sha256: str
    spec_hash: str | None
    git_commit: str | None
    versions: Mapping[str, str]
    features: tuple[Feature, ...]
    task: str
    output: Mapping[str, Any]
    created_at: str
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    onnx: OnnxArtifact | None = None
    """The model's ONNX form (from the registry entry): what the bundle is served with,
    so that its image needs ONNX Runtime and not scikit-learn, SciPy or pandas."""
    code: Mapping[str, str] = field(default_factory=dict)  # relative path → SHA-256

    @property
    def code_path(self) -> Path:
        """The directory of the model code inside the bundle (absent without code)."""
        return self.path / CODE_DIR

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the bundle holds, bundle.json first."""
        code = tuple(self.code_path / p for p in sorted(self.code))
        onnx = (self.path / self.onnx.file,) if self.onnx is not None else ()
        return (self.path / BUNDLE_FILE, self.artifact_path, self.spec_path, *onnx, *code)

    @property
    def ref(self) -> str:
        """`RELEASE/GENERATION`."""
        return str(ModelRef(self.release, self.generation))

    @property
    def artifact_path(self) -> Path:
        """The model file inside the bundle."""
        return self.path / self.artifact.file

    @property
    def spec_path(self) -> Path:
        """The spec copy inside the bundle."""
        return self.path / SPEC_FILE

    def requirements(self) -> list[str]:
        """Pinned pip requirements for the libraries the model was trained with.

        Raises PackagingError when a recorded version is not a plain version
        string (it would otherwise be written into requirements.txt).
        """
        return pinned_requirements(
            self.versions,
            where=str(self.path / BUNDLE_FILE),
            hint="rebuild the bundle from an intact registry entry",
        )

    def load_onnx(self) -> bytes | None:
        """The ONNX form's bytes after checking their SHA-256 again (None: it has none)."""
        if self.onnx is None:
            return None
        return read_onnx(self.path / self.onnx.file, sha256=self.onnx.sha256)

    def load_model(self) -> Any:
        """The bundled estimator, after checking its SHA-256 again (IntegrityError if changed).

        Library names are trusted, and the classes and functions the bundle's own
        `code/` files define (checked against bundle.json), imported from there;
        anything else is refused (RegistryError naming it).
        """
        return load_model(
            self.artifact_path,
            sha256=self.artifact.sha256,
            format=self.artifact.format,
            trust=self.trust(),
        )

    def trust(self) -> TrustPolicy:
        """The policy the bundled model loads under (see `load_model`)."""
        if not self.code:
            return DEFAULT_POLICY
        files = read_code_checked(self.code_path, self.code, where=f"bundle {self.path}")
        return TrustPolicy.for_code(
            self.code_path, files, origin=f"model.code in the bundle {self.path}"
        )

    def as_dict(self) -> dict[str, Any]:
        """What bundle.json holds."""
        return {
            "schema": BUNDLE_SCHEMA,
            "project": self.project,
            "release": self.release,
            "generation": self.generation,
            "ref": self.ref,
            "artifact": self.artifact.as_dict(),
            "spec": {"file": SPEC_FILE, "sha256": self.spec_sha256, "hash": self.spec_hash},
            "git_commit": self.git_commit,
            "versions": dict(self.versions),
            "serving": {
                "task": self.task,
                "features": [f.as_dict() for f in self.features],
                "output": dict(self.output),
            },
            "metrics": dict(self.metrics),
            "code": dict(self.code),
            "created_at": self.created_at,
            **({"onnx": self.onnx.as_dict()} if self.onnx is not None else {}),
        }


# --- building -------------------------------------------------------------------------


def build_bundle(
    spec: Spec,
    registry: Registry,
    entry: Entry,
    dest: Path,
    *,
    spec_file: Path | None = None,
    features: Sequence[Feature | Mapping[str, Any] | str] | None = None,
    task: str | None = None,
) -> Bundle:
    """Package the registry entry `entry` as a bundle directory at `dest`.

    `dest` must not exist or be an empty directory; the bundle is assembled in
    a sibling directory and renamed into place, so `dest` is complete or absent.
    The artifact is copied only after its SHA-256 matches the registry's record
    (IntegrityError otherwise). The spec copied is `spec_file` (default:
    `lifecycle.yaml` in `spec.root`). Features default to those recorded at
    training (`entry.data["features"]`), else the estimator's own; the task to
    the one recorded at training, else the spec's, else what the estimator is.
    Raises UsageError for a rejected entry, PackagingError when files cannot be written.
    """
    if not entry.is_candidate:
        raise UsageError(
            f"{entry.project} {entry.ref} {entry.unservable} and cannot be packaged",
            hint="package a candidate: `mlcycle models` lists them",
        )
    if entry.artifact.format != SKOPS:
        raise PackagingError(
            f"{entry.project} {entry.ref} holds a {entry.artifact.format} artifact, and a "
            "bundle never carries a format that runs code when loaded",
            hint="register the model again as skops (mlcycle train, or release --model "
            "FILE.skops), then package that entry",
        )
    dest = Path(dest)
    source = registry.artifact_path(entry)
    spec_source = Path(spec_file) if spec_file is not None else spec.root / SPEC_FILE
    try:
        data = source.read_bytes()
        spec_bytes = mask_urls_in_bytes(spec_source.read_bytes())  # no secret rides along
    except FileNotFoundError as e:
        raise PackagingError(
            f"{e.filename}: missing; cannot build the bundle",
            hint="check the registry entry and the spec's path",
        ) from e
    except OSError as e:
        raise PackagingError(f"{e.filename}: cannot read: {e.strerror}") from e
    actual = sha256_bytes(data)
    if actual != entry.artifact.sha256:
        raise IntegrityError(
            f"{source}: SHA-256 mismatch: the registry recorded {entry.artifact.sha256}, "
            f"the file has {actual}",
            hint="the artifact changed after registration; restore it or register the model again",
        )
    code = (
        read_code_checked(
            registry.code_dir(entry), entry.code, where=f"{entry.project} {entry.ref}"
        )
        if entry.code
        else {}
    )
    _require_servable(data, entry, code)
    onnx_data = registry.load_onnx(entry)  # checked against the entry's SHA-256

    model: Any = None
    recorded = _recorded_features(entry, features)
    training = entry.extra.get("training") if isinstance(entry.extra, Mapping) else None
    resolved_task = task or (training or {}).get("task") or spec.model.task
    if recorded is None or resolved_task is None:
        model = load_model(
            source,
            sha256=entry.artifact.sha256,
            format=entry.artifact.format,
            trust=registry.trust_for(entry),  # the entry's own stored code, not the project's
        )
    resolved_features = recorded if recorded is not None else _model_features(model, spec)
    if resolved_task is None:
        resolved_task = _model_task(model)
    if resolved_task not in ("classification", "regression"):
        raise PackagingError(f"{entry.project} {entry.ref}: unknown task {resolved_task!r}")
    output: dict[str, Any] = {"kind": "label" if resolved_task == "classification" else "value"}
    classes = getattr(model, "classes_", None) if model is not None else None
    if classes is not None:
        output["classes"] = _plain_list(classes)
    elif entry.onnx is not None and entry.onnx.classes is not None:
        output["classes"] = list(entry.onnx.classes)

    bundle = Bundle(
        path=dest,
        project=entry.project,
        release=entry.release,
        generation=entry.generation,
        artifact=entry.artifact,
        spec_sha256=sha256_bytes(spec_bytes),
        spec_hash=entry.spec_hash,
        git_commit=entry.git_commit,
        versions=dict(entry.versions),
        features=resolved_features,
        task=resolved_task,
        output=output,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        metrics={k: (v if v == v else None) for k, v in entry.metrics.items()},  # NaN → null
        code=dict(entry.code),
        onnx=entry.onnx,
    )
    bundle.requirements()  # refuse odd versions now rather than at image build time
    _reject_nonempty(dest)
    staging = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        (staging / entry.artifact.file).write_bytes(data)
        if entry.onnx is not None and onnx_data is not None:
            (staging / entry.onnx.file).write_bytes(onnx_data)
        (staging / SPEC_FILE).write_bytes(spec_bytes)
        if code:
            write_code(staging / CODE_DIR, code)
        (staging / BUNDLE_FILE).write_text(
            json.dumps(bundle.as_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        if dest.exists():
            dest.rmdir()  # empty, checked above
        staging.rename(dest)
    except OSError as e:
        raise PackagingError(
            f"{dest}: cannot write the bundle: {e.strerror or e}",
            hint="check that the directory is writable and the disk is not full",
        ) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bundle


def write_archive(bundle: Bundle, target: Path) -> Path:
    """Write `bundle` as a gzip'ed tar at `target` (members are relative, no links).

    Members carry no owner and a fixed mode, so the archive says nothing of the
    machine it was made on. Returns `target`.
    """
    target = Path(target)

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w:gz") as tar:
            # Only the files bundle.json names (and their directories), in a fixed order.
            for path in sorted(bundle.files, key=lambda p: p.relative_to(bundle.path).as_posix()):
                if path.is_symlink() or not path.is_file():
                    raise PackagingError(f"{path}: a bundle holds only plain files")
                tar.add(
                    path,
                    arcname=path.relative_to(bundle.path).as_posix(),
                    recursive=False,
                    filter=clean,
                )
        tmp.replace(target)
    except OSError as e:
        raise PackagingError(f"{target}: cannot write the archive: {e.strerror or e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return target


# --- loading --------------------------------------------------------------------------


def load_bundle(path: Path, *, extract_to: Path | None = None) -> Bundle:
    """The bundle at `path` (a directory, or a `.tar.gz` written by `write_archive`).

    Every file is checked against bundle.json: IntegrityError when one differs,
    PackagingError when bundle.json is missing, damaged or from a newer
    mlcycle. An archive is first unpacked by `extract_bundle` into `extract_to`
    (default: a new directory under the system's temporary directory).
    """
    path = Path(path)
    if path.is_file():
        if extract_to is None:
            extract_to = Path(tempfile.mkdtemp(prefix="mlcycle-bundle-")) / "bundle"
        return extract_bundle(path, extract_to)
    if not path.is_dir():
        raise PackagingError(
            f"{path}: no such bundle", hint="pass a bundle directory or its .tar.gz"
        )
    manifest = path / BUNDLE_FILE
    try:
        raw = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise PackagingError(
            f"{path}: not a bundle (no {BUNDLE_FILE})",
            hint="build one with `mlcycle deploy`, or pass the bundle's directory",
        ) from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PackagingError(f"{manifest}: unreadable ({e})") from e
    bundle = _from_dict(raw, path=path)
    _verify(bundle.artifact_path, bundle.artifact.sha256, size=bundle.artifact.size)
    _verify(bundle.spec_path, bundle.spec_sha256)
    for file, sha256 in bundle.code.items():
        _verify(bundle.code_path / file, sha256)
    if bundle.onnx is not None:
        _verify(path / bundle.onnx.file, bundle.onnx.sha256, size=bundle.onnx.size)
    return bundle


def extract_bundle(archive: Path, dest: Path) -> Bundle:
    """Unpack a bundle archive into `dest` (absent or empty) and load it.

    Refused with PackagingError, before anything is written: absolute member
    names, `..` components, links (symbolic or hard), devices and FIFOs,
    duplicate names and archives that unpack to more than MAX_UNPACKED_BYTES.
    The unpacking uses tarfile's `data` filter as a second guard.
    """
    archive, dest = Path(archive), Path(dest)
    _reject_nonempty(dest)
    staging = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    with _open_tar(archive) as tar:
        try:
            members = tar.getmembers()
        except (OSError, tarfile.TarError, EOFError) as e:
            raise PackagingError(f"{archive}: damaged archive ({e})") from e
        _check_members(members, archive)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            for member in members:
                target = (staging / member.name).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise PackagingError(f"{archive}: {member.name!r} would land outside {dest}")
                # The `data` filter (Python 3.11.4+) refuses links out, absolute names,
                # and device files again, and drops set-uid bits.
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, staging, filter="data")
                else:  # pragma: no cover - older Python 3.11
                    tar.extract(member, staging)
            if dest.exists():
                dest.rmdir()
            staging.rename(dest)
        except tarfile.FilterError as e:
            raise PackagingError(f"{archive}: refused member ({e})") from e
        except (OSError, tarfile.TarError, EOFError) as e:
            raise PackagingError(f"{archive}: cannot unpack into {dest} ({e})") from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load_bundle(dest)


# --- internals ------------------------------------------------------------------------


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise PackagingError(f"{archive}: not a readable bundle archive ({e})") from e


def _check_members(members: Sequence[tarfile.TarInfo], archive: Path) -> None:
    seen: set[str] = set()
    total = 0
    for m in members:
        name = m.name
        pure = PurePosixPath(name)
        if (
            not name
            or name.startswith(("/", "\\"))
            or pure.is_absolute()
            or re.match(r"^[A-Za-z]:", name)
        ):
            raise PackagingError(
                f"{archive}: member {name!r} has an absolute path",
                hint="a bundle archive holds relative paths only; rebuild it",
            )
        if ".." in pure.parts or "\\" in name or "\x00" in name:
            raise PackagingError(
                f"{archive}: member {name!r} points outside the bundle",
                hint="a bundle archive never holds '..'; rebuild it",
            )
        if m.issym() or m.islnk():
            raise PackagingError(
                f"{archive}: member {name!r} is a link (to {m.linkname!r})",
                hint="a bundle holds plain files only; rebuild it",
            )
        if not (m.isfile() or m.isdir()):
            raise PackagingError(f"{archive}: member {name!r} is not a plain file or directory")
        key = os.path.normpath(name)
        if key in seen:
            raise PackagingError(f"{archive}: member {name!r} appears twice")
        seen.add(key)
        total += max(m.size, 0)
        if total > MAX_UNPACKED_BYTES:
            raise PackagingError(f"{archive}: unpacks to more than {MAX_UNPACKED_BYTES} bytes")


def _reject_nonempty(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise UsageError(f"{dest}: exists and is not a directory", hint="choose another path")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(f"{dest}: directory is not empty", hint="choose a new or empty directory")


def _verify(path: Path, sha256: str, *, size: int | None = None) -> None:
    if path.is_symlink() or not path.is_file():
        raise IntegrityError(
            f"{path}: missing from the bundle (or not a plain file)",
            hint="the bundle is incomplete; build it again",
        )
    actual = sha256_file(path)
    if actual != sha256:
        raise IntegrityError(
            f"{path}: SHA-256 mismatch: bundle.json records {sha256}, the file has {actual}",
            hint="the bundle was changed after it was built; build it again",
        )
    if size is not None and path.stat().st_size != size:  # pragma: no cover - hash catches it
        raise IntegrityError(f"{path}: size differs from bundle.json")


def _from_dict(raw: Any, *, path: Path) -> Bundle:
    where = str(path / BUNDLE_FILE)
    if not isinstance(raw, Mapping):
        raise PackagingError(f"{where}: damaged (not a JSON object)")
    schema = raw.get("schema")
    if isinstance(schema, int) and schema > BUNDLE_SCHEMA:
        raise PackagingError(
            f"{where}: bundle written by a newer mlcycle (layout {schema})",
            hint="upgrade mlcycle to load this bundle",
        )
    try:
        serving = raw["serving"]
        spec = raw["spec"]
        features = tuple(_feature(f) for f in serving["features"])
        task = str(serving["task"])
        if task not in ("classification", "regression"):
            raise ValueError(f"unknown task {task!r}")
        if spec.get("file", SPEC_FILE) != SPEC_FILE:
            raise ValueError(f"unexpected spec file {spec.get('file')!r}")
        artifact = ArtifactInfo.from_dict(raw["artifact"], where=where)
        if artifact.format != SKOPS:
            # Whatever bundle.json says: its hashes are in the same unsigned archive.
            raise PackagingError(
                f"{where}: the bundle holds a {artifact.format} model; refusing it, since "
                "loading that format runs code from the file",
                hint="build the bundle again with this mlcycle (mlcycle deploy), which "
                "stores models as skops",
            )
        return Bundle(
            path=path,
            project=str(raw["project"]),
            release=check_release(str(raw["release"])),
            generation=int(raw["generation"]),
            artifact=artifact,
            spec_sha256=str(spec["sha256"]),
            spec_hash=spec.get("hash"),
            git_commit=raw.get("git_commit"),
            versions={str(k): str(v) for k, v in (raw.get("versions") or {}).items()},
            features=features,
            task=task,
            output=dict(serving.get("output") or {}),
            created_at=str(raw.get("created_at", "")),
            metrics=dict(raw.get("metrics") or {}),
            code={
                check_code_path(str(k), where=where): str(v)
                for k, v in (raw.get("code") or {}).items()
            },
            onnx=(
                OnnxArtifact.from_dict(raw["onnx"], where=where)
                if raw.get("onnx") is not None
                else None
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError, UsageError, RegistryError) as e:
        raise PackagingError(f"{where}: damaged bundle description ({e})") from e


def _feature(raw: Any) -> Feature:
    feature = Feature.from_dict(raw)  # the type is checked there (a ValueError)
    # The name ends up in generated files and the image's labels: bounded here.
    if not feature.name or len(feature.name) > _FEATURE_NAME_MAX:
        raise ValueError(f"bad feature name {feature.name!r}")
    return feature


def _require_servable(data: bytes, entry: Entry, code: Mapping[str, bytes]) -> None:
    """PackagingError unless a bundle could load this artifact where it is served.

    A bundle carries the entry's stored model code and nothing else of the project:
    a model naming any other project name would build an image that cannot start.
    """
    import skops.io as sio

    policy = (
        DEFAULT_POLICY.with_code(code, root=None, origin=f"model.code of {entry.ref}")
        if code
        else DEFAULT_POLICY
    )
    try:
        refused = policy.refused(sio.get_untrusted_types(data=data))
    except Exception as e:  # skops raises many types for a damaged file
        raise PackagingError(f"{entry.ref}: not a readable skops file ({e})") from e
    if refused:
        raise PackagingError(
            f"{entry.project} {entry.ref} uses code that is not in its stored model code "
            f"({', '.join(refused)}), so a bundle (and its image) could not load it",
            hint="list the files defining them in `model.code` in lifecycle.yaml and train "
            "again (mlcycle release), or build the model from scikit-learn steps only",
        )


def _recorded_features(
    entry: Entry, given: Sequence[Feature | Mapping[str, Any] | str] | None
) -> tuple[Feature, ...] | None:
    raw = given if given is not None else (entry.data or {}).get("features")
    if not raw:
        return None
    try:
        return tuple(_feature(f) for f in raw)
    except (KeyError, TypeError, ValueError) as e:
        raise PackagingError(f"{entry.project} {entry.ref}: bad feature schema ({e})") from e


def _model_features(model: Any, spec: Spec) -> tuple[Feature, ...]:
    found = estimator_features(model, spec.data.features)
    if found is None:
        raise PackagingError(
            "cannot tell the model's features: none were recorded at training and the "
            "estimator has neither `feature_names_in_` nor `n_features_in_`",
            hint="declare `data.features` in lifecycle.yaml",
        )
    return found


def _model_task(model: Any) -> str:
    from sklearn.base import is_classifier

    return "classification" if is_classifier(model) else "regression"


def _plain_list(values: Any) -> list[Any]:
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return [v if isinstance(v, bool | int | float | str) else str(v) for v in items]
