"""Settings resolved once, from the environment and CLI options, then passed down.

Nothing reads the environment at import time; :func:`from_env` is called by the CLI
(or the runtime loader) with the mapping to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelctl._version import __version__
from modelctl.errors import InputError

if TYPE_CHECKING:
    from dataclasses import dataclass, replace
else:
    from modelctl.values import dataclass, replace

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}
# huggingface_hub's defaults (constants.py) for HF_HUB_DOWNLOAD_TIMEOUT / HF_HUB_ETAG_TIMEOUT.
DEFAULT_DOWNLOAD_TIMEOUT_S = 10.0
DEFAULT_ETAG_TIMEOUT_S = 10.0
# The longest wait a server may ask for before a retry (Retry-After, RateLimit).
DEFAULT_RETRY_WAIT_MAX_S = 300.0
# How long retries may wait in all while nothing advances, before giving up.
DEFAULT_RETRY_BUDGET_S = 600.0
# Connections over every file of a sync (sync --max-connections, MODELCTL_MAX_CONNECTIONS):
# what `aria2c -x8 -j8` may open. A CDN serves each connection on its own (tens of MB/s
# each) and takes this many from one client; a small mirror may want fewer.
DEFAULT_MAX_CONNECTIONS = 64
MAX_CONNECTIONS_LIMIT = 1024


GiB: Final = 1024**3


@dataclass(frozen=True)
class Limits:
    """What bounds a download beyond the socket timeouts (docs/reliability.md, "Deadlines,
    limits, durability"): a server can be slow in ways a per-read timeout never catches (a byte
    every few seconds, headers that trickle, "one byte then drop" forever)."""

    headers_s: float = 60.0  # status line + headers in total: a trickle cannot extend it
    low_speed_bps: int = 1024  # a body slower than this on average ...
    low_speed_s: float = 30.0  # ... for this long is abandoned and resumed (curl -Y / -y)
    min_progress: int = 64 * 1024  # an attempt that brings less new data is a failure
    unknown_size_max: int = 64 * GiB  # a file locked without a size is refused past this
    deadline_s: float | None = None  # all downloads of one sync (--deadline, MODELCTL_DEADLINE)


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True)
class Settings:
    endpoint: str
    token: str | None
    offline: bool
    hf_cache: Path  # $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
    # Seconds to wait for a connection or for the next bytes (headers included) of a
    # download (HF_HUB_DOWNLOAD_TIMEOUT) and of a metadata request (HF_HUB_ETAG_TIMEOUT).
    download_timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S
    metadata_timeout_s: float = DEFAULT_ETAG_TIMEOUT_S
    retry_wait_max_s: float = DEFAULT_RETRY_WAIT_MAX_S  # MODELCTL_RETRY_WAIT_MAX
    retry_budget_s: float = DEFAULT_RETRY_BUDGET_S  # MODELCTL_RETRY_BUDGET
    token_source: str = "none"  # where the token came from (never the token itself)
    limits: Limits = DEFAULT_LIMITS
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # MODELCTL_MAX_CONNECTIONS

    def __repr__(self) -> str:  # never show the token
        return (
            f"Settings(endpoint={self.endpoint!r}, token={self.token_source}, "
            f"offline={self.offline}, hf_cache={str(self.hf_cache)!r}, "
            f"download_timeout_s={self.download_timeout_s}, "
            f"metadata_timeout_s={self.metadata_timeout_s}, "
            f"retry_wait_max_s={self.retry_wait_max_s}, retry_budget_s={self.retry_budget_s})"
        )


def hf_home(env: Mapping[str, str]) -> Path:
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface"


def resolve_token(env: Mapping[str, str]) -> tuple[str | None, str]:
    """The token as ``huggingface_hub.get_token()`` finds it, and where it came from:
    HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN), else the file HF_TOKEN_PATH names,
    else ``$HF_HOME/token`` (what ``hf auth login`` writes). Blank values count as none.
    (get_token also tries an OIDC exchange and Colab secrets: neither applies here.)
    """
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        token = _clean_token(env.get(name))
        if token:
            return token, name
    path = (
        Path(env["HF_TOKEN_PATH"]).expanduser()
        if env.get("HF_TOKEN_PATH")
        else hf_home(env) / "token"
    )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None, "none"
    except OSError as exc:
        raise InputError(
            f"cannot read the Hugging Face token file: {exc.strerror or exc}",
            where=str(path),
            hint="fix its permissions, or set HF_TOKEN instead",
        ) from None
    token = _clean_token(text[:MAX_TOKEN_CHARS])
    return (token, f"the token file {path}") if token else (None, "none")


# A token is about 40 characters; a longer file is not a token file.
MAX_TOKEN_CHARS = 4096


def _clean_token(text: str | None) -> str | None:
    """As huggingface_hub's ``_clean_token``: no CR/LF, no surrounding blanks."""
    if text is None:
        return None
    return text.replace("\r", "").replace("\n", "").strip() or None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise InputError(
            f"{name} must be a number of seconds",
            expected="a number above 0 (huggingface_hub reads whole seconds)",
            actual=repr(text),
            hint=f"unset {name} for the default ({default:g} s)",
        )
    return value


