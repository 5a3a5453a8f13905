"""An Open Inference Protocol v2 request with binary tensor data, and a wrk script for it.

Shared by bench_oip.py and bench_serve.py (not a benchmark itself: `make bench` runs
only bench_*.py). Imported by name: a script's own directory is first on sys.path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def v2_binary(rows: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """`rows` as one FP64 tensor "x" in binary, outputs asked in binary: (body, headers)."""
    raw = rows.astype("<f8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def wrk_script(body: bytes, headers: dict[str, str], path: Path) -> Path:
    """A wrk Lua script POSTing `body` with `headers`, written to `path`."""
    # Every byte as a Lua decimal escape: binary bodies pass through unchanged.
    escaped = "".join(f"\\{b}" for b in body)
    lines = ['wrk.method = "POST"', f'wrk.body = "{escaped}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
