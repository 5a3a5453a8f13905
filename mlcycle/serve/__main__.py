"""Serve a fitted sklearn model file or a bundle: `python -m mlcycle.serve MODEL [options]`.

A minimal runner for development, tests and benchmarks, with every engine option on
the command line; users run `mlcycle serve`. MODEL is a `.skops` file, loaded under the
same trust policy as every model mlcycle loads (registry/trust.py): scikit-learn
estimators, NumPy/SciPy data and a few numeric functions, by exact name; pickles are
refused, as loading one runs any code it holds. Or MODEL is a bundle directory (what
`mlcycle deploy` writes and `mlcycle serve --bundle` serves): it names its own project,
release, generation and task, and a bundle with an ONNX form starts without
scikit-learn.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from mlcycle.errors import MlcycleError, ServingError, UsageError
from mlcycle.package.bundle import load_bundle
from mlcycle.registry.artifacts import SKOPS, load_model, sha256_bytes
from mlcycle.registry.trust import DEFAULT_POLICY
from mlcycle.serve.auth import load_token, require_token_for
from mlcycle.serve.model import ServedModel, served_model_from_bundle
from mlcycle.spec.model import DEFAULT_STORE_URL, SERVE_HOST, SERVE_PORT, SERVE_WORKERS


def load_estimator(path: Path) -> Any:
    """A fitted estimator from a .skops file (RegistryError naming any untrusted type)."""
    if not path.is_file():
        raise ServingError(f"{path}: no such model file")
    if path.suffix in (".pkl", ".pickle", ".joblib"):
        raise ServingError(
            f"{path}: refusing to serve a pickle: loading one runs any code it holds",
            hint="save the model as skops: skops.io.dump(model, 'model.skops')",
        )
    if path.suffix != ".skops":
        raise ServingError(
            f"{path}: unknown model format", hint="use a .skops file or a bundle directory"
        )
    # The file names no hash to check against: its own, taken from the bytes loaded.
    return load_model(
        path, sha256=sha256_bytes(path.read_bytes()), format=SKOPS, trust=DEFAULT_POLICY
    )


def load_bundled(path: Path, args: argparse.Namespace) -> ServedModel:
    """The model of the bundle directory `path`; UsageError for options a bundle sets."""
    given = [
        option
        for option, value in (
            ("--name", args.name),
            ("--release", args.release),
            ("--generation", args.generation),
            ("--task", args.task),
            ("--sample", args.sample),
        )
        if value is not None
    ]
    if args.backend != "auto":
        given.append("--backend")
    if given:
        raise UsageError(
            f"{path}: a bundle sets its own name, release, generation, task and backend",
            hint=f"leave out {', '.join(given)}",
        )
    return served_model_from_bundle(load_bundle(path))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the model, serve it; returns the exit code."""
    # lazy: mlcycle.serve.app imports numpy
    from mlcycle.serve.app import ServeOptions

    # lazy: mlcycle.serve.app imports numpy
    from mlcycle.serve.server import serve

    parser = argparse.ArgumentParser(prog="python -m mlcycle.serve", description=__doc__)
    parser.add_argument(
        "model", type=Path, help="a fitted sklearn estimator (.skops) or a bundle directory"
    )
    parser.add_argument(
        "--name", default=None, help="project name reported and used by /v2 (default: model)"
    )
    parser.add_argument("--release", default=None, help="release reported with predictions")
    parser.add_argument("--generation", type=int, default=None, help="generation reported")
    parser.add_argument("--task", choices=["classification", "regression"], default=None)
    parser.add_argument("--backend", choices=["auto", "onnx", "sklearn"], default="auto")
    parser.add_argument("--sample", type=Path, default=None, help=".npy rows to verify ONNX on")
    parser.add_argument("--host", default=SERVE_HOST)
    parser.add_argument("--port", type=int, default=SERVE_PORT)
    parser.add_argument("--workers", type=int, default=SERVE_WORKERS)
    parser.add_argument("--store", default=DEFAULT_STORE_URL, help="SQLAlchemy URL, or 'none'")
    parser.add_argument("--max-inflight", type=int, default=ServeOptions.max_inflight)
    parser.add_argument(
        "--queue-deadline-ms",
        type=float,
        default=1000 * (ServeOptions.queue_deadline or 0),
        help="shed a request that waited longer before its model work (0: never)",
    )
    parser.add_argument("--queue-target-ms", type=float, default=1000 * ServeOptions.queue_target)
    parser.add_argument(
        "--max-connections",
        type=int,
        default=ServeOptions.max_connections or 0,
        help="open connections per worker; more get 503 (0: no budget)",
    )
    parser.add_argument("--backlog", type=int, default=ServeOptions.backlog)
    parser.add_argument("--max-batch-rows", type=int, default=ServeOptions.max_batch_rows)
    parser.add_argument("--batch-wait-ms", type=float, default=0.0)
    parser.add_argument("--max-body-bytes", type=int, default=ServeOptions.max_body_bytes)
    parser.add_argument("--max-rows", type=int, default=ServeOptions.max_rows)
    parser.add_argument("--drain-timeout", type=float, default=ServeOptions.drain_timeout)
    parser.add_argument(
        "--reuse-port", action="store_true", help="one SO_REUSEPORT socket per worker"
    )
    parser.add_argument("--body-timeout", type=float, default=ServeOptions.body_timeout)
    parser.add_argument("--header-timeout", type=float, default=ServeOptions.header_timeout)
    parser.add_argument(
        "--token-file", type=Path, default=None, help="bearer token (default: MLCYCLE_API_TOKEN)"
    )
    parser.add_argument("--public-predict", action="store_true", help="predictions need no token")
    parser.add_argument("--no-auth", action="store_true", help="no token on a non-loopback host")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import numpy as np

        token = load_token(args.token_file)
        require_token_for(args.host, token, no_auth=args.no_auth)
        if args.model.is_dir():
            model = load_bundled(args.model, args)
        else:
            model = ServedModel.from_estimator(
                load_estimator(args.model),
                name=args.name or "model",
                task=args.task,
                release=args.release,
                generation=args.generation,
                sample=np.load(args.sample) if args.sample else None,
                backend=args.backend,
            )
        options = ServeOptions(
            max_inflight=args.max_inflight,
            queue_deadline=args.queue_deadline_ms / 1000.0 or None,
            queue_target=args.queue_target_ms / 1000.0,
            max_connections=args.max_connections or None,
            backlog=args.backlog,
            max_batch_rows=args.max_batch_rows,
            batch_wait=args.batch_wait_ms / 1000.0,
            max_body_bytes=args.max_body_bytes,
            max_rows=args.max_rows,
            drain_timeout=args.drain_timeout,
            reuse_port=args.reuse_port,
            log_level=args.log_level,
            body_timeout=args.body_timeout,
            header_timeout=args.header_timeout,
            token=token,
            public_predict=args.public_predict,
        )
        store = None if args.store.lower() == "none" else args.store
        serve(
            model,
            host=args.host,
            port=args.port,
            workers=args.workers,
            store_url=store,
            options=options,
        )
    except MlcycleError as e:
        logging.getLogger("mlcycle.serve").error("%s%s", e, f" ({e.hint})" if e.hint else "")
        return int(e.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
