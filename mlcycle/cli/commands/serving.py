"""`mlcycle serve`: the HTTP serving engine on the project's model or a bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import project_option
from mlcycle.errors import UsageError

app = Commands()


@app.command()
def serve(
    project: Path | None = project_option(),
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default: deployment.serve.host, else 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port (default: deployment.serve.port, else 8080; 0 picks a free one)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-w",
        help="Worker processes (default: deployment.serve.workers, else 1).",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Serve this registry entry instead of the current one, e.g. 0.2.0 or dev/3.",
        show_default=False,
    ),
    bundle: Path | None = typer.Option(
        None,
        "--bundle",
        help="Serve a bundle made by `mlcycle deploy` (what a container image runs).",
        show_default=False,
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="SQLAlchemy URL of the prediction log (default: the spec's store.url; with "
        "--bundle, store.db in the working directory).",
        show_default=False,
        envvar="MLCYCLE_STORE_URL",
    ),
    no_store: bool = typer.Option(
        False, "--no-store", help="Do not log predictions (feedback is then unavailable)."
    ),
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="File holding the bearer token clients must send (Authorization: Bearer "
        "TOKEN); default: the MLCYCLE_API_TOKEN environment variable. Health probes "
        "stay open.",
        show_default=False,
        metavar="PATH",
    ),
    public_predict: bool = typer.Option(
        False,
        "--public-predict",
        help="With a token, leave predictions (/v1/predict, v2 infer) open; feedback and "
        "the rest still need the token.",
    ),
    no_auth: bool = typer.Option(
        False,
        "--no-auth",
        help="Serve on a non-loopback address without a token (only behind something "
        "that authenticates).",
    ),
    max_connections: int | None = typer.Option(
        None,
        "--max-connections",
        min=0,
        help="Open connections per worker; requests on one beyond get 503 + Retry-After "
        "(default: deployment.serve.max_connections, else 1024; 0: no budget).",
        show_default=False,
    ),
    backlog: int | None = typer.Option(
        None,
        "--backlog",
        min=1,
        help="Connections the kernel queues for accepting (default: "
        "deployment.serve.backlog, else 1024).",
        show_default=False,
    ),
    queue_deadline_ms: float | None = typer.Option(
        None,
        "--queue-deadline-ms",
        min=0,
        help="Shed with 503 + Retry-After a request that waited longer before its model "
        "work (default: deployment.serve.queue_deadline_ms, else 100; 0: off).",
        show_default=False,
    ),
) -> None:
    """Serve predictions over HTTP: /v1/predict, /v1/feedback, /v1/model, /metrics, /v2 ...

    Runs until SIGTERM or Ctrl-C, then answers the requests in flight and flushes
    the prediction log. With a token (MLCYCLE_API_TOKEN or --token-file), every route
    but the health probes needs `Authorization: Bearer TOKEN`; on an address other
    than loopback a token is required unless --no-auth.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api, mlcycle.spec off it
    from mlcycle.api.serving import serve as run
    from mlcycle.api.serving import serve_access, serve_target
    from mlcycle.spec.model import ServeSpec

    if bundle is not None and model is not None:
        raise UsageError("--bundle and --model exclude each other", hint="pass one of them")
    target = serve_target(project, ref=model, bundle=bundle, store_url=store, no_store=no_store)
    try:
        for message in target.warnings:
            render.warning(message)
        defaults = target.defaults or ServeSpec()
        bind_host = host or defaults.host
        bind_port = port if port is not None else defaults.port
        count = workers or defaults.workers
        access = serve_access(
            bind_host, token_file=token_file, no_auth=no_auth, public_predict=public_predict
        )
        console = render.stderr()  # made now: the banner must not wait for an import

        def announce(url: str) -> None:
            # Only once the port accepts connections: whoever reads this may connect now.
            console.print(
                f"serving {target.name} {target.ref} from {target.source} on "
                f"{url} ({count} worker{'s' if count != 1 else ''}, "
                f"{access.describe()}); Ctrl-C stops",
                markup=False,
            )

        run(
            target,
            host=bind_host,
            port=bind_port,
            workers=count,
            access=access,
            on_ready=announce,
            max_connections=max_connections,
            backlog=backlog,
            queue_deadline_ms=queue_deadline_ms,
        )
    except KeyboardInterrupt:
        render.stderr().print("stopped", markup=False)
    finally:
        target.close()  # a refused start (no token, a bad token file) unpacked a bundle too
