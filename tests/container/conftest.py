"""Session fixtures for the container tests: the engines, the base image, the wheelhouse.

Every test that takes ``engine`` runs once with podman and once with Docker (a ``dockerd``
started for the session, stopped at its end). When an engine is not installed (or, for
podman, cannot run here at all), its tests skip and say why; with
``MODELCTL_REQUIRE_CONTAINERS=1`` (set by ``.ci/run``) they fail instead, so CI cannot pass
without having built and run the image with both. An installed Docker that does not work
(no CLI with a BuildKit client, a dockerd that does not start) fails them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.engine import (
    Docker,
    Dockerd,
    EngineUnavailable,
    Podman,
    base_image,
    docker_cli,
    wheelhouse,
)

REPO = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("MODELCTL_REQUIRE_CONTAINERS") == "1":
        pytest.fail(f"container engine required (MODELCTL_REQUIRE_CONTAINERS=1): {reason}")
    pytest.skip(f"no usable container engine: {reason}")


@pytest.fixture(scope="session")
def podman_engine() -> Podman:
    try:
        return Podman()
    except EngineUnavailable as exc:
        _unavailable(str(exc))
        raise  # unreachable: skip and fail raise


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Docker]:
    """The docker CLI against a dockerd of this session's own (stopped at the end)."""
    try:
        cli, client = docker_cli()
        daemon = Dockerd()
    except EngineUnavailable as exc:
        _unavailable(str(exc))
        raise
    try:  # installed, so a daemon that does not start or answer fails the tests
        daemon.start()
        docker = Docker(daemon, cli, client)
    except BaseException:
        daemon.stop()
        raise
    print(
        f"docker: CLI {cli} ({client} BuildKit client), dockerd {docker.server_version}, "
        f"storage driver {daemon.driver}"
    )
    try:
        yield docker
    finally:
        daemon.stop()


@pytest.fixture(scope="session", params=["podman", "docker"])
def engine(request: pytest.FixtureRequest) -> Podman | Docker:
    engine: Podman | Docker = request.getfixturevalue(f"{request.param}_engine")
    return engine


@pytest.fixture(scope="session")
def base(engine: Podman | Docker) -> str:
    """The base image's tag; it must run python3 with --network none, or the engine
    cannot run containers here (rootless without user namespaces, say)."""
    try:
        tag = base_image(engine)
    except EngineUnavailable as exc:
        _unavailable(str(exc))
        raise
    proc = engine.run(tag, "python3", "-c", "import sys; print(*sys.version_info[:2])")
    if proc.returncode != 0:
        _unavailable(f"`{engine.name} run` of the base image fails: {proc.stderr.strip()[-400:]}")
    image_python = tuple(int(n) for n in proc.stdout.split())
    assert image_python == sys.version_info[:2], (
        f"the base image has Python {image_python}, the tests run {sys.version_info[:2]}: "
        "the host-built wheelhouse would not install"
    )
    return tag


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheelhouse(REPO, tmp_path_factory.mktemp("wheelhouse") / "wheels")
