"""The live router in-process: what it does when the registry changes under it in ways
that must not stop an engine (a retired release, a pinned model that does not load)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.api.serving import serve_target
from mlcycle.errors import ServingError, UsageError
from mlcycle.registry import Entry, LocalRegistry, Status
from mlcycle.registry.artifacts import OnnxForm
from mlcycle.serve.live import LiveRouter, served_model_from_entry
from mlcycle.spec import load_spec
from tests.serve.test_live import live_project

__all__ = ["live_project"]  # the fixture, shared with test_live.py


def _registry(root: Path) -> LocalRegistry:
    spec = load_spec(root)
    return LocalRegistry(spec.resolve(spec.registry.path), spec.name)


def _next_generation(root: Path) -> tuple[Entry, LocalRegistry]:
    """The current model registered again, ONNX form and all, as the release's next
    generation: a new arm for the router without a fit or a conversion."""
    registry = _registry(root)
    current = registry.current()
    assert current is not None and current.onnx is not None
    form = registry.load_onnx(current)
    assert form is not None
    entry = registry.register(
        registry.load_model(current),
        release=current.release,
        metrics=dict(current.metrics),
        gate={"passed": True},
        data=dict(current.data),
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status=Status.CANDIDATE,
        onnx=OnnxForm(form, current.onnx.task, current.onnx.classes, current.onnx.note),
    )
    return entry, registry


def _serving(router: LiveRouter) -> list[str]:
    return [f"{m.release}/{m.generation}" for m in router.models]


def test_a_followed_release_retired_under_the_engine_keeps_serving_what_it_has(
    live_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = _registry(live_project)
    router = LiveRouter(registry, poll=3600)
    assert not router.check()  # the first look: nothing new
    registry.retire("0.1.0")
    with caplog.at_level(logging.WARNING, logger="mlcycle.serve.live"):
        assert not router.check()
        assert not router.check()  # read again (the cause may be fixed), said once
    assert _serving(router) == ["0.1.0/1"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "mlcycle.serve.live"]
    assert warnings == [
        "cannot read the serving manifest (manifest 1: release 0.1.0 has no generation "
        "that may serve (0.1.0/1 is retired (`mlcycle retire`))); serving what I have"
    ]
    with pytest.raises(
        UsageError, match=r"^live 0\.1\.0/1 is retired \(`mlcycle retire`\) and cannot be served$"
    ):
        served_model_from_entry("live", registry, registry.entries()[0])


def test_a_pinned_model_that_does_not_load_leaves_the_current_one_serving(
    live_project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    router = LiveRouter(_registry(live_project), poll=3600)
    router.check()
    broken, registry = _next_generation(live_project)
    assert broken.onnx is not None
    for name in (broken.artifact.file, broken.onnx.file):  # the form it would serve too
        path = registry.artifact_path(broken).parent / name
        path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    active = registry.manifests().active()
    assert active is not None
    registry.manifests().publish(
        release="0.1.0", selector=active.selector, mode="pinned", arms=1, pinned=["0.1.0/2"]
    )
    with caplog.at_level(logging.ERROR, logger="mlcycle.serve.live"):
        assert not router.check()
    assert _serving(router) == ["0.1.0/1"]
    assert router.describe()["manifest"] == 2  # seen, and not read again until a change
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[-1].startswith("live: none of the models to serve loads: 0.1.0/2: ") and errors[
        -1
    ].endswith("; the current models keep serving")
    assert "SHA-256 mismatch" in errors[-1]
    assert not router.check()


def test_a_dynamic_project_released_but_not_deployed_has_nothing_to_serve(
    released_project: Callable[..., Path],
) -> None:
    root = released_project("adaptive", "live")
    with pytest.raises(ServingError) as info:
        serve_target(root, no_store=True)
    assert str(info.value) == (
        "live: no serving manifest is published, so there is nothing to serve"
    )
    assert info.value.exit_code == 1
    assert info.value.hint == (
        "publish one with `mlcycle deploy` (after `mlcycle release`), "
        "or serve one model: mlcycle serve --model REF"
    )
    assert serve_target(root, ref="0.1.0/1", no_store=True).ref == "0.1.0/1"


PINNED = "  selector:\n    kind: pinned\n    model: 0.1.0/1\n"


def test_a_pinned_deployment_serves_its_model_until_another_is_deployed(
    released_project: Callable[..., Path],
) -> None:
    root = released_project("adaptive", "live")
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    start, end = text.index("  selector:\n"), text.index("  serve: #")
    spec.write_text(text[:start] + PINNED + text[end:])
    deployed = api.deploy(root)
    assert deployed.manifest is not None
    assert (deployed.manifest.mode, deployed.manifest.pinned) == ("pinned", ("0.1.0/1",))
    assert deployed.arms == ("0.1.0/1",)

    _next_generation(root)  # 0.1.0/2, newer: a pinned deployment does not follow it
    router = LiveRouter(_registry(root), poll=3600)
    assert _serving(router) == ["0.1.0/1"]
    assert not router.check()

    # REF pins another model: the manifest's selector pins that one too (it kept the
    # spec's 0.1.0/1, which no engine serving 0.1.0/2 could route to).
    again = api.deploy(root, ref="0.1.0/2")
    assert again.manifest is not None and again.manifest.pinned == ("0.1.0/2",)
    assert router.check()
    assert _serving(router) == ["0.1.0/2"]
    assert _serving(LiveRouter(_registry(root), poll=3600)) == ["0.1.0/2"]  # an engine starting
