"""The Docker build context of a bundle: Dockerfile, pinned requirements, mlcycle's wheel.

Layout of a context directory:

    Dockerfile               rendered from templates/docker/Dockerfile.tmpl
    bundle/                  the bundle (bundle.json, the artifact, lifecycle.yaml, code/)
    build/requirements.txt   the pins from the bundle, then what mlcycle's wheel requires
                             (for an ONNX model: every distribution serving needs, each
                             pinned, installed with --no-deps)
    build/precompile.py      byte-compiles the libraries in the image (see SERVING_MODULES)
    wheel/                   mlcycle's own wheel (the image serves with it): built from
                             the source checkout mlcycle runs from, or (installed from a
                             package) mlcycle-cli==THIS_VERSION downloaded from the index
                             pip is configured with; MLCYCLE_WHEEL overrides both
    build/pip.conf           index settings of the building machine, credentials included
                             (mode 0600; used by the builder stage only, see below)
    build/ca-bundle.crt      its CA bundle, when pip uses one (TLS through a proxy)

The generic engine of a dynamic lifecycle (`write_engine_context`) has the same
layout without bundle/: the image serves the project mounted at /project. With a
shared registry (a database and an artifact store every engine reaches) it needs no
mount: `project/` holds the project's files the engine reads (lifecycle.yaml with
its URLs' secrets masked, the model code), copied to /project and owned by the
image's user, who keeps the artifacts it pulls there (cached by digest). Such an
image also installs the extras the shared URLs need (`[postgres]`, `[oci]`).

Every spec string is treated as hostile. None reaches a RUN line: library
versions go to requirements.txt (after a strict version check), the base image
and tags must be valid Docker references (UsageError otherwise), and label
values are refused if they hold control characters, then double-quoted with
`"`, `\\` and `$` escaped. The Dockerfile uses only the classic builder's syntax.

No credential enters a layer of the image. The build is multi-stage: a `deps` stage
installs the dependencies with build/pip.conf (a private index's token or
password works), and the image copies only the installed environment from it
(the engine here is the classic builder, which has no build secrets): first the
dependencies (one layer that a new mlcycle with the same requirements reuses),
then mlcycle's own wheel (a layer of its own, installed without an index). The
bundle's lifecycle.yaml has its URLs' secrets masked when the bundle is made; a
container gets them from its environment (`${env:NAME}` in the spec,
MLCYCLE_STORE_URL, MLCYCLE_API_TOKEN), never from the image.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import mlcycle
from mlcycle.errors import PackagingError, UsageError
from mlcycle.package.bundle import Bundle, load_bundle, pinned_requirements
from mlcycle.redact import mask_url, mask_urls_in
from mlcycle.resources import data_path

if TYPE_CHECKING:
    from importlib.metadata import Distribution

    from mlcycle.registry import Entry
    from mlcycle.spec.model import Spec

TEMPLATE: Final = ("templates", "docker", "Dockerfile.tmpl")
PRECOMPILE: Final = ("templates", "docker", "precompile.py")
SERVE_PORT: Final = 8080
IMAGE_UID: Final = 10001
BUNDLE_DIR: Final = "bundle"
PROJECT_DIR: Final = "project"
BUILD_DIR: Final = "build"
WHEEL_DIR: Final = "wheel"
CA_FILE: Final = "ca-bundle.crt"
# Where build/ lands in the image during the install step (see the template).
BUILD_MOUNT: Final = "/tmp/mlcycle-build"
# Where the generic engine of a dynamic lifecycle expects the project (see mlcycle.deploy.k8s).
PROJECT_MOUNT: Final = "/project"
_LISTEN: Final = ("--host", "0.0.0.0", "--port", str(SERVE_PORT))

# Docker's reference grammar (distribution/reference): [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST].
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE_RE: Final = re.compile(
    rf"^(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$", re.ASCII
)
REGISTRY_RE: Final = re.compile(rf"^{_DOMAIN}$", re.ASCII)
TAG_RE: Final = re.compile(rf"^{_TAG}$", re.ASCII)
# The wheel of the distribution mlcycle-cli (wheel names normalise "-" to "_").
_WHEEL_RE: Final = re.compile(r"^mlcycle_cli-[0-9A-Za-z.!+_]+-py3-none-any\.whl$")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


class _Template(string.Template):
    delimiter = "@@"


@dataclass(frozen=True)
class BuildContext:
    """A written build context: where it is and what it will build."""

    path: Path
    base: str
    tag: str | None
    labels: Mapping[str, str]
    requirements: tuple[str, ...]
    wheel: str
    ca_bundle: bool = False
    index_urls: tuple[str, ...] = field(default=())

    @property
    def dockerfile(self) -> Path:
        """The rendered Dockerfile."""
        return self.path / "Dockerfile"


# --- references -----------------------------------------------------------------------


def check_reference(reference: str, *, what: str = "image") -> str:
    """`reference` if it is a valid Docker image reference; UsageError saying why not."""
    if not isinstance(reference, str) or REFERENCE_RE.fullmatch(reference) is None:
        raise UsageError(
            f"{what}: {reference!r} is not a valid image reference",
            hint="write [REGISTRY[:PORT]/]NAME[:TAG] with a lowercase NAME, "
            "e.g. python:3.11-slim or 127.0.0.1:5000/churn:1.2.0",
        )
    name = REFERENCE_RE.fullmatch(reference)["name"]  # type: ignore[index]
    if len(name) > 255:
        raise UsageError(f"{what}: {reference!r}: the name is longer than 255 characters")
    return reference


def check_registry(registry: str, *, what: str = "registry") -> str:
    """`registry` if it is a registry host (`HOST[:PORT]`); UsageError otherwise."""
    if not isinstance(registry, str) or REGISTRY_RE.fullmatch(registry) is None:
        raise UsageError(
            f"{what}: {registry!r} is not a registry address",
            hint="write HOST[:PORT], e.g. 127.0.0.1:5000 or registry.example.com",
        )
    return registry


def split_reference(reference: str) -> tuple[str, str | None]:
    """(repository, tag) of a valid reference; the tag is None when absent."""
    match = REFERENCE_RE.fullmatch(check_reference(reference))
    assert match is not None
    return match["name"], match["tag"]


def release_tag(release: str) -> str:
    """The image tag for a release: the version itself (`+` build metadata becomes `-`)."""
    tag = release.replace("+", "-")
    if TAG_RE.fullmatch(tag) is None:
        raise UsageError(f"release {release!r} cannot be an image tag")
    return tag


def image_reference(spec: Spec, bundle: Bundle, *, registry: str | None = None) -> str:
    """`[REGISTRY/]IMAGE:RELEASE` for a bundle: the spec's image name and registry."""
    return release_image(spec, bundle.release, registry=registry)


