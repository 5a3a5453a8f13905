"""Registry benchmark: the local directory vs a shared registry (PostgreSQL + OCI).

Issue 15 asks what sharing the registry costs: the time to release, the time for a
running engine to pick up a new generation, and serving throughput (unchanged: an
engine pulls a model's files once, by digest, and serves from memory). One run, the
two backends side by side, on the adaptive template's model (`mlcycle init -p
adaptive`: StandardScaler + SGDClassifier, 30 features, an epsilon-greedy selector
over the two newest generations):

- local: the default `.mlcycle/registry` of the project;
- shared: a fresh PostgreSQL database made for the run and dropped after it (on the
  server of `--postgres`, default MLCYCLE_BENCH_POSTGRES_URL, else
  MLCYCLE_TEST_POSTGRES_URL) and artifacts in `oci://OCI/bench/<unique>` (`--oci`,
  default the registry `make test` runs on 127.0.0.1:5000), given to every command
  as MLCYCLE_REGISTRY_URL / MLCYCLE_ARTIFACTS_URL, as a CI job or a pod would.

For each backend, on its own copy of one project (the shared backend's engine runs in
a clone of that copy, as on another machine: it pulls every model it serves from the
OCI registry once; the local backend's engine can only run in the project itself):

- `release`: wall time of `mlcycle release` (a process: start, train, gate, register,
  tag), RELEASES times on successive commits; the median and every run;
- `register`: `Registry.register` alone through the library (new model bytes each
  time, the ONNX form as stored), REGISTERS times: the registry's share of a release;
- `change token`: one `Registry.change_token()`, what every engine worker runs every
  2 s to notice a change;
- `ready`: `mlcycle serve` from exec to `/readyz` 200 (for shared: its first pull);
  both engines then run side by side until the end;
- `update`: wall time of `mlcycle update --force` (200 new rows each time);
- `pickup`: from the moment generation N+1 is registered (the registry's change token
  moves) until the running engine's `GET /v1/model` names it, both polled every
  10 ms while `update` runs, UPDATES times;
- throughput of each running engine before the first swap and after the last (closed
  loop, one-row JSON `/v1/predict`, wrk when installed, else a Python client; a 1 s
  warm-up loop first, then REPEAT loops of DURATION s per engine, taking turns).

Without a reachable PostgreSQL server or OCI registry the shared backend is skipped
with the reason, and the local figures are still printed (exit 0).

    .venv/bin/python benchmarks/bench_registry.py [--releases 2] [--updates 2]
        [--registers 5] [--duration 2] [--repeat 3] [--concurrency 8]
        [--postgres postgresql://postgres@127.0.0.1:54329/postgres] [--oci 127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, lua_script, run_wrk, wait_ready

POSTGRES_VARIABLES = ("MLCYCLE_BENCH_POSTGRES_URL", "MLCYCLE_TEST_POSTGRES_URL")


@dataclass
class Backend:
    name: str
    env: dict[str, str]  # added to every mlcycle command's environment
    where: str
    figures: dict[str, Any] = field(default_factory=dict)
    own_clone: bool = False  # the engine serves from a clone of its own, as on another machine
    root: Path = Path()  # its copy of the project
    engine_root: Path = Path()  # where the engine runs
    registry: Any = None  # the project's registry, opened in this process
    url: str = ""  # its running engine
    engine: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None


def mlcycle(*args: str, cwd: Path, env: Mapping[str, str]) -> float:
    """Run one mlcycle command; its wall time in seconds (SystemExit on failure)."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mlcycle", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"mlcycle {' '.join(args)} failed:\n{result.stderr}")
    return elapsed


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def add_rows(root: Path, count: int = 200) -> None:
    """`count` new rows in the template's events table (copies of the first ones)."""
    with sqlite3.connect(root / "data" / "events.db") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(events)")]
        top = db.execute("SELECT MAX(seq), MAX(id) FROM events").fetchone()
        rows = db.execute("SELECT * FROM events ORDER BY seq LIMIT ?", (count,)).fetchall()
        for i, row in enumerate(rows, 1):
            values = dict(zip(columns, row, strict=True))
            values["seq"], values["id"] = top[0] + i, top[1] + i
            db.execute(
                f"INSERT INTO events VALUES ({', '.join('?' for _ in columns)})",
                [values[c] for c in columns],
            )


