"""The one checked entry point for a URL that came from a server or the disk.

A ``Location`` (a redirect, an upload session), a Bearer ``realm``, a next-page link: each
is text a server chose. ``urllib.parse`` accepts almost anything and fails late, outside
the errors a transport raises (``urlsplit("http://h:99999/").port`` is a ``ValueError``),
and ``http.client`` refuses control characters only when the request is sent. So every
such value is parsed here, once, where it enters:

- at most :data:`MAX_URL_CHARS` characters, printable ASCII only (no space, no CR/LF, no
  NUL: a Location is sent back as a request line);
- scheme ``http`` or ``https``, a host, a port from 1 to 65535;
- relative references are resolved against the URL they came with.

A bad value raises :class:`BadUrl`, an ``http.client.InvalidURL``: an HTTP error every
caller already handles as a failed request (never a traceback), with a message that
names what was wrong and shows the value cut short.
"""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING, Final
from urllib.parse import SplitResult, urljoin, urlsplit

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

MAX_URL_CHARS: Final = 8192  # nginx's default request line limit; S3 signed URLs are ~2 KB
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port


class BadUrl(http.client.InvalidURL):
    """A URL from a server or the disk that modelctl will not use."""

    def __init__(self, what: str, why: str, text: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{what} is not a usable URL ({why}): {shown!r}")
        self.why = why


@dataclass(frozen=True)
class Url:
    """A checked absolute http(s) URL."""

    text: str
    scheme: str  # lowercase
    host: str  # lowercase, without brackets for IPv6
    port: int
    path: str
    query: str

    @property
    def origin(self) -> Origin:
        return self.scheme, self.host, self.port

    @property
    def target(self) -> str:
        """The request target: path and query."""
        return (self.path or "/") + (f"?{self.query}" if self.query else "")

    @property
    def netloc(self) -> str:
        """``host[:port]`` as a Host header names it (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def without_query(self) -> str:
        """The URL for messages: no query (signed URLs carry secrets there)."""
        return f"{self.scheme}://{self.netloc}{self.path or '/'}"


def parse_url(text: str, base: str | None = None, *, what: str = "a URL") -> Url:
    """``text`` (resolved against ``base`` if relative) as a checked :class:`Url`; raises
    :class:`BadUrl`. ``what`` names the value in the message ("a redirect Location")."""
    if not isinstance(text, str) or not text:
        raise BadUrl(what, "empty", str(text))
    if len(text) > MAX_URL_CHARS:
        raise BadUrl(what, f"longer than {MAX_URL_CHARS} characters", text)
    if not all(0x21 <= ord(c) <= 0x7E for c in text):
        raise BadUrl(what, "characters other than printable ASCII", text)
    try:
        joined = urljoin(base, text) if base is not None else text
        parts: SplitResult = urlsplit(joined)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError as exc:  # "Port out of range", "Invalid IPv6 URL", ...
        raise BadUrl(what, str(exc), text) from None
    if scheme not in DEFAULT_PORTS:
        raise BadUrl(what, f"scheme {scheme or 'none'}, not http or https", text)
    if not host:
        raise BadUrl(what, "no host", text)
    if port == 0:
        raise BadUrl(what, "port 0", text)
    if parts.username is not None or parts.password is not None:
        raise BadUrl(what, "credentials in the URL", text)
    return Url(joined, scheme, host, port or DEFAULT_PORTS[scheme], parts.path, parts.query)


def origin(url: str) -> Origin:
    """``(scheme, host, port)`` of a checked URL (raises :class:`BadUrl`)."""
    return parse_url(url).origin