def release_image(spec: Spec, release: str, *, registry: str | None = None) -> str:
    """`[REGISTRY/]IMAGE:RELEASE`: the spec's image name and registry, tagged with `release`."""
    image = spec.deployment.image
    host = registry if registry is not None else image.registry
    name = image.name if host is None else f"{check_registry(host)}/{image.name}"
    return check_reference(f"{name}:{release_tag(release)}", what="deployment.image")


# --- the context ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Contents:
    """What an image serves, besides mlcycle and the pinned libraries.

    A wrapped image bakes a bundle in; the generic engine of a dynamic lifecycle
    holds no model and serves the project directory mounted at `PROJECT_MOUNT`.
    `title`, `payload`, `workdir` and `command` are mlcycle's own text, never the spec's.
    The identity (project, release, versions, spec hash, commit) goes to the labels.
    """

    title: str
    pins: tuple[str, ...]
    files: tuple[Path, ...]
    payload: str
    workdir: str
    command: tuple[str, ...]
    project: str
    release: str
    python: str
    spec_hash: str | None
    git_commit: str | None
    labels: Mapping[str, str]
    files_root: Path | None = None  # `files` keep their paths relative to it
    project_files: Mapping[str, str] = field(default_factory=dict)
    """Text of the project's files for `PROJECT_DIR` (the engine of a shared registry)."""
    extras: tuple[str, ...] = ()
    """mlcycle's extras to install besides its own requirements (`postgres`, `oci`)."""
    onnx: bool = False
    """Served from the bundle's ONNX form: the image installs only what serving it needs
    (`serving_requirements`), not scikit-learn, SciPy, pandas, pyarrow or skl2onnx."""


# What `mlcycle serve --bundle` imports when the model is served from its ONNX form: the
# CLI, the spec loader, the engine, the prediction log and ONNX Runtime. Everything else
# mlcycle requires (training, git, Docker, conversion) stays out of an ONNX image.
SERVING_DISTRIBUTIONS: Final = (
    "typer",
    "rich",
    "pyyaml",
    "jsonschema",
    "sqlalchemy",
    "uvicorn",
    "httptools",
    "uvloop",
    "orjson",
    "numpy",
    "onnxruntime",
)


# What serving an ONNX model imports from its libraries (measured with `python -X
# importtime` on `mlcycle serve --bundle` in an image: the modules mlcycle imports
# directly, and those uvicorn and SQLAlchemy load by name). The image keeps bytecode for
# these and what they import, and only the source of the rest of its libraries: a module
# left out here still works, compiled when first imported.
SERVING_MODULES: Final = (
    "jsonschema",
    "numpy",
    "onnxruntime",
    "orjson",
    "rich.console",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "typer",
    "uvicorn",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvloop",
    "yaml",
)