# --- the shared backend's services ----------------------------------------------------------


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """A fresh database on `server` for this run, dropped afterwards; its URL."""
    import sqlalchemy as sa

    name = f"mlcycle_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except sa.exc.SQLAlchemyError:
            pass  # the server went away: nothing to drop
        admin.dispose()


def postgres_problem(server: str | None) -> str | None:
    """Why the PostgreSQL server cannot be used, or None."""
    if not server:
        return f"no PostgreSQL server: set {' or '.join(POSTGRES_VARIABLES)} or pass --postgres"
    import sqlalchemy as sa

    engine = sa.create_engine(server, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as e:  # any driver error: say it and skip
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [""])[0]
        return f"PostgreSQL at {sa.make_url(server).render_as_string()} is not reachable: {first}"
    finally:
        engine.dispose()
    return None


def oci_problem(registry: str) -> str | None:
    """Why the OCI registry cannot be used, or None (it answers /v2/ with 200 or 401)."""
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=3):
            return None
    except urllib.error.HTTPError as e:
        return None if e.code == 401 else f"the OCI registry {registry} answers {e.code} on /v2/"
    except OSError as e:
        return f"no OCI registry answers on {registry} ({getattr(e, 'reason', e)})"


# --- load -----------------------------------------------------------------------------------


def closed_loop(url: str, body: dict[str, Any], concurrency: int, duration: float, workdir: Path):
    """req/s and p99 ms of a closed loop on `url` (wrk, else the Python client below)."""
    if shutil.which("wrk"):
        r = run_wrk(url, lua_script(body, workdir, "registry.lua"), concurrency, duration)
        return r["rps"], r["p99"], "wrk"
    return (*asyncio.run(_python_loop(url, json.dumps(body).encode(), concurrency, duration)), "py")


async def _python_loop(url: str, body: bytes, concurrency: int, duration: float):
    """Keep-alive HTTP/1.1 POSTs, one outstanding per connection (slower than wrk)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    end = time.perf_counter() + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < end:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    return len(latencies) / (time.perf_counter() - started), p99


# --- one backend ----------------------------------------------------------------------------


def describe(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/v1/model", timeout=5) as response:
        return dict(json.loads(response.read()))


def open_backend_registry(root: Path, backend: Backend) -> Any:
    """The project's registry as its commands see it (the backend's variables set)."""
    from mlcycle.api.project import open_project
    from mlcycle.registry import open_registry

    return open_registry(open_project(root).spec, environ={**os.environ, **backend.env})


def in_process(registry: Any, backend: Backend, registers: int) -> None:
    """`register` alone and `change_token()`, through the library, on the project's registry."""
    from mlcycle.registry import OnnxForm

    entry = registry.current()
    assert entry is not None
    model = registry.load_model(entry)
    onnx = registry.load_onnx(entry)
    form = (
        OnnxForm(onnx, entry.onnx.task, entry.onnx.classes, entry.onnx.note)
        if onnx is not None and entry.onnx is not None
        else None
    )
    times = []
    for i in range(registers):
        # New bytes each time, as a new model has: the blob store really stores one.
        model.mlcycle_bench_nonce = uuid.uuid4().hex
        start = time.perf_counter()
        registry.register(
            model,
            release="dev",
            metrics=entry.metrics,
            gate=entry.gate,
            data=entry.data,
            spec_hash=entry.spec_hash,
            git_commit=entry.git_commit,
            procurement=entry.procurement,
            status=entry.status,
            extra={**entry.extra, "bench": i},
            onnx=form,
        )
        times.append(time.perf_counter() - start)
    backend.figures["register"] = times
    tokens = []
    for _ in range(50):
        start = time.perf_counter()
        registry.change_token()
        tokens.append(time.perf_counter() - start)
    backend.figures["token"] = tokens


