"""A client for the OCI distribution spec (v1.1), as CNCF Distribution, Harbor, Zot and the
clouds' registries speak it.

- **Transport.** ``http.client``, one keep-alive connection per thread and origin. HTTPS
  with the system's CAs (plus ``--ca-cert``); plain HTTP only for a loopback registry or
  with ``--insecure`` (which also accepts an unverified certificate), found by trying TLS
  first, as Docker does for its insecure registries.
- **Auth.** The first request (``GET /v2/``) learns the challenge. ``Basic``: the
  credentials go with every request. ``Bearer realm=...,service=...``: a token is asked
  from the realm for each scope (``repository:NAME:pull[,push]``, plus ``pull`` on a
  mount's source), with the credentials as Basic auth (anonymous without), cached until it
  expires; a 401 on a request gets one fresh token and one retry.
- **Blobs.** ``HEAD`` before any upload; cross-repository mount; monolithic upload
  (``POST`` + ``PUT ?digest=``) for small blobs, chunked (``PATCH`` with
  ``Content-Range``) for big ones, so no single request carries gigabytes. Downloads of
  big blobs go through :mod:`modelctl.transfer.fetch` (resume, verification); its transport follows
  redirects (S3-backed registries answer a blob ``GET`` with a 307) and drops
  ``Authorization`` on another origin.
- **Errors.** Unreachable, refused, or failing again and again: NetworkError (exit 3);
  401/403: AuthError (exit 3) with the registry's own message; unknown repository, tag or
  manifest: ResolveError (exit 2). Secrets are never part of a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlencode, urljoin, urlsplit

from modelctl.errors import AuthError, IntegrityError, NetworkError, ResolveError
from modelctl.oci.auth import Challenge, Credentials, parse_challenge
from modelctl.oci.reference import Reference

MiB: Final = 1024 * 1024
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_MANIFESTS: Final = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_MANIFEST_BYTES: Final = 4 * MiB  # the distribution spec's limit registries apply
MAX_ERROR_BYTES: Final = 64 * 1024
SEND_PIECE: Final = 1 * MiB
DEFAULT_CHUNK: Final = 64 * MiB  # uploads larger than this go in PATCH chunks of this size
TRANSIENT_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_MARGIN_S: Final = 10.0  # a token is renewed this long before it expires


@dataclass(frozen=True)
class RegistryOptions:
    insecure: bool = False  # plain HTTP, or HTTPS without verification, for any host
    ca_cert: Path | None = None  # a PEM bundle of CAs to trust besides the system's
    chunk_size: int = DEFAULT_CHUNK
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    attempts: int = 4  # per request, for dropped connections and 408/429/5xx
    backoff_s: float = 0.5


@dataclass
class Traffic:
    """What this client asked of the registry (for summaries and benchmarks)."""

    requests: int = 0
    bytes_up: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests: int = 0, up: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_up += up


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Outgoing(Protocol):
    """A blob's bytes on their way out (hashed as they are read)."""

    def read(self, n: int) -> bytes: ...


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


