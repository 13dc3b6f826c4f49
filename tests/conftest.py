"""Shared fixtures: a real local Hub server on 127.0.0.1 and an isolated HF environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from modelctl.testing.hub import LocalHub


# The machines running the suite are shared and noisy: a property test is about values,
# and a 200 ms deadline made them fail at random (a one-off 266 ms for a 2 ms example).
settings.register_profile("modelctl", deadline=None)
settings.load_profile("modelctl")


@pytest.fixture(autouse=True)
def _no_real_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the real Hub: unless hf_env says otherwise, HF_ENDPOINT is a dead port."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    root = tmp_path / "hub-root"
    root.mkdir()
    return root


@pytest.fixture
def local_hub(hub_root: Path) -> Iterator[LocalHub]:
    """A LocalHub serving ``hub_root`` (``<org>/<name>/<branch>/...``) on loopback."""
    from modelctl.testing.hub import LocalHub

    with LocalHub(hub_root) as hub:
        yield hub


@pytest.fixture
def hf_env(tmp_path: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_ENDPOINT -> the local Hub, a private HF_HOME, no telemetry, no token, online.

    Returns the HF hub cache folder ($HF_HOME/hub).
    """
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for var in (
        "HF_HUB_CACHE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_DOWNLOAD_TIMEOUT",
        "HF_HUB_ETAG_TIMEOUT",
        "MODELCTL_RETRY_WAIT_MAX",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "https_proxy",
        "http_proxy",
        "all_proxy",
        "HF_HUB_OFFLINE",
        "MODELCTL_MANIFEST",
        "MODELCTL_LOCK",
        "MODELCTL_TARGET",
    ):
        monkeypatch.delenv(var, raising=False)
    return home / "hub"
