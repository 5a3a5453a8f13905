"""The model registry: project → release → generation, with integrity and atomic writes.

A release is a semantic version from the git tag (`0.1.0`), or `dev` for
trainings outside a release; generations (1, 2, …) are new data with the same
code. Every entry carries its metrics, gate result, data record, spec hash, git
commit, library versions and the SHA-256 of its artifact. `current` names the
entry production serves. The embedded backend keeps everything under the
project (`registry.path`, default `.mlcycle/registry`); see `local.py`. A team
shares one registry in a database (`registry.url`) with its files in an artifact
store (`registry.artifacts`); see `sql.py` and `blobs.py`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from mlcycle.errors import RegistryError, UsageError
from mlcycle.redact import mask_url
from mlcycle.registry.artifacts import (
    ArtifactInfo,
    OnnxArtifact,
    OnnxForm,
    library_versions,
    load_model,
    save_model,
)
from mlcycle.registry.base import Registry
from mlcycle.registry.entry import Entry, State, Status
from mlcycle.registry.local import LocalRegistry
from mlcycle.registry.refs import CURRENT, DEV, LATEST, ModelRef
from mlcycle.registry.trust import DEFAULT_POLICY, TrustPolicy

if TYPE_CHECKING:
    from mlcycle.spec.model import Spec


REGISTRY_URL_VARIABLE: Final = "MLCYCLE_REGISTRY_URL"
ARTIFACTS_URL_VARIABLE: Final = "MLCYCLE_ARTIFACTS_URL"


def registry_urls(spec: Spec, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The shared registry's database and artifact-store URLs, the variables winning
    over the spec (for CI jobs and pods); None where neither declares one."""
    url = environ.get(REGISTRY_URL_VARIABLE) or spec.registry.url
    artifacts = environ.get(ARTIFACTS_URL_VARIABLE) or spec.registry.artifacts
    return url or None, artifacts or None


def open_registry(spec: Spec, *, environ: Mapping[str, str] | None = None) -> Registry:
    """The registry the spec declares; RegistryError when it declares none.

    Without a `registry.url` (nor MLCYCLE_REGISTRY_URL) it is the local directory
    `registry.path`. With one, the backend is the builder of the URL's scheme (one
    per scheme, as MLflow picks its stores): `sqlite:` and `postgresql:` make a
    SqlRegistry, its files in `registry.artifacts` (or MLCYCLE_ARTIFACTS_URL;
    default `file:` + `artifacts` under `registry.path`), pulled copies cached
    under `registry.path`. The variables win over the spec, for CI jobs and pods.
    """
    env = os.environ if environ is None else environ
    backend = spec.registry.backend
    if backend == "none":
        raise RegistryError(
            f"{spec.name}: the spec declares no model registry (registry.backend: none)",
            hint="set `registry: {backend: local}` in lifecycle.yaml (the default)",
        )
    if backend != "local":
        raise RegistryError(f"{spec.name}: unknown registry backend {backend!r}")
    url, _ = registry_urls(spec, env)
    if not url:
        # Library names only: a generation's project names come from its own stored code.
        return LocalRegistry(spec.resolve(spec.registry.path), spec.name)
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    builder = _BUILDERS.get(scheme)
    if builder is None:
        known = ", ".join(f"{s}:" for s in sorted(_BUILDERS))
        raise UsageError(
            f"{spec.name}: the registry URL {mask_url(url)} names no registry backend",
            hint=f"use a database URL of one of the schemes {known} (registry.url, or "
            f"{REGISTRY_URL_VARIABLE})",
        )
    return builder(spec, url, env)


def _sql(spec: Spec, url: str, env: Mapping[str, str]) -> Registry:
    # lazy: import cycle (mlcycle.registry.blobs imports this module)
    from mlcycle.registry.blobs import open_blob_store
    from mlcycle.registry.sql import SqlRegistry

    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        url = prefix + str(spec.resolve(url[len(prefix) :]))  # relative to the spec, as paths are
    cache = spec.resolve(spec.registry.path)
    _, artifacts = registry_urls(spec, env)
    if not artifacts:
        artifacts = f"file:{cache / 'artifacts'}"
    blobs = open_blob_store(artifacts, base=spec.root, cache=cache / "blobs")
    return SqlRegistry(url, spec.name, blobs=blobs, cache=cache / spec.name / "cache")


# URL scheme → builder(spec, url, environment): where a new backend plugs in.
_BUILDERS: dict[str, Callable[[Spec, str, Mapping[str, str]], Registry]] = {
    "sqlite": _sql,
    "postgresql": _sql,
}


__all__ = [
    "CURRENT",
    "DEFAULT_POLICY",
    "DEV",
    "LATEST",
    "ArtifactInfo",
    "Entry",
    "LocalRegistry",
    "ModelRef",
    "OnnxArtifact",
    "OnnxForm",
    "Registry",
    "State",
    "Status",
    "TrustPolicy",
    "library_versions",
    "load_model",
    "open_registry",
    "registry_urls",
    "save_model",
]
