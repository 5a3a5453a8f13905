"""Image size: the serving image `mlcycle deploy` builds for the open template's model.

An image holds only what serving its model needs (issue 11: 893 MB before, with
scikit-learn, SciPy, pandas, pyarrow and skl2onnx in every image). The open template's
model is served from the ONNX form stored at release, so its image installs ONNX
Runtime, NumPy, the engine and nothing else, every version pinned, trimmed to what
serving runs (no pip, no tests, no debug symbols, bytecode only for what is imported).
Prints the image's size against the sizes before, its layers (the dependencies and
mlcycle are separate layers), and the largest installed packages. Needs a Docker engine.

    .venv/bin/python benchmarks/bench_image.py [--project DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Measured on main before issue 11 (every image held scikit-learn, SciPy, pandas,
# pyarrow and skl2onnx), and after its first step (ONNX Runtime and NumPy only, one
# untrimmed layer for the environment).
BEFORE_MB = 893
BEFORE_ONNX_MB = 353


def mlcycle(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mlcycle", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"mlcycle {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def layers(tag: str, base: str) -> list[tuple[float, str]]:
    """(MB, what) per layer of `tag` that has content, newest first; the base's as one."""
    fmt = "{{.Size}}\t{{.CreatedBy}}"
    output = docker("history", "--no-trunc", "--human=false", "--format", fmt, tag)
    rows = [(line + "\t").split("\t")[:2] for line in output.splitlines() if line]
    ours = rows[: len(rows) - len(docker("history", "-q", base).split())]
    found: list[tuple[float, str]] = []
    environment = iter(("mlcycle (its wheel)", "the dependencies (pinned, trimmed)"))
    for size, created in ours:
        if int(size) == 0:
            continue
        if "in /opt/mlcycle" in created:
            what = next(environment, "the environment")
        elif "in /app/bundle" in created:
            what = "the bundle (model, ONNX form, spec)"
        elif "useradd" in created:
            what = "the user; pip and ensurepip removed"
        else:
            what = created[:60]
        found.append((int(size) / 1e6, what))
    base_size = sum(int(size) for size, _ in rows[len(ours) :])
    found.append((base_size / 1e6, f"the base image ({base})"))
    return found


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a released project (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the image")
    parser.add_argument("--base", default="python:3.11-slim", help="the spec's base image")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlcycle-bench-image-"))
    tag = f"mlcycle-bench-image:{workdir.name.rsplit('-', 1)[-1].lower()}"
    try:
        project = options.project
        if project is None:
            mlcycle("init", "x", "-p", "open", cwd=workdir)
            project = workdir / "x"
            mlcycle("release", "--bump", "minor", cwd=project)
        output = mlcycle("deploy", "--json", cwd=project)
        result = json.loads(output[output.index("{") :])
        image = result["image"]
        tag = image["tag"]
        size_mb = image["size"] / 1e6
        base = options.base
        base_mb = int(json.loads(docker("image", "inspect", base))[0]["Size"]) / 1e6
        print(f"serving image of the open template's model: {tag}")
        ratio = size_mb / BEFORE_MB
        print(
            f"  size       {size_mb:6.0f} MB   (before: {BEFORE_MB} MB, then {BEFORE_ONNX_MB} MB;"
            f" now {ratio:.2f}x of {BEFORE_MB} MB)"
        )
        print(f"  base image {base_mb:6.0f} MB   ({base})")
        print(f"  mlcycle's  {size_mb - base_mb:6.0f} MB   (the environment and the bundle)")
        print("layers, newest first:")
        for megabytes, what in layers(tag, base):
            print(f"  {megabytes:8.2f} MB  {what}")
        listing = docker(
            "run", "--rm", "--entrypoint", "sh", tag, "-c",
            "du -sm /opt/mlcycle/lib/python3*/site-packages/* | sort -n | tail -8",
        )  # fmt: skip
        print("largest installed packages:")
        for line in reversed(listing.strip().splitlines()):
            megabytes, path = line.split(maxsplit=1)
            print(f"  {int(megabytes):6d} MB  {re.sub(r'.*/site-packages/', '', path)}")
        if not options.keep:
            docker("image", "rm", tag)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
