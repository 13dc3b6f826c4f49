"""Settings resolved once, from the environment and CLI options, then passed down.

Nothing reads the environment at import time; :func:`from_env` is called by the CLI
(or the runtime loader) with the mapping to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    endpoint: str
    token: str | None
    offline: bool
    hf_cache: Path  # $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub

    def __repr__(self) -> str:  # never show the token
        token = "set" if self.token else "none"
        return (
            f"Settings(endpoint={self.endpoint!r}, token={token}, offline={self.offline}, "
            f"hf_cache={str(self.hf_cache)!r})"
        )


def hf_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def from_env(
    env: Mapping[str, str],
    *,
    manifest_endpoint: str | None = None,
    offline: bool = False,
) -> Settings:
    """The manifest's ``endpoint:`` wins over HF_ENDPOINT; ``--offline`` or HF_HUB_OFFLINE."""
    endpoint = manifest_endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
    offline = offline or env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    return Settings(endpoint.rstrip("/"), token, offline, hf_cache_dir(env))