def pickup(root: Path, url: str, registry: Any, backend: Backend, workdir: Path) -> None:
    """One `update --force` while the engine serves: when the registry changed, when the
    engine named the new generation (both polled every 10 ms), when update returned."""
    generation = describe(url)["generation"]
    add_rows(root)
    token = registry.change_token()
    log = (workdir / f"update-{backend.name}.log").open("wb")
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcycle", "update", "--force"],
        cwd=root,
        env={**os.environ, **backend.env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    changed = seen = None
    try:
        while seen is None:
            if changed is None and registry.change_token() != token:
                changed = time.perf_counter()
            if describe(url)["generation"] != generation:
                seen = time.perf_counter()
            elif process.poll() not in (None, 0) or time.perf_counter() - start > 180:
                raise SystemExit(
                    f"{backend.name}: generation {generation + 1} was not served "
                    f"(update exited {process.returncode}; see {log.name})"
                )
            time.sleep(0.01)
        process.wait(180)
        backend.figures["update"].append(time.perf_counter() - start)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    backend.figures["pickup"].append(seen - (changed or seen))
    print(
        f"  {backend.name}: generation {generation + 1} served "
        f"{backend.figures['pickup'][-1]:.2f} s after it was registered",
        flush=True,
    )


def prepare(template: Path, workdir: Path, backend: Backend, args: argparse.Namespace) -> None:
    """The backend's copy of the project: RELEASES timed releases, then deployed."""
    backend.root = workdir / backend.name
    shutil.copytree(template, backend.root, symlinks=True)
    releases = backend.figures["release"] = []
    for i in range(args.releases):
        if i:
            git("commit", "--allow-empty", "-q", "-m", f"bench {i}", cwd=backend.root)
        releases.append(mlcycle("release", cwd=backend.root, env=backend.env))
        print(f"  {backend.name}: release {i + 1} in {releases[-1]:.2f} s", flush=True)
    mlcycle("deploy", cwd=backend.root, env=backend.env)
    backend.registry = open_backend_registry(backend.root, backend)
    backend.engine_root = backend.root
    if backend.own_clone:
        # Another machine: the same commit, none of this clone's cached model files.
        backend.engine_root = workdir / f"{backend.name}-engine"
        git("clone", "-q", str(backend.root), str(backend.engine_root), cwd=workdir)


def start_engine(backend: Backend, workdir: Path) -> None:
    """`mlcycle serve` on the backend's project, timed from exec to ready."""
    port = free_port()
    backend.url = f"http://127.0.0.1:{port}"
    backend.log = (workdir / f"serve-{backend.name}.log").open("wb")
    start = time.perf_counter()
    backend.engine = subprocess.Popen(
        [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), "--workers", "1"],
        cwd=backend.engine_root,
        env={**os.environ, **backend.env},
        stdout=backend.log,
        stderr=subprocess.STDOUT,
    )
    wait_ready(f"{backend.url}/readyz", backend.engine)
    backend.figures["ready"] = time.perf_counter() - start
    print(f"  {backend.name}: engine ready in {backend.figures['ready']:.2f} s", flush=True)


def stop_engine(backend: Backend) -> None:
    if backend.engine is None:
        return
    backend.engine.send_signal(signal.SIGTERM)
    try:
        backend.engine.wait(60)
    except subprocess.TimeoutExpired:
        backend.engine.kill()
    if backend.log is not None:
        backend.log.close()


def throughput(backends: list[Backend], when: str, args: argparse.Namespace, workdir: Path):
    """Closed loops on every engine, taking turns (the machine's speed drifts): the median
    of `--repeat` loops each, after a 1 s warm-up."""
    runs: dict[str, list[tuple[float, float]]] = {b.name: [] for b in backends}
    bodies = {}
    for b in backends:
        features = (f["name"] for f in describe(b.url)["features"])
        bodies[b.name] = {"instances": [dict.fromkeys(features, 1.0)]}
        closed_loop(f"{b.url}/v1/predict", bodies[b.name], args.concurrency, 1.0, workdir)
    for _ in range(args.repeat):
        for b in backends:
            rps, p99, tool = closed_loop(
                f"{b.url}/v1/predict", bodies[b.name], args.concurrency, args.duration, workdir
            )
            runs[b.name].append((rps, p99))
            b.figures["tool"] = tool
    for b in backends:
        b.figures[when] = (
            statistics.median(r for r, _ in runs[b.name]),
            statistics.median(p for _, p in runs[b.name]),
            [r for r, _ in runs[b.name]],
        )
        print(f"  {b.name}: {when} the swaps {_all(b.figures[when][2], '{:,.0f}')} req/s")