def _bundle_contents(bundle: Bundle) -> _Contents:
    pins = bundle.requirements()
    if bundle.onnx is not None:
        # The release's own versions of what runs the form (ONNX Runtime, NumPy).
        pins = [p for p in pins if p.split("==")[0] in ("numpy", "onnxruntime")]
    return _Contents(
        onnx=bundle.onnx is not None,
        # project: the registry's name pattern [a-z0-9._-]; release: a version or `dev`.
        title=f"Serving image of {bundle.project} {bundle.release} "
        f"(generation {int(bundle.generation)})",
        pins=tuple(pins),
        files=bundle.files,  # model code (under code/) and the ONNX form included
        files_root=bundle.path,
        payload=f"COPY {BUNDLE_DIR}/ /app/{BUNDLE_DIR}/",
        workdir="/app/data",
        command=("mlcycle", "serve", "--bundle", f"/app/{BUNDLE_DIR}", *_LISTEN),
        project=bundle.project,
        release=bundle.release,
        python=bundle.versions.get("python", "unknown"),
        spec_hash=bundle.spec_hash,
        git_commit=bundle.git_commit,
        labels={
            "io.mlcycle.generation": str(bundle.generation),
            "io.mlcycle.artifact.sha256": bundle.artifact.sha256,
        },
    )


def _engine_contents(
    entry: Entry, project_files: Mapping[str, str], extras: tuple[str, ...]
) -> _Contents:
    for path in project_files:
        # Paths come from the spec (model.code): relative, inside the project, no `..`.
        parts = Path(path).parts
        if not parts or Path(path).is_absolute() or ".." in parts or _CONTROL_RE.search(path):
            raise UsageError(f"{path!r}: not a path inside the project")
    for extra in extras:
        if re.fullmatch(r"[a-z0-9][a-z0-9-]*", extra) is None:
            raise UsageError(f"{extra!r} is not an extra of mlcycle")
    if project_files:
        where = "the shared registry"
        payload = (
            f"# The project's files (no model, no registry): models come from the shared\n"
            f"# registry, and the artifacts pulled from it are cached under {PROJECT_MOUNT}.\n"
            f"COPY --chown={IMAGE_UID}:{IMAGE_UID} {PROJECT_DIR}/ {PROJECT_MOUNT}/"
        )
    else:
        where = "the mounted registry"
        payload = (
            f"# No model inside: the project (spec, registry, store) is mounted at {PROJECT_MOUNT}."
        )
    return _Contents(
        title=f"Serving engine image of {entry.project} "
        f"(dynamic: models are loaded from {where} at run time)",
        pins=tuple(
            pinned_requirements(
                entry.versions,
                where=f"{entry.project} {entry.ref}",
                hint="deploy from an intact registry entry",
            )
        ),
        files=(),
        payload=payload,
        workdir=PROJECT_MOUNT,
        command=("mlcycle", "serve", "--project", PROJECT_MOUNT, *_LISTEN),
        project=entry.project,
        release=entry.release,
        python=entry.versions.get("python", "unknown"),
        spec_hash=entry.spec_hash,
        git_commit=entry.git_commit,
        labels={"io.mlcycle.engine": "dynamic"},
        project_files=dict(project_files),
        extras=tuple(sorted(set(extras))),
    )


def write_context(
    bundle: Bundle,
    spec: Spec,
    dest: Path,
    *,
    base: str | None = None,
    tag: str | None = None,
    wheel: Path | None = None,
    revision: str | None = None,
    source: str | None = None,
    created: str | None = None,
) -> BuildContext:
    """Write a Docker build context for `bundle` into `dest` (absent or empty).

    `base` defaults to the spec's `deployment.image.base`; `tag` (recorded only
    in labels and the result) to `image_reference`. `wheel` is mlcycle's wheel
    to install in the image (default: `MLCYCLE_WHEEL`, else one built from this
    source tree by `build_wheel`). `revision` defaults to the bundle's git
    commit, `source` to the project's `origin` remote (without credentials),
    `created` to now. Raises UsageError for an invalid image reference or label,
    PackagingError when files cannot be written.
    """
    # Only the files bundle.json names, checked again: nothing else rides along.
    checked = load_bundle(bundle.path)
    return _write(
        _bundle_contents(checked),
        spec,
        dest,
        base=base,
        tag=tag,
        wheel=wheel,
        revision=revision,
        source=source,
        created=created,
    )


