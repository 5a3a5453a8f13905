"""Open Inference Protocol v2: a 1,000-row request as binary tensor data vs JSON.

The reference model (StandardScaler + LogisticRegression on sklearn's breast cancer data,
30 features) behind `python -m mlcycle.serve` (one worker, no prediction log). Prints,
for each way of sending the same 1,000 rows:

- the request and response sizes;
- the latency of one request over a kept-alive connection (http.client, bodies
  encoded once beforehand: what the server and the wire cost), median and p90;
- the same through `tritonclient.http` end to end (its encoding and decoding included);
- the server's own decoding of the body into the model's matrix, in process;
- with `wrk` installed: the throughput (closed loop, 16 connections) of one-row requests
  on /v1/predict, v2 JSON and v2 binary, and of the 1,000-row ones.

    .venv/bin/python benchmarks/bench_oip.py [--rows 1000] [--requests 60] [--duration 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from oip_binary import v2_binary, wrk_script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workdir: Path) -> tuple[subprocess.Popen[bytes], int, Any]:
    """Fit and save the reference model, serve it; the process, its port and X."""
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=0))
    sio.dump(pipeline.fit(X, y), workdir / "model.skops")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlcycle.serve",
            str(workdir / "model.skops"),
            "--name",
            "bench",
            "--port",
            str(port),
            "--store",
            "none",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return process, port, X
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def timed(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """Median and p90 of `n` calls, in milliseconds (after 3 warm-up calls)."""
    for _ in range(3):
        call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (n - 1))]


def bodies(rows: np.ndarray, features: list[str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Each way to send `rows` to the bench model: (body, headers)."""
    json_headers = {"Content-Type": "application/json"}
    v2_json = {
        "inputs": [
            {
                "name": "x",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    v1 = {"instances": [dict(zip(features, map(float, row), strict=True)) for row in rows]}
    return {
        "v2 JSON": (json.dumps(v2_json).encode(), json_headers),
        "v2 binary": v2_binary(rows),
        "v1 instances (JSON)": (json.dumps(v1).encode(), json_headers),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per way")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    args = parser.parse_args()

    import tritonclient.http as triton

    workdir = Path(tempfile.mkdtemp(prefix="bench-oip-"))
    process, port, X = start(workdir)
    try:
        rows = np.resize(X, (args.rows, X.shape[1])).astype(np.float64)
        # The v1 route takes the model's feature names: ask the server.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model") as r:
            features = [f["name"] for f in json.loads(r.read())["features"]]
        sent = bodies(rows, features)
        paths = {
            "v2 JSON": "/v2/models/bench/infer",
            "v2 binary": "/v2/models/bench/infer",
            "v1 instances (JSON)": "/v1/predict",
        }
        print(f"{args.rows} rows x {X.shape[1]} FP64 features, {args.requests} requests each")
        print(
            f"\n{'over http.client':<24}{'request':>12}{'response':>12}{'p50 ms':>9}{'p90 ms':>9}"
        )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        sizes: dict[str, int] = {}
        for label, (body, headers) in sent.items():

            def post(
                label: str = label, body: bytes = body, headers: dict[str, str] = headers
            ) -> None:
                connection.request("POST", paths[label], body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                assert response.status == 200, data[:200]
                sizes[label] = len(data)

            p50, p90 = timed(post, args.requests)
            print(f"{label:<24}{len(body):>12,}{sizes[label]:>12,}{p50:>9.2f}{p90:>9.2f}")
        connection.close()

        print(f"\n{'tritonclient.http':<24}{'':>24}{'p50 ms':>9}{'p90 ms':>9}")
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        for binary in (False, True):
            tensor = triton.InferInput("x", list(rows.shape), "FP64")
            wanted = [
                triton.InferRequestedOutput(n, binary_data=binary)
                for n in ("predict", "predict_proba")
            ]

            def infer(binary: bool = binary, tensor: Any = tensor, wanted: Any = wanted) -> None:
                tensor.set_data_from_numpy(rows, binary_data=binary)
                result = client.infer("bench", [tensor], outputs=wanted)
                result.as_numpy("predict_proba")

            p50, p90 = timed(infer, args.requests)
            label = "binary" if binary else "JSON"
            print(f"{label:<24}{'':>24}{p50:>9.2f}{p90:>9.2f}")
        client.close()

        in_process(rows, sent)
        if shutil.which("wrk") is None:
            print("\n(wrk not found: `apt-get install wrk` for the throughput figures)")
        else:
            print(f"\n{'wrk, 16 connections':<24}{'':>24}{'req/s':>9}{'p50 ms':>9}")
            one = bodies(rows[:1], features)
            for size, chosen in (("1 row", one), (f"{args.rows} rows", sent)):
                for label, (body, headers) in chosen.items():
                    url = f"http://127.0.0.1:{port}{paths[label]}"
                    rps, p50 = throughput(url, body, headers, workdir, args.duration)
                    print(f"{label + ', ' + size:<48}{rps:>9.0f}{p50:>9.2f}")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return 0


def throughput(
    url: str, body: bytes, headers: dict[str, str], workdir: Path, duration: float
) -> tuple[float, float]:
    """wrk's requests/s and median latency (ms) POSTing `body` over 16 connections."""
    script = wrk_script(body, headers, workdir / "post.lua")
    out = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{duration:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{url}: wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    match = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", out, re.M)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    p50 = float(match[1]) * scale[match[2]] if match else float("nan")
    return rps, p50


def in_process(rows: np.ndarray, sent: dict[str, tuple[bytes, dict[str, str]]]) -> None:
    """The server's decoding of each body into the model's matrix (no HTTP, no model)."""
    import orjson
    from sklearn.dummy import DummyClassifier

    from mlcycle.serve.codec import Codec
    from mlcycle.serve.model import ServedModel

    estimator = DummyClassifier().fit(np.zeros((2, rows.shape[1])), [0, 1])
    codec = Codec(ServedModel.from_estimator(estimator, name="bench", backend="sklearn"))
    json_body = sent["v2 JSON"][0]
    binary_body, headers = sent["v2 binary"]
    length = int(headers["Inference-Header-Content-Length"])

    def decode_json() -> None:
        codec.v2_inputs(orjson.loads(json_body)["inputs"])

    def decode_binary() -> None:
        view = memoryview(binary_body)
        codec.v2_inputs(orjson.loads(view[:length])["inputs"], view[length:])

    print(f"\n{'decoding in process':<24}{'':>24}{'p50 ms':>9}{'p90 ms':>9}")
    for label, call in (("v2 JSON", decode_json), ("v2 binary", decode_binary)):
        p50, p90 = timed(call, 200)
        print(f"{label:<24}{'':>24}{p50:>9.3f}{p90:>9.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
