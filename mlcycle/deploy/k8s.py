"""Kubernetes manifests for a served model: Deployment, Service, autoscaler, disruption budget.

A wrapped lifecycle runs its release image as is (the image's CMD serves the
bundle baked into it). A dynamic lifecycle runs the generic serving engine on
the project directory and adds CronJobs for the two agents: the training agent
(`mlcycle update --once`) and the production evaluation agent
(`mlcycle evaluate --production`). Where the project directory comes from:

- With a shared registry declared (`Shared`: `registry.url`, or
  MLCYCLE_REGISTRY_URL), no volume is shared at all. The pods take the
  registry's database URL, the store's URL and the artifact store's credentials
  from the Secret `NAME-shared` (referenced, never written: `README.md` says how
  to create it), and lifecycle.yaml, the model code and the artifact store's URL
  from the ConfigMap `NAME-project`; /project is an emptyDir (each pod's cache
  of pulled artifacts) with those files mounted into it.
- Without one, the project (spec, registry, store) lives on a
  PersistentVolumeClaim mounted into every engine replica and every agent: it
  must be ReadWriteMany (the pods may run on different nodes) and start empty
  but for the project, which the user copies in. `README.md` and a comment in
  the claim's file say so.

A wrapped image logs its predictions into its own pod (an emptyDir) unless a
shared store is declared: then it takes MLCYCLE_STORE_URL from `NAME-shared`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from mlcycle.errors import PackagingError, UsageError
from mlcycle.package.dockerfile import IMAGE_UID, PROJECT_MOUNT
from mlcycle.package.dockerfile import SERVE_PORT as CONTAINER_PORT
from mlcycle.redact import mask_url, mask_urls_in
from mlcycle.registry import ARTIFACTS_URL_VARIABLE, registry_urls
from mlcycle.spec.code import read_code
from mlcycle.spec.model import Spec

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


# The Secret and ConfigMap of a shared registry (see the module docstring): key → variable.
SHARED_SECRET_KEYS: Final = {
    "registry-url": "MLCYCLE_REGISTRY_URL",
    "store-url": "MLCYCLE_STORE_URL",
    "artifacts-username": "MLCYCLE_ARTIFACTS_USERNAME",
    "artifacts-password": "MLCYCLE_ARTIFACTS_PASSWORD",
}
ARTIFACTS_KEY: Final = "artifacts-url"
ARTIFACTS_VARIABLE: Final = ARTIFACTS_URL_VARIABLE
SPEC_FILE: Final = "lifecycle.yaml"


@dataclass(frozen=True)
class Shared:
    """What a deployment shares instead of a volume, as the spec (or environment) declares it.

    `registry_url`/`store_url` are shown masked in README.md's command that creates the
    Secret (the user fills in the real ones); `files` are the project files the pods
    need (lifecycle.yaml, the model code), relative path → text.
    """

    registry_url: str | None = None  # a shared registry's database
    artifacts_url: str | None = None  # its artifact store (oci://: never credentials)
    store_url: str | None = None  # a shared prediction store (not a SQLite file)
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def registry(self) -> bool:
        return self.registry_url is not None

    def engine_env(self) -> tuple[str, ...]:
        """The variables an engine container of a shared registry is run with (`docker run
        -e`): the image carries the project's files with their URLs masked, so the real
        URLs and the token come from the environment, as the Kubernetes Secret gives them.
        Empty without a shared registry: the engine serves a project mounted at /project."""
        if not self.files:
            return ()
        names = ["MLCYCLE_REGISTRY_URL"]
        if self.artifacts_url:
            names.append(ARTIFACTS_VARIABLE)
        if self.store_url:
            names.append("MLCYCLE_STORE_URL")
        return (*names, TOKEN_VARIABLE)

    @classmethod
    def declared(
        cls, spec: Spec, spec_file: Path, env: Mapping[str, str], *, dynamic: bool
    ) -> Shared:
        """What `spec` declares shared, the environment overriding it as it does for
        every command (MLCYCLE_REGISTRY_URL, MLCYCLE_ARTIFACTS_URL, MLCYCLE_STORE_URL)."""
        registry_url, artifacts_url = registry_urls(spec, env)
        store = env.get("MLCYCLE_STORE_URL") or spec.store.url
        # A SQLite store is a file in the pod: nothing another pod could share.
        scheme = store.split(":", 1)[0].split("+", 1)[0].lower()
        files: dict[str, str] = {}
        if dynamic and registry_url:
            # What a pod without the project volume needs of the project. The spec's
            # URLs have their secrets masked, as in a bundle: pods take them from the Secret.
            files[SPEC_FILE] = mask_urls_in(spec_file.read_text(encoding="utf-8"))
            for path, data in read_code(spec.root, spec.model.code).items():
                files[path] = data.decode("utf-8", "replace")
        return cls(
            registry_url=registry_url or None,
            artifacts_url=artifacts_url or None,
            store_url=None if scheme == "sqlite" else store,
            files=files,
        )


def shared_secret(name: str) -> str:
    """The name of the Secret holding the shared registry's and store's URLs and credentials."""
    return f"{dns_name(name)}-shared"


def project_config(name: str) -> str:
    """The name of the ConfigMap holding the project files and the artifact store's URL."""
    return f"{dns_name(name)}-project"


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
    # The command creating the Secret of the shared registry/store (URLs masked: fill in).
    create_shared_secret: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "directory": str(self.directory),
            "files": [str(f) for f in self.files],
            "readme": None if self.readme is None else str(self.readme),
            "create_secret": self.create_secret,
            "create_shared_secret": self.create_shared_secret,
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
    shared: Shared | None = None,
) -> list[dict[str, Any]]:
    """The Kubernetes objects serving `image` (see the module docstring).

    `replicas` is the autoscaler's minimum. `network_policy` adds a NetworkPolicy
    admitting ingress to the serving port only (egress stays open: a dynamic
    engine reaches its store and the agents their data). `shared` is what the
    spec declares shared (registry, artifacts, store); None: nothing.
    """
    shared = shared or Shared()
    without_volume = dynamic and shared.registry
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
            },
            *_shared_env(project, shared, dynamic=dynamic),
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
    project_mounts, project_volumes = _project_volume(project, shared)
    if dynamic:
        container["args"] = [*command[1:], "--project", PROJECT_MOUNT]
        container["command"] = ["mlcycle"]
        container["volumeMounts"].extend(project_mounts)
        pod["volumes"].extend(project_volumes)
    if without_volume:
        data = {key: text for key, _, text in _project_files(shared)}
        if shared.artifacts_url is not None:
            data[ARTIFACTS_KEY] = shared.artifacts_url
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": project_config(project), "labels": labels},
                "data": data,
            }
        )
    elif dynamic:
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
        agent_env = _shared_env(project, shared, dynamic=True)
        for agent, args in (
            ("update", ["update", "--once", "--project", PROJECT_MOUNT]),
            ("evaluate", ["evaluate", "--production", "--project", PROJECT_MOUNT]),
        ):
            objects.append(
                _cronjob(
                    name,
                    agent,
                    args,
                    image,
                    labels,
                    env=agent_env,
                    mounts=project_mounts,
                    volumes=project_volumes,
                )
            )
    return objects


