"""Dynamic serving: the engine follows the project's serving manifest while it runs.

`LiveRouter` serves the arms the active manifest names (see
`mlcycle.registry.manifests`) through the manifest's selector. A watcher thread
looks at the registry every `poll` seconds; when a new manifest is published or
a new generation joins a followed release, it loads and verifies the new arms
off the request path (artifact SHA-256, then the predictor's agreement check),
starts a new selector router on them and swaps it in with one reference
assignment, so no request is dropped or sees a half-built router. A generation
that fails to load is skipped for good (it is logged) and the next older
candidate takes its place; the models serving keep serving meanwhile.

Models already loaded are reused across swaps (keyed by entry and artifact
hash), and bandit state lives in the store, so a swap keeps what was learned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from mlcycle.errors import MlcycleError, ServingError, UsageError
from mlcycle.registry.features import Feature, recorded_features
from mlcycle.registry.manifests import selector_from_document
from mlcycle.serve.model import (
    ProcessLocalState,
    Router,
    ServedModel,
    infer_task,
    resolve_features,
    warm_up,
)
from mlcycle.serve.predictor import Predictor, onnx_form
from mlcycle.serve.router import SelectorRouter

if TYPE_CHECKING:
    from mlcycle.registry import Entry, Registry
    from mlcycle.registry.artifacts import OnnxForm
    from mlcycle.serve.model import RequestInfo

log = logging.getLogger(__name__)

# A snapshot names what should serve: the manifest number and the arms' refs + hashes.
Snapshot = tuple[int, tuple[tuple[str, str], ...]]


def served_model_from_entry(
    name: str, registry: Any, entry: Entry, *, convert_elsewhere: bool = False
) -> ServedModel:
    """A registry entry prepared for serving: its estimator, features and identity.

    The feature schema is the one recorded at training (`data.features`); a model
    registered without one (trained by hand) falls back to the estimator's own
    feature names. A rejected entry is refused (UsageError).

    An entry stored without its ONNX form is converted here (skl2onnx, then checked
    against scikit-learn). `convert_elsewhere` does that in a child process: in an
    engine that is serving, the conversion is a second of Python work that holds the
    GIL in long stretches, and a watcher thread doing it stalls the request loop (by
    ~0.5 s on the first swap, 40-70 ms on later ones, measured with
    `benchmarks/swap_stall.py`); only the ONNX bytes come back.
    """
    if not entry.is_candidate:
        raise UsageError(
            f"{name} {entry.ref} {entry.unservable} and cannot be served",
            hint="serve a candidate: `mlcycle models` lists them",
        )
    recorded = recorded_features(entry.data)
    if entry.onnx is not None and recorded:
        model = registry.load_onnx(entry)
        onnx = entry.onnx
        return _from_onnx(name, entry, recorded, model, onnx.task, onnx.classes, onnx.note)
    backend = "auto"
    if convert_elsewhere and recorded:
        form = _convert_in_child(registry, entry)
        if form is not None:
            return _from_onnx(name, entry, recorded, form.model, form.task, form.classes, form.note)
        backend = "sklearn"  # the child found no ONNX form that agrees: do not try again
    estimator = registry.load_model(entry)
    training = entry.extra.get("training") or {}
    return ServedModel.from_estimator(
        estimator,
        name=name,
        features=recorded,
        task=training.get("task"),
        release=entry.release,
        generation=entry.generation,
        backend=backend,
        metadata={"sha256": entry.artifact.sha256, "created_at": entry.created_at},
    )


def _from_onnx(
    name: str,
    entry: Entry,
    recorded: tuple[Feature, ...],
    model: bytes | None,
    task: str,
    classes: Sequence[Any] | None,
    note: str,
) -> ServedModel:
    """The entry served from an ONNX form (stored with it and checked by SHA-256, or
    converted in a child): neither skl2onnx nor scikit-learn is imported, which is most
    of an engine's start."""
    assert model is not None
    return ServedModel(
        name=name,
        features=recorded,
        task=task,
        predictor=Predictor.from_onnx(model, task=task, classes=classes, note=note),
        release=entry.release,
        generation=entry.generation,
        metadata={"sha256": entry.artifact.sha256, "created_at": entry.created_at},
    )


