"""Fixtures for the OCI tests: a real docker-registry on 127.0.0.1 and a synced project."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import (
    TWO_REPOS_CONTENTS,
    TWO_REPOS_LOCKED_FILES,
    two_repos,  # noqa: F401  (the fixture `repos`)
    two_repos_synced,  # noqa: F401  (the fixture `project`: locked and synced)
)
from tests.support.servers import registry as reg

# The project: TWO_REPOS_MANIFEST locked and synced (tests.support.helpers).
LOCKED_FILES = TWO_REPOS_LOCKED_FILES
CONTENTS = TWO_REPOS_CONTENTS


def _skip_reason() -> str | None:
    missing = reg.available()
    if missing and os.environ.get("CI"):
        return None  # CI installs them (.ci/run): a missing tool there is a failure
    return f"needs {missing} (apt-get install docker-registry apache2-utils)" if missing else None


requires_registry = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[reg.Registry]:
    with reg.Registry(tmp_path / "registry") as r:
        yield r


@pytest.fixture
def other_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Switch to an empty HF_HOME (another machine); returns its hub cache."""
    home = tmp_path / "other-home"
    monkeypatch.setenv("HF_HOME", str(home))
    return home / "hub"


@pytest.fixture(autouse=True)
def _no_real_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read this machine's ~/.docker/config.json or containers auth.json."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-xdg-config"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("MODELCTL_REGISTRY_CA_CERT", raising=False)
