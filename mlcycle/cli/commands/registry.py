"""`mlcycle registry ...`: the registry itself, as a whole (`migrate` to a shared one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option
from mlcycle.cli.progress import RichProgress

if TYPE_CHECKING:
    from mlcycle.registry.migrate import Migration

app = Commands()
registry_app = Commands(
    name="registry",
    help="The model registry as a whole: move a project's local registry to a shared one.",
    no_args_is_help=True,
)
app.add_typer(registry_app)


@registry_app.callback()
def registry() -> None:
    """The model registry as a whole: move a project's local registry to a shared one.

    `mlcycle registry migrate --to URL --artifacts URL` copies everything under
    `.mlcycle/registry` into a team's database and artifact store.
    """


@registry_app.command("migrate")
def migrate(
    to: str | None = typer.Option(
        None,
        "--to",
        help="The shared registry's database, a SQLAlchemy URL (postgresql://USER@HOST/DB, "
        "sqlite:///PATH). No password in it: name one as ${env:NAME} or let the driver read "
        "PGPASSWORD. Default: MLCYCLE_REGISTRY_URL, else the spec's registry.url.",
        show_default=False,
        metavar="URL",
    ),
    artifacts: str | None = typer.Option(
        None,
        "--artifacts",
        help="Where the model files go: oci://HOST[:PORT]/REPO or file:DIR. Default: "
        "MLCYCLE_ARTIFACTS_URL, else the spec's registry.artifacts.",
        show_default=False,
        metavar="URL",
    ),
    project: Path | None = project_option(),
    as_json: bool = json_option("what was copied"),
) -> None:
    """Copy the local registry into a shared one: every model and file, digests checked.

    Entries (metrics, data, lineage, retirements) with their model files, the current
    model, serving manifests, runs and data rejections. Every file's SHA-256 is checked
    before anything is copied; a damaged one stops the migration (exit 1) with nothing
    written. Records the shared registry already holds are skipped, so running it again
    copies nothing, and a migration that was interrupted completes; one it holds
    differently is never overwritten (exit 1, naming them). Stages are git tags: push
    them with `git push --tags`.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    with RichProgress(enabled=not as_json) as progress:
        result = api.migrate(project, to=to, artifacts=artifacts, progress=progress)
    if as_json:
        render.print_json(result.as_dict(), kind="registry-migration")
    else:
        _render(result)


def _render(result: Migration) -> None:
    from rich.markup import escape

    out = render.stdout()
    target = escape(result.target)
    if result.copied == 0:
        out.print(
            f"nothing to copy: {target} already holds everything of {escape(result.project)} "
            f"in {escape(result.source)} ({render.counted(result.present_entries, 'model')})"
        )
        return
    out.print(f"copied {escape(result.project)} from {escape(result.source)} to {target}:")
    facts = [
        ("models", ", ".join(result.entries)),
        ("retirements", ", ".join(result.retirements)),
        ("current model", result.current or ""),
        ("serving manifests", ", ".join(str(n) for n in result.manifests)),
        ("runs", str(len(result.runs)) if result.runs else ""),
        ("data rejections", str(len(result.data_rejections)) if result.data_rejections else ""),
    ]
    for name, value in facts:
        if value:
            out.print(f"  {name}: {escape(value)}")
    out.print(
        f"  files: {result.blobs} uploaded ({_size(result.size)}), every SHA-256 verified"
        + (f"; {result.present_blobs} already there" if result.present_blobs else "")
    )
    if result.present_entries or result.present_records:
        out.print(
            f"  already there: {render.counted(result.present_entries, 'model')}, "
            f"{render.counted(result.present_records, 'other record')}"
        )
    # A trial: after migrating, nothing said how the clones find the shared registry.
    out.print(
        "next: point every clone at it: `registry: {url: ..., artifacts: ...}` in "
        "lifecycle.yaml (a password as ${env:NAME}), or MLCYCLE_REGISTRY_URL and "
        "MLCYCLE_ARTIFACTS_URL; and `git push --tags` (releases and stages are git tags)"
    )


def _size(n: int) -> str:
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{n} B" if n < 1024 else f"{size:.1f} {unit}"
    return f"{n} B"
