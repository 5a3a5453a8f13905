"""`deploy`: put a release where production can run it.

- `deployment: wrapped` — the release (default: the current one) becomes a
  bundle, a Docker build context and an image `IMAGE:VERSION` (pushed with
  `--push`); `--context-only DIR` stops after the context, with no engine.
- `deployment: dynamic` — a serving manifest is published to the registry: the
  release in play and the selector routing among its newest generations. The
  serving engine picks it up while it runs. `--image` also builds the generic
  engine image `IMAGE:VERSION` (mlcycle and the release's pinned libraries, no
  model: it serves the project mounted at /project, and the agents run in it; with
  a shared registry it carries the project's files and needs no volume, only the
  registry's, artifact store's and store's URLs in its environment);
  `--context-only DIR` and `--push` work for it as for a wrapped image.

Either way `--k8s DIR` writes Kubernetes manifests for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle import extras
from mlcycle.api.project import open_project
from mlcycle.api.stages import named_entry, stage_entry
from mlcycle.errors import MlcycleError, RegistryError, UsageError
from mlcycle.progress import NULL_PROGRESS, Progress, step
from mlcycle.spec.model import Deployment, SelectorKind

if TYPE_CHECKING:
    from mlcycle.api.project import Project
    from mlcycle.deploy import K8sManifests
    from mlcycle.deploy.k8s import Shared
    from mlcycle.package import BuildContext, Bundle, ImageInfo
    from mlcycle.registry import Entry
    from mlcycle.registry.manifests import Manifest


@dataclass(frozen=True)
class DeployResult:
    """What a deploy produced; fields that do not apply are None."""

    project: str
    deployment: str
    entry: Entry | None = None
    bundle: Bundle | None = None
    context: BuildContext | None = None
    image: ImageInfo | None = None
    pushed: ImageInfo | None = None
    manifest: Manifest | None = None
    arms: tuple[str, ...] = ()
    k8s: K8sManifests | None = None
    uncommitted: tuple[Path, ...] = ()
    """Files this deploy wrote into the project that git would commit (untracked, changed)."""
    engine_env: tuple[str, ...] = ()
    """Variables the engine image's container needs when it carries the project (a shared
    registry); empty when it serves a project mounted at /project."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "project": self.project,
            "deployment": self.deployment,
            "ref": str(self.entry.ref) if self.entry else None,
            "bundle": str(self.bundle.path) if self.bundle else None,
            "context": str(self.context.path) if self.context else None,
            "image": self.image.as_dict() if self.image else None,
            "pushed": self.pushed.as_dict() if self.pushed else None,
            "manifest": self.manifest.as_dict() if self.manifest else None,
            "arms": list(self.arms),
            "k8s": self.k8s.as_dict() if self.k8s else None,
            "uncommitted": [str(p) for p in self.uncommitted],
            "engine_env": list(self.engine_env),
        }


