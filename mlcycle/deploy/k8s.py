"""Kubernetes manifests for a served model: Deployment, Service, HorizontalPodAutoscaler.

A wrapped lifecycle runs its release image as is (the image's CMD serves the
bundle baked into it). A dynamic lifecycle runs the generic serving engine on
the project directory, mounted from a PersistentVolumeClaim that also holds
the registry, and adds CronJobs for the two agents: the training agent
(`mlcycle update --once`) and the production evaluation agent
(`mlcycle evaluate --production`).

Manifests are plain data dumped with PyYAML (never text templates): a spec
value can only ever become a YAML string, not YAML structure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mlcycle.errors import PackagingError, UsageError
from mlcycle.package.dockerfile import IMAGE_UID, PROJECT_MOUNT
from mlcycle.package.dockerfile import SERVE_PORT as CONTAINER_PORT

SERVICE_PORT: Final = 80
# Defaults sized for a scikit-learn model on a small node; edit the files to suit.
RESOURCES: Final = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
AGENT_SCHEDULES: Final = {"update": "0 * * * *", "evaluate": "*/15 * * * *"}
# The image's user; fsGroup makes the mounted project volume writable for it (the engine
# keeps its prediction store there, the agents register new generations).
POD_SECURITY: Final = {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID}


@dataclass(frozen=True)
class K8sManifests:
    """The files written, in the order `kubectl apply -f DIR` should see them."""

    directory: Path
    files: tuple[Path, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {"directory": str(self.directory), "files": [str(f) for f in self.files]}


def dns_name(name: str) -> str:
    """`name` as a DNS-1035 label (what Service names must be): a-z, 0-9, '-', ≤ 63."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if label and not label[0].isalpha():
        label = f"m-{label}"
    label = label[:63].rstrip("-")
    if not label:
        raise UsageError(f"cannot make a Kubernetes name from {name!r}")
    return label


def manifests(
    *,
    project: str,
    image: str,
    version: str,
    dynamic: bool,
    workers: int = 1,
    replicas: int = 1,
    max_replicas: int = 5,
) -> list[dict[str, Any]]:
    """The Kubernetes objects serving `image` (see the module docstring)."""
    if replicas < 1 or max_replicas < replicas:
        raise UsageError(
            f"replicas {replicas} / max replicas {max_replicas}: need 1 <= replicas <= max"
        )
    name = dns_name(project)
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/version": _label_value(version),
        "app.kubernetes.io/managed-by": "mlcycle",
    }
    selector = {"app.kubernetes.io/name": name}
    http = {"port": "http"}
    command = [
        "mlcycle",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(CONTAINER_PORT),
        "--workers",
        str(workers),
    ]
    container: dict[str, Any] = {
        "name": "serve",
        "image": image,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "readinessProbe": {"httpGet": {"path": "/readyz", **http}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **http},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
        },
        "resources": RESOURCES,
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    pod: dict[str, Any] = {
        "containers": [container],
        # SIGTERM drains in-flight requests; give it the engine's drain time.
        "terminationGracePeriodSeconds": 35,
    }
    objects: list[dict[str, Any]] = []
    if dynamic:
        container["args"] = [*command[1:], "--project", PROJECT_MOUNT]
        container["command"] = ["mlcycle"]
        container["volumeMounts"] = [{"name": "project", "mountPath": PROJECT_MOUNT}]
        pod["volumes"] = [
            {"name": "project", "persistentVolumeClaim": {"claimName": f"{name}-project"}}
        ]
        pod["securityContext"] = dict(POD_SECURITY)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{name}-project", "labels": labels},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "5Gi"}},
                },
            }
        )
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }
    )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
            },
        }
    )
    objects.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 70},
                        },
                    }
                ],
            },
        }
    )
    if dynamic:
        for agent, args in (
            ("update", ["update", "--once", "--project", PROJECT_MOUNT]),
            ("evaluate", ["evaluate", "--production", "--project", PROJECT_MOUNT]),
        ):
            objects.append(_cronjob(name, agent, args, image, labels))
    return objects


def _cronjob(
    name: str, agent: str, args: list[str], image: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"{name}-{agent}", "labels": dict(labels)},
        "spec": {
            "schedule": AGENT_SCHEDULES[agent],
            # One agent at a time: a slow run is not joined by the next one.
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 1,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "securityContext": dict(POD_SECURITY),
                            "containers": [
                                {
                                    "name": agent,
                                    "image": image,
                                    "command": ["mlcycle"],
                                    "args": args,
                                    "volumeMounts": [
                                        {"name": "project", "mountPath": PROJECT_MOUNT}
                                    ],
                                    "resources": RESOURCES,
                                }
                            ],
                            "volumes": [
                                {
                                    "name": "project",
                                    "persistentVolumeClaim": {"claimName": f"{name}-project"},
                                }
                            ],
                        }
                    },
                }
            },
        },
    }


def write_manifests(objects: list[dict[str, Any]], directory: Path) -> K8sManifests:
    """One YAML file per object, named `NN-kind-name.yaml`, in `directory` (created)."""
    import yaml

    try:
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for index, obj in enumerate(objects, 1):
            kind = obj["kind"].lower()
            path = directory / f"{index:02d}-{kind}-{obj['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
            files.append(path)
    except OSError as e:
        raise PackagingError(f"{directory}: cannot write the manifests: {e.strerror}") from e
    return K8sManifests(directory=directory, files=tuple(files))


def _label_value(text: str) -> str:
    """A Kubernetes label value: ≤ 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-_.")
    return value or "unknown"