def _convert_in_child(registry: Any, entry: Entry) -> OnnxForm | None:
    """The entry's verified ONNX form, made by a child Python process (None when the
    model has none that agrees with scikit-learn). Raises ServingError when the child
    cannot load the artifact (a damaged or untrusted file) or fails."""
    import pickle
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    # Pickle only between this process and its own child: the artifact itself is read
    # (SHA-256 and trust policy checked) by the child through the same registry code.
    with tempfile.TemporaryDirectory(prefix="mlcycle-convert-") as tmp:
        out = Path(tmp) / "form.pickle"
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(out)],
            input=pickle.dumps((registry, entry)),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise ServingError(f"converting {entry.ref} to ONNX failed in a child process: {last}")
        failed, form, reason = pickle.loads(out.read_bytes())
    if failed:
        raise ServingError(reason)
    if form is None:
        log.warning("serving %s through sklearn, not ONNX: %s", entry.ref, reason)
    return form


_CHILD = "from mlcycle.serve.live import convert_main; convert_main()"


def convert_main() -> None:
    """The child of `_convert_in_child`: (registry, entry) pickled on stdin, the result
    pickled to the file named by the first argument: (failed, form or None, reason)."""
    import pickle
    import sys
    from pathlib import Path

    registry, entry = pickle.load(sys.stdin.buffer)
    result: tuple[bool, Any, str]
    try:
        estimator = registry.load_model(entry)
        features = resolve_features(estimator, recorded_features(entry.data))
        task = (entry.extra.get("training") or {}).get("task") or infer_task(estimator)
        form, reason = onnx_form(estimator, features, task)
        result = (False, form, reason)
    except Exception as e:  # reported to the parent, which skips this generation
        result = (True, None, str(e))
    Path(sys.argv[1]).write_bytes(pickle.dumps(result))


