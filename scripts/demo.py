"""`make demo`: the main job end to end on embedded defaults (grows with each issue)."""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    """Run the demo; returns the exit code."""
    return subprocess.call([sys.executable, "-m", "mlcycle", "--help"])


if __name__ == "__main__":
    sys.exit(main())
