"""A wrapped image of a model that uses project code (`model.code`) starts and predicts.

Two projects: an entry point building the model from a project package, and the
dual template as `mlcycle init -p dual` renders it (its `features.py` is a pipeline
step; issue 13: the template's feature code is "validated, trained, served from an
image").
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from mlcycle import api
from mlcycle.api.project import open_project
from mlcycle.package import build_bundle, build_image, write_context
from tests.learn.test_model_code import ENTRYPOINT, coded_project, rows
from tests.package.test_image import _wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Coded(NamedTuple):
    root: Path
    code_file: str  # a file of model.code, as the bundle carries it
    rows: list[dict[str, Any]]


def _entrypoint_package(tmp_path: Path) -> Coded:
    root = coded_project(tmp_path / "shop", model=ENTRYPOINT)
    return Coded(root, "mypkg/steps.py", rows(root))


def _dual_template(tmp_path: Path) -> Coded:
    import pandas as pd

    from mlcycle.api.init import init

    root = tmp_path / "shapes"
    init("shapes", pattern="dual", directory=root)
    checked = api.validate(root)  # class paths, parameters, files and model code
    assert checked.ok, [d.format() for d in checked.diagnostics]
    events = pd.read_csv(root / "data" / "events.csv").head(5)
    features = events.drop(columns=["id", "seq", "malignant"])
    return Coded(root, "features.py", features.to_dict("records"))


@pytest.mark.parametrize(
    "make", [_entrypoint_package, _dual_template], ids=["entrypoint-package", "dual-template"]
)
def test_the_image_carries_the_model_code_and_serves(
    docker_engine: Any, mlcycle_wheel: Path, tmp_path: Path, make: Any
) -> None:
    coded = make(tmp_path)
    root = coded.root
    tag = f"mlcycle-test/model-code-{root.name}:0.1.0"
    entry = api.train(root).entry
    assert entry is not None
    project = open_project(root)
    bundle = build_bundle(project.spec, project.registry, entry, tmp_path / "bundle")
    context = write_context(bundle, project.spec, tmp_path / "ctx", wheel=mlcycle_wheel, tag=tag)
    assert (context.path / "bundle" / "code" / coded.code_file).is_file()
    image = build_image(context.path, tag)
    container = docker_engine.containers.run(
        image.id,
        detach=True,
        ports={"8080/tcp": ("127.0.0.1", None)},
        environment={"MLCYCLE_API_TOKEN": "t" * 32},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", container)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/predict",
            data=json.dumps({"instances": coded.rows}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + "t" * 32},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        import pandas as pd

        expected = project.registry.load_model(entry).predict(pd.DataFrame(coded.rows))
        np.testing.assert_array_equal(np.asarray(answer["predictions"]), expected)
    finally:
        container.remove(force=True)
        for tag in docker_engine.images.get(image.id).tags:
            docker_engine.images.remove(tag, noprune=True)
