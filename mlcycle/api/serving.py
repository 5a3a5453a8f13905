"""`serve`: put a project's model (or a bundle) behind the HTTP serving engine."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ServingError, UsageError
from mlcycle.spec.model import Deployment

if TYPE_CHECKING:
    from mlcycle.api.project import Project
    from mlcycle.package import Bundle
    from mlcycle.serve import ServedModel
    from mlcycle.spec.model import ServeSpec


@dataclass(frozen=True)
class ServeTarget:
    """What `serve` will serve, described before the server starts (for the banner)."""

    name: str
    ref: str
    source: str
    store_url: str | None
    loader: Any  # () -> ServedModel | Router; called once by the engine
    defaults: ServeSpec | None = None  # the spec's deployment.serve, when serving a project
    scratch: Path | None = None  # where a bundle archive was unpacked; removed by `close`

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
    from mlcycle.api.project import open_project
    from mlcycle.registry import ModelRef
    from mlcycle.serve.live import served_model_from_entry

    project = open_project(path)
    registry = project.registry
    url = None if no_store else (store_url or spec_store_url(project.spec))
    name = project.spec.name
    if ref is None and project.spec.lifecycle.deployment is Deployment.DYNAMIC:
        return _live_target(project, url)
    if ref is not None:
        entry = registry.get(ModelRef.parse(ref))
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
            f"{project.spec.name} {entry.ref} was rejected by its validation gate "
            "and cannot be served",
            hint="serve a candidate: `mlcycle models` lists them",
        )
    return ServeTarget(
        name=name,
        ref=str(entry.ref),
        source=f"registry {registry}",
        store_url=url,
        loader=lambda: served_model_from_entry(name, registry, entry),
        defaults=project.spec.deployment.serve,
    )


def _live_target(project: Project, url: str | None) -> ServeTarget:
    """A dynamic deployment: the active serving manifest, followed while serving."""
    from mlcycle.deploy import ManifestStore
    from mlcycle.registry import LocalRegistry
    from mlcycle.serve.live import LiveRouter

    registry = project.registry
    if not isinstance(registry, LocalRegistry):
        raise UsageError("dynamic serving needs the local registry (registry.backend: local)")
    manifest = ManifestStore(registry.manifests_dir, project.spec.name).active()
    if manifest is None:
        raise ServingError(
            f"{project.spec.name}: no serving manifest is published, so there is nothing to serve",
            hint="publish one with `mlcycle deploy` (after `mlcycle release`), "
            "or serve one model: mlcycle serve --model REF",
        )
    arms = ", ".join(str(e.ref) for e in manifest.resolve(registry))
    root, name = registry.root, project.spec.name
    return ServeTarget(
        name=name,
        ref=f"{arms} ({manifest.selector.get('kind')}, manifest {manifest.number})",
        source=f"registry {registry.root}",
        store_url=url,
        loader=lambda: LiveRouter(root, name),
        defaults=project.spec.deployment.serve,
    )


def spec_store_url(spec: Any) -> str:
    """The spec's store URL with a relative SQLite path made absolute (the engine's cwd varies)."""
    url: str = spec.store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        path = spec.resolve(url[len(prefix) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def served_model_from_bundle(bundle: Bundle) -> ServedModel:
    """The bundled model ready for the engine (what `mlcycle serve --bundle` serves)."""
    from mlcycle.serve import Feature, ServedModel

    return ServedModel.from_estimator(
        bundle.load_model(),
        name=bundle.project,
        features=[Feature(f.name, f.type, f.nullable) for f in bundle.features],
        task=bundle.task,
        release=bundle.release,
        generation=bundle.generation,
        metadata={"sha256": bundle.artifact.sha256, "created_at": bundle.created_at},
    )


def _bundle_target(path: Path, *, store_url: str | None) -> ServeTarget:
    from mlcycle.package import load_bundle

    if not path.is_file():
        bundle = load_bundle(path)
        return ServeTarget(
            name=bundle.project,
            ref=bundle.ref,
            source=f"bundle {path}",
            store_url=store_url,
            loader=lambda: served_model_from_bundle(bundle),
        )
    scratch = Path(tempfile.mkdtemp(prefix="mlcycle-bundle-"))
    try:
        bundle = load_bundle(path, extract_to=scratch / "bundle")
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
    )


def serve(target: ServeTarget, *, host: str, port: int, workers: int) -> None:
    """Run the engine on `target` until SIGTERM/SIGINT (blocks)."""
    from mlcycle.serve import serve as run_engine

    try:
        run_engine(target.loader, host=host, port=port, workers=workers, store_url=target.store_url)
    finally:
        target.close()  # when the engine stops before loading (a taken port, a bad store)
