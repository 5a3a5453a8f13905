"""How long a live generation swap stalls the serving event loop (prints, asserts nothing).

Builds an adaptive project in a temporary folder (init, release, deploy), serves it
with `LiveRouter` beside an asyncio loop that predicts through the router and beats
every millisecond, registers new generations and lets the watcher swap them in. Prints
the longest beat gap (the longest loop stall) with and without swaps.

    python benchmarks/swap_stall.py [--swaps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def mlcycle(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", "mlcycle", *map(str, args)], check=True, cwd=cwd, capture_output=True
    )


def register(root: Path, *, onnx: bool) -> Any:
    """A new generation of release 0.1.0 in the project's registry (as tests/serve/test_live.py),
    with its ONNX form (as `mlcycle release` stores it) or without (the engine converts it)."""
    from mlcycle.data import load_dataset
    from mlcycle.registry import LocalRegistry, Status
    from mlcycle.serve.model import compile_onnx
    from mlcycle.spec import load_spec
    from mlcycle.train import train

    spec = load_spec(root)
    dataset = load_dataset(spec)
    trained = train(spec, dataset.X, dataset.y, ordinal=dataset.ordinal)
    registry = LocalRegistry(spec.resolve(spec.registry.path), spec.name)
    current = registry.current()
    assert current is not None
    return registry.register(
        trained.model,
        release="0.1.0",
        metrics=trained.metrics,
        gate={"passed": True},
        data=dict(current.data),
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status=Status.CANDIDATE,
        extra={"training": {"task": "classification"}},
        onnx=compile_onnx(
            trained.model, features=current.data.get("features"), task="classification"
        )
        if onnx
        else None,
    )


async def _beat(stop: asyncio.Event, gaps: list[float], router: Any) -> None:
    """Predict one row through the router and sleep 1 ms, recording each turn's gap."""
    from mlcycle.serve.model import RequestInfo

    model = router.models[0]
    row = np.zeros((1, len(model.features)), dtype=model.predictor.input_dtype)
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        router.select(RequestInfo("/v1/predict", [], None)).predictor.predict(row)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _measure(router: Any, work: Any) -> list[float]:
    gaps: list[float] = []
    stop = asyncio.Event()
    beating = asyncio.ensure_future(_beat(stop, gaps, router))
    await asyncio.get_running_loop().run_in_executor(None, work)
    stop.set()
    await beating
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=5)
    args = parser.parse_args()
    from mlcycle.registry import LocalRegistry
    from mlcycle.serve.live import LiveRouter
    from mlcycle.spec import load_spec

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "live"
        mlcycle("init", "live", "--pattern", "adaptive", "-d", root)
        mlcycle("release", cwd=root)
        mlcycle("deploy", cwd=root)
        spec = load_spec(root)
        registry = LocalRegistry(spec.resolve(spec.registry.path), spec.name)
        router = LiveRouter(registry, poll=3600)
        router.check()  # the first look reads the registry (no swap)
        for m in router.models:
            m.predictor.predict(np.zeros((1, len(m.features)), dtype=m.predictor.input_dtype))

        idle = asyncio.run(_measure(router, lambda: time.sleep(2)))
        worst: dict[bool, list[float]] = {True: [], False: []}
        for i in range(2 * args.swaps):
            onnx = i % 2 == 0
            register(root, onnx=onnx)
            swapped = threading.Event()

            def swap(swapped: threading.Event = swapped) -> None:
                if router.check():
                    swapped.set()
                time.sleep(0.2)  # the first predictions of the new model, on the loop

            gaps = asyncio.run(_measure(router, swap))
            assert swapped.is_set(), "no swap happened"
            worst[onnx].append(max(gaps))
        print(
            f"no swap: longest loop turn {max(idle) * 1e3:.1f} ms "
            f"(p99 {np.percentile(idle, 99) * 1e3:.1f} ms)"
        )
        for onnx, label in ((True, "with its ONNX form"), (False, "converted on load")):
            print(
                f"swap {label}: longest loop turn per swap (ms): "
                + ", ".join(f"{w * 1e3:.1f}" for w in worst[onnx])
            )


if __name__ == "__main__":
    main()