def _shared_env(project: str, shared: Shared, *, dynamic: bool) -> list[dict[str, Any]]:
    """The variables a pod takes from the shared Secret and ConfigMap (references only)."""
    keys: list[str] = []
    if dynamic and shared.registry:
        keys.append("registry-url")
    if shared.store_url is not None and (shared.registry or not dynamic):
        keys.append("store-url")
    env = [
        {
            "name": SHARED_SECRET_KEYS[key],
            "valueFrom": {"secretKeyRef": {"name": shared_secret(project), "key": key}},
        }
        for key in keys
    ]
    if dynamic and shared.registry and shared.artifacts_url is not None:
        env.append(
            {
                "name": ARTIFACTS_VARIABLE,
                "valueFrom": {
                    "configMapKeyRef": {"name": project_config(project), "key": ARTIFACTS_KEY}
                },
            }
        )
        # A registry that takes anonymous pushes and pulls needs neither key.
        for key in ("artifacts-username", "artifacts-password"):
            env.append(
                {
                    "name": SHARED_SECRET_KEYS[key],
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": shared_secret(project),
                            "key": key,
                            "optional": True,
                        }
                    },
                }
            )
    return env


def _project_files(shared: Shared) -> list[tuple[str, str, str]]:
    """(ConfigMap key, path under the project, text) of each project file the pods need."""
    files = []
    for index, (path, text) in enumerate(sorted(shared.files.items())):
        key = SPEC_FILE if path == SPEC_FILE else f"code-{index}-{_key(Path(path).name)}"
        files.append((key, path, text))
    return files