class LiveRouter(ProcessLocalState, Router):
    """A Router that follows the active serving manifest of a project (module docstring)."""

    def __init__(self, registry: Registry, *, poll: float = 2.0) -> None:
        # The registry carries the project's trust policy (its own model code): with the
        # library-only default, generations using project classes would never load.
        self.registry = registry
        self.project = registry.project
        self.poll = poll
        self.swaps = 0
        """How many times new arms were swapped in (in this process)."""
        self._cache: dict[tuple[str, str], ServedModel] = {}
        self._broken: set[tuple[str, str]] = set()
        snapshot, entries, wanted, selector = self._read()
        self._inner = self._build(entries, wanted, selector)
        self._snapshot = snapshot
        self._manifest = snapshot[0]
        self._init_runtime()

    # Shipped to worker processes by pickle: each worker runs its own watcher.
    RUNTIME = ("_seen", "_store_url", "_thread", "_stopping")

    def _init_runtime(self) -> None:
        self._seen: Hashable = None
        self._read_error: str | None = None  # the last failed read, said once
        self._store_url: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- reading the registry -----------------------------------------------------------

    def _read(self) -> tuple[Snapshot, list[Entry], int, Any]:
        """The active manifest's snapshot, its candidate entries (newest first), how many
        of them serve, and its selector spec.

        For a followed release every candidate is listed, so that a generation that
        fails to load can be skipped in favour of the next older one.
        """
        registry = self.registry
        manifest = registry.manifests().active()
        if manifest is None:
            raise ServingError(
                f"{self.project}: no serving manifest is published",
                hint="publish one: mlcycle deploy",
            )
        entries = manifest.candidates(registry)
        wanted = manifest.wanted
        snapshot = (
            manifest.number,
            tuple((str(e.ref), e.artifact.sha256) for e in entries),
        )
        return snapshot, entries, wanted, selector_from_document(manifest.selector)

    def _build(
        self, entries: Sequence[Entry], wanted: int, selector: Any, *, serving: bool = False
    ) -> SelectorRouter:
        """A router over the first `wanted` entries that load; broken ones are skipped.

        `serving`: built beside a request loop (a swap), so that what holds the GIL
        long is done in a child process, and each new model is warmed up here, not by
        its first request on the loop. Raises ServingError when fewer than one loads
        (the caller keeps what serves).
        """
        registry = self.registry
        chosen: list[tuple[tuple[str, str], ServedModel]] = []
        problems = []
        for entry in entries:
            if len(chosen) == wanted:
                break
            key = (str(entry.ref), entry.artifact.sha256)
            if key in self._broken:
                continue
            model = self._cache.get(key)
            if model is None:
                try:
                    model = served_model_from_entry(
                        self.project, registry, entry, convert_elsewhere=serving
                    )
                except Exception as e:  # a broken artifact must never take the engine down
                    self._broken.add(key)
                    problems.append(f"{entry.ref}: {e}")
                    log.error("not serving %s: %s", entry.ref, e)
                    continue
                if serving:
                    warm_up(model)
            chosen.append((key, model))
        if not chosen:
            raise ServingError(
                f"{self.project}: none of the models to serve loads: {'; '.join(problems)}"
            )
        # Rewards are counted every 2 s: a bandit reacts to feedback within seconds.
        router = SelectorRouter.from_spec([m for _, m in chosen], selector, refresh_interval=2.0)
        # Keep only what serves now: old arms are released with the old router.
        self._cache = dict(chosen)
        return router

    # --- the watcher ----------------------------------------------------------------------

    def check(self) -> bool:
        """Look for a new manifest or generation now; swap it in. True when it swapped."""
        # The watcher runs in every worker, beside the request loop: the registry's cheap
        # change token first, the full read (every entry, the manifest) only on a change.
        signature = self.registry.change_token()
        if signature == self._seen:
            return False
        try:
            snapshot, entries, wanted, selector = self._read()
        except MlcycleError as e:
            # Not marked as seen: read again at the next poll (the cause may be fixed
            # without another change, e.g. a deploy that lands a moment later).
            if str(e) != self._read_error:
                log.warning("cannot read the serving manifest (%s); serving what I have", e)
            self._read_error = str(e)
            return False
        self._seen, self._read_error = signature, None
        if snapshot == self._snapshot:
            return False
        serving = [(m.release, m.generation) for m in self._inner.models]
        try:
            new = self._build(entries, wanted, selector, serving=True)
        except ServingError as e:
            log.error("%s; the current models keep serving", e)
            self._snapshot = snapshot
            return False
        self._snapshot = snapshot
        if [(m.release, m.generation) for m in new.models] == serving and snapshot[0] == (
            self._manifest
        ):
            return False  # what changed (a broken generation, say) does not change the arms
        try:
            new.start(self._store_url)
        except Exception as e:
            log.error("cannot start the new arms (%s); the current models keep serving", e)
            return False
        old, self._inner, self._manifest = self._inner, new, snapshot[0]
        self.swaps += 1
        log.info(
            "now serving %s (manifest %d)",
            ", ".join(f"{m.release}/{m.generation}" for m in new.models),
            snapshot[0],
        )
        old.stop()
        return True

    def _watch(self) -> None:
        while not self._stopping.wait(self.poll):
            self.check()

    # --- the Router protocol and engine hooks (delegated to the current router) ------------

    @property
    def models(self) -> Sequence[ServedModel]:
        """The arms serving now, newest first."""
        return self._inner.models

    def select(self, request: RequestInfo) -> ServedModel:
        """The model the current selector chooses (no I/O)."""
        return self._inner.select(request)

    def shadows(self, model: ServedModel) -> Sequence[ServedModel]:
        """Arms that get a mirrored copy of `model`'s requests."""
        return self._inner.shadows(model)

    def fallback_for(self, model: ServedModel, error: BaseException) -> ServedModel | None:
        """Another arm to answer when `model` failed."""
        return self._inner.fallback_for(model, error)

    def report_error(self, model: ServedModel, error: BaseException) -> None:
        """Tell the selector that `model` failed."""
        self._inner.report_error(model, error)

    def arm_stats(self) -> list[dict[str, Any]]:
        """Traffic and reward per arm (for /metrics)."""
        return self._inner.arm_stats()

    def describe(self) -> dict[str, Any]:
        """What is served and how it is routed."""
        return {**self._inner.describe(), "manifest": self._snapshot[0], "swaps": self.swaps}

    def start(self, store_url: str | None = None) -> None:
        """Start the current router and the watcher (the engine calls this in each worker)."""
        self._store_url = store_url
        self._inner.start(store_url)
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._watch, name="mlcycle-manifest", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the watcher and the current router."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._inner.stop()
