"""Where a locked file's bytes come from, as the transfer engine needs to know it.

The engine (:mod:`modelctl.transfer.fetch`, :mod:`modelctl.transfer.segments`) deals in
URLs and bytes; it knows no Hub and no registry. A source hands it a :class:`Remote`:

- ``url(ref)``: where the file's bytes are (a GET, following redirects);
- ``headers()``: what every request carries (user agent, credentials);
- ``refused(status, headers, where, ref)``: the modelctl error for a 401/403/404 that is
  a verdict (not a retry), worded for that server (the Hub explains its refusals in
  ``X-Error-Code``; a registry does not);
- ``name``, ``hints``, ``secrets``: how messages name the server, what they advise, and
  what they must never show.

Implemented by :class:`modelctl.hub.source.HubRemote` and
:class:`modelctl.oci.source.RegistryRemote`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from modelctl.errors import AuthError, ModelctlError, ResolveError
from modelctl.lock.types import FileRef

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass


class Headers(Protocol):
    """What is read of an answer's headers (case-insensitive ``get``)."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Hints:
    """What a message advises, per kind of failure, for one kind of server."""

    auth: str  # the server refused our credentials
    missing: str  # the server has no such file
    mismatch: str  # the bytes did not match the lock (twice)
    rate_limited: str  # still 429 after every retry
    gave_up: str = "check the network and run `modelctl sync` again: it resumes"


class Remote(Protocol):
    """A server that holds locked files (see the module docstring)."""

    @property
    def name(self) -> str:
        """How messages name it: "the Hub", "the registry (host:port)"."""
        ...

    @property
    def hints(self) -> Hints: ...

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings never to show in a message (tokens)."""
        ...

    def url(self, ref: FileRef) -> str: ...

    def headers(self) -> dict[str, str]:
        """A fresh dict: callers add ``Range`` to it."""
        ...

    def refused(self, status: int, headers: Headers, where: str, ref: FileRef) -> ModelctlError:
        """The error for a 401, 403 or 404 answered by the server itself (not by storage
        it redirected to: those are retried)."""
        ...


def plain_refusal(remote: Remote, status: int, where: str) -> ModelctlError:
    """A refusal worded from the status alone (a server that does not explain them)."""
    if status == 404:
        return ResolveError(
            f"{remote.name} has no such file (HTTP 404)", where=where, hint=remote.hints.missing
        )
    return AuthError(
        f"{remote.name} refused the download (HTTP {status})",
        where=where,
        hint=remote.hints.auth,
    )
