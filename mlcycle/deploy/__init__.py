"""Deployment artefacts that are not images: Kubernetes manifests.

`k8s` writes Kubernetes objects for either kind of deployment. The serving
manifests of a dynamic deployment (what the engine serves and how it routes) are
kept by the registry: `Registry.manifests()`, in `mlcycle.registry.manifests`.
"""

from __future__ import annotations

from mlcycle.deploy.k8s import K8sManifests, manifests, write_manifests

__all__ = [
    "K8sManifests",
    "manifests",
    "write_manifests",
]
