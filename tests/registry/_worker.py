"""A registry writer in its own process, for the kill -9, concurrency and lock tests.

    python -m tests.registry._worker MODE ROOT [--release R] [--count N]

MODE:
  register       register N models of release R
  pause-stage    stop after the artifact is staged (before taking the lock)
  pause-publish  stop holding the lock, with the staged entry complete, just before the rename
  hold-lock      take the registry lock and hold it

A pausing mode prints `paused` on stdout and sleeps until it is killed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mlcycle.registry import ArtifactInfo, LocalRegistry
from tests.registry.conftest import fit_logit, register

PROJECT = "iris"


def pause() -> None:
    print("paused", flush=True)
    time.sleep(600)


class PausedAfterStaging(LocalRegistry):
    def _stage_artifact(self, model: Any, staging: Path) -> ArtifactInfo:
        info = super()._stage_artifact(model, staging)
        pause()
        return info


class PausedBeforePublish(LocalRegistry):
    def _publish(self, staging: Path, target: Path) -> None:
        pause()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("root", type=Path)
    parser.add_argument("--release", default="0.1.0")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    kind = {"pause-stage": PausedAfterStaging, "pause-publish": PausedBeforePublish}
    registry = kind.get(args.mode, LocalRegistry)(args.root, PROJECT)
    if args.mode == "hold-lock":
        with registry._locked("holding the lock for a test"):
            pause()
        return
    model = fit_logit()
    for _ in range(args.count):
        entry = register(registry, model, release=args.release)
        print(entry.ref, flush=True)


if __name__ == "__main__":
    main()
