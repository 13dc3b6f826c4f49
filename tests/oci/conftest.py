"""Fixtures for the OCI tests: a real docker-registry on 127.0.0.1 and a synced project."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelctl.cli import main
from tests.support.helpers import seeded_bytes, write_repo
from tests.support.servers import registry as reg

MANIFEST = """\
assets:
  alpha:
    repo: org/alpha
    files: [weights.safetensors, config.json, "notes/*.txt"]
  beta:
    repo: org/beta
    files: [model.gguf, shared.json]
  gamma:
    repo: org/alpha
    files: [config.json]
"""
CONFIG = b'{"hidden": 64}'
# 6 locked files (alpha 3, beta 2, gamma 1); 4 distinct contents (config.json = beta's
# shared.json = gamma's config.json).
LOCKED_FILES = 6
CONTENTS = 4


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
def repos(hub_root: Path) -> dict[str, dict[str, bytes]]:
    content = {
        "org/alpha": {
            "weights.safetensors": seeded_bytes(1, 300_000),
            "config.json": CONFIG,
            "notes/a.txt": b"a",
            "README.md": b"not locked",
        },
        "org/beta": {"model.gguf": seeded_bytes(2, 200_000), "shared.json": CONFIG},
    }
    for repo_id, files in content.items():
        write_repo(hub_root, repo_id, files, lfs_patterns=("*.safetensors", "*.gguf"))
    return content


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, repos: dict[str, dict[str, bytes]]) -> Path:
    """A locked project, synced into the hf_env cache."""
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(MANIFEST)
    assert main(["sync", "-q", "-m", str(manifest)]) == 0
    return manifest


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