def _key(text: str) -> str:
    """`text` as a ConfigMap key: [-._a-zA-Z0-9]+."""
    return re.sub(r"[^-._a-zA-Z0-9]+", "_", text) or "file"


def _project_volume(
    project: str, shared: Shared
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes) giving a dynamic lifecycle's pods their project directory."""
    if not shared.registry:
        # One project for all: a ReadWriteMany claim (see the module docstring).
        return (
            [{"name": "project", "mountPath": PROJECT_MOUNT}],
            [
                {
                    "name": "project",
                    "persistentVolumeClaim": {"claimName": f"{dns_name(project)}-project"},
                }
            ],
        )
    # Nothing shared on disk: a scratch directory per pod (the cache of pulled artifacts,
    # keyed by digest) with the project's files mounted into it one by one.
    files = _project_files(shared)
    mounts = [{"name": "project", "mountPath": PROJECT_MOUNT}] + [
        {
            "name": "project-files",
            "mountPath": f"{PROJECT_MOUNT}/{path}",
            "subPath": key,
            "readOnly": True,
        }
        for key, path, _ in files
    ]
    volumes: list[dict[str, Any]] = [{"name": "project", "emptyDir": {}}]
    if files:
        volumes.append(
            {
                "name": "project-files",
                "configMap": {
                    "name": project_config(project),
                    "items": [{"key": key, "path": key} for key, _, _ in files],
                },
            }
        )
    return mounts, volumes


def _cronjob(
    name: str,
    agent: str,
    args: list[str],
    image: str,
    labels: Mapping[str, str],
    *,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
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
                                    **({"env": env} if env else {}),
                                    "volumeMounts": [
                                        {"name": "tmp", "mountPath": SCRATCH},
                                        *mounts,
                                    ],
                                    "resources": RESOURCES,
                                    "securityContext": CONTAINER_SECURITY,
                                }
                            ],
                            "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
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


def write_manifests(
    objects: list[dict[str, Any]], directory: Path, *, shared: Shared | None = None
) -> K8sManifests:
    """One YAML file per object, named `NN-kind-name.yaml`, in `directory` (created).

    `README.md` beside them (kubectl ignores it) says how to apply them, how to
    create the Secrets the pods read (the serving token; the shared registry's and
    store's URLs when `shared` declares them) and what the project volume needs
    when there is one.
    """
    shared = shared or Shared()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for index, obj in enumerate(objects, 1):
            kind = obj["kind"].lower()
            path = directory / f"{index:02d}-{kind}-{obj['metadata']['name']}.yaml"
            text = dump_yaml(obj)
            if obj["kind"] == "PersistentVolumeClaim":
                text = PROJECT_CLAIM_NOTE + text
            path.write_text(text, encoding="utf-8")
            files.append(path)
        readme, command, shared_command = None, None, None
        deployment = next((o for o in objects if o["kind"] == "Deployment"), None)
        if deployment is not None:
            name = deployment["metadata"]["name"]
            readme, command = directory / "README.md", serving_token_command(name)
            shared_command = shared_secret_command(name, objects, shared)
            claim = any(o["kind"] == "PersistentVolumeClaim" for o in objects)
            readme.write_text(
                _readme(name, shared_command, claim=claim, shared=shared), encoding="utf-8"
            )
    except OSError as e:
        raise PackagingError(f"{directory}: cannot write the manifests: {e.strerror}") from e
    return K8sManifests(
        directory=directory,
        files=tuple(files),
        readme=readme,
        create_secret=command,
        create_shared_secret=shared_command,
    )


