"""`mlcycle deploy`: a bundle and image (wrapped) or a serving manifest (dynamic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option
from mlcycle.cli.progress import RichProgress

if TYPE_CHECKING:
    from mlcycle.api.deploy import DeployResult


app = Commands()


@app.command()
def deploy(
    ref: str | None = typer.Argument(
        None,
        help="The release to deploy: VERSION or VERSION/GENERATION (default: the current model).",
        show_default=False,
        metavar="REF",
    ),
    project: Path | None = project_option(),
    context_only: Path | None = typer.Option(
        None,
        "--context-only",
        help="Write the Docker build context to DIR instead of building the image "
        "(no Docker engine needed).",
        show_default=False,
        metavar="DIR",
    ),
    push: bool = typer.Option(False, "--push", help="Push the image to the registry."),
    registry: str | None = typer.Option(
        None,
        "--registry",
        help="Registry HOST[:PORT] to push to (default: deployment.image.registry).",
        show_default=False,
    ),
    k8s: Path | None = typer.Option(
        None,
        "--k8s",
        help="Also write Kubernetes manifests (Deployment, Service, HPA; CronJobs when dynamic).",
        show_default=False,
        metavar="DIR",
    ),
    rollback: bool = typer.Option(
        False, "--rollback", help="Dynamic: publish the previous serving manifest again."
    ),
    image: bool = typer.Option(
        False,
        "--image",
        help="Dynamic: also build the generic serving engine image IMAGE:VERSION "
        "(no model inside; it serves the project mounted at /project, or, with a shared "
        "registry, carries the project's files and needs no volume: pass it the URLs in "
        "MLCYCLE_REGISTRY_URL, MLCYCLE_ARTIFACTS_URL, MLCYCLE_STORE_URL).",
    ),
    history: bool = typer.Option(
        False, "--history", help="Dynamic: list the published serving manifests and stop."
    ),
    as_json: bool = json_option("the result"),
) -> None:
    """Deploy a release: an image IMAGE:VERSION (wrapped) or a serving manifest (dynamic).

    Dynamic: `--image` (or `--push`, `--context-only`) also builds the engine image
    that the Kubernetes manifests and the agents' CronJobs run.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    if history:
        manifests = api.manifest_history(project)
        if as_json:
            render.print_json({"manifests": [m.as_dict() for m in manifests]}, kind="manifests")
            return
        render.table(
            "serving manifests",
            ("#", "release", "arms", "selector", "published", "note"),
            (
                (
                    m.number,
                    m.release,
                    ", ".join(m.pinned) if m.pinned else f"newest {m.arms}",
                    m.selector.get("kind"),
                    m.created_at,
                    m.note or "",
                )
                for m in manifests
            ),
        )
        return
    with RichProgress(enabled=not as_json) as progress:
        result = api.deploy(
            project,
            ref=ref,
            context_only=context_only,
            push=push,
            registry=registry,
            k8s=k8s,
            rollback=rollback,
            image=image,
            progress=progress,
        )
    if as_json:
        render.print_json(result.as_dict(), kind="deploy")
    else:
        _render(result)


def _render(result: DeployResult) -> None:
    from rich.markup import escape

    out = render.stdout()
    if result.manifest is not None:
        m = result.manifest
        out.print(
            f"published serving manifest [bold]{m.number}[/] for {escape(result.project)}: "
            f"release {escape(m.release)}, selector {escape(str(m.selector.get('kind')))}, "
            f"serving {escape(', '.join(result.arms))}"
        )
        out.print("a running `mlcycle serve` picks it up; `mlcycle deploy --history` lists them")
    if result.bundle is not None:
        out.print(f"bundle {escape(str(result.bundle.path))} ({escape(result.bundle.ref)})")
    if result.context is not None:
        where = escape(str(result.context.path))
        out.print(
            f"build context written to {where}; build it with "
            f"docker build -t {escape(result.context.tag or 'IMAGE')} {where}"
        )
    if result.image is not None:
        size = result.image.size / 1e6
        tag = escape(result.image.tag)
        if result.engine_env:
            # A shared registry's engine carries the project: no volume, only its URLs.
            env = " ".join(f"-e {name}=..." for name in result.engine_env)
            run = f"docker run -p 8080:8080 {env} {tag}"
        elif result.manifest is not None:
            run = f"docker run -p 8080:8080 -e MLCYCLE_API_TOKEN=... -v PROJECT_DIR:/project {tag}"
        else:
            run = f"docker run -p 8080:8080 -e MLCYCLE_API_TOKEN=... {tag}"
        out.print(f"[green]built[/] image [bold]{tag}[/] ({size:.0f} MB); run it: {run}")
    if result.pushed is not None:
        out.print(f"[green]pushed[/] {escape(result.pushed.tag)}")
    if result.k8s is not None:
        out.print(
            f"Kubernetes manifests in {escape(str(result.k8s.directory))}: "
            f"{len(result.k8s.files)} files; kubectl apply -f {escape(str(result.k8s.directory))}"
        )
        if result.k8s.create_secret:
            # The serving container needs its API token; the manifests only name the Secret.
            out.print(f"first create the serving token: {escape(result.k8s.create_secret)}")
        if result.k8s.create_shared_secret:
            # The shared registry's and store's URLs: masked here, the user types the real ones.
            out.print(
                "and the shared registry's Secret (the real values in place of *** and "
                f"${{env:...}}): {escape(result.k8s.create_shared_secret)}"
            )
    if result.uncommitted:
        where = escape(str(result.k8s.directory if result.k8s else result.uncommitted[0]))
        render.warning(
            f"{len(result.uncommitted)} new or changed file(s) in {where} are not committed; "
            f"the next release needs a clean tree: git add {where} && git commit "
            "(or write them outside the project, or list them in .gitignore)"
        )
