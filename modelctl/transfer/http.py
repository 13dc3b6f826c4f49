"""HTTP for downloads: transports, redirects, timeouts. Knows nothing of locks or files.

:class:`Transport` is the seam :mod:`modelctl.transfer.fetch` sends its GETs through (tests and
future sources plug in their own). Two implementations:

- :class:`StdlibTransport`: ``http.client`` with one keep-alive connection per thread and
  origin; the body is read straight into the caller's reused buffer. Measured on loopback
  (2 cores, 512 MiB file, same server): httpx2 (huggingface_hub's session) ``iter_raw``
  gives about 0.47 GB/s, ``http.client`` about 1.5 GB/s.
  It speaks HTTPS with the verification rules of huggingface_hub's httpx2 session
  (``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, else the system's store: the very context
  httpcore2 builds) and goes through ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``
  (``NO_PROXY`` honoured): HTTPS through a ``CONNECT`` tunnel, HTTP as an absolute-URI
  request to the proxy.
- :class:`HttpxTransport`: an httpx2 client (the caller's: the Hub source passes
  huggingface_hub's shared session), used only for proxies ``http.client`` cannot reach
  (an ``https://`` or ``socks`` proxy URL).

Both follow redirects (at most :data:`MAX_REDIRECTS`), drop ``Authorization`` when a
redirect leaves the origin, send ``Accept-Encoding: identity``, and tell the caller
whether the answer came from where the server redirected (``Response.redirected``).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import unquote, urlsplit

from modelctl.transfer.urls import Origin, parse_url

if TYPE_CHECKING:
    from dataclasses import dataclass

    import httpx2
else:
    from modelctl.values import dataclass

MAX_REDIRECTS: Final = 10
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


BodyWriter = Callable[[Callable[[bytes], None]], None]  # sends a body with the given send()


class AnswerTooLong(http.client.HTTPException):
    """An answer with more body than the caller reads into memory."""


@dataclass(frozen=True)
class Answer:
    """A whole answer read into memory (:meth:`StdlibTransport.request`)."""

    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes
    url: str  # where it came from (after redirects)
    redirected: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Response(Protocol):
    status: int
    redirected: bool  # the answer comes from where the server redirected (its file storage)

    def header(self, name: str) -> str | None: ...

    def readinto(self, buf: memoryview) -> int:
        """Fill the start of ``buf`` with the body's next bytes, after at most one socket
        read (so a slow server still gives steady progress and prompt Ctrl-C); 0 at the end."""
        ...

    def close(self) -> None:
        """Release the connection (reusable only if the body was read to its end)."""
        ...


class Transport(Protocol):
    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        """Send a GET, following redirects; raise OSError / HTTP errors on failure."""
        ...


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0  # to connect, and then to receive each part of the headers
    read_s: float = 60.0  # a stalled socket read fails after this, and is retried
    # The status line and headers in total (settings.Limits.headers_s): the per-read
    # timeout restarts with every byte, so a trickle would extend it forever.
    headers_s: float = 60.0

    @classmethod
    def for_download(cls, seconds: float, headers_s: float = 60.0) -> Timeouts:
        """HF_HUB_DOWNLOAD_TIMEOUT (``Settings.download_timeout_s``) as huggingface_hub
        uses it: for the connection and the headers; a body read may stall as long."""
        return cls(
            connect_s=seconds, read_s=max(cls.read_s, seconds), headers_s=max(headers_s, seconds)
        )


DEFAULT_TIMEOUTS: Final = Timeouts()


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # "Basic ..." from user:password in the proxy URL

    @classmethod
    def parse(cls, url: str) -> Proxy | None:
        """An ``http://[user:pass@]host[:port]`` proxy, or None for one http.client cannot
        speak to (https://, socks...)."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme.lower() != "http" or not parts.hostname:
            return None
        auth = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return cls(parts.hostname, parts.port or 80, auth)


def system_proxies() -> dict[str, str]:
    """``urllib.request.getproxies()``: the proxies the environment (and on macOS and
    Windows the system settings) name. On Linux getproxies reads only ``*_proxy``
    variables, so with none set the answer is ``{}`` without importing urllib.request
    (about 10 ms of start-up, issue 19); anything else is urllib's own answer."""
    if sys.platform.startswith("linux") and not any(
        name[-6:].lower() == "_proxy" for name in os.environ
    ):
        return {}
    import urllib.request

    return urllib.request.getproxies()


def proxy_for(origin: Origin, proxies: Mapping[str, str]) -> str | None:
    """The proxy URL for a target (``urllib.request.getproxies()`` names), honouring
    ``no_proxy``."""
    scheme, host, _port = origin
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    if "no" in proxies:
        import urllib.request

        # proxy_bypass_environment: NO_PROXY as urllib reads it (not in typeshed).
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if bypass(host, dict(proxies)):
            return None
    return url


def default_ssl_context() -> ssl.SSLContext:
    """The context huggingface_hub's httpx2 session verifies with (httpcore2's default):
    SSL_CERT_FILE, else SSL_CERT_DIR, else the system store. Read when the first HTTPS
    connection is made, never at import (nor for plain HTTP: httpcore2 costs start-up)."""
    import httpcore2

    return httpcore2.default_ssl_context()


class HttpxError(OSError):
    """An httpx2 failure (its cause), so every transport fails with TRANSPORT_ERRORS."""


class _StdlibResponse:
    def __init__(
        self, resp: http.client.HTTPResponse, release: Callable[[bool], None], redirected: bool
    ) -> None:
        self._resp = resp
        self._release = release
        self.status = resp.status
        self.redirected = redirected

    def header(self, name: str) -> str | None:
        return self._resp.getheader(name)

    def readinto(self, buf: memoryview) -> int:
        resp = self._resp
        if resp.chunked or resp.length is None or resp.fp is None:
            data = resp.read1(len(buf))
            buf[: len(data)] = data
            return len(data)
        # Straight from the socket into a reused buffer: HTTPResponse.read1 allocates a
        # fresh bytes object per call, whose page faults cost more than the hashing.
        # ``length`` is kept up to date, as HTTPResponse's own reads do.
        want = min(len(buf), resp.length)
        if want == 0:
            return 0
        got = resp.fp.readinto1(buf[:want])
        resp.length -= got
        return got

    def close(self) -> None:
        complete = self._resp.length == 0 or self._resp.isclosed()
        if complete:
            self._resp.read()  # with nothing left, this marks the response closed
        self._release(complete and not self._resp.will_close)


class StdlibTransport:
    """``http.client`` with one keep-alive connection per thread and origin."""

    def __init__(
        self,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        proxies: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeouts = timeouts
        self._local = threading.local()
        self._ssl_given = ssl_context
        self._ssl_lock = threading.Lock()
        self._proxies = dict(proxies or {})

    @property
    def _ssl(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl_given is None:
                self._ssl_given = default_ssl_context()
            return self._ssl_given

    def _proxy(self, origin: Origin) -> Proxy | None:
        url = proxy_for(origin, self._proxies)
        if url is None:
            return None
        proxy = Proxy.parse(url)
        if proxy is None:
            raise http.client.InvalidURL("a proxy http.client cannot use (not http://)")
        return proxy

    def _pool(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        pool: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(
            self._local, "pool", None
        )
        if pool is None:
            pool = {}
            self._local.pool = pool
        return pool

    def _connection(self, origin: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        pool = self._pool()
        conn = pool.pop(origin, None)
        if conn is not None:
            return conn, True
        scheme, host, port = origin
        proxy = self._proxy(origin)
        timeout = self._timeouts.connect_s
        if scheme == "https":
            if proxy is None:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl)
            else:
                # TLS to the target inside a CONNECT tunnel: the proxy sees no request.
                conn = http.client.HTTPSConnection(
                    proxy.host, proxy.port, timeout=timeout, context=self._ssl
                )
                auth = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else {}
                conn.set_tunnel(host, port, headers=auth)
        elif proxy is not None:
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn, False

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        hdrs = {**headers, "Accept-Encoding": "identity"}
        for hops in range(MAX_REDIRECTS + 1):
            origin = _origin(url)
            resp, conn = self._send(origin, url, hdrs)
            location = resp.getheader("Location")
            if resp.status in REDIRECT_STATUSES and location:
                resp.read()  # a redirect's body is small: drain it to reuse the connection
                self._keep(origin, conn, resp)
                url, hdrs = _redirect(url, location, origin, hdrs)
                continue

            return _StdlibResponse(resp, self._releaser(origin, conn), redirected=hops > 0)
        raise http.client.HTTPException(f"more than {MAX_REDIRECTS} redirects")

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        limit: int,
        body: bytes | None = None,
        write: BodyWriter | None = None,
        length: int = 0,
        follow: bool = False,
    ) -> Answer:
        """One request whose answer is read whole, at most ``limit`` bytes of body (else
        :class:`AnswerTooLong`): what an OCI registry is asked (manifests, tokens, small
        blobs, uploads), on the same pool, timeouts and checks as :meth:`get`.

        The body is ``body``, or ``length`` bytes that ``write`` sends (given ``send``);
        a streamed body is sent once (a failure is the caller's to retry). With
        ``follow``, redirects are followed as by :meth:`get`.
        """
        hdrs = dict(headers)
        for hops in range(MAX_REDIRECTS + 1):
            origin = _origin(url)
            resp, conn = self._send(origin, url, hdrs, method, body, write, length)
            try:
                data = resp.read(limit + 1)
            except (OSError, http.client.HTTPException):
                conn.close()
                raise
            if len(data) > limit:
                conn.close()
                raise AnswerTooLong(f"an answer longer than {limit} bytes")
            if resp.isclosed() and not resp.will_close:
                self._pool()[origin] = conn
            else:
                conn.close()
            location = resp.getheader("Location")
            if follow and resp.status in REDIRECT_STATUSES and location:
                url, hdrs = _redirect(url, location, origin, hdrs)
                continue
            headers_lower = {k.lower(): v for k, v in resp.getheaders()}
            return Answer(resp.status, headers_lower, data, url, redirected=hops > 0)
        raise http.client.HTTPException(f"more than {MAX_REDIRECTS} redirects")

    def _releaser(
        self, origin: tuple[str, str, int], conn: http.client.HTTPConnection
    ) -> Callable[[bool], None]:
        def release(reuse: bool) -> None:
            if reuse:
                self._pool()[origin] = conn
            else:
                conn.close()

        return release

    def _send(
        self,
        origin: tuple[str, str, int],
        url: str,
        headers: Mapping[str, str],
        method: str = "GET",
        body: bytes | None = None,
        write: BodyWriter | None = None,
        length: int = 0,
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        parsed = parse_url(url)
        target = parsed.target
        proxy = self._proxy(origin) if origin[0] == "http" else None
        if proxy is not None:
            # Plain HTTP through a proxy: the absolute URI in the request line.
            target = f"http://{parsed.netloc}{target}"
            if proxy.authorization:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        while True:
            conn, reused = self._connection(origin)
            watchdog = _HeaderWatchdog(conn, self._timeouts.headers_s)
            try:
                if write is None:
                    conn.request(method, target, body=body, headers=dict(headers))
                else:
                    conn.putrequest(method, target, skip_accept_encoding=True)
                    for k, v in headers.items():
                        conn.putheader(k, v)
                    conn.putheader("Content-Length", str(length))
                    conn.endheaders()
                    if conn.sock is not None:
                        conn.sock.settimeout(self._timeouts.read_s)
                    write(conn.send)
                with watchdog:
                    resp = conn.getresponse()
                if watchdog.fired:
                    # The shutdown may end the headers early without an error (EOF).
                    raise http.client.IncompleteRead(b"")
                if conn.sock is not None:
                    conn.sock.settimeout(self._timeouts.read_s)
                return resp, conn
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if watchdog.fired:
                    raise TimeoutError(
                        f"no complete answer headers within {self._timeouts.headers_s:g} s"
                    ) from exc
                if not reused or write is not None:
                    raise
                # A kept-alive connection the server has closed meanwhile: one fresh try.

    def _keep(
        self,
        origin: tuple[str, str, int],
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
    ) -> None:
        if resp.will_close:
            conn.close()
        else:
            self._pool()[origin] = conn


class _HeaderWatchdog:
    """Shuts the connection down when the answer's headers take longer than ``seconds``
    in total: the socket timeout alone restarts with every byte, so a server sending a
    header byte every few seconds would hold the download forever."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self._conn = conn
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self.fired = False

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            # The reader blocked in recv() wakes up with an error; the connection is dropped.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> None:
        self._timer.start()

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _origin(url: str) -> tuple[str, str, int]:
    return parse_url(url).origin


def _redirect(
    url: str, location: str, origin: Origin, headers: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """Where a redirect leads (checked: :func:`modelctl.transfer.urls.parse_url`), and the
    headers to send there."""
    target = parse_url(location, url, what="a redirect Location")
    if target.origin != origin:
        # Like browsers and httpx: credentials never follow a redirect to another host
        # (the Hub sends LFS files to a CDN with a signed URL).
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    return target.text, headers


class _HttpxResponse:
    def __init__(self, resp: httpx2.Response) -> None:
        self._resp = resp
        self._chunks: Iterator[bytes] = resp.iter_raw()
        self._left = memoryview(b"")
        self.status = resp.status_code
        self.redirected = bool(resp.history)

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    def readinto(self, buf: memoryview) -> int:
        # iter_raw yields what one socket read gave (64 KiB at most).
        if not self._left:
            import httpx2

            try:
                self._left = memoryview(next(self._chunks, b""))
            except httpx2.HTTPError as exc:
                raise HttpxError(describe(exc)) from exc
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        import httpx2

        try:
            self._resp.close()
        except httpx2.HTTPError as exc:
            raise HttpxError(describe(exc)) from exc


class HttpxTransport:
    """An httpx2 client (default: a new one, proxies from the environment)."""

    def __init__(
        self, client: httpx2.Client | None = None, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        import httpx2  # only behind a proxy http.client cannot use: it costs start-up

        self._client = client if client is not None else httpx2.Client()
        self._timeout = httpx2.Timeout(timeouts.read_s, connect=timeouts.connect_s)

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        import httpx2

        hdrs = {**headers, "Accept-Encoding": "identity"}
        try:
            request = self._client.build_request("GET", url, headers=hdrs, timeout=self._timeout)
            sent = self._client.send(request, stream=True, follow_redirects=True)
        except httpx2.HTTPError as exc:
            raise HttpxError(describe(exc)) from exc
        return _HttpxResponse(sent)


def default_transport(
    proxies: Mapping[str, str],
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    httpx_client: Callable[[], httpx2.Client] | None = None,
) -> Transport:
    """The fast stdlib transport, through the configured proxies
    (``urllib.request.getproxies()``); httpx2 (``httpx_client()``, default a new client)
    only for a proxy http.client cannot use."""
    if any(Proxy.parse(proxies[k]) is None for k in ("http", "https", "all") if proxies.get(k)):
        client = httpx_client() if httpx_client is not None else None
        return HttpxTransport(client, timeouts=timeouts)
    return StdlibTransport(timeouts, proxies)


TRANSPORT_ERRORS: Final = (OSError, http.client.HTTPException)  # HttpxError is an OSError


def abort(resp: Response) -> None:
    """Close a response whose body was not read to its end (its connection is dropped)."""
    # The connection is being thrown away: a failure to close it changes nothing.
    with contextlib.suppress(*TRANSPORT_ERRORS):
        resp.close()


def header_int(text: str | None) -> int | None:
    """An integer header (``Content-Length``), or None when absent or malformed."""
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def describe(exc: BaseException) -> str:
    """A transport failure in one line, for messages (never a URL's token: none is sent in URLs)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
