"""Engine start: time to ready and CPU of `mlcycle serve` on the open template's model.

Scale-out under a burst waits for a new engine to be ready, so its start is a figure
worth watching (issue 11: 4.6-5.6 s to ready and 4.8-5.5 s of CPU on `main` before
the ONNX form was stored with the release; MLflow's `models serve` takes 7.9 s).

It renders the open template (`mlcycle init x -p open`), releases its model, then
starts `mlcycle serve` RUNS times, each in a fresh process, and measures from the
exec until `/v2/health/ready` answers 200: the wall time and the CPU time (user +
system) of the whole process tree at that moment, read from /proc. Then prints the
slowest imports of one start (`-X importtime`, cumulative).

    .venv/bin/python benchmarks/bench_start.py [--runs 5] [--project DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlcycle(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mlcycle", *args],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def released_project(workdir: Path) -> Path:
    """An open-template project with its first release."""
    mlcycle("init", "x", "-p", "open", cwd=workdir)
    project = workdir / "x"
    mlcycle("release", "--bump", "minor", cwd=project)
    return project


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc/PID/task/*/children)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of `pids` (each process's own, not its reaped children's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_once(project: Path) -> tuple[float, float, int, str]:
    """(seconds to ready, CPU seconds of the tree, processes, stderr banner) of one start."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        begin = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), "--no-store"],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            while not ready(port):
                if process.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"serve exited {process.returncode}: {log.read().decode()}")
                time.sleep(0.01)
            wall = time.perf_counter() - begin
            pids = tree(process.pid)
            cpu = cpu_seconds(pids)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        log.seek(0)
        output = log.read().decode()
    banner = next((line for line in output.splitlines() if line.startswith("serving")), "")
    return wall, cpu, len(pids), banner


def slowest_imports(project: Path, top: int) -> list[tuple[int, str]]:
    """The `top` top-level imports of one start with the largest cumulative time (us)."""
    port = free_port()
    # A file, not a pipe: the import log fills a pipe's buffer before the engine is up.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "mlcycle", "serve", "--port", str(port)],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        while not ready(port) and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.seek(0)
        stderr = log.read().decode()
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match[2]) <= 1:
            rows.append((int(match[1]), match[3]))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--project", type=Path, help="a released project (default: a new one)")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mlcycle-bench-start-"))
    try:
        project = options.project or released_project(workdir)
        walls, cpus = [], []
        for _ in range(options.runs):
            wall, cpu, count, banner = start_once(project)
            walls.append(wall)
            cpus.append(cpu)
        print(f"`mlcycle serve` of the open template's model, {options.runs} fresh starts")
        print(f"  {banner}")
        print(
            f"  time to ready  median {statistics.median(walls):.2f} s"
            f"  (min {min(walls):.2f}, max {max(walls):.2f})"
        )
        print(
            f"  CPU to ready   median {statistics.median(cpus):.2f} s"
            f"  (min {min(cpus):.2f}, max {max(cpus):.2f}; {count} processes)"
        )
        print("  before (issue 11, main): 4.6-5.6 s to ready, 4.8-5.5 s CPU")
        print("slowest imports of one start (cumulative):")
        for micros, name in slowest_imports(project, 10):
            print(f"  {micros / 1000:7.1f} ms  {name}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