def write_engine_context(
    entry: Entry,
    spec: Spec,
    dest: Path,
    *,
    base: str | None = None,
    tag: str | None = None,
    wheel: Path | None = None,
    revision: str | None = None,
    source: str | None = None,
    created: str | None = None,
    project_files: Mapping[str, str] | None = None,
    extras: tuple[str, ...] = (),
) -> BuildContext:
    """Write the build context of a dynamic lifecycle's serving engine into `dest`.

    The image holds mlcycle and the libraries `entry` (the newest model in play)
    was trained with, and no model: it runs `mlcycle serve --project /project`,
    and the agents' CronJobs run in it too. Without `project_files` the project
    directory is mounted there; with them (relative path → text: lifecycle.yaml,
    masked, and the model code) they are the image's /project, for a shared
    registry and store that the engine reaches by URL, so no volume is needed.
    `extras` are mlcycle's extras those URLs need (`postgres`, `oci`). `tag`
    defaults to `IMAGE:RELEASE` of `entry`; the other arguments are those of
    `write_context`.
    """
    return _write(
        _engine_contents(entry, project_files or {}, extras),
        spec,
        dest,
        base=base,
        tag=tag,
        wheel=wheel,
        revision=revision,
        source=source,
        created=created,
    )


def _write(
    contents: _Contents,
    spec: Spec,
    dest: Path,
    *,
    base: str | None,
    tag: str | None,
    wheel: Path | None,
    revision: str | None,
    source: str | None,
    created: str | None,
) -> BuildContext:
    dest = Path(dest)
    base = check_reference(
        spec.deployment.image.base if base is None else base, what="deployment.image.base"
    )
    tag = (
        release_image(spec, contents.release)
        if tag is None
        else check_reference(tag, what="image tag")
    )
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: exists and is not an empty directory", hint="choose a new one")
    fresh = not dest.exists()
    labels = _labels(
        spec,
        contents,
        revision=revision if revision is not None else contents.git_commit,
        source=source if source is not None else git_remote(spec.root),
        created=created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    try:
        return _fill(contents, dest, base=base, tag=tag, wheel=wheel, labels=labels)
    except BaseException:
        # A failed deploy leaves no half-written context behind (the directory was
        # new or empty: everything in it is ours).
        if fresh:
            shutil.rmtree(dest, ignore_errors=True)
        elif dest.is_dir():
            for child in dest.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _fill(
    contents: _Contents,
    dest: Path,
    *,
    base: str,
    tag: str,
    wheel: Path | None,
    labels: Mapping[str, str],
) -> BuildContext:
    try:
        dest.mkdir(parents=True, exist_ok=True)
        build = dest / BUILD_DIR
        build.mkdir()
        wheels = dest / WHEEL_DIR
        wheels.mkdir()
        wheel_path = Path(wheel) if wheel else _default_wheel(wheels)
        if _WHEEL_RE.fullmatch(wheel_path.name) is None:
            raise PackagingError(
                f"{wheel_path}: not a wheel of mlcycle (mlcycle_cli-VERSION-py3-none-any.whl)"
            )
        if wheel_path.parent != wheels:
            if not wheel_path.is_file():
                raise PackagingError(f"{wheel_path}: no such wheel")
            shutil.copy2(wheel_path, wheels / wheel_path.name)
        dependencies = wheel_requirements(wheels / wheel_path.name, extras=contents.extras)
        if contents.onnx:
            serving = serving_requirements(dependencies, contents.pins)
            dependencies = [r for r in serving if r not in contents.pins]
        settings = pip_settings()
        ca = settings.pop("cert", None)
        if ca:
            shutil.copyfile(ca, build / CA_FILE)
            settings["cert"] = f"{BUILD_MOUNT}/{CA_FILE}"
        shutil.copyfile(data_path(*PRECOMPILE), build / "precompile.py")
        pip_conf = build / "pip.conf"
        pip_conf.touch(mode=0o600)  # it may hold an index's credentials
        pip_conf.write_text(_pip_conf(settings), encoding="utf-8")
        (build / "requirements.txt").write_text(
            # Nothing project-specific in this file: images of any project whose models
            # were trained with the same versions share the (slow) dependency layer.
            "# The library versions the models were trained with.\n"
            + "".join(f"{r}\n" for r in contents.pins)
            + f"# What mlcycle {wheel_path.name.split('-')[1]} itself needs"
            + (" to serve an ONNX model (every version pinned).\n" if contents.onnx else ".\n")
            + "".join(f"{r}\n" for r in dependencies),
            encoding="utf-8",
        )
        for path, data in sorted(contents.project_files.items()):
            target = dest / PROJECT_DIR / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data, encoding="utf-8")
        if contents.files:
            (dest / BUNDLE_DIR).mkdir()
            for item in contents.files:
                rel = item.relative_to(contents.files_root) if contents.files_root else item.name
                target = dest / BUNDLE_DIR / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item, target)
        text = _render(contents, base=base, labels=labels, mlcycle_version=mlcycle.__version__)
        (dest / "Dockerfile").write_text(text, encoding="utf-8")
        (dest / ".dockerignore").write_text("*.tmp\n", encoding="utf-8")
    except OSError as e:
        raise PackagingError(
            f"{dest}: cannot write the build context: {e.strerror or e}",
            hint="check that the directory is writable and the disk is not full",
        ) from e
    index_urls = [settings.get("index-url", ""), *settings.get("extra-index-url", "").split()]
    return BuildContext(
        path=dest,
        base=base,
        tag=tag,
        labels=labels,
        requirements=contents.pins,
        wheel=wheel_path.name,
        ca_bundle=bool(ca),
        index_urls=tuple(mask_url(u) for u in index_urls if u),
    )


