"""Wall time of `mlcycle --help` and `mlcycle validate` (median of N fresh processes).

Startup is what a user feels on every command, and what CI pays on every
step; both commands should stay well under half a second. Run:

    .venv/bin/python benchmarks/bench_cli.py [--runs 10] [SPEC]

SPEC defaults to the adaptive example (or the test fixture when examples are
absent). It also prints the slowest imports of `validate` (`-X importtime`).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [
    ROOT / "examples" / "adaptive" / "lifecycle.yaml",
    ROOT / "tests" / "spec" / "fixtures" / "adaptive" / "lifecycle.yaml",
]


def wall_times(args: list[str], runs: int) -> list[float]:
    """Seconds per run of `python -m mlcycle ARGS`, each in a fresh process."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mlcycle", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        times.append(time.perf_counter() - start)
    return times


def slowest_imports(args: list[str], top: int) -> list[tuple[int, str]]:
    """The `top` imports with the largest cumulative time, in microseconds."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mlcycle", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match[2]) <= 3:  # top-level and first-level imports only
            rows.append((int(match[1]), match[2] + match[3]))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=10)
    options = parser.parse_args()
    spec = options.spec or next((p for p in CANDIDATES if p.exists()), None)
    if spec is None:
        print("no spec to validate; pass one", file=sys.stderr)
        return 2
    baseline = ["-c", "pass"]
    cases = {
        "python -c pass (interpreter)": None,
        "mlcycle --help": ["--help"],
        f"mlcycle validate {spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec}": [
            "validate",
            str(spec),
        ],
    }
    print(f"median of {options.runs} runs, fresh process each")
    for label, args in cases.items():
        if args is None:
            times = []
            for _ in range(options.runs):
                start = time.perf_counter()
                subprocess.run([sys.executable, *baseline], check=False)
                times.append(time.perf_counter() - start)
        else:
            times = wall_times(args, options.runs)
        print(
            f"  {label:<60} {statistics.median(times) * 1000:7.1f} ms"
            f"  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"
        )
    print("slowest imports of `mlcycle validate` (cumulative):")
    for micros, name in slowest_imports(["validate", str(spec)], 8):
        print(f"  {micros / 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
