"""`make demo`: the adaptive lifecycle end to end, on embedded defaults, as a short story.

Everything runs through the `mlcycle` command line, exactly as a user types it,
in a temporary directory: SQLite data, the local registry, the SQLite store, a
real serving engine on 127.0.0.1.

1. A shop's purchase data (synthetic) streams into `data/events.db`.
2. `mlcycle init --pattern adaptive`, then `release` trains generation 1 and
   `deploy` publishes a serving manifest (an epsilon-greedy bandit over the two
   newest generations); `serve` starts the engine.
3. Customers arrive; true outcomes come back through `/v1/feedback`.
4. The customers change (covariate and concept shift): production evaluation
   shows the metric falling.
5. New rows arrive; `mlcycle update` sees the trigger, continues the model on
   the increment (warm start) and publishes generation 2, which the running
   engine picks up by itself.
6. The bandit moves traffic to generation 2 as its outcomes come in; the
   production metric recovers.
7. A broken feed (a column in other units) arrives: `mlcycle update` checks the
   rows against generation 2's training data and refuses them (exit 3).

Exits non-zero as soon as a step fails. `python scripts/demo.py --quick`
does the same with fewer customers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ("visits", "basket", "discount", "days_since", "pages")
SPEC = """\
apiVersion: mlcycle/v1
name: shop
description: Will a visitor buy? A demo of the adaptive lifecycle on a shifting stream.
lifecycle:
  data_access: programmatic
  procurement: unattended
  update: autonomous
  deployment: dynamic
  liaison: joint
data:
  source:
    url: sqlite:///data/events.db
    table: events
    ordinal: seq
  label: bought
  key: id
  outcomes:
    url: sqlite:///data/events.db
    table: outcomes
    key: id
    outcome: bought
model:
  pipeline:
    - sklearn.preprocessing.StandardScaler
    - sklearn.linear_model.SGDClassifier:
        loss: log_loss
        alpha: 0.001
  seed: 0
evaluation:
  split: time
  metrics: [roc_auc, accuracy]
  gate:
    - roc_auc >= 0.75
update:
  triggers:
    new_rows: 300
    metric: accuracy < 0.75
  data: increment
  warm_start: true
deployment:
  selector:
    kind: epsilon-greedy
    arms: 2
    epsilon: 0.1
    seed: 0
"""


class Failed(Exception):
    """A step of the demo failed."""


def customers(rng: np.random.Generator, n: int, *, shifted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Visitors and whether they bought. After the shift they come from elsewhere
    (other feature means) and respond to other things (another weight vector)."""
    mean = np.array([0.0, 0.0, 0.0, 0.0, 0.0]) if not shifted else np.array([1.0, 0, -1.0, 0, 1.0])
    weights = (
        np.array([1.5, 1.0, 0.8, -1.0, 0.3])
        if not shifted
        else np.array([-1.0, 1.2, -0.8, 1.0, 0.9])
    )
    X = rng.normal(mean, 1.0, size=(n, len(FEATURES)))
    logits = (X - mean) @ weights
    y = (rng.random(n) < 1 / (1 + np.exp(-2.0 * logits))).astype(int)
    return X, y


def write_events(db: Path, X: np.ndarray, y: np.ndarray) -> None:
    """Append rows to the events table (created on first use), with increasing ids and seq."""
    with sqlite3.connect(db) as conn:
        columns = ", ".join(f"{f} REAL" for f in FEATURES)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events "
            f"(id INTEGER, seq INTEGER, {columns}, bought INTEGER)"
        )
        top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        rows = [
            (top + i + 1, top + i + 1, *map(float, x), int(label))
            for i, (x, label) in enumerate(zip(X, y, strict=True))
        ]
        marks = ", ".join("?" for _ in range(len(FEATURES) + 3))
        conn.executemany(f"INSERT INTO events VALUES ({marks})", rows)
        # Where true outcomes of served visitors land; the demo sends them to the
        # engine's /v1/feedback route instead.
        conn.execute("CREATE TABLE IF NOT EXISTS outcomes (id INTEGER, bought INTEGER)")


def mlcycle(*args: str, cwd: Path, quiet: bool = False, expect: int = 0) -> str:
    """Run `mlcycle ARGS` as a user would; its output, or Failed unless it exits `expect`."""
    shown = " ".join(shlex.quote(a) for a in ["mlcycle", *args])
    print(f"\n$ {shown}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "mlcycle", *args], cwd=cwd, capture_output=True, text=True
    )
    if not quiet or result.returncode != expect:
        sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
    if result.returncode != expect:
        raise Failed(f"`{shown}` exited with {result.returncode}")
    return result.stdout