def _ssl_context(options: RegistryOptions) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if options.ca_cert is not None:
        try:
            ctx.load_verify_locations(cafile=str(options.ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise NetworkError(
                f"cannot load the CA certificate: {exc}",
                where=str(options.ca_cert),
                hint="--ca-cert takes a PEM file with one or more CA certificates",
            ) from exc
    if options.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Transient(Exception):
    pass


class Registry:
    """One repository of one registry, with the credentials and TLS settings to use."""

    def __init__(
        self,
        ref: Reference,
        credentials: Credentials | None,
        options: RegistryOptions = RegistryOptions(),
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ref = ref
        self.name = ref.name
        self.credentials = credentials
        self.options = options
        self.ssl_context = _ssl_context(options)
        self.scheme = "https"
        self.traffic = Traffic()
        self._sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        self._connected = False

    # -- addresses ------------------------------------------------------------------
    @property
    def base(self) -> str:
        """``scheme://host[:port]``, the scheme found by :meth:`connect` (called here)."""
        self.connect()
        return f"{self.scheme}://{self.ref.registry}"

    def url(self, path: str) -> str:
        return urljoin(self.base, path)

    def blob_url(self, digest: str, name: str | None = None) -> str:
        return self.url(f"/v2/{name or self.name}/blobs/{digest}")

    @property
    def where(self) -> str:
        return f"{self.ref.registry}/{self.name}"

    # -- connecting -----------------------------------------------------------------
    def connect(self) -> None:
        """``GET /v2/``: pick HTTPS or (loopback / --insecure only) HTTP; learn the auth."""
        if self._connected:
            return
        try:
            answer = self._send_once("GET", self._ping_url(), {}, None)
        except ssl.SSLCertVerificationError as exc:
            raise NetworkError(
                f"the registry's TLS certificate is not trusted ({exc.verify_message})",
                where=self.ref.registry,
                hint="pass --ca-cert FILE with the CA that signed it (--insecure skips the "
                "check: for test registries only)",
            ) from exc
        except ssl.SSLError as exc:
            if not (self.ref.is_loopback or self.options.insecure):
                raise NetworkError(
                    f"the registry does not speak TLS ({exc.reason or exc})",
                    where=self.ref.registry,
                    hint="plain HTTP is used only for a loopback registry or with --insecure",
                ) from exc
            self.scheme = "http"
            answer = self._ping_plain()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        if answer.status == 401:
            self._challenge = self._read_challenge(answer)
            if self._challenge.scheme == "basic" and self.credentials is not None:
                self._check_basic()
        elif answer.status != 200:
            raise NetworkError(
                f"the registry answered GET /v2/ with HTTP {answer.status} "
                f"({registry_message(answer.body)})",
                where=self.ref.registry,
                hint="is this an OCI registry (distribution spec v2 API)?",
            )
        self._connected = True

    def _check_basic(self) -> None:
        """Try the credentials once on ``GET /v2/``: one clear error instead of one per blob."""
        assert self.credentials is not None
        headers = {"Authorization": self.credentials.basic()}
        answer = self._send(lambda: ("GET", self._ping_url(), headers, None), what="a login")
        if answer.status in (401, 403):
            raise AuthError(
                f"the registry refused the credentials (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=self.ref.registry,
                hint=self._credentials_hint(),
            )

    def _ping_url(self) -> str:
        return f"{self.scheme}://{self.ref.registry}/v2/"

    def _ping_plain(self) -> Answer:
        try:
            return self._send_once("GET", self._ping_url(), {}, None)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> NetworkError:
        return NetworkError(
            f"cannot reach the registry ({type(exc).__name__}: {exc})",
            where=f"{self.scheme}://{self.ref.registry}",
            hint="check the address and port, that the registry is running, and the network",
        )

    def _read_challenge(self, answer: Answer) -> Challenge:
        header = answer.header("WWW-Authenticate") or ""
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise AuthError(
                f"the registry asks for an authentication this client does not speak: "
                f"{header.split(' ', 1)[0] or 'none named'}",
                where=self.ref.registry,
            )
        if challenge.scheme == "bearer" and not challenge.params.get("realm"):
            raise AuthError(
                "the registry's Bearer challenge names no realm", where=self.ref.registry
            )
        return challenge

    # -- auth -----------------------------------------------------------------------
    def auth_headers(
        self, actions: str = "pull", extra_scopes: Sequence[str] = ()
    ) -> dict[str, str]:
        """The ``Authorization`` header for a request needing ``actions`` on this repo."""
        self.connect()
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._no_credentials()
            return {"Authorization": self.credentials.basic()}
        scopes = [f"repository:{self.name}:{actions}", *extra_scopes]
        return {"Authorization": f"Bearer {self._token(scopes)}"}

    def _no_credentials(self) -> AuthError:
        return AuthError(
            "the registry requires credentials, and none were found for it",
            where=self.ref.registry,
            hint="log in (`docker login` / `podman login` / `skopeo login`), or point "
            "REGISTRY_AUTH_FILE at an auth.json holding them",
        )

    def _token(self, scopes: Sequence[str], fresh: bool = False) -> str:
        key = " ".join(scopes)
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and not fresh and cached[1] > time.monotonic():
            return cached[0]
        assert self._challenge is not None
        params = self._challenge.params
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query.extend(("scope", s) for s in scopes)
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
        answer = self._send(lambda: ("GET", url, headers, None), what="a registry token")
        if answer.status in (401, 403):
            raise AuthError(
                f"the registry's token service refused the credentials (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=urlsplit(realm)._replace(query="").geturl(),
                hint=self._credentials_hint(),
            )
        if answer.status != 200:
            raise NetworkError(
                f"the registry's token service answered HTTP {answer.status} "
                f"({registry_message(answer.body)})",
                where=urlsplit(realm)._replace(query="").geturl(),
            )
        try:
            doc = json.loads(answer.body)
            token = str(doc.get("token") or doc.get("access_token") or "")
            expires = float(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError) as exc:
            raise NetworkError("the registry's token service sent no token", where=realm) from exc
        if not token:
            raise NetworkError("the registry's token service sent no token", where=realm)
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(expires - TOKEN_MARGIN_S, 1.0))
        return token

    def _credentials_hint(self) -> str:
        if self.credentials is None:
            return (
                "log in (`docker login` / `podman login`), or point REGISTRY_AUTH_FILE at an "
                "auth.json holding credentials for this registry"
            )
        return f"the credentials come from {self.credentials.source}: log in again"

    # -- requests -------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        actions: str = "pull",
        extra_scopes: Sequence[str] = (),
        what: str = "",
    ) -> Answer:
        """One request with auth (renewed once on 401) and retries of transient failures.

        A 401/403 that persists raises AuthError with the registry's message.
        """
        base = dict(headers or {})

        def build(fresh: bool) -> tuple[str, str, dict[str, str], bytes | None]:
            if fresh and self._challenge is not None and self._challenge.scheme == "bearer":
                self._token([f"repository:{self.name}:{actions}", *extra_scopes], fresh=True)
            return method, url, {**base, **self.auth_headers(actions, extra_scopes)}, body

        answer = self._send(lambda: build(False), what=what)
        if answer.status == 401 and self._challenge is not None:
            answer = self._send(lambda: build(True), what=what)
        if answer.status in (401, 403):
            raise AuthError(
                f"the registry refused {what or method} (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=self.where,
                hint=self._credentials_hint()
                if answer.status == 401
                else "these credentials lack access to this repository (push needs push rights)",
            )
        return answer

    def _send(
        self,
        build: Callable[[], tuple[str, str, dict[str, str], bytes | None]],
        what: str,
    ) -> Answer:
        failures = 0
        while True:
            method, url, headers, body = build()
            try:
                answer = self._send_once(method, url, headers, body)
                if answer.status not in TRANSIENT_STATUSES:
                    return answer
                reason = f"HTTP {answer.status} ({registry_message(answer.body)})"
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise NetworkError(
                        f"a TLS certificate is not trusted ({exc.verify_message})",
                        where=url.split("?")[0],
                        hint="pass --ca-cert FILE with the CA that signed it",
                    ) from exc
                reason = f"{type(exc).__name__}: {exc}"
            failures += 1
            if failures >= self.options.attempts:
                raise NetworkError(
                    f"{what or method} failed after {failures} attempts ({reason})",
                    where=url.split("?")[0],
                    hint="check the registry and the network, then run the command again",
                )
            self._sleep(min(self.options.backoff_s * 2 ** (failures - 1), 8.0))

    # -- the wire -------------------------------------------------------------------
    def _pool(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        pool: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(
            self._local, "pool", None
        )
        if pool is None:
            pool = {}
            self._local.pool = pool
        return pool

    def _connection(self, url: str) -> tuple[tuple[str, str, int], http.client.HTTPConnection]:
        parts = urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname or ""
        origin = (scheme, host, parts.port or (443 if scheme == "https" else 80))
        conn = self._pool().pop(origin, None)
        if conn is None:
            timeout = self.options.connect_timeout_s
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, origin[2], timeout=timeout, context=self.ssl_context
                )
            else:
                conn = http.client.HTTPConnection(host, origin[2], timeout=timeout)
        return origin, conn

    def _send_once(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Answer:
        with self._exchange(method, url, headers, len(body) if body is not None else None) as (
            conn,
            finish,
        ):
            if body:
                conn.send(body)
            return finish()

    @contextlib.contextmanager
    def _exchange(
        self, method: str, url: str, headers: Mapping[str, str], length: int | None
    ) -> Iterator[tuple[http.client.HTTPConnection, Callable[[], Answer]]]:
        """Send the request line and headers; the caller sends the body, then ``finish()``."""
        origin, conn = self._connection(url)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        keep = False
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for k, v in {"User-Agent": "modelctl", **headers}.items():
                conn.putheader(k, v)
            if length is not None:
                conn.putheader("Content-Length", str(length))
            conn.endheaders()
            if conn.sock is not None:
                conn.sock.settimeout(self.options.read_timeout_s)
            sent = 0 if length is None else length

            def finish() -> Answer:
                nonlocal keep
                resp = conn.getresponse()
                limit = MAX_MANIFEST_BYTES if resp.status < 300 else MAX_ERROR_BYTES
                data = resp.read(limit + 1)  # b"" for HEAD; reading marks it complete
                if len(data) > limit:
                    raise http.client.HTTPException(f"an answer longer than {limit} bytes")
                keep = not resp.will_close and resp.isclosed()
                self.traffic.add(requests=1, up=sent)
                return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

            yield conn, finish
        finally:
            if keep:
                self._pool()[origin] = conn
            else:
                conn.close()

    # -- manifests ------------------------------------------------------------------
    def get_manifest(self, ref: Reference) -> tuple[bytes, str, str]:
        """``(bytes, media type, sha256 digest)`` of the manifest ``ref`` names; checks a
        pinned digest."""
        version = ref.version
        answer = self.request(
            "GET",
            self.url(f"/v2/{self.name}/manifests/{version}"),
            {"Accept": ACCEPT_MANIFESTS},
            what=f"the manifest {version}",
        )
        if answer.status == 404:
            raise ResolveError(
                f"the registry has no manifest {version!r} in this repository "
                f"({registry_message(answer.body)})",
                where=str(ref),
                hint="check the name and tag (push it first with `modelctl push`)",
            )
        if answer.status != 200:
            raise NetworkError(
                f"the registry answered HTTP {answer.status} for the manifest "
                f"({registry_message(answer.body)})",
                where=str(ref),
            )
        digest = "sha256:" + hashlib.sha256(answer.body).hexdigest()
        if ref.digest is not None and digest != ref.digest:
            raise IntegrityError(
                "the manifest the registry sent does not match the digest asked for",
                where=str(ref),
                expected=ref.digest,
                actual=digest,
                hint="the registry (or something between) altered it: do not use it",
            )
        media = (answer.header("Content-Type") or "").split(";")[0].strip()
        return answer.body, media, digest

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> str:
        """Upload a manifest under ``tag``; returns its digest."""
        answer = self.request(
            "PUT",
            self.url(f"/v2/{self.name}/manifests/{tag}"),
            {"Content-Type": media_type},
            body,
            actions="pull,push",
            what="the manifest upload",
        )
        if answer.status != 201:
            raise NetworkError(
                f"the registry refused the manifest (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=f"{self.where}:{tag}",
            )
        return "sha256:" + hashlib.sha256(body).hexdigest()

    # -- blobs ----------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        answer = self.request(
            "HEAD", self.blob_url(digest), actions="pull,push", what="a blob check"
        )
        return answer.status == 200

    def get_small_blob(self, digest: str, limit: int) -> bytes:
        """A small blob (config, lockfile), read whole and checked against its digest."""
        answer = self.request("GET", self.blob_url(digest), what=f"the blob {digest}")
        if answer.status in (301, 302, 303, 307, 308) and answer.header("Location"):
            location = urljoin(self.blob_url(digest), answer.header("Location") or "")
            same = urlsplit(location)[:2] == urlsplit(self.base)[:2]
            headers = self.auth_headers() if same else {}
            answer = self._send(lambda: ("GET", location, headers, None), what="a blob")
        if answer.status != 200:
            raise NetworkError(
                f"the registry answered HTTP {answer.status} for a blob "
                f"({registry_message(answer.body)})",
                where=f"{self.where}@{digest}",
            )
        if len(answer.body) > limit:
            raise IntegrityError(
                f"a blob is larger than {limit} bytes", where=f"{self.where}@{digest}"
            )
        actual = "sha256:" + hashlib.sha256(answer.body).hexdigest()
        if actual != digest:
            raise IntegrityError(
                "a blob the registry sent does not match its digest",
                where=f"{self.where}@{digest}",
                expected=digest,
                actual=actual,
            )
        return answer.body

    def mount(self, digest: str, source: str) -> bool:
        """Cross-repository mount from ``source`` (same registry); True if mounted."""
        query = urlencode({"mount": digest, "from": source})
        answer = self.request(
            "POST",
            self.url(f"/v2/{self.name}/blobs/uploads/?{query}"),
            body=b"",
            actions="pull,push",
            extra_scopes=(f"repository:{source}:pull",),
            what="a blob mount",
        )
        if answer.status == 201:
            return True
        if answer.status == 202 and answer.header("Location"):
            # Not mounted: the registry opened an upload session instead; close it.
            self._cancel(answer.header("Location") or "")
        return False

    def _cancel(self, location: str) -> None:
        with contextlib.suppress(NetworkError, AuthError):
            self.request(
                "DELETE", urljoin(self.base, location), actions="pull,push", what="an upload cancel"
            )

    def upload(self, digest: str, size: int, open_body: Callable[[], Outgoing]) -> None:
        """Upload a blob: monolithic up to ``chunk_size``, else in PATCH chunks.

        ``open_body`` gives the bytes from the start (again, on a retry). The registry
        checks the digest when the upload is committed; a refusal of the digest raises
        IntegrityError.
        """
        failures = 0
        while True:
            try:
                self._upload_once(digest, size, open_body)
                return
            except _Transient as exc:
                failures += 1
                if failures >= self.options.attempts:
                    raise NetworkError(
                        f"the upload of {digest} failed after {failures} attempts ({exc})",
                        where=self.where,
                        hint="check the registry and the network, then push again (blobs "
                        "already uploaded are not sent again)",
                    ) from None
                self._sleep(min(self.options.backoff_s * 2 ** (failures - 1), 8.0))

    def _upload_once(self, digest: str, size: int, open_body: Callable[[], Outgoing]) -> None:
        answer = self.request(
            "POST",
            self.url(f"/v2/{self.name}/blobs/uploads/"),
            body=b"",
            actions="pull,push",
            what="an upload start",
        )
        location = answer.header("Location")
        if answer.status != 202 or not location:
            raise NetworkError(
                f"the registry did not open an upload (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=self.where,
            )
        location = urljoin(self.url(f"/v2/{self.name}/blobs/uploads/"), location)
        body = open_body()
        try:
            if size <= self.options.chunk_size:
                final = self._stream("PUT", _with_digest(location, digest), body, size, 0)
            else:
                offset = 0
                while offset < size:
                    n = min(self.options.chunk_size, size - offset)
                    answer = self._stream("PATCH", location, body, n, offset)
                    if answer.status != 202 or not answer.header("Location"):
                        raise NetworkError(
                            f"the registry refused an upload chunk (HTTP {answer.status}: "
                            f"{registry_message(answer.body)})",
                            where=self.where,
                        )
                    location = urljoin(location, answer.header("Location") or "")
                    offset += n
                final = self._stream("PUT", _with_digest(location, digest), body, 0, size)
        except BaseException:
            self._cancel(location)
            raise
        if final.status == 201:
            return
        message = registry_message(final.body)
        if final.status == 400 and "DIGEST_INVALID" in message:
            raise IntegrityError(
                "the registry found that the uploaded bytes do not match their digest",
                where=f"{self.where}@{digest}",
                expected=digest,
                actual=message,
                hint="a local file changed while it was read: run `modelctl verify`",
            )
        raise NetworkError(
            f"the registry refused the upload (HTTP {final.status}: {message})",
            where=f"{self.where}@{digest}",
        )

    def _stream(self, method: str, url: str, body: Outgoing, n: int, offset: int) -> Answer:
        """One upload request carrying the next ``n`` bytes of ``body``."""
        headers = {"Content-Type": "application/octet-stream", **self.auth_headers("pull,push")}
        if method == "PATCH":
            headers["Content-Range"] = f"{offset}-{offset + n - 1}"
        try:
            with self._exchange(method, url, headers, n) as (conn, finish):
                left = n
                while left:
                    data = body.read(min(SEND_PIECE, left))
                    if not data:
                        raise IntegrityError(
                            "a local file got shorter while it was uploaded",
                            where=self.where,
                            hint="do not change the files while pushing",
                        )
                    conn.send(data)
                    left -= len(data)
                answer = finish()
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if answer.status in TRANSIENT_STATUSES or answer.status == 401:
            raise _Transient(f"HTTP {answer.status} ({registry_message(answer.body)})")
        if answer.status == 403:
            raise AuthError(
                f"the registry refused the upload (HTTP 403: {registry_message(answer.body)})",
                where=self.where,
                hint="these credentials lack push rights on this repository",
            )
        return answer


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})
