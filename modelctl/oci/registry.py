"""A client for the OCI distribution spec (v1.1), as CNCF Distribution, Harbor, Zot and the
clouds' registries speak it: one repository, its requests, auth and retries. What is asked
of it is in :mod:`.manifests`, :mod:`.blobs` and :mod:`.upload`.

- **Transport.** :class:`modelctl.transfer.http.StdlibTransport`, the one HTTP stack of
  modelctl (one keep-alive connection per thread and origin, header and read timeouts,
  checked redirects), shared with the downloads of ``sync --from``. HTTPS with the
  system's CAs (plus ``--ca-cert``); plain HTTP only for a loopback registry or with
  ``--insecure`` (which also accepts an unverified certificate), found by trying TLS
  first, as Docker does for its insecure registries. Every request carries
  ``User-Agent: modelctl/<version>``, as the Hub client's do.
- **Auth.** :class:`modelctl.oci.auth.RegistryAuth` (Basic, or Bearer tokens per scope;
  which realms may see the credentials).
- **Retries.** :mod:`modelctl.transfer.retry`, the one retry policy: dropped connections
  and 408/429/5xx, waiting what ``Retry-After`` / ``RateLimit`` say, within the budget.
- **Errors.** Unreachable, refused, or failing again and again: NetworkError (exit 3);
  401/403: AuthError (exit 3) with the registry's own message; unknown repository, tag or
  manifest: ResolveError (exit 2). Secrets are never part of a message. A value the
  registry sends (a ``Location``, a realm, a token) is checked where it enters
  (:mod:`modelctl.transfer.urls`, :func:`modelctl.oci.auth.check_token`).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from modelctl.errors import AuthError, NetworkError
from modelctl.oci.auth import Credentials, RegistryAuth, registry_message
from modelctl.oci.reference import Reference
from modelctl.settings import request_headers
from modelctl.transfer.http import (
    TRANSPORT_ERRORS,
    Answer,
    AnswerTooLong,
    BodyWriter,
    StdlibTransport,
    Timeouts,
    describe,
)
from modelctl.transfer.retry import (
    DEFAULT_POLICY,
    RETRY_STATUSES,
    Backoff,
    RetryPolicy,
    server_wait,
)
from modelctl.transfer.urls import BadUrl, parse_url

MiB: Final = 1024 * 1024
MAX_ANSWER_BYTES: Final = 4 * MiB  # manifests (the distribution spec's limit), tokens, errors
DEFAULT_CHUNK: Final = 64 * MiB  # uploads larger than this go in PATCH chunks of this size

__all__ = ["Answer", "Registry", "RegistryOptions", "Traffic", "registry_message"]


@dataclass(frozen=True)
class RegistryOptions:
    insecure: bool = False  # plain HTTP, or HTTPS without verification, for any host
    ca_cert: Path | None = None  # a PEM bundle of CAs to trust besides the system's
    chunk_size: int = DEFAULT_CHUNK
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    policy: RetryPolicy = DEFAULT_POLICY  # per request, for dropped connections and 408/429/5xx
    # Hosts the user trusts with the registry's credentials for a token realm on
    # another origin (--token-host, MODELCTL_REGISTRY_TOKEN_HOSTS).
    token_hosts: tuple[str, ...] = ()


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
        self.options = options
        self.ssl_context = _ssl_context(options)
        self.transport = StdlibTransport(
            Timeouts(connect_s=options.connect_timeout_s, read_s=options.read_timeout_s),
            proxies={},
            ssl_context=self.ssl_context,
        )
        self.auth = RegistryAuth(ref.registry, credentials, options.token_hosts)
        self.scheme = "https"
        self.traffic = Traffic()
        self.sleep = sleep
        self._connected = False

    @property
    def credentials(self) -> Credentials | None:
        return self.auth.credentials

    # -- addresses ------------------------------------------------------------------
    @property
    def base(self) -> str:
        """``scheme://host[:port]``, the scheme found by :meth:`connect` (called here)."""
        self.connect()
        return f"{self.scheme}://{self.ref.registry}"

    def url(self, path: str) -> str:
        return self.base + path

    def blob_url(self, digest: str, name: str | None = None) -> str:
        return self.url(f"/v2/{name or self.name}/blobs/{digest}")

    @property
    def where(self) -> str:
        return f"{self.ref.registry}/{self.name}"

    def headers(self) -> dict[str, str]:
        """What every request carries: the user agent, as the Hub client sends it."""
        return {"User-Agent": request_headers(None)["user-agent"]}

    def location(self, text: str | None, base: str, what: str) -> str:
        """A ``Location`` the registry sent, checked (:func:`~modelctl.transfer.urls.parse_url`)."""
        try:
            return parse_url(text or "", base, what=what).text
        except BadUrl as exc:
            raise NetworkError(
                f"the registry sent {exc}",
                where=self.where,
                hint="the registry (or something between) is broken or hostile",
            ) from None

    # -- connecting -----------------------------------------------------------------
    def connect(self) -> None:
        """``GET /v2/``: pick HTTPS or (loopback / --insecure only) HTTP; learn the auth."""
        if self._connected:
            return
        try:
            answer = self._once("GET", self._ping_url(), self.headers())
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
            answer = None
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from exc
        if answer is None or answer.status in RETRY_STATUSES:
            answer = self.send("GET", self._ping_url(), self.headers(), what="GET /v2/")
        if answer.status == 401:
            self.auth.learn(answer, parse_url(self._ping_url()))
            if not self.auth.bearer and self.credentials is not None:
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
        headers = {**self.headers(), "Authorization": self.credentials.basic()}
        answer = self.send("GET", self._ping_url(), headers, what="a login")
        if answer.status in (401, 403):
            raise AuthError(
                f"the registry refused the credentials (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=self.ref.registry,
                hint=self.auth.credentials_hint(),
            )

    def _ping_url(self) -> str:
        return f"{self.scheme}://{self.ref.registry}/v2/"

    def _unreachable(self, exc: BaseException) -> NetworkError:
        return NetworkError(
            f"cannot reach the registry ({describe(exc)})",
            where=f"{self.scheme}://{self.ref.registry}",
            hint="check the address and port, that the registry is running, and the network",
        )

    # -- auth -----------------------------------------------------------------------
    def auth_headers(
        self, actions: str = "pull", extra_scopes: Sequence[str] = (), fresh: bool = False
    ) -> dict[str, str]:
        """The ``Authorization`` header for a request needing ``actions`` on this repo."""
        self.connect()
        scopes = [f"repository:{self.name}:{actions}", *extra_scopes]
        return self.auth.headers(scopes, self._token_fetch, fresh)

    def _token_fetch(self, url: str, headers: Mapping[str, str]) -> Answer:
        return self.send("GET", url, {**self.headers(), **headers}, what="a registry token")

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
        limit: int = MAX_ANSWER_BYTES,
        follow: bool = False,
    ) -> Answer:
        """One request with auth (renewed once on 401) and retries of transient failures.

        A 401/403 that persists raises AuthError with the registry's message; one from
        storage the registry redirected to (``follow``) is a NetworkError saying so.
        """
        base = {**self.headers(), **(headers or {})}

        def send(fresh: bool) -> Answer:
            auth = self.auth_headers(actions, extra_scopes, fresh)
            return self.send(
                method, url, {**base, **auth}, body, what=what, limit=limit, follow=follow
            )

        answer = send(False)
        if answer.status == 401 and not answer.redirected and self.auth.bearer:
            answer = send(True)
        if answer.redirected and answer.status in (401, 403):
            raise NetworkError(
                f"the storage the registry redirected {what or method} to refused it "
                f"(HTTP {answer.status})",
                where=self.where,
                hint="the registry's storage link expired or is misconfigured: run the "
                "command again; if it persists, the registry's storage is at fault",
            )
        if answer.status in (401, 403):
            raise AuthError(
                f"the registry refused {what or method} (HTTP {answer.status}: "
                f"{registry_message(answer.body)})",
                where=self.where,
                hint=self.auth.credentials_hint()
                if answer.status == 401
                else "these credentials lack access to this repository (push needs push rights)",
            )
        return answer

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        what: str,
        limit: int = MAX_ANSWER_BYTES,
        follow: bool = False,
    ) -> Answer:
        """One request (no auth of its own), retried as :mod:`modelctl.transfer.retry` says."""
        backoff = Backoff(self.options.policy)
        where = url.split("?")[0]
        while True:
            told = None
            try:
                answer = self._once(method, url, headers, body, limit=limit, follow=follow)
                if answer.status not in RETRY_STATUSES:
                    return answer
                told = server_wait(
                    answer.status, answer.header("Retry-After"), answer.header("RateLimit")
                )
                reason = f"HTTP {answer.status} ({registry_message(answer.body)})"
            except ssl.SSLCertVerificationError as exc:
                raise NetworkError(
                    f"a TLS certificate is not trusted ({exc.verify_message})",
                    where=where,
                    hint="pass --ca-cert FILE with the CA that signed it",
                ) from exc
            except BadUrl as exc:
                # A value the registry chose: asking again gets the same one.
                raise NetworkError(
                    f"{what or method}: the registry sent {exc}",
                    where=where,
                    hint="the registry (or something between) is broken or hostile",
                ) from None
            except AnswerTooLong:
                raise NetworkError(
                    f"{what or method}: the registry's answer is larger than modelctl reads",
                    where=where,
                    expected=f"at most {limit} bytes",
                    actual=f"more than {limit} bytes",
                ) from None
            except TRANSPORT_ERRORS as exc:
                reason = describe(exc)
            wait = backoff.next(told)
            if wait is None:
                raise NetworkError(
                    f"{what or method} failed {backoff.gave_up} ({reason})",
                    where=where,
                    hint="check the registry and the network, then run the command again",
                )
            self.sleep(wait)

    def _once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        limit: int = MAX_ANSWER_BYTES,
        follow: bool = False,
        write: BodyWriter | None = None,
        length: int = 0,
    ) -> Answer:
        answer = self.transport.request(
            method, url, headers, limit=limit, body=body, write=write, length=length,
            follow=follow,
        )  # fmt: skip
        self.traffic.add(requests=1, up=len(body) if body else length)
        return answer

    def stream(
        self, method: str, url: str, headers: Mapping[str, str], write: BodyWriter, length: int
    ) -> Answer:
        """One request whose ``length`` bytes of body ``write`` sends (an upload): not
        retried here (the upload starts again), its failures raised as they come."""
        return self._once(method, url, {**self.headers(), **headers}, write=write, length=length)