def call(port: int, method: str, path: str, body: Any = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        if response.status >= 300:
            raise Failed(f"{method} {path}: HTTP {response.status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def traffic(port: int, X: np.ndarray, y: np.ndarray) -> dict[str, list[int]]:
    """One request per visitor, then their outcome as feedback; hits per model."""
    served: dict[str, list[int]] = {}
    for x, truth in zip(X, y, strict=True):
        answer = call(
            port,
            "POST",
            "/v1/predict",
            {"instances": [dict(zip(FEATURES, map(float, x), strict=True))]},
        )
        model = f"{answer['model']['release']}/{answer['model']['generation']}"
        served.setdefault(model, []).append(int(answer["predictions"][0] == truth))
        call(port, "POST", "/v1/feedback", {"id": answer["ids"][0], "outcome": int(truth)})
    return served


def summary(served: dict[str, list[int]]) -> str:
    total = sum(len(v) for v in served.values())
    parts = [
        f"{model}: {len(hits) / total:.0%} of traffic, accuracy {np.mean(hits):.2f}"
        for model, hits in sorted(served.items())
    ]
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer customers")
    options = parser.parse_args(argv)
    scale = 1 if options.quick else 2
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="mlcycle-demo-") as tmp:
        root = Path(tmp) / "shop"
        server = None
        try:
            print("mlcycle demo: the adaptive lifecycle of a shop's purchase model")
            mlcycle(
                "init",
                "shop",
                "--pattern",
                "adaptive",
                "--no-git",
                "-d",
                str(root),
                cwd=Path(tmp),
                quiet=True,
            )
            (root / "data" / "events.db").unlink()
            (root / "lifecycle.yaml").write_text(SPEC)
            write_events(root / "data" / "events.db", *customers(rng, 1500, shifted=False))
            subprocess.run(["git", "init", "-q"], cwd=root, check=True)
            subprocess.run(["git", "add", "-A"], cwd=root, check=True)
            subprocess.run(
                [
                    "git",
                    "-c",
                    "user.name=demo",
                    "-c",
                    "user.email=demo@localhost",
                    "commit",
                    "-qm",
                    "shop: adaptive lifecycle",
                ],
                cwd=root,
                check=True,
            )
            print("\n== 1. 1,500 past visitors in data/events.db; the first release")
            mlcycle("validate", cwd=root)
            mlcycle("release", "--bump", "minor", cwd=root)
            mlcycle("deploy", cwd=root)

            port = free_port()
            print(f"\n== 2. the serving engine on 127.0.0.1:{port}")
            server = subprocess.Popen(
                [sys.executable, "-m", "mlcycle", "serve", "--port", str(port)],
                cwd=root,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    call(port, "GET", "/readyz")
                    break
                except (OSError, Failed):
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise Failed("the serving engine did not start") from None
                    time.sleep(0.3)

            before = traffic(port, *customers(rng, 150 * scale, shifted=False))
            print(f"\n== 3. customers as before: {summary(before)}")

            shifted = traffic(port, *customers(rng, 150 * scale, shifted=True))
            print(f"\n== 4. the customers change: {summary(shifted)}")
            mlcycle("evaluate", "--production", cwd=root)

            print("\n== 5. new rows arrive; the training agent reacts")
            write_events(root / "data" / "events.db", *customers(rng, 600, shifted=True))
            mlcycle("update", cwd=root)
            time.sleep(3)  # the engine looks for new generations every second or two

            print("\n== 6. the bandit learns which generation serves better")
            later: dict[str, list[int]] = {}
            for chunk in range(1, 7):
                later = traffic(port, *customers(rng, 40 * scale, shifted=True))
                print(f"   batch {chunk}: {summary(later)}", flush=True)
                time.sleep(1.5)  # outcomes reach the bandit's reward counts within a second
            mlcycle("evaluate", "--production", cwd=root)
            mlcycle("models", cwd=root)

            old = np.mean(shifted.get("0.1.0/1", [0]))
            new = np.mean(later.get("0.1.0/2", [0]))
            share = len(later.get("0.1.0/2", [])) / max(1, sum(len(v) for v in later.values()))
            print(
                f"\nmlcycle demo: after the shift generation 1 was right {old:.0%} of the time; "
                f"generation 2, trained by `mlcycle update` on the new rows, is right {new:.0%} "
                f"and now serves {share:.0%} of the traffic."
            )
            if not (new > old and share > 0.5):
                raise Failed("the new generation did not take over")

            db = root / "data" / "events.db"
            print("\n== 7. a broken feed: basket values arrive in cents; data validation refuses")
            with sqlite3.connect(db) as conn:
                broken_after = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
            X, y = customers(rng, 300, shifted=True)
            X[:, FEATURES.index("basket")] *= 100
            write_events(db, X, y)
            mlcycle("update", cwd=root, expect=3)
            print("mlcycle demo: nothing was trained; 0.1.0/2 keeps serving.")

            print("\n== 8. the feed is fixed, but a day of labels was lost and filled in at random")
            with sqlite3.connect(db) as conn:
                fixed = "UPDATE events SET basket = basket / 100 WHERE seq > ?"
                conn.execute(fixed, (broken_after,))
            X, _ = customers(rng, 300, shifted=True)
            write_events(db, X, rng.integers(0, 2, size=300))
            mlcycle("update", cwd=root, expect=3)
            print("mlcycle demo: the data looked right, the model did not; the gate kept it out.")

            print("\n== 9. the team promotes the release to prod; GTO reads it back")
            mlcycle("promote", "0.1.0", "--stage", "prod", cwd=root)
            mlcycle("history", cwd=root)
            gto = shutil.which("gto", path=str(Path(sys.executable).parent)) or shutil.which("gto")
            if gto is None:
                print("   (install gto, `pip install gto`, to see `gto show` read the stage)")
            else:
                print("$ gto show", flush=True)
                subprocess.run([gto, "show"], cwd=root, check=True)
        except Failed as e:
            print(f"\nmlcycle demo: FAILED: {e}", file=sys.stderr)
            return 1
        finally:
            if server is not None and server.poll() is None:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
