"""Uploading a blob: monolithic (``POST`` + ``PUT ?digest=``) up to the chunk size,
chunked (``PATCH`` with ``Content-Range``) above it, so no single request carries
gigabytes. A failed upload starts again from its ``POST`` (the registry keeps nothing of
an unfinished session), waiting as :mod:`modelctl.transfer.retry` says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol
from urllib.parse import urlencode

from modelctl.errors import AuthError, IntegrityError, NetworkError
from modelctl.oci.auth import registry_message
from modelctl.oci.blobs import cancel
from modelctl.oci.registry import Answer, Registry
from modelctl.transfer.http import TRANSPORT_ERRORS, describe
from modelctl.transfer.retry import RETRY_STATUSES, Backoff, ServerWait, server_wait
from modelctl.transfer.urls import BadUrl

SEND_PIECE: Final = 1024 * 1024


class Outgoing(Protocol):
    """A blob's bytes on their way out (hashed as they are read)."""

    def read(self, n: int) -> bytes: ...


class _Transient(Exception):
    def __init__(self, reason: str, told: ServerWait | None = None) -> None:
        super().__init__(reason)
        self.told = told


def upload(registry: Registry, digest: str, size: int, open_body: Callable[[], Outgoing]) -> None:
    """Upload a blob: monolithic up to ``chunk_size``, else in PATCH chunks.

    ``open_body`` gives the bytes from the start (again, on a retry). The registry
    checks the digest when the upload is committed; a refusal of the digest raises
    IntegrityError.
    """
    backoff = Backoff(registry.options.policy)
    while True:
        try:
            _upload_once(registry, digest, size, open_body)
            return
        except _Transient as exc:
            wait = backoff.next(exc.told)
            if wait is None:
                raise NetworkError(
                    f"the upload of {digest} failed {backoff.gave_up} ({exc})",
                    where=registry.where,
                    hint="check the registry and the network, then push again (blobs "
                    "already uploaded are not sent again)",
                ) from None
            registry.sleep(wait)


def _upload_once(
    registry: Registry, digest: str, size: int, open_body: Callable[[], Outgoing]
) -> None:
    uploads = registry.url(f"/v2/{registry.name}/blobs/uploads/")
    answer = registry.request(
        "POST", uploads, body=b"", actions="pull,push", what="an upload start"
    )
    if answer.status != 202 or not answer.header("Location"):
        raise NetworkError(
            f"the registry did not open an upload (HTTP {answer.status}: "
            f"{registry_message(answer.body)})",
            where=registry.where,
        )
    location = registry.location(answer.header("Location"), uploads, "an upload Location")
    body = open_body()
    chunk = registry.options.chunk_size
    try:
        if size <= chunk:
            final = _stream(registry, "PUT", _with_digest(location, digest), body, size, 0)
        else:
            offset = 0
            while offset < size:
                n = min(chunk, size - offset)
                answer = _stream(registry, "PATCH", location, body, n, offset)
                if answer.status != 202 or not answer.header("Location"):
                    raise NetworkError(
                        f"the registry refused an upload chunk (HTTP {answer.status}: "
                        f"{registry_message(answer.body)})",
                        where=registry.where,
                    )
                location = registry.location(
                    answer.header("Location"), location, "an upload Location"
                )
                offset += n
            final = _stream(registry, "PUT", _with_digest(location, digest), body, 0, size)
    except BaseException:
        cancel(registry, location)
        raise
    if final.status == 201:
        return
    message = registry_message(final.body)
    if final.status == 400 and "DIGEST_INVALID" in message:
        raise IntegrityError(
            "the registry found that the uploaded bytes do not match their digest",
            where=f"{registry.where}@{digest}",
            expected=digest,
            actual=message,
            hint="a local file changed while it was read: run `modelctl verify`",
        )
    raise NetworkError(
        f"the registry refused the upload (HTTP {final.status}: {message})",
        where=f"{registry.where}@{digest}",
    )


def _stream(
    registry: Registry, method: str, url: str, body: Outgoing, n: int, offset: int
) -> Answer:
    """One upload request carrying the next ``n`` bytes of ``body``."""
    headers = {"Content-Type": "application/octet-stream", **registry.auth_headers("pull,push")}
    if method == "PATCH":
        headers["Content-Range"] = f"{offset}-{offset + n - 1}"

    def write(send: Callable[[bytes], None]) -> None:
        left = n
        while left:
            data = body.read(min(SEND_PIECE, left))
            if not data:
                raise IntegrityError(
                    "a local file got shorter while it was uploaded",
                    where=registry.where,
                    hint="do not change the files while pushing",
                )
            send(data)
            left -= len(data)

    try:
        answer = registry.stream(method, url, headers, write, n)
    except BadUrl as exc:
        raise NetworkError(f"the registry sent {exc}", where=registry.where) from None
    except TRANSPORT_ERRORS as exc:
        raise _Transient(describe(exc)) from exc
    if answer.status in RETRY_STATUSES:
        told = server_wait(answer.status, answer.header("Retry-After"), answer.header("RateLimit"))
        raise _Transient(f"HTTP {answer.status} ({registry_message(answer.body)})", told)
    if answer.status == 401:
        raise _Transient(f"HTTP 401 ({registry_message(answer.body)})")
    if answer.status == 403:
        raise AuthError(
            f"the registry refused the upload (HTTP 403: {registry_message(answer.body)})",
            where=registry.where,
            hint="these credentials lack push rights on this repository",
        )
    return answer


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})