def render_dockerfile(
    bundle: Bundle, *, base: str, labels: Mapping[str, str], mlcycle_version: str
) -> str:
    """The Dockerfile text for `bundle` (see the module docstring for what is checked)."""
    return _render(
        _bundle_contents(bundle), base=base, labels=labels, mlcycle_version=mlcycle_version
    )


def _render(
    contents: _Contents, *, base: str, labels: Mapping[str, str], mlcycle_version: str
) -> str:
    check_reference(base, what="base image")
    template = data_path(*TEMPLATE).read_text(encoding="utf-8")
    label_lines = " \\\n      ".join(
        f"{_label_key(k)}={quote_label(v)}" for k, v in sorted(labels.items())
    )
    return _Template(template).substitute(
        title=_plain(contents.title),
        payload=contents.payload,
        workdir=contents.workdir,
        command=json.dumps(list(contents.command)),
        mlcycle_version=_plain(mlcycle_version),
        base=base,
        labels=label_lines,
        port=str(SERVE_PORT),
        uid=str(IMAGE_UID),
        # An ONNX image's requirements are complete and pinned (serving_requirements):
        # pip installs exactly them, resolving nothing.
        install_options="--no-deps " if contents.onnx else "",
        precompile=" ".join(SERVING_MODULES) if contents.onnx else "--all",
        # An ONNX image leaves out what only training needs, so `pip check` would
        # report it missing; it proves instead that the engine and the runtime import.
        check=(
            "/opt/mlcycle/bin/python -c 'import mlcycle.serve.server, onnxruntime'"
            if contents.onnx
            else "/opt/mlcycle/bin/pip check"
        ),
    )


def quote_label(value: str) -> str:
    """A LABEL value double-quoted for the Dockerfile; UsageError on control characters.

    `\\`, `"` and `$` are escaped: the builder expands `$VAR` in LABEL values.
    """
    if _CONTROL_RE.search(value):
        raise UsageError(
            f"label value {value!r} holds control characters (newlines included)",
            hint="image labels take one line of printable text",
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _label_key(key: str) -> str:
    if re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", key) is None:
        raise UsageError(f"{key!r} is not a label key")
    return key


def _plain(text: str) -> str:
    """Text for a Dockerfile comment: one line, printable."""
    return _CONTROL_RE.sub("?", text)


def _labels(
    spec: Spec, contents: _Contents, *, revision: str | None, source: str | None, created: str
) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.title": contents.project,
        "org.opencontainers.image.version": contents.release,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": revision or "unknown",
        "io.mlcycle.project": contents.project,
        "io.mlcycle.release": contents.release,
        "io.mlcycle.python": contents.python,
        **contents.labels,
    }
    if source:
        labels["org.opencontainers.image.source"] = source
    if spec.description:
        # Free text from the spec: the hostile case the quoting exists for.
        labels["org.opencontainers.image.description"] = " ".join(spec.description.split())
    if contents.spec_hash:
        labels["io.mlcycle.spec.hash"] = contents.spec_hash
    for value in labels.values():
        quote_label(value)  # refuse bad values before anything is written
    return labels


# --- mlcycle's own wheel --------------------------------------------------------------


def source_tree() -> Path | None:
    """The source checkout mlcycle runs from (editable install), or None for an installed wheel."""
    root = Path(mlcycle.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    named = rf'^name\s*=\s*"{re.escape(mlcycle.DISTRIBUTION)}"'
    return root if re.search(named, text, re.MULTILINE) else None


def build_wheel(dest: Path, *, source: Path | None = None) -> Path:
    """Build mlcycle's wheel from its source tree into `dest` with `pip wheel --no-deps`.

    Raises PackagingError when there is no source tree (mlcycle installed from a
    wheel: set MLCYCLE_WHEEL to that wheel) or the build fails.
    """
    root = source or source_tree()
    if root is None:
        raise PackagingError(
            "cannot find mlcycle's source tree to build the wheel the image installs",
            hint="set MLCYCLE_WHEEL to a mlcycle wheel (pip download --no-deps mlcycle-cli)",
        )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlcycle-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp, str(root)]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PackagingError(f"cannot build mlcycle's wheel: {e}") from e
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-10:])
            raise PackagingError(f"building mlcycle's wheel failed:\n{tail}")
        wheels = [p for p in Path(tmp).glob("mlcycle_cli-*.whl") if _WHEEL_RE.fullmatch(p.name)]
        if len(wheels) != 1:
            raise PackagingError(f"pip wheel made {len(wheels)} mlcycle wheels, expected one")
        target = dest / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


