"""Kubernetes manifests for a served model: Deployment, Service, autoscaler, disruption budget.

A wrapped lifecycle runs its release image as is (the image's CMD serves the
bundle baked into it). A dynamic lifecycle runs the generic serving engine on
the project directory, mounted from a PersistentVolumeClaim that also holds
the registry, and adds CronJobs for the two agents: the training agent
(`mlcycle update --once`) and the production evaluation agent
(`mlcycle evaluate --production`).

Manifests are plain data dumped with PyYAML (never text templates): a spec
value can only ever become a YAML string, not YAML structure. They are written
hardened, to pass `checkov --framework kubernetes` but for the checks named in
tests/deploy/test_k8s.py: every container runs as the image's non-root user
with no capabilities, no privilege escalation, the runtime's default seccomp
profile and a read-only root filesystem (emptyDir volumes for what it writes),
and no pod mounts a service account token. The Deployment has no `replicas`
(its HorizontalPodAutoscaler owns that number), a PodDisruptionBudget keeps
drains to one pod at a time, and a NetworkPolicy (optional) admits traffic
to the serving port only.

The serving container serves on 0.0.0.0, so it needs an API token: it reads
MLCYCLE_API_TOKEN from the Secret `NAME-serving-token` (key `token`), which
the manifests reference and never contain. `README.md`, written beside them,
says how to create it.
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
POD_SECURITY: Final = {
    "runAsNonRoot": True,
    "runAsUser": IMAGE_UID,
    "runAsGroup": IMAGE_UID,
    "fsGroup": IMAGE_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: Final = {
    "runAsNonRoot": True,
    "runAsUser": IMAGE_UID,
    "runAsGroup": IMAGE_UID,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The one place a container writes outside a mounted project: temporary files. The
# wrapped image's working directory (/app/data) holds its local prediction store.
SCRATCH: Final = "/tmp"
WRAPPED_DATA: Final = "/app/data"
TOKEN_VARIABLE: Final = "MLCYCLE_API_TOKEN"
TOKEN_KEY: Final = "token"


def token_secret(name: str) -> str:
    """The name of the Secret holding the serving API token of project `name`."""
    return f"{dns_name(name)}-serving-token"


@dataclass(frozen=True)
class K8sManifests:
    """The files written, in the order `kubectl apply -f DIR` should see them."""

    directory: Path
    files: tuple[Path, ...]
    readme: Path | None = None
    # The command creating the Secret the serving container reads its token from.
    create_secret: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "directory": str(self.directory),
            "files": [str(f) for f in self.files],
            "readme": None if self.readme is None else str(self.readme),
            "create_secret": self.create_secret,
        }


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
    network_policy: bool = True,
) -> list[dict[str, Any]]:
    """The Kubernetes objects serving `image` (see the module docstring).

    `replicas` is the autoscaler's minimum. `network_policy` adds a NetworkPolicy
    admitting ingress to the serving port only (egress stays open: a dynamic
    engine reaches its store and the agents their data).
    """
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
        # Never the token itself: a reference to the Secret the user creates (README.md).
        "env": [
            {
                "name": TOKEN_VARIABLE,
                "valueFrom": {"secretKeyRef": {"name": token_secret(project), "key": TOKEN_KEY}},
            }
        ],
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": SCRATCH}],
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        # SIGTERM drains in-flight requests; give it the engine's drain time.
        "terminationGracePeriodSeconds": 35,
    }
    objects: list[dict[str, Any]] = []
    if dynamic:
        container["args"] = [*command[1:], "--project", PROJECT_MOUNT]
        container["command"] = ["mlcycle"]
        container["volumeMounts"].append({"name": "project", "mountPath": PROJECT_MOUNT})
        pod["volumes"].append(
            {"name": "project", "persistentVolumeClaim": {"claimName": f"{name}-project"}}
        )
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
    else:
        # The image's working directory: its local prediction store (store.db) goes there.
        container["volumeMounts"].append({"name": "data", "mountPath": WRAPPED_DATA})
        pod["volumes"].append({"name": "data", "emptyDir": {}})
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                # No `replicas`: the HorizontalPodAutoscaler below owns the number, and a
                # value here would reset it on every `kubectl apply`.
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
    objects.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "labels": labels},
            # One pod at a time: a drain never takes the service down, and a single
            # replica can still be moved (minAvailable: 1 would block that forever).
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }
    )
    if network_policy:
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"ports": [{"protocol": "TCP", "port": CONTAINER_PORT}]}],
                },
            }
        )
    if dynamic and network_policy:
        # The agents' pods take no traffic at all.
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"{name}-agents", "labels": labels},
                "spec": {
                    "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": name}},
                    "policyTypes": ["Ingress"],
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
                        # Not the serving pods' name label: the Service must not select these.
                        "metadata": {"labels": agent_labels(name, agent, labels)},
                        "spec": {
                            "restartPolicy": "Never",
                            "automountServiceAccountToken": False,
                            "securityContext": POD_SECURITY,
                            "containers": [
                                {
                                    "name": agent,
                                    "image": image,
                                    "command": ["mlcycle"],
                                    "args": args,
                                    "volumeMounts": [
                                        {"name": "tmp", "mountPath": SCRATCH},
                                        {"name": "project", "mountPath": PROJECT_MOUNT},
                                    ],
                                    "resources": RESOURCES,
                                    "securityContext": CONTAINER_SECURITY,
                                }
                            ],
                            "volumes": [
                                {"name": "tmp", "emptyDir": {}},
                                {
                                    "name": "project",
                                    "persistentVolumeClaim": {"claimName": f"{name}-project"},
                                },
                            ],
                        },
                    },
                }
            },
        },
    }


def agent_labels(name: str, agent: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels of an agent's pods: part of the project, not its serving pods."""
    return {
        "app.kubernetes.io/part-of": name,
        "app.kubernetes.io/component": agent,
        **{k: v for k, v in labels.items() if k != "app.kubernetes.io/name"},
    }


