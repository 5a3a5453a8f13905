"""Deployment artefacts that are not images: serving manifests and Kubernetes manifests.

`manifest` holds the versioned serving manifests of a dynamic deployment (what
the engine serves and how it routes); `k8s` writes Kubernetes objects for
either kind of deployment.
"""

from __future__ import annotations

from mlcycle.deploy.k8s import K8sManifests, manifests, write_manifests
from mlcycle.deploy.manifest import Manifest, ManifestStore, selector_document

__all__ = [
    "K8sManifests",
    "Manifest",
    "ManifestStore",
    "manifests",
    "selector_document",
    "write_manifests",
]