def source_wheel(dest: Path, root: Path) -> Path:
    """mlcycle's wheel built from the checkout at `root`, reused while its sources are
    unchanged: a copy in `dest` of the one cached under wheel_cache() by source_digest().

    A build (`pip wheel`, with a build environment of its own) costs 10 to 15 s of CPU;
    a deploy from a checkout made one every time. A cached wheel is one built from
    exactly these bytes; any change (a file edited, added or removed) builds anew. A
    cache that cannot be read or written only costs the build.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        folder = wheel_cache() / source_digest(root)
    except (OSError, RuntimeError, ValueError):  # no home directory, an unreadable file
        return build_wheel(dest, source=root)
    cached = [p for p in folder.glob("mlcycle_cli-*.whl") if _WHEEL_RE.fullmatch(p.name)]
    target: Path | None = None
    if len(cached) == 1:
        target = dest / cached[0].name
        try:
            shutil.copyfile(cached[0], target)
            os.utime(folder)  # recently used: the last to be pruned
        except OSError:
            target = None  # e.g. removed meanwhile: build it
    if target is None:
        target = build_wheel(dest, source=root)
        partial = folder.with_name(f".{folder.name}.{os.getpid()}.part")
        try:
            partial.mkdir(parents=True)
            shutil.copyfile(target, partial / target.name)
            partial.replace(folder)  # whole or not at all; a concurrent build may win
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    _prune(folder.parent, keep=WHEEL_CACHE_SIZE)
    return target


WHEEL_CACHE_SIZE: Final = 5
"""Wheels kept in wheel_cache(), the most recently used: one per state of the sources a
deploy ran from (about 4 MB each), for going back and forth between branches."""


def _prune(cache: Path, *, keep: int) -> None:
    """Remove all but the `keep` most recently used wheels (their folders) from `cache`."""
    try:
        folders = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
        folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for stale in folders[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def wheel_cache() -> Path:
    """Where wheels built from a checkout are kept: $XDG_CACHE_HOME/mlcycle/wheels."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlcycle" / "wheels"