def measure(backends: list[Backend], template: Path, workdir: Path, args: argparse.Namespace):
    for b in backends:
        print(f"{b.name} backend: {b.where}", flush=True)
        prepare(template, workdir, b, args)
    try:
        for b in backends:
            start_engine(b, workdir)
        throughput(backends, "before", args, workdir)
        for b in backends:
            b.figures["update"], b.figures["pickup"] = [], []
            for _ in range(args.updates):
                pickup(b.root, b.url, b.registry, b, workdir)
        throughput(backends, "after", args, workdir)
    finally:
        for b in backends:
            stop_engine(b)
    for b in backends:
        try:
            in_process(b.registry, b, args.registers)
        finally:
            engine = getattr(b.registry, "engine", None)
            if engine is not None:
                engine.dispose()  # its connections would hold the database the run drops


# --- the table ------------------------------------------------------------------------------


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def _all(values: list[float], fmt: str = "{:.2f}") -> str:
    return "/".join(fmt.format(v) for v in values)


def report(backends: list[Backend], args: argparse.Namespace) -> None:
    rows: list[tuple[str, list[str]]] = [
        (
            f"release, s (median of {args.releases})",
            [_median(b.figures["release"]) for b in backends],
        ),
        ("  each run", [_all(b.figures["release"]) for b in backends]),
        (
            f"register alone, ms (median of {args.registers})",
            [f"{statistics.median(b.figures['register']) * 1000:.0f}" for b in backends],
        ),
        (
            "change token, ms (median of 50)",
            [f"{statistics.median(b.figures['token']) * 1000:.2f}" for b in backends],
        ),
        ("update --force, s (median)", [_median(b.figures["update"]) for b in backends]),
        (f"pickup, s (median of {args.updates})", [_median(b.figures["pickup"]) for b in backends]),
        ("  each run", [_all(b.figures["pickup"]) for b in backends]),
        ("serve start to ready, s", [f"{b.figures['ready']:.2f}" for b in backends]),
    ]
    for when in ("before", "after"):
        rows.append(
            (
                f"c={args.concurrency} {when} the swap, req/s (p99 ms)",
                [f"{b.figures[when][0]:,.0f} ({b.figures[when][1]:.1f})" for b in backends],
            )
        )
    width = max(len(label) for label, _ in rows)
    cells = [max(len(b.name), *(len(r[1][i]) for r in rows)) for i, b in enumerate(backends)]
    print()
    print(
        " " * width
        + "  "
        + "  ".join(f"{b.name:>{w}}" for b, w in zip(backends, cells, strict=True))
    )
    for label, values in rows:
        print(
            f"{label:<{width}}  "
            + "  ".join(f"{v:>{w}}" for v, w in zip(values, cells, strict=True))
        )
    for b in backends:
        print(f"{b.name}: {b.where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=2, help="releases timed per backend")
    parser.add_argument("--updates", type=int, default=2, help="generations picked up per backend")
    parser.add_argument("--registers", type=int, default=5, help="library registrations timed")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per closed loop")
    parser.add_argument("--repeat", type=int, default=3, help="closed loops per engine and phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--postgres",
        default=next((os.environ[v] for v in POSTGRES_VARIABLES if os.environ.get(v)), None),
        help="a PostgreSQL server URL; the run makes (and drops) a database of its own "
        f"(default: {' or '.join(POSTGRES_VARIABLES)})",
    )
    parser.add_argument("--oci", default="127.0.0.1:5000", help="HOST:PORT of an OCI registry")
    args = parser.parse_args()

    skipped = postgres_problem(args.postgres) or oci_problem(args.oci)
    if skipped:
        print(f"shared backend skipped: {skipped}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    try:
        with contextlib.ExitStack() as stack:
            backends = [Backend("local", {}, "the project's .mlcycle/registry")]
            if not skipped:
                database = stack.enter_context(postgres_database(args.postgres))
                artifacts = f"oci://{args.oci}/bench/{uuid.uuid4().hex[:12]}"
                where = f"{database.rsplit('@', 1)[-1]} + {artifacts}"
                variables = {"MLCYCLE_REGISTRY_URL": database, "MLCYCLE_ARTIFACTS_URL": artifacts}
                backends.append(Backend("shared", variables, where, own_clone=True))
            init = ("init", "live", "--pattern", "adaptive", "-d", str(workdir / "live"))
            mlcycle(*init, cwd=workdir, env={})
            measure(backends, workdir / "live", workdir, args)
        report(backends, args)
        if skipped:
            print(f"shared backend skipped: {skipped}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