def write_manifests(objects: list[dict[str, Any]], directory: Path) -> K8sManifests:
    """One YAML file per object, named `NN-kind-name.yaml`, in `directory` (created).

    `README.md` beside them (kubectl ignores it) says how to apply them and how to
    create the Secret the serving container reads its API token from.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for index, obj in enumerate(objects, 1):
            kind = obj["kind"].lower()
            path = directory / f"{index:02d}-{kind}-{obj['metadata']['name']}.yaml"
            path.write_text(dump_yaml(obj), encoding="utf-8")
            files.append(path)
        readme, command = None, None
        deployment = next((o for o in objects if o["kind"] == "Deployment"), None)
        if deployment is not None:
            name = deployment["metadata"]["name"]
            readme, command = directory / "README.md", serving_token_command(name)
            readme.write_text(_readme(name), encoding="utf-8")
    except OSError as e:
        raise PackagingError(f"{directory}: cannot write the manifests: {e.strerror}") from e
    return K8sManifests(
        directory=directory, files=tuple(files), readme=readme, create_secret=command
    )


def dump_yaml(obj: Any) -> str:
    """`obj` as YAML without anchors or aliases: an object used twice is written twice."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False)


def serving_token_command(name: str) -> str:
    """The command that creates the serving token's Secret for project `name`."""
    return (
        f"kubectl create secret generic {token_secret(name)} "
        f'--from-literal={TOKEN_KEY}="$(openssl rand -hex 32)"'
    )


def _readme(name: str) -> str:
    return f"""# Kubernetes manifests of {name}, written by mlcycle

The serving container listens on all addresses, so it requires an API token:
it reads `{TOKEN_VARIABLE}` from the Secret `{token_secret(name)}` (key
`{TOKEN_KEY}`). The manifests name the Secret and never hold its value. Create it
first, in the namespace you deploy to:

    {serving_token_command(name)}

then apply the manifests, in file order:

    kubectl apply -f .

Clients send `Authorization: Bearer TOKEN`; read the token back with
`kubectl get secret {token_secret(name)} -o jsonpath='{{.data.{TOKEN_KEY}}}' | base64 -d`.
Health probes (/healthz, /readyz) need no token.

Other secrets work the same way: when lifecycle.yaml names environment variables
(`postgresql://app:${{env:PGPASSWORD}}@db/app`), add each to the containers' `env`
from a Secret (`valueFrom.secretKeyRef`); a wrapped image takes its store as
`MLCYCLE_STORE_URL`.

The NetworkPolicy admits traffic to the serving port only (from anywhere in the
cluster); narrow its `ingress.from` to your ingress controller, or delete the
file if your cluster enforces its own policies.
"""


def _label_value(text: str) -> str:
    """A Kubernetes label value: ≤ 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-_.")
    return value or "unknown"
