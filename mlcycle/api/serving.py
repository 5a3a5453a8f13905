"""`serve`: put a project's model (or a bundle) behind the HTTP serving engine."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.api.project import open_project
from mlcycle.api.stages import registered_entry
from mlcycle.errors import ServingError, SpecError, UsageError
from mlcycle.package import load_bundle
from mlcycle.registry import ModelRef
from mlcycle.registry.code import code_drift
from mlcycle.serve import ServedModel, ServeOptions
from mlcycle.serve import serve as run_engine
from mlcycle.serve.auth import load_token, require_token_for
from mlcycle.serve.live import LiveRouter, served_model_from_entry
from mlcycle.serve.model import served_model_from_bundle
from mlcycle.spec import load_spec
from mlcycle.spec.model import (
    DEFAULT_MAX_ROWS,
    SERVE_BACKLOG,
    SERVE_MAX_CONNECTIONS,
    SERVE_QUEUE_DEADLINE_MS,
    Deployment,
    Retention,
)

if TYPE_CHECKING:
    from mlcycle.api.project import Project
    from mlcycle.spec.model import ServeSpec, Spec


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeTarget:
    """What `serve` will serve, described before the server starts (for the banner)."""

    name: str
    ref: str
    source: str
    store_url: str | None
    loader: Any  # () -> ServedModel | Router; called once by the engine
    defaults: ServeSpec | None = None  # the spec's deployment.serve, when serving a project
    max_rows: int = DEFAULT_MAX_ROWS  # deployment.serve.max_rows (a bundle: its own spec's)
    # Admission (deployment.serve; a bundle: its own spec's): 0 turns the first and last off.
    max_connections: int = SERVE_MAX_CONNECTIONS
    backlog: int = SERVE_BACKLOG
    queue_deadline_ms: float = SERVE_QUEUE_DEADLINE_MS
    retention: Retention | None = None  # store.retention (a bundle: its own spec's)
    scratch: Path | None = None  # where a bundle archive was unpacked; removed by `close`
    warnings: tuple[str, ...] = ()  # shown before serving (e.g. the project's code drifted)

    def close(self) -> None:
        """Remove what resolving the target unpacked (idempotent)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def serve_target(
    path: str | Path | None = None,
    *,
    ref: str | None = None,
    bundle: str | Path | None = None,
    store_url: str | None = None,
    no_store: bool = False,
) -> ServeTarget:
    """Resolve what to serve: a bundle, or a registry entry of the project (default: current).

    Checks everything that can be checked before the server starts (the spec,
    the reference, the entry's gate status); the model itself is loaded by the
    returned loader inside the engine. The prediction log goes to `store_url`,
    else the spec's store, else (a bundle) `store.db` in the working directory —
    `/app/data` in an image built by `mlcycle deploy`, a volume's place.
    """
    if bundle is not None:
        local = store_url or f"sqlite:///{Path.cwd() / 'store.db'}"
        return _bundle_target(Path(bundle), store_url=None if no_store else local)

    project = open_project(path)
    registry = project.registry
    url = None if no_store else (store_url or spec_store_url(project.spec))
    name = project.spec.name
    if ref is None and project.spec.lifecycle.deployment is Deployment.DYNAMIC:
        return _live_target(project, url)
    if ref is not None:
        entry = registered_entry(registry, ModelRef.parse(ref), ref)
    else:
        current = registry.current()
        if current is None:
            raise ServingError(
                f"{project.spec.name}: no model is current, so there is nothing to serve",
                hint="release one (`mlcycle release`), or name one: `mlcycle serve --model dev/1`",
            )
        entry = current
    if not entry.is_candidate:
        raise UsageError(
            f"{project.spec.name} {entry.ref} {entry.unservable} and cannot be served",
            hint="serve a candidate: `mlcycle models` lists them",
        )
    return ServeTarget(
        name=name,
        ref=str(entry.ref),
        source=f"registry {registry.describe()}",
        store_url=url,
        loader=lambda: served_model_from_entry(name, registry, entry),
        defaults=project.spec.deployment.serve,
        warnings=code_drift_warnings(project.spec, entry),
        **_limits(project.spec),
    )


def code_drift_warnings(spec: Spec, entry: Any) -> tuple[str, ...]:
    """A warning when the project's model code is not the code `entry` was trained with.

    Serving never follows the working copy: the entry loads its own stored code.
    """
    if not entry.code and not spec.model.code:
        return ()
    try:
        drift = code_drift(spec, entry.code)
    except UsageError as e:
        return (f"model.code cannot be read ({e}); serving the code stored with {entry.ref}",)
    if not drift:
        return ()
    return (
        f"the project's model code differs from the code {entry.ref} was trained with "
        f"({drift.describe()}); serving {entry.ref} with its stored code — release the "
        "change (mlcycle release) to serve it",
    )


def _live_target(project: Project, url: str | None) -> ServeTarget:
    """A dynamic deployment: the active serving manifest, followed while serving."""
    registry = project.registry
    manifest = registry.manifests().active()
    if manifest is None:
        raise ServingError(
            f"{project.spec.name}: no serving manifest is published, so there is nothing to serve",
            hint="publish one with `mlcycle deploy` (after `mlcycle release`), "
            "or serve one model: mlcycle serve --model REF",
        )
    arms = ", ".join(str(e.ref) for e in manifest.resolve(registry))
    name = project.spec.name
    return ServeTarget(
        name=name,
        ref=f"{arms} ({manifest.selector.get('kind')}, manifest {manifest.number})",
        source=f"registry {registry.describe()}",
        store_url=url,
        loader=lambda: LiveRouter(registry),
        defaults=project.spec.deployment.serve,
        **_limits(project.spec),
    )


