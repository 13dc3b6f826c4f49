"""What a Docker user meets with examples/docker/Dockerfile besides a good build: the
legacy builder, and a ``# syntax=`` frontend image that an offline builder cannot pull.

Both run against the session's own dockerd (see conftest.py), with the example's
Dockerfile unchanged and a build context like test_example_image.py's (the build stops
before the download step, so the lock is only a placeholder and no Hub is needed).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from tests.container.engine import Docker, base_image

pytestmark = [pytest.mark.container, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "docker"
DOCKERFILE = EXAMPLE / "Dockerfile"


@pytest.fixture(scope="module")
def context(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ctx = tmp_path_factory.mktemp("docker-builders")
    for item in ("app.py", "modelctl.yaml"):
        shutil.copy(EXAMPLE / item, ctx / item)
    (ctx / "modelctl.lock").write_text("# not read: these builds stop before the download\n")
    (ctx / "wheels").mkdir()
    for wheel in wheels.iterdir():
        os.link(wheel, ctx / "wheels" / wheel.name)
    return ctx


def _build(docker: Docker, ctx: Path, buildkit: bool, **extra_args: str) -> tuple[str, str, float]:
    tag = f"localhost/modelctl-example-test:{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    args = {"PYTHON_IMAGE": base_image(docker), "PIP_NO_INDEX": "1", **extra_args}
    proc = docker.build(ctx, DOCKERFILE, tag, args, buildkit=buildkit)
    took = time.monotonic() - started
    docker.remove(tag)
    assert proc.returncode != 0, f"the build was expected to fail:\n{proc.stdout[-3000:]}"
    return tag, proc.stdout + proc.stderr, took


def test_the_legacy_builder_rejects_run_mount(docker_engine: Docker, context: Path) -> None:
    """``DOCKER_BUILDKIT=0`` (and Docker 20.10's default): the error a user sees."""
    _, output, took = _build(docker_engine, context, buildkit=False)
    print(f"legacy builder: failed in {took:.1f} s:\n{output[-600:]}")
    assert "the --mount option requires BuildKit" in output, output[-3000:]


def test_the_dockerfile_needs_no_frontend_image(docker_engine: Docker, context: Path) -> None:
    """No ``# syntax=`` line: the daemon's built-in frontend builds it offline (shown by
    test_example_image.py's docker builds). Asking for the frontend image, as
    ``# syntax=docker/dockerfile:1`` or ``BUILDKIT_SYNTAX`` do, fails at once offline."""
    directives = [
        line
        for line in DOCKERFILE.read_text().splitlines()
        if line.replace(" ", "").lower().startswith("#syntax=")
    ]
    assert directives == [], "an air-gapped builder cannot pull a Dockerfile frontend image"
    _, output, took = _build(
        docker_engine, context, buildkit=True, BUILDKIT_SYNTAX="docker/dockerfile:1"
    )
    print(f"BUILDKIT_SYNTAX=docker/dockerfile:1 offline: failed in {took:.1f} s")
    assert "docker/dockerfile:1" in output, output[-3000:]
    assert "frontend" in output, output[-3000:]
