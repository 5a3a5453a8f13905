"""A wrapped image of a model that uses project code (`model.code`) starts and predicts."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle import api
from mlcycle.api.project import open_project
from mlcycle.package import build_bundle, build_image, write_context
from tests.learn.test_model_code import ENTRYPOINT, coded_project, rows
from tests.package.test_image import _wait_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TAG = "mlcycle-test/model-code:0.1.0"


def test_the_image_carries_the_model_code_and_serves(
    docker_engine: Any, mlcycle_wheel: Path, tmp_path: Path
) -> None:
    root = coded_project(tmp_path / "shop", model=ENTRYPOINT)
    entry = api.train(root).entry
    assert entry is not None
    project = open_project(root)
    bundle = build_bundle(project.spec, project.registry, entry, tmp_path / "bundle")
    context = write_context(bundle, project.spec, tmp_path / "ctx", wheel=mlcycle_wheel, tag=TAG)
    assert (context.path / "bundle" / "code" / "mypkg" / "steps.py").is_file()
    image = build_image(context.path, TAG)
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
            data=json.dumps({"instances": rows(root)}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + "t" * 32},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        import pandas as pd

        expected = project.registry.load_model(entry).predict(pd.DataFrame(rows(root)))
        np.testing.assert_array_equal(np.asarray(answer["predictions"]), expected)
    finally:
        container.remove(force=True)
        for tag in docker_engine.images.get(image.id).tags:
            docker_engine.images.remove(tag, noprune=True)
