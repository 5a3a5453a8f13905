"""The model registry: project → release → generation, with integrity and atomic writes.

A release is a semantic version from the git tag (`0.1.0`), or `dev` for
trainings outside a release; generations (1, 2, …) are new data with the same
code. Every entry carries its metrics, gate result, data record, spec hash, git
commit, library versions and the SHA-256 of its artifact. `current` names the
entry production serves. The embedded backend keeps everything under the
project (`registry.path`, default `.mlcycle/registry`); see `local.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlcycle.errors import RegistryError
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


def open_registry(spec: Spec) -> Registry:
    """The registry the spec declares; RegistryError when it declares none."""
    backend = spec.registry.backend
    if backend == "none":
        raise RegistryError(
            f"{spec.name}: the spec declares no model registry (registry.backend: none)",
            hint="set `registry: {backend: local}` in lifecycle.yaml (the default)",
        )
    if backend != "local":
        raise RegistryError(f"{spec.name}: unknown registry backend {backend!r}")
    # Library names only: a generation's project names come from its own stored code.
    return LocalRegistry(spec.resolve(spec.registry.path), spec.name)


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
    "save_model",
]
