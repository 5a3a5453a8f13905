"""Container images: build a context with the Docker engine, push to a registry.

Talks to the engine through the `docker` SDK (imported when first needed), the
way the `docker` CLI would find it (DOCKER_HOST, else the default socket). The
build log is reported as progress: each Dockerfile step starts a task, each
line of output advances it and goes to this module's logger (and to
`progress.log(line)` when the progress object has such a method).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import PackagingError
from mlcycle.package.dockerfile import check_reference, check_registry, split_reference
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.redact import scrub

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

_STEP_RE: Final = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_LOG_TAIL: Final = 25
BUILD_TIMEOUT: Final = 3600


@dataclass(frozen=True)
class ImageInfo:
    """A built (or pushed) image: its reference, id, size in bytes and labels."""

    tag: str
    id: str
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    digest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "tag": self.tag,
            "id": self.id,
            "size": self.size,
            "labels": dict(self.labels),
            "tags": list(self.tags),
            "digest": self.digest,
        }


def docker_client(*, timeout: float = BUILD_TIMEOUT) -> docker.DockerClient:
    """A client of a Docker engine that answers; PackagingError (hint: --context-only) if none."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as e:  # pragma: no cover - docker is a dependency
        raise PackagingError(
            "the docker SDK is not installed", hint="pip install docker, or use --context-only DIR"
        ) from e
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except (DockerException, OSError) as e:
        raise PackagingError(
            f"no Docker engine is reachable ({_short(e)})",
            hint="start one (dockerd, or Docker Desktop) and check DOCKER_HOST; or write the "
            "build context without an engine: `mlcycle deploy --context-only DIR`",
        ) from e
    return client


def engine_available() -> bool:
    """Whether a Docker engine answers."""
    try:
        docker_client(timeout=10).close()
    except PackagingError:
        return False
    return True


def build_image(
    context_dir: Path,
    tag: str,
    *,
    progress: Progress = NULL_PROGRESS,
    extra_tags: Iterable[str] = (),
    network_mode: str | None = None,
    nocache: bool = False,
) -> ImageInfo:
    """Build the context in `context_dir` as `tag` and return what was built.

    The classic builder is used (no BuildKit needed); the base image must be
    present locally or pullable. Raises PackagingError with the tail of the
    build log when a step fails, and when no engine is reachable (its hint
    names `--context-only DIR`).
    """
    context_dir = Path(context_dir)
    tag = check_reference(tag, what="image tag")
    extra = [check_reference(t, what="image tag") for t in extra_tags]
    if not (context_dir / "Dockerfile").is_file():
        raise PackagingError(f"{context_dir}: no Dockerfile; write the build context first")
    # pip prints the index URLs it uses; a token in one must not reach the log.
    urls = _index_urls(context_dir)
    client = docker_client()
    from docker.errors import APIError, DockerException

    tail: list[str] = []
    image_id: str | None = None
    try:
        with step(progress, f"build {tag}"):
            stream = client.api.build(
                path=str(context_dir),
                tag=tag,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                nocache=nocache,
                network_mode=network_mode,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    raise PackagingError(
                        f"building {tag} failed: {scrub(str(detail).strip(), *urls)}\n"
                        + "\n".join(tail),
                        hint="the build log above shows the failing step",
                    )
                aux = chunk.get("aux")
                if isinstance(aux, Mapping) and aux.get("ID"):
                    image_id = str(aux["ID"])
                text = chunk.get("stream")
                if not isinstance(text, str):
                    continue
                for line in scrub(text, *urls).splitlines():
                    line = line.rstrip()
                    if not line:
                        continue
                    _report(progress, line)
                    tail.append(line)
                    del tail[:-_LOG_TAIL]
                    match = re.match(r"^Successfully built ([0-9a-f]+)$", line)
                    if match and image_id is None:
                        image_id = match[1]
    except (APIError, DockerException, OSError) as e:
        raise PackagingError(
            f"building {tag} failed: {_short(e)}" + ("\n" + "\n".join(tail) if tail else ""),
            hint="is the base image present (`docker images`)? see the build log above",
        ) from e
    try:
        image = client.images.get(image_id or tag)
        for other in extra:
            repository, other_tag = split_reference(other)
            image.tag(repository, other_tag)
        image.reload()
    except (APIError, DockerException) as e:
        raise PackagingError(f"built {tag} but cannot inspect it: {_short(e)}") from e
    finally:
        client.close()
    return _info(image, tag)


def tag_for_registry(tag: str, registry: str) -> str:
    """`tag` renamed into `registry` (`REGISTRY/NAME:TAG`), replacing any registry it names."""
    check_registry(registry)
    repository, version = split_reference(tag)
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        repository = rest  # drop the registry the tag already names
    return check_reference(f"{registry}/{repository}:{version or 'latest'}")


def push_image(
    tag: str, registry: str | None = None, *, progress: Progress = NULL_PROGRESS
) -> ImageInfo:
    """Push the local image `tag`, first retagged into `registry` when one is given.

    Returns the pushed reference with the digest the registry answered. Raises
    PackagingError when the image is missing, no engine is reachable, or the
    registry refuses the push.
    """
    tag = check_reference(tag, what="image tag")
    target = tag_for_registry(tag, registry) if registry else tag
    client = docker_client()
    from docker.errors import APIError, DockerException, ImageNotFound

    try:
        image = client.images.get(tag)
        repository, version = split_reference(target)
        if target != tag:
            image.tag(repository, version)
        digest: str | None = None
        with step(progress, f"push {target}"):
            for chunk in client.api.push(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    raise PackagingError(
                        f"pushing {target} failed: {str(detail).strip()}",
                        hint="is the registry running and reachable from the engine?",
                    )
                aux = chunk.get("aux")
                if isinstance(aux, Mapping) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                status = chunk.get("status")
                if isinstance(status, str):
                    _report(progress, f"{chunk.get('id', '')} {status}".strip())
        image.reload()
    except ImageNotFound as e:
        raise PackagingError(
            f"no local image {tag} to push", hint="build it first (`mlcycle deploy`)"
        ) from e
    except (APIError, DockerException, OSError) as e:
        raise PackagingError(
            f"pushing {target} failed: {_short(e)}",
            hint="is the registry running and reachable from the engine?",
        ) from e
    finally:
        client.close()
    info = _info(image, target)
    return ImageInfo(
        tag=info.tag,
        id=info.id,
        size=info.size,
        labels=info.labels,
        tags=info.tags,
        digest=digest,
    )


def _index_urls(context_dir: Path) -> tuple[str, ...]:
    """The URLs in the context's pip.conf (see mlcycle.package.dockerfile)."""
    try:
        text = (context_dir / "build" / "pip.conf").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ()
    return tuple(re.findall(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", text))


def _info(image: Any, tag: str) -> ImageInfo:
    attrs = image.attrs or {}
    config = attrs.get("Config") or {}
    return ImageInfo(
        tag=tag,
        id=str(image.id),
        size=int(attrs.get("Size") or 0),
        labels=dict(config.get("Labels") or {}),
        tags=tuple(image.tags),
    )


def _report(progress: Progress, line: str) -> None:
    log.info("%s", line)
    found = _STEP_RE.match(line)
    if found:
        progress.done()
        progress.start(f"step {found[1]}/{found[2]}: {found[3][:80]}")
    else:
        progress.advance()
    emit = getattr(progress, "log", None)
    if callable(emit):
        emit(line)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