def deploy(
    path: str | Path | None = None,
    *,
    ref: str | None = None,
    context_only: Path | None = None,
    push: bool = False,
    registry: str | None = None,
    k8s: Path | None = None,
    rollback: bool = False,
    image: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> DeployResult:
    """Deploy the project's release `ref` (default: the model in `deployment.stage` when
    the spec names one, else the current one) as its spec declares.

    `image` (dynamic only; a wrapped deploy always builds its image) also builds
    the generic serving engine image; `context_only` and `push` imply it.
    """
    if registry is not None and not push:
        raise UsageError("--registry names where to push; nothing is pushed", hint="add --push")
    project = open_project(path)
    if project.spec.lifecycle.deployment is Deployment.DYNAMIC:
        build = image or push or context_only is not None
        if rollback and build:
            raise UsageError(
                "--rollback publishes an earlier manifest again; it builds no image",
                hint="roll back first, then build the engine image with mlcycle deploy --image",
            )
        return _noting_uncommitted(
            project,
            _deploy_dynamic(
                project,
                ref=ref,
                k8s=k8s,
                rollback=rollback,
                build=build,
                context_only=context_only,
                push=push,
                registry=registry,
                progress=progress,
            ),
        )
    if rollback:
        raise UsageError(
            "--rollback is for dynamic deployments; a wrapped one rolls back by deploying "
            "an earlier release: mlcycle deploy RELEASE"
        )
    if image:
        raise UsageError(
            f"{project.spec.name} deploys wrapped: --image is for a dynamic lifecycle's "
            "engine image",
            hint="a wrapped deploy builds its release image anyway: leave out --image",
        )
    return _noting_uncommitted(
        project,
        _deploy_wrapped(
            project,
            ref=ref,
            context_only=context_only,
            push=push,
            registry=registry,
            k8s=k8s,
            progress=progress,
        ),
    )


def _noting_uncommitted(project: Project, result: DeployResult) -> DeployResult:
    """Name the Kubernetes files written into the project that git would commit.

    Left untracked they would make the next `mlcycle release` refuse a dirty tree.
    """
    if result.k8s is None:
        return result
    import dataclasses

    written = [*result.k8s.files, *([result.k8s.readme] if result.k8s.readme else [])]
    return dataclasses.replace(result, uncommitted=project.uncommitted(written))


def _entry(project: Project, ref: str | None) -> Entry:
    registry = project.registry
    if ref is not None:
        return _named(project, ref)
    if project.spec.deployment.stage is not None:
        return stage_entry(project, project.spec.deployment.stage)
    current = registry.current()
    if current is None:
        raise RegistryError(
            f"{project.spec.name}: no release to deploy (no model is current)",
            hint="release one first: mlcycle release --bump minor",
        )
    return current


def _named(project: Project, ref: str) -> Entry:
    """The model `ref` names; UsageError (exit 2) when it may not serve, as `promote` says."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.registry import ModelRef

    entry = named_entry(project.registry, ModelRef.parse(ref), ref)
    if not entry.is_candidate:
        raise UsageError(
            f"{project.spec.name} {entry.ref} {entry.unservable} and cannot be deployed",
            hint="deploy a model that may serve: `mlcycle models` lists them",
        )
    return entry


def _deploy_wrapped(
    project: Project,
    *,
    ref: str | None,
    context_only: Path | None,
    push: bool,
    registry: str | None,
    k8s: Path | None,
    progress: Progress,
) -> DeployResult:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.package import build_bundle, image_reference, load_bundle, write_context
    from mlcycle.registry.artifacts import sha256_file

    spec = project.spec
    entry = _entry(project, ref)
    target_registry = _push_target(project, push, registry)
    bundle_dir = project.root / ".mlcycle" / "bundles" / f"{entry.release}-{entry.generation}"
    with step(progress, f"bundle {entry.ref}"):
        bundle = None
        if (bundle_dir / "bundle.json").is_file():
            # A bundle of this entry was made before: reuse it (verified on load) unless
            # the model or the spec beside it changed since; a damaged one is made again.
            try:
                cached = load_bundle(bundle_dir)
            except MlcycleError:
                cached = None
            if (
                cached is not None
                and cached.artifact.sha256 == entry.artifact.sha256
                and cached.spec_sha256 == sha256_file(project.file)
            ):
                bundle = cached
            else:
                shutil.rmtree(bundle_dir)
        if bundle is None:
            bundle = build_bundle(spec, project.registry, entry, bundle_dir, spec_file=project.file)
    tag = image_reference(spec, bundle)
    made = _make_image(
        lambda dest: write_context(bundle, spec, dest, tag=tag, revision=entry.git_commit),
        tag,
        context_only=context_only,
        target_registry=target_registry,
        progress=progress,
    )
    result: dict[str, Any] = {"entry": entry, "bundle": bundle, **made}
    if k8s is not None:
        image_ref = _pinned(made["pushed"]) if made.get("pushed") else tag
        result["k8s"] = _write_k8s(project, image_ref, entry.release, dynamic=False, directory=k8s)
    return DeployResult(project=spec.name, deployment="wrapped", **result)


def _push_target(project: Project, push: bool, registry: str | None) -> str | None:
    """The container registry to push to, or None without --push."""
    target = registry or project.spec.deployment.image.registry
    if push and target is None:
        raise UsageError(
            "--push needs a container registry to push to",
            hint="pass --registry HOST:PORT, or set deployment.image.registry in lifecycle.yaml",
        )
    return target if push else None


def _make_image(
    write: Callable[[Path], BuildContext],
    tag: str,
    *,
    context_only: Path | None,
    target_registry: str | None,
    progress: Progress,
) -> dict[str, Any]:
    """Write the context to `context_only`, or build `tag` from it (and push it when
    `target_registry` is set); returns the DeployResult fields made."""
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.package import build_image, push_image

    if context_only is not None:
        return {"context": write(context_only)}
    made: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mlcycle-context-") as tmp:
        context = write(Path(tmp) / "context")
        made["image"] = build_image(context.path, tag, progress=progress)
    if target_registry is not None:
        made["pushed"] = push_image(tag, target_registry, progress=progress)
    return made


def _deploy_dynamic(
    project: Project,
    *,
    ref: str | None,
    k8s: Path | None,
    rollback: bool,
    build: bool,
    context_only: Path | None,
    push: bool,
    registry: str | None,
    progress: Progress,
) -> DeployResult:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.package import release_image, write_engine_context
    from mlcycle.registry.manifests import FOLLOW, PINNED, selector_document

    spec = project.spec
    registry_ = project.registry
    store = registry_.manifests()
    selector = spec.deployment.selector
    made: dict[str, Any] = {}
    if rollback:
        manifest = store.rollback()
    else:
        if selector.kind is SelectorKind.PINNED:
            pinned_ref = ref or selector.model
            if pinned_ref is None and spec.deployment.stage is None:
                raise UsageError(
                    "deployment.selector is pinned but names no model",
                    hint="set deployment.selector.model: VERSION/GENERATION or "
                    "deployment.stage, or pass REF",
                )
            entry = _entry(project, None) if pinned_ref is None else _named(project, pinned_ref)
        else:
            entry = _entry(project, ref)
        if build:
            # The image first: a build that fails publishes nothing.
            tag = release_image(spec, entry.release)
            shared = _shared(project, dynamic=True)
            made = _make_image(
                lambda dest: write_engine_context(
                    entry,
                    spec,
                    dest,
                    tag=tag,
                    project_files=shared.files,
                    extras=_engine_extras(project, shared),
                ),
                tag,
                context_only=context_only,
                target_registry=_push_target(project, push, registry),
                progress=progress,
            )
            made["engine_env"] = shared.engine_env()
        if context_only is not None:
            # --context-only writes files and changes nothing else: publishing a manifest
            # would switch what a running engine serves.
            k8s_files = None
            if k8s is not None:
                k8s_files = _write_k8s(
                    project,
                    release_image(spec, entry.release),
                    entry.release,
                    dynamic=True,
                    directory=k8s,
                )
            return DeployResult(
                project=spec.name, deployment="dynamic", entry=entry, k8s=k8s_files, **made
            )
        # A manifest made for a stage says so; `deploy --history` shows it.
        stage = spec.deployment.stage if ref is None and selector.model is None else None
        staged = None if stage is None else f"stage {stage}"
        if selector.kind is SelectorKind.PINNED:
            # The selector pins what the manifest pins: REF, when given, not the spec's
            # model (an engine refuses a manifest whose selector names a model it lacks).
            pinned = {**selector_document(selector), "model": str(entry.ref)}
            manifest = store.publish(
                release=entry.release,
                selector=pinned,
                mode=PINNED,
                arms=1,
                pinned=[str(entry.ref)],
                note=staged,
            )
        else:
            arms = 1 if selector.kind is SelectorKind.LATEST else selector.arms
            manifest = store.publish(
                release=entry.release,
                selector=selector_document(selector),
                mode=FOLLOW,
                arms=arms,
                note=staged,
            )
    in_play = manifest.resolve(registry_)
    k8s_files = None
    if k8s is not None:
        # The generic engine image `mlcycle deploy --image` builds (pushed: its remote tag).
        image = (
            _pinned(made["pushed"]) if made.get("pushed") else release_image(spec, manifest.release)
        )
        k8s_files = _write_k8s(project, image, manifest.release, dynamic=True, directory=k8s)
    return DeployResult(
        project=spec.name,
        deployment="dynamic",
        entry=in_play[0],
        manifest=manifest,
        arms=tuple(str(e.ref) for e in in_play),
        k8s=k8s_files,
        **made,
    )


def _pinned(pushed: ImageInfo) -> str:
    """`REPO:TAG@DIGEST` of a pushed image (a tag can be moved, its digest cannot)."""
    return f"{pushed.tag}@{pushed.digest}" if pushed.digest else pushed.tag


def _write_k8s(
    project: Project, image: str, version: str, *, dynamic: bool, directory: Path
) -> K8sManifests:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.deploy import manifests, write_manifests

    shared = _shared(project, dynamic=dynamic)
    objects = manifests(
        project=project.spec.name,
        image=image,
        version=version,
        dynamic=dynamic,
        workers=project.spec.deployment.serve.workers,
        shared=shared,
    )
    return write_manifests(objects, directory, shared=shared)


def _shared(project: Project, *, dynamic: bool) -> Shared:
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.deploy.k8s import Shared

    return Shared.declared(project.spec, project.file, os.environ, dynamic=dynamic)


def _engine_extras(project: Project, shared: Shared) -> tuple[str, ...]:
    """mlcycle's extras the engine image needs for the URLs it will open: the shared
    registry's database and artifact store, the store, and the data the agents read."""
    data = project.spec.data
    sources = [data.source, data.outcomes.source if data.outcomes else None]
    urls = [shared.registry_url, shared.store_url, *(s.url for s in sources if s)]
    needed = {extras.for_url(url) for url in urls if url}
    if shared.artifacts_url:
        needed.add(extras.for_artifacts(shared.artifacts_url))
    return tuple(sorted(e.name for e in needed if e is not None))


def manifest_history(path: str | Path | None = None) -> list[Manifest]:
    """Every serving manifest the project published, oldest first."""
    project = open_project(path)
    return project.registry.manifests().history()
