"""Packaging a release for serving: bundles, Docker build contexts, container images.

    bundle = build_bundle(spec, registry, entry, Path("dist/bundle"))
    context = write_context(bundle, spec, Path("dist/context"))   # no engine needed
    image = build_image(context.path, context.tag, progress=progress)
    push_image(image.tag, "127.0.0.1:5000")

Cheap to import: the docker SDK is imported by the functions that talk to an engine.
"""

from __future__ import annotations

from mlcycle.package.bundle import (
    BUNDLE_FILE,
    Bundle,
    build_bundle,
    extract_bundle,
    load_bundle,
    write_archive,
)
from mlcycle.package.dockerfile import (
    BuildContext,
    build_wheel,
    check_reference,
    check_registry,
    image_reference,
    pip_settings,
    release_image,
    release_tag,
    render_dockerfile,
    wheel_requirements,
    write_context,
    write_engine_context,
)
from mlcycle.package.image import (
    ImageInfo,
    build_image,
    docker_client,
    engine_available,
    push_image,
    tag_for_registry,
)

__all__ = [
    "BUNDLE_FILE",
    "BuildContext",
    "Bundle",
    "ImageInfo",
    "build_bundle",
    "build_image",
    "build_wheel",
    "check_reference",
    "check_registry",
    "docker_client",
    "engine_available",
    "extract_bundle",
    "image_reference",
    "load_bundle",
    "pip_settings",
    "push_image",
    "release_image",
    "release_tag",
    "render_dockerfile",
    "tag_for_registry",
    "wheel_requirements",
    "write_archive",
    "write_context",
    "write_engine_context",
]