def _bundle_limits(bundle: Any) -> dict[str, Any]:
    """The limits of a bundle's own spec; the defaults when it no longer validates (a
    bundle made by another mlcycle), so that a model that loads still serves."""
    try:
        return _limits(load_spec(bundle.spec_path, resolve_env=False))
    except SpecError as e:
        log.warning("%s: serving with the default limits: %s", bundle.spec_path, e)
        return {}


def _limits(spec: Spec) -> dict[str, Any]:
    """The engine settings a spec fixes wherever it is served (ServeTarget fields)."""
    retention = spec.store.retention
    return {
        "max_rows": spec.deployment.serve.max_rows,
        "max_connections": spec.deployment.serve.max_connections,
        "backlog": spec.deployment.serve.backlog,
        "queue_deadline_ms": spec.deployment.serve.queue_deadline_ms,
        "retention": retention if retention.active else None,
    }


STORE_URL_VARIABLE = "MLCYCLE_STORE_URL"


def spec_store_url(spec: Any) -> str:
    """The store's URL: MLCYCLE_STORE_URL, else the spec's, a relative SQLite path made
    absolute (the engine's cwd varies).

    The variable wins for every command, as MLCYCLE_REGISTRY_URL does for the registry:
    the pods of `deploy --k8s` and containers of the engine image get it from a Secret,
    while their spec's own URL has its password masked or references a variable they
    lack (the agents scored the spec's store, not the engines' one).
    """
    url: str = os.environ.get(STORE_URL_VARIABLE) or spec.store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        path = spec.resolve(url[len(prefix) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def _bundle_target(path: Path, *, store_url: str | None) -> ServeTarget:
    # The bundle's own lifecycle.yaml (the spec the release was made with) sets the row
    # cap and the retention, so an image serves under the same limits as the project.
    # Only those are read: its secrets are masked and its ${env:NAME} stay unresolved.
    if not path.is_file():
        bundle = load_bundle(path)
        return ServeTarget(
            name=bundle.project,
            ref=bundle.ref,
            source=f"bundle {path}",
            store_url=store_url,
            loader=lambda: served_model_from_bundle(bundle),
            **_bundle_limits(bundle),
        )
    scratch = Path(tempfile.mkdtemp(prefix="mlcycle-bundle-"))
    try:
        bundle = load_bundle(path, extract_to=scratch / "bundle")
        limits = _bundle_limits(bundle)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise

    def loader() -> ServedModel:
        # Once the model is in memory nothing reads the unpacked files again, so they go
        # now: before worker processes start, and before a SIGTERM ends the process
        # without running any `finally` (the engine re-raises it, as uvicorn does).
        try:
            return served_model_from_bundle(bundle)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return ServeTarget(
        name=bundle.project,
        ref=bundle.ref,
        source=f"bundle {path}",
        store_url=store_url,
        loader=loader,
        scratch=scratch,
        **limits,
    )


@dataclass(frozen=True)
class ServeAccess:
    """Who may call the server: the bearer token (None: anyone), and what stays open."""

    token: str | None = field(default=None, repr=False)
    public_predict: bool = False

    def describe(self) -> str:
        """One line for the banner (never the token)."""
        if self.token is None:
            return "no authentication"
        return "bearer token required" + (", predictions open" if self.public_predict else "")


def serve_access(
    host: str,
    *,
    token_file: Path | None = None,
    no_auth: bool = False,
    public_predict: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> ServeAccess:
    """The access rules for serving on `host`: the token from `token_file` or MLCYCLE_API_TOKEN.

    Raises UsageError (exit 2) for an unreadable or empty token file, and for a host
    beyond the loopback interface without a token unless `no_auth`.
    """
    token = load_token(token_file, environ)
    require_token_for(host, token, no_auth=no_auth)
    return ServeAccess(token=token, public_predict=public_predict)


def serve_options(
    target: ServeTarget,
    access: ServeAccess,
    *,
    max_connections: int | None = None,
    backlog: int | None = None,
    queue_deadline_ms: float | None = None,
) -> ServeOptions:
    """The engine's options for `target`: its spec's limits and admission settings, each
    admission setting overridden when given (a command-line option); 0 turns the
    connection budget or the sojourn check off."""
    connections = target.max_connections if max_connections is None else max_connections
    deadline = target.queue_deadline_ms if queue_deadline_ms is None else queue_deadline_ms
    return ServeOptions(
        max_rows=target.max_rows,
        retention=target.retention,
        token=access.token,
        public_predict=access.public_predict,
        max_connections=connections or None,
        backlog=target.backlog if backlog is None else backlog,
        queue_deadline=deadline / 1000 if deadline else None,
    )


def serve(
    target: ServeTarget,
    *,
    host: str,
    port: int,
    workers: int,
    access: ServeAccess | None = None,
    on_ready: Callable[[str], None] | None = None,
    max_connections: int | None = None,
    backlog: int | None = None,
    queue_deadline_ms: float | None = None,
) -> None:
    """Run the engine on `target` until SIGTERM/SIGINT (blocks).

    `on_ready` is called with the engine's URL (the port it really has, also for
    port 0) once the port accepts connections, from another thread. The admission
    settings override the target's (its spec's) when given; see `serve_options`.

    Without `access`, the rules come from the environment (`serve_access`), so that no
    caller can serve beyond the loopback interface without a token by forgetting them.
    """
    try:
        options = serve_options(
            target,
            access or serve_access(host),
            max_connections=max_connections,
            backlog=backlog,
            queue_deadline_ms=queue_deadline_ms,
        )
        run_engine(
            target.loader,
            host=host,
            port=port,
            workers=workers,
            store_url=target.store_url,
            options=options,
            on_ready=on_ready,
        )
    finally:
        target.close()  # when the engine stops before loading (a taken port, a bad store)