def source_digest(root: Path) -> str:
    """SHA-256 over the path, mode and bytes of every file mlcycle's wheel is built from
    (bytecode caches aside), as `wheel_inputs` finds them. Files the build leaves out
    (git-ignored) count too: at worst a spurious rebuild, never a stale wheel."""
    import hashlib

    digest = hashlib.sha256()
    files = []
    for path in wheel_inputs(root):
        files.append(path)
        if path.is_dir():
            files.extend(
                p for p in path.rglob("*") if "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
    for path in sorted(files):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix().encode()
        digest.update(b"%d:%s:%o\n" % (len(relative), relative, path.stat().st_mode & 0o111))
        with path.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def wheel_inputs(root: Path) -> list[Path]:
    """What pyproject.toml at `root` builds mlcycle's wheel from: itself, the readme and
    license files of the metadata, the packages and the force-included paths of hatch's
    wheel target. Read from there, so that a path added to the build is never missed
    by the cache. Raises ValueError for a pyproject.toml that is not TOML."""
    import tomllib

    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = config.get("project", {})
    wheel = config.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    wheel = wheel.get("wheel", {})
    readme = project.get("readme")
    names = [
        "pyproject.toml",
        *([readme] if isinstance(readme, str) else []),
        *project.get("license-files", []),
        *wheel.get("packages", []),
        *wheel.get("force-include", {}),
    ]
    return [root / name for name in names]


def wheel_requirements(wheel: Path, *, extras: tuple[str, ...] = ()) -> list[str]:
    """The `Requires-Dist` lines of a wheel, with those of `extras` and no other extra's.

    They are installed in a step of their own, before mlcycle's code, so that the
    image's dependency layer is reused while only mlcycle's code changes. An extra's
    requirement is written without its marker (pip reads `extra == "oci"` in a
    requirements file as false); PackagingError names an extra the wheel lacks.
    """
    import zipfile

    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise PackagingError(f"{wheel}: not a wheel (no single .dist-info/METADATA)")
            metadata = archive.read(names[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise PackagingError(f"{wheel}: not a readable wheel ({e})") from e
    headers = metadata.split("\n\n", 1)[0].splitlines()
    offered = {
        line.split(":", 1)[1].strip() for line in headers if line.startswith("Provides-Extra:")
    }
    missing = sorted(set(extras) - offered)
    if missing:
        raise PackagingError(
            f"{wheel}: mlcycle {wheel.name.split('-')[1]} has no extra "
            + ", ".join(f"[{m}]" for m in missing)
            + f" (it has {', '.join(f'[{o}]' for o in sorted(offered)) or 'none'})",
            hint="build the image with an mlcycle that has it (MLCYCLE_WHEEL)",
        )
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    found = []
    for line in headers:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = line.split(":", 1)[1].strip()
        if not requirement or _CONTROL_RE.search(requirement) or requirement.startswith("-"):
            raise PackagingError(f"{wheel}: odd requirement {requirement!r} in its metadata")
        marker = requirement.partition(";")[2]
        if "extra" in marker:
            try:
                parsed = Requirement(requirement)
            except InvalidRequirement as e:
                raise PackagingError(f"{wheel}: odd requirement {requirement!r} ({e})") from e
            wanted = parsed.marker is not None and any(
                parsed.marker.evaluate({**environment, "extra": extra}) for extra in extras
            )
            if not wanted:
                continue
            parsed.marker = None
            requirement = str(parsed)
        found.append(requirement)
    return found


def serving_requirements(dependencies: list[str], pins: tuple[str, ...]) -> list[str]:
    """`NAME==VERSION` for what serving an ONNX model needs, dependencies included.

    The names are those of `dependencies` (mlcycle's wheel) in SERVING_DISTRIBUTIONS,
    with everything they require in turn; each is pinned to the version installed
    here (the mlcycle building the image runs on them), except what `pins` fixes
    (the release's NumPy and ONNX Runtime). Raises PackagingError when one of them
    is not installed here.
    """
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    fixed = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins}
    wanted = {canonicalize_name(n) for n in SERVING_DISTRIBUTIONS}
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    environment["extra"] = ""
    # The pins are walked too: what they require is installed with --no-deps as well.
    todo: list[Requirement] = [Requirement(p) for p in pins]
    for line in dependencies:
        try:
            requirement = Requirement(line)
        except InvalidRequirement as e:
            raise PackagingError(f"odd requirement {line!r} of mlcycle's wheel ({e})") from e
        if canonicalize_name(requirement.name) in wanted:
            todo.append(requirement)
    found: dict[str, str] = {}
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found or (
            requirement.marker is not None and not requirement.marker.evaluate(environment)
        ):
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as e:
            raise PackagingError(
                f"{requirement.name} is needed to serve the model but is not installed here, "
                "so its version cannot be pinned",
                hint=f'install mlcycle with its dependencies: pip install "{requirement}"',
            ) from e
        found[name] = fixed.get(name, dist.version)
        for line in dist.requires or ():
            try:
                todo.append(Requirement(line))
            except InvalidRequirement:  # another project's metadata: skip what pip skips
                continue
    for name, version in fixed.items():
        found.setdefault(name, version)
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def _default_wheel(dest: Path) -> Path:
    """mlcycle's wheel for the image: MLCYCLE_WHEEL, else built from the source checkout,
    else this exact version from the package index (as BentoML pins itself in images)."""
    given = os.environ.get("MLCYCLE_WHEEL")
    if given:
        path = Path(given)
        if not path.is_file():
            raise PackagingError(f"MLCYCLE_WHEEL={given}: no such file")
        return path
    root = source_tree()
    if root is not None:
        return source_wheel(dest, root)
    installed = installed_wheel()
    if installed is not None:
        return installed
    return download_wheel(dest)


def installed_wheel(dist: Distribution | None = None) -> Path | None:
    """The wheel file mlcycle was installed from, when pip recorded one that is still there.

    `pip install ./mlcycle_cli-0.1.0-py3-none-any.whl` (a wheel from a colleague, from
    CI, not on any index) leaves its `file:` URL and SHA-256 in `direct_url.json`;
    without this `deploy` asked the index for a version it never had. A file changed
    since (rebuilt, same name) does not match its hash and is not used.
    """
    import hashlib
    from importlib import metadata
    from urllib.parse import unquote
    from urllib.request import url2pathname

    try:
        dist = dist or metadata.distribution(mlcycle.DISTRIBUTION)
        recorded = json.loads(dist.read_text("direct_url.json") or "null")
    except (metadata.PackageNotFoundError, ValueError):
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("archive_info"), dict):
        return None
    parts = urlsplit(str(recorded.get("url", "")))
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(url2pathname(unquote(parts.path)))
    hashes = recorded["archive_info"].get("hashes") or {}
    expected = hashes.get("sha256") if isinstance(hashes, dict) else None
    if expected is None:  # older pips: "hash": "sha256=HEX"
        algorithm, _, value = str(recorded["archive_info"].get("hash", "")).partition("=")
        expected = value if algorithm == "sha256" else None
    if (
        expected is None
        or _WHEEL_RE.fullmatch(path.name) is None
        or not path.name.startswith(f"mlcycle_cli-{mlcycle.__version__}-")
        or not path.is_file()
    ):
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        return None
    return path


def download_wheel(dest: Path) -> Path:
    """Download the wheel of the running mlcycle (`mlcycle-cli==VERSION`) into `dest`.

    For an mlcycle installed from a package: pip fetches it from the index it is
    configured with (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL), the same index
    the image's dependencies come from. Raises PackagingError when it is not there.
    """
    requirement = mlcycle.requirement()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlcycle-wheel-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "-d", tmp, requirement,
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PackagingError(f"cannot download {requirement}: {e}") from e
        wheels = [p for p in Path(tmp).glob("mlcycle_cli-*.whl") if _WHEEL_RE.fullmatch(p.name)]
        if done.returncode != 0 or len(wheels) != 1:
            lines = (done.stderr or done.stdout).strip().splitlines()
            tail = "\n".join(line for line in lines[-5:] if "WARNING" not in line)
            raise PackagingError(
                f"the image installs {requirement}, which pip could not download from "
                f"its package index{':' if tail else ''}\n{mask_urls_in(tail)}".rstrip(),
                hint="point pip at the index mlcycle was installed from (PIP_INDEX_URL or "
                "pip.conf), or set MLCYCLE_WHEEL to the wheel of this version",
            )
        target = dest / wheels[0].name
        shutil.move(str(wheels[0]), target)
    return target


# --- how pip reaches its index here ---------------------------------------------------


def pip_settings() -> dict[str, str]:
    """The index settings pip uses on this machine, for the image build.

    Read like pip does (site, then user, then PIP_CONFIG_FILE files; `[global]`
    then `[install]`; environment variables last): `index-url`,
    `extra-index-url`, `trusted-host`, `timeout` and `cert`. URLs that are not
    http(s) are dropped (local directories do not exist in the image); URLs
    carrying credentials are kept, for the builder stage only (see the module
    docstring): show them with `mlcycle.redact.mask_url`. `cert`
    is the CA bundle's path on this machine (falling back to REQUESTS_CA_BUNDLE
    and SSL_CERT_FILE), present only when the file exists.
    """
    parser = configparser.RawConfigParser()
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf")]
    home = Path(os.environ.get("HOME") or "~").expanduser()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    found: dict[str, str] = {}
    for path in files:
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error):
            continue
    for section in ("global", "install"):
        if parser.has_section(section):
            found.update({k: v for k, v in parser.items(section)})
    for key in ("index-url", "extra-index-url", "trusted-host", "timeout", "cert"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            found[key] = env
    if "timeout" not in found and os.environ.get("PIP_DEFAULT_TIMEOUT"):
        found["timeout"] = os.environ["PIP_DEFAULT_TIMEOUT"]
    settings: dict[str, str] = {}
    urls = [u for u in found.get("index-url", "").split() if _usable_url(u)]
    if urls:
        settings["index-url"] = urls[0]
    extra = [u for u in found.get("extra-index-url", "").split() if _usable_url(u)]
    if extra:
        settings["extra-index-url"] = " ".join(extra)
    hosts = [h for h in found.get("trusted-host", "").split() if re.fullmatch(r"[\w.:-]+", h)]
    if hosts:
        settings["trusted-host"] = " ".join(hosts)
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", found.get("timeout", "")):
        settings["timeout"] = found["timeout"]
    for cert in (
        found.get("cert"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        os.environ.get("SSL_CERT_FILE"),
    ):
        if cert and Path(cert).is_file():
            settings["cert"] = cert
            break
    return settings


def _usable_url(url: str) -> bool:
    """Whether the image build can reach this index: http(s), and not this machine's
    loopback (the build runs in a container of its own, where 127.0.0.1 is itself)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    return parts.scheme in ("http", "https") and not loopback


def _pip_conf(settings: Mapping[str, str]) -> str:
    lines = [
        "# pip settings of the machine that built this context, for the builder stage only",
        "[global]",
    ]
    for key, value in sorted(settings.items()):
        if _CONTROL_RE.search(value):
            continue
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def git_remote(root: Path) -> str | None:
    """The `origin` URL of the git repository at `root`, without credentials; None if none."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    url = done.stdout.strip()
    if done.returncode != 0 or not url or _CONTROL_RE.search(url):
        return None
    parts = urlsplit(url)
    if parts.scheme and (parts.username or parts.password):
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url