PROJECT_CLAIM_NOTE: Final = """\
# The project directory of every engine replica and every agent CronJob. It must be
# ReadWriteMany (the pods may run on different nodes; a ReadWriteOnce claim leaves
# them Pending or, on one node, racing on the registry) and it starts empty: copy the
# project (lifecycle.yaml, the model code, .mlcycle/registry) into it before the pods
# start. To need no shared volume, declare a shared registry in lifecycle.yaml
# (registry.url and registry.artifacts) and deploy again. See README.md.
"""


def shared_secret_command(name: str, objects: list[dict[str, Any]], shared: Shared) -> str | None:
    """The command creating the Secret `NAME-shared` the objects reference, or None.

    The values shown are the spec's URLs with their secrets masked: the user types
    the real ones (they are never written to a file by mlcycle).
    """
    keys: dict[str, bool] = {}  # key → optional
    for ref in _secret_refs(objects):
        if ref.get("name") == shared_secret(name):
            keys[ref["key"]] = bool(ref.get("optional"))
    if not keys:
        return None
    shown = {
        "registry-url": shared.registry_url,
        "store-url": shared.store_url,
        "artifacts-username": "USERNAME",
        "artifacts-password": "PASSWORD",
    }
    parts = [f"kubectl create secret generic {shared_secret(name)}"]
    for key in SHARED_SECRET_KEYS:
        if key in keys:
            value = shown[key] or "VALUE"
            value = mask_url(value) if "://" in value else value
            parts.append(f"--from-literal={key}='{value}'")
    return " \\\n    ".join(parts)


def _secret_refs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["secretKeyRef"]] if isinstance(node.get("secretKeyRef"), dict) else []
        for value in node.values():
            found.extend(_secret_refs(value))
        return found
    if isinstance(node, list):
        return [ref for value in node for ref in _secret_refs(value)]
    return []


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


def _readme(name: str, shared_command: str | None, *, claim: bool, shared: Shared) -> str:
    text = _token_readme(name) + _shared_readme(name, shared_command, claim=claim)
    if shared.registry and not (shared.artifacts_url or "").startswith("oci:"):
        # The registry's database is shared but its files would not be: each pod
        # would look for them in a directory of its own.
        text += f"""
**Warning:** no `oci://` artifact store is declared (registry.artifacts is
{"unset" if shared.artifacts_url is None else f"`{shared.artifacts_url}`"}), so the
model files would live in each pod's own /project and no other pod could load
them. Declare `registry.artifacts: oci://HOST[:PORT]/REPOSITORY` (or set
MLCYCLE_ARTIFACTS_URL where `deploy` runs) and deploy again.
"""
    return text


def _shared_readme(name: str, shared_command: str | None, *, claim: bool) -> str:
    text = ""
    if shared_command is not None:
        text += f"""
## The shared registry and store

The pods share no volume: they read the registry's database URL, the prediction
store's URL and the artifact store's credentials from the Secret
`{shared_secret(name)}` (keys `registry-url`, `store-url`, `artifacts-username`,
`artifacts-password`; the last two only when the artifact store needs them), and
lifecycle.yaml, the model code and the artifact store's URL from the ConfigMap
`{project_config(name)}`. Create the Secret with the real values in place of `***`
and of any `${{env:NAME}}`:

    {shared_command}

Each pod keeps the artifacts it pulled in its own /project (an emptyDir), checked
by digest; the data sources the agents train on must be reachable from the pods
(a database URL; a file path in the project is not there), and so must the
prediction store: a SQLite store (the default) would be one file per pod, so
declare `store.url: postgresql://...` for the engines and agents to share it.
"""
    if claim:
        text += f"""
## The project volume (ReadWriteMany)

No shared registry is declared, so the engine and both agents share one project
directory: the PersistentVolumeClaim `{name}-project`, mounted at /project. It must
be **ReadWriteMany** (a StorageClass such as NFS, CephFS, Azure Files or EFS): with
ReadWriteOnce the replicas and the CronJobs' pods cannot all mount it. It starts
empty: copy the project (lifecycle.yaml, the model code, `.mlcycle/registry`) into
it before the pods start. To need no shared volume at all, declare a shared
registry in lifecycle.yaml (`registry: {{url: postgresql://..., artifacts:
oci://HOST/REPO}}`) and deploy again.
"""
    return text


def _token_readme(name: str) -> str:
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
