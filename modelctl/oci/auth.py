"""Registry credentials and ``WWW-Authenticate`` challenges.

Credentials come from the files Docker, Podman, skopeo and buildah write (``docker
login`` / ``podman login``), first match wins:

1. ``$REGISTRY_AUTH_FILE`` (containers' variable),
2. ``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's default),
3. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/auth.json``),
4. ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``).

In each, ``auths`` maps a registry (``host[:port]``, or ``host[:port]/namespace`` in
containers' files, or a URL such as ``https://host/v1/``) to ``{"auth": base64(user:pass)}``
or ``{"username", "password"}``; the most specific key wins. ``credHelpers[host]`` (or
``credsStore``) names a ``docker-credential-<name>`` program, asked with ``get``.

Secrets never leave this module except in an ``Authorization`` header: ``Credentials``
does not show them in its ``repr``, and errors name the file, never its content.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from modelctl.errors import AuthError, InputError

_PARAM_RE: Final = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
HELPER_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for messages (a file or a helper)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` answer: ``Bearer realm=...,service=...,scope=...``."""

    scheme: str  # lowercase: "bearer" or "basic"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse a ``WWW-Authenticate`` value; None if it has no scheme."""
    text = header.strip()
    scheme, _, rest = text.partition(" ")
    if not scheme or "=" in scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        key, value = m.group(1).lower(), m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)


def auth_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """The credential files to read, in order of precedence (existing or not)."""
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]).expanduser())
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files.append(config / "containers" / "auth.json")
    docker = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker / "config.json")
    return files


def find_credentials(
    registry: str, repository: str, env: Mapping[str, str], home: Path
) -> Credentials | None:
    """Credentials for ``registry`` (and ``repository`` in it) from the auth files."""
    for path in auth_files(env, home):
        doc = _read(path)
        if doc is None:
            continue
        creds = _from_doc(doc, registry, repository, path)
        if creds is not None:
            return creds
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(
            f"cannot read the registry credentials file: {exc.strerror}", where=str(path)
        ) from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputError(
            "the registry credentials file is not valid JSON",
            where=f"{path}:{getattr(exc, 'lineno', '?')}",
            hint="fix it, or log in again (`docker login` / `podman login`)",
        ) from None
    if not isinstance(doc, dict):
        raise InputError("the registry credentials file is not a JSON object", where=str(path))
    return doc


def _key_host(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``; ``host/ns`` -> ``host/ns``."""
    key = key.strip()
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :].split("/", 1)[0]
    return key.rstrip("/")


def _from_doc(
    doc: dict[str, Any], registry: str, repository: str, path: Path
) -> Credentials | None:
    auths = doc.get("auths")
    entries = auths if isinstance(auths, dict) else {}
    # Most specific first: host/ns/repo, host/ns, host.
    parts = repository.split("/")
    wanted = [f"{registry}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
    wanted.append(registry)
    by_key = {_key_host(k): v for k, v in entries.items()}
    for key in wanted:
        entry = by_key.get(key)
        if isinstance(entry, dict):
            creds = _from_entry(entry, f"{path} (auths.{key})")
            if creds is not None:
                return creds
    helpers = doc.get("credHelpers")
    helper = helpers.get(registry) if isinstance(helpers, dict) else None
    if helper is None and isinstance(doc.get("credsStore"), str):
        helper = doc["credsStore"]
    if isinstance(helper, str) and helper:
        return _from_helper(helper, registry, path)
    return None


def _from_entry(entry: dict[str, Any], where: str) -> Credentials | None:
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            raw = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InputError(
                "a registry credential is not base64 of 'user:password'",
                where=where,
                hint="log in again (`docker login` / `podman login`)",
            ) from None
        user, colon, password = raw.partition(":")
        if not colon:
            raise InputError(
                "a registry credential has no ':' between user and password", where=where
            )
        return Credentials(user, password, where)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret, where)
    return None


def _from_helper(helper: str, registry: str, path: Path) -> Credentials | None:
    program = f"docker-credential-{helper}"
    where = f"{program} (named in {path})"
    try:
        done = subprocess.run(
            [program, "get"],
            input=registry.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise AuthError(
            f"the credential helper {program} is not installed",
            where=str(path),
            hint=f"install {program}, or remove it from {path}",
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"the credential helper failed: {exc}", where=where) from None
    if done.returncode != 0:
        # "credentials not found in native keychain": no credentials, not an error.
        return None
    try:
        reply = json.loads(done.stdout)
        user, secret = str(reply["Username"]), str(reply["Secret"])
    except (ValueError, KeyError, TypeError):
        raise AuthError("the credential helper gave an unreadable answer", where=where) from None
    return Credentials(user, secret, where)