def hf_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    return hf_home(env) / "hub"


def token_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """Every token the environment holds or names (the token file too): never to be
    shown (see errors.redact)."""
    found = [t for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN") if (t := _clean_token(env.get(k)))]
    try:
        token, _ = resolve_token(env)
    except InputError:  # an unreadable token file holds nothing we could show
        token = None
    return tuple(dict.fromkeys([*found, *([token] if token else [])]))


def request_headers(token: str | None) -> dict[str, str]:
    """What every request modelctl sends to the endpoint carries: its user agent and,
    with a token, ``authorization``. Built here, not by huggingface_hub's
    ``build_hf_headers``, which may first GET ``<HF_ENDPOINT>/api/agent-harnesses``: a
    host the manifest's ``endpoint:`` did not name."""
    headers = {"user-agent": f"modelctl/{__version__}"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def from_env(
    env: Mapping[str, str],
    *,
    manifest_endpoint: str | None = None,
    offline: bool = False,
) -> Settings:
    """The manifest's ``endpoint:`` wins over HF_ENDPOINT; ``--offline`` or HF_HUB_OFFLINE."""
    endpoint = manifest_endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    token, token_source = resolve_token(env)
    offline = offline or env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    return Settings(
        endpoint.rstrip("/"),
        token,
        offline,
        hf_cache_dir(env),
        download_timeout_s=_seconds(env, "HF_HUB_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT_S),
        metadata_timeout_s=_seconds(env, "HF_HUB_ETAG_TIMEOUT", DEFAULT_ETAG_TIMEOUT_S),
        retry_wait_max_s=_seconds(env, "MODELCTL_RETRY_WAIT_MAX", DEFAULT_RETRY_WAIT_MAX_S),
        retry_budget_s=_seconds(env, "MODELCTL_RETRY_BUDGET", DEFAULT_RETRY_BUDGET_S),
        token_source=token_source,
        limits=_limits(env, _seconds(env, "HF_HUB_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT_S)),
        max_connections=_connections(env),
    )


def _connections(env: Mapping[str, str]) -> int:
    name = "MODELCTL_MAX_CONNECTIONS"
    text = env.get(name, "").strip()
    if not text:
        return DEFAULT_MAX_CONNECTIONS
    value = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= value <= MAX_CONNECTIONS_LIMIT:
        raise InputError(
            f"{name} must be a number of connections",
            expected=f"a whole number from 1 to {MAX_CONNECTIONS_LIMIT}",
            actual=repr(text),
            hint=f"unset {name} for the default ({DEFAULT_MAX_CONNECTIONS})",
        )
    return value


def _limits(env: Mapping[str, str], download_timeout_s: float) -> Limits:
    """MODELCTL_DEADLINE; and no header or low-speed bound shorter than the download
    timeout (users of slow caching proxies raise HF_HUB_DOWNLOAD_TIMEOUT)."""
    given = env.get("MODELCTL_DEADLINE", "").strip()
    deadline = _seconds(env, "MODELCTL_DEADLINE", 0.0) if given else None
    base = DEFAULT_LIMITS
    return replace(
        base,
        headers_s=max(base.headers_s, download_timeout_s),
        low_speed_s=max(base.low_speed_s, download_timeout_s),
        deadline_s=deadline,
    )
