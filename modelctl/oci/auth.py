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

:class:`RegistryAuth` is the flow of one registry (the ``Registry`` client asks it for
the header of each request). ``GET /v2/`` answers 401 with a challenge. ``Basic``: the
credentials go with every request. ``Bearer realm=...,service=...``: a token is asked
from the realm for each scope (``repository:NAME:pull[,push]``, plus ``pull`` on a
mount's source), cached until it expires; a 401 gets one fresh token and one retry.

Where credentials may go (our rule, stricter than Docker's): the registry's password is
sent to a token realm only on the registry's own origin (scheme, host, port), or to a
host the user names (``--token-host``, ``MODELCTL_REGISTRY_TOKEN_HOSTS``) over HTTPS;
over plain HTTP only when the registry itself is plain HTTP (loopback or ``--insecure``).
Any other realm gets no request while credentials are known: an AuthError says which
host asked and how to trust it. Without credentials, a token is asked anonymously.

A token is checked where it enters: printable ASCII (no space, CR, LF), at most
:data:`MAX_TOKEN_CHARS`; anything else would be sent back as a header.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from modelctl.errors import AuthError, InputError, NetworkError
from modelctl.transfer.http import Answer
from modelctl.transfer.urls import BadUrl, Url, parse_url

_PARAM_RE: Final = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
HELPER_TIMEOUT_S: Final = 30.0
MAX_TOKEN_CHARS: Final = 16 * 1024  # JWTs of the big clouds are 1-3 KiB
TOKEN_MARGIN_S: Final = 10.0  # a token is renewed this long before it expires
TOKEN_HOSTS_ENV: Final = "MODELCTL_REGISTRY_TOKEN_HOSTS"


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


# --------------------------------------------------------------------------- the flow


def registry_message(body: bytes) -> str:
    """The registry's own words: ``errors[].code: message`` of a distribution error body."""
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors:
            parts = []
            for e in errors[:3]:
                if isinstance(e, dict):
                    code, msg = e.get("code", ""), e.get("message", "")
                    parts.append(f"{code}: {msg}" if code and msg else str(code or msg))
            if parts:
                return "; ".join(parts)
    except ValueError:
        pass
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "no message"


def check_token(value: object, where: str) -> str:
    """A token as a token service sent it, if it can go into a header unchanged."""
    if not isinstance(value, str) or not value:
        raise NetworkError("the registry's token service sent no token", where=where)
    if len(value) > MAX_TOKEN_CHARS:
        raise NetworkError(
            "the registry's token service sent a token modelctl will not use",
            where=where,
            expected=f"at most {MAX_TOKEN_CHARS} characters",
            actual=f"{len(value)} characters",
        )
    if not all(0x21 <= ord(c) <= 0x7E for c in value):
        bad = next(c for c in value if not 0x21 <= ord(c) <= 0x7E)
        raise NetworkError(
            "the registry's token service sent a token modelctl will not use",
            where=where,
            expected="printable ASCII characters only (a token goes into a header)",
            actual=f"a token with the character {bad!r}",
            hint="the token service or something between is broken or hostile",
        )
    return value


def token_hosts(env: Mapping[str, str], named: Sequence[str] = ()) -> tuple[str, ...]:
    """The hosts the user trusts with registry credentials for a token realm
    (``--token-host``, then ``MODELCTL_REGISTRY_TOKEN_HOSTS``: comma or space separated)."""
    found = [*named, *re.split(r"[,\s]+", env.get(TOKEN_HOSTS_ENV, ""))]
    return tuple(dict.fromkeys(h.strip().lower() for h in found if h.strip()))


Fetch = Callable[[str, Mapping[str, str]], Answer]  # a GET with the registry's retries


class RegistryAuth:
    """The authentication of one registry, for every request its client sends."""

    def __init__(
        self,
        registry: str,
        credentials: Credentials | None,
        trusted_hosts: Sequence[str] = (),
    ) -> None:
        self.registry = registry  # host[:port], for messages
        self.credentials = credentials
        self.trusted_hosts = tuple(trusted_hosts)
        self.challenge: Challenge | None = None
        self._realm: Url | None = None
        self._send_credentials = False
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}

    @property
    def bearer(self) -> bool:
        return self.challenge is not None and self.challenge.scheme == "bearer"

    def learn(self, answer: Answer, base: Url) -> None:
        """The challenge of a 401 to ``GET /v2/``; ``base`` is where the registry is."""
        header = answer.header("WWW-Authenticate") or ""
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise AuthError(
                f"the registry asks for an authentication this client does not speak: "
                f"{header.split(' ', 1)[0][:40] or 'none named'}",
                where=self.registry,
            )
        if challenge.scheme == "bearer":
            realm = challenge.params.get("realm")
            if not realm:
                raise AuthError(
                    "the registry's Bearer challenge names no realm", where=self.registry
                )
            try:
                self._realm = parse_url(realm, base.text, what="the registry's token realm")
            except BadUrl as exc:
                raise AuthError(str(exc), where=self.registry) from None
            self._send_credentials = self._may_send_credentials(self._realm, base)
        self.challenge = challenge

    def _may_send_credentials(self, realm: Url, base: Url) -> bool:
        """Whether the registry's credentials may go to ``realm`` (see the module doc);
        raises AuthError when there are credentials and they may not."""
        if self.credentials is None:
            return False
        if realm.origin == base.origin:
            return True
        named = realm.host in self.trusted_hosts or realm.netloc in self.trusted_hosts
        if named and (realm.scheme == "https" or base.scheme == "http"):
            return True
        if named:
            raise AuthError(
                "the registry's token service is on plain HTTP, and the registry is not: "
                "its credentials are not sent there",
                where=self.registry,
                expected="a token realm on https://",
                actual=realm.without_query(),
                hint="the registry is misconfigured: its token service should use HTTPS",
            )
        raise AuthError(
            f"the registry sends its token requests to another origin "
            f"({realm.scheme}://{realm.netloc}): its credentials are not sent there",
            where=self.registry,
            expected=f"a token realm on the registry's own origin ({base.scheme}://"
            f"{base.netloc}), or on a host you name",
            actual=realm.without_query(),
            hint=f"if you trust {realm.host} with these credentials, name it: --token-host "
            f"{realm.host} (or {TOKEN_HOSTS_ENV}={realm.host}); it is then used over HTTPS",
        )

    def headers(self, scopes: Sequence[str], fetch: Fetch, fresh: bool = False) -> dict[str, str]:
        """The ``Authorization`` header for a request needing ``scopes``."""
        challenge = self.challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self.no_credentials()
            return {"Authorization": self.credentials.basic()}
        return {"Authorization": f"Bearer {self._token(scopes, fetch, fresh)}"}

    def no_credentials(self) -> AuthError:
        return AuthError(
            "the registry requires credentials, and none were found for it",
            where=self.registry,
            hint="log in (`docker login` / `podman login` / `skopeo login`), or point "
            "REGISTRY_AUTH_FILE at an auth.json holding them",
        )

    def credentials_hint(self) -> str:
        if self.credentials is None:
            return (
                "log in (`docker login` / `podman login`), or point REGISTRY_AUTH_FILE at an "
                "auth.json holding credentials for this registry"
            )
        return f"the credentials come from {self.credentials.source}: log in again"

    def _token(self, scopes: Sequence[str], fetch: Fetch, fresh: bool) -> str:
        key = " ".join(scopes)
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and not fresh and cached[1] > time.monotonic():
            return cached[0]
        assert self.challenge is not None and self._realm is not None
        query: list[tuple[str, str]] = []
        if self.challenge.params.get("service"):
            query.append(("service", self.challenge.params["service"]))
        query.extend(("scope", s) for s in scopes)
        realm = self._realm
        url = realm.text + ("&" if realm.query else "?") + urlencode(query)
        where = realm.without_query()
        creds = self.credentials if self._send_credentials else None
        answer = fetch(url, {"Authorization": creds.basic()} if creds else {})
        if answer.status in (401, 403):
            raise AuthError(
                f"the registry's token service refused the credentials (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=where,
                hint=self.credentials_hint(),
            )
        if answer.status != 200:
            raise NetworkError(
                f"the registry's token service answered HTTP {answer.status} "
                f"({registry_message(answer.body)})",
                where=where,
            )
        try:
            doc = json.loads(answer.body)
            value = doc.get("token") or doc.get("access_token")
            expires = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError) as exc:
            raise NetworkError("the registry's token service sent no token", where=where) from exc
        token = check_token(value, where)
        if not expires > 0:  # NaN, negative
            expires = 60.0
        with self._lock:
            lifetime = max(min(expires, 86400.0) - TOKEN_MARGIN_S, 1.0)
            self._tokens[key] = (token, time.monotonic() + lifetime)
        return token
