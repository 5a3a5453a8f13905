"""`make demo`: the main job end to end on embedded defaults (grows with each issue).

For now: create a project of every lifecycle pattern with `mlcycle init` in a
temporary directory, and validate each with `mlcycle validate`, exactly as a
user would type them. Exits non-zero as soon as a step fails.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PATTERNS = ("interactive", "open", "adaptive", "dual")


def step(title: str, args: list[str], *, cwd: Path) -> bool:
    """Run `mlcycle ARGS` in `cwd`, show it and its output; True when it succeeded."""
    shown = " ".join(shlex.quote(a) for a in ["mlcycle", *args])
    print(f"\n=== {title}\n$ cd {shlex.quote(str(cwd))} && {shown}", flush=True)
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "mlcycle", *args], cwd=cwd)
    seconds = time.perf_counter() - started
    if code != 0:
        print(f"--- FAILED: `{shown}` exited with {code}", file=sys.stderr, flush=True)
        return False
    print(f"--- ok ({seconds:.1f} s)", flush=True)
    return True


def main() -> int:
    """Run the demo; returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-demo-") as tmp:
        workspace = Path(tmp)
        print(f"mlcycle demo: one project per lifecycle pattern, in {workspace}")
        for pattern in PATTERNS:
            name = f"cancer-{pattern}"
            if not step(
                f"{pattern}: create the project",
                ["init", name, "--pattern", pattern],
                cwd=workspace,
            ):
                return 1
            if not step(f"{pattern}: validate it", ["validate"], cwd=workspace / name):
                return 1
        print(f"\nmlcycle demo: {len(PATTERNS)} projects created and validated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
