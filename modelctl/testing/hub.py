"""A Hugging Face Hub-compatible HTTP server on loopback, for tests (stdlib only).

The package: :mod:`modelctl.testing.repos` (what is served),
:mod:`modelctl.testing.faults` (what goes wrong), this module (the server, its request
log, and ``python -m modelctl.testing.hub``).

``--root DIR`` lays out the repos: ``DIR/<org>/<name>/<branch>/...`` is model repo
``org/name`` at branch ``<branch>``; ``DIR/@datasets/<org>/<name>/<branch>/...`` is a
dataset repo. Each branch's commit is a sha1 over its content, so rewriting a file on
disk is a new commit. Snapshots seen earlier stay addressable by their commit for
metadata (model_info, tree); their files are served only while the bytes are unchanged.

It speaks the endpoints huggingface_hub 2.x uses: repo info (``?blobs=true``), the
paginated tree, HEAD/GET ``/resolve/`` with Range, typed 404s, and optional bearer-token
auth. :class:`Faults` injects failures at runtime (dropped connections, status codes,
flipped bytes, CDN-like redirects, throttling); every request is recorded for assertions.

Run it standalone with ``python -m modelctl.testing.hub --root DIR --port 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hmac
import json
import logging
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from modelctl.testing.faults import PLAIN, BodyPlan, Faults, public_field_names
from modelctl.testing.repos import (
    DEFAULT_LFS_THRESHOLD,
    SHA256_RE,
    FileEntry,
    HubError,
    RepoRef,
    RepoStore,
    RepoType,
    entry_not_found,
    repo_info,
    tree_page,
)

__all__ = ["Faults", "LocalHub", "RequestRecord", "main"]

logger = logging.getLogger(__name__)


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_LOOP_CHUNK = 256 * 1024


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server answered it (the token is never recorded)."""

    method: str
    path: str  # URL-decoded path, without the query
    query: str  # raw query string
    range: str | None  # the Range header, as sent
    status: int
    bytes_sent: int  # body bytes actually written


# --------------------------------------------------------------------------- ranges


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single satisfiable range; None = send everything.

    Multi-range and malformed headers are ignored (RFC 9110 allows it); an unsatisfiable
    range raises 416.
    """
    match = _RANGE_RE.match(header) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        if int(last) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(int(last), size - 1) if last else size - 1


def _unsatisfiable(size: int) -> HubError:
    return HubError(
        416, "Requested range not satisfiable", None, [("Content-Range", f"bytes */{size}")]
    )


def _flip(data: bytes, position: int, offset: int | None) -> bytes:
    """data (read at file position) with the byte at offset inverted, if it is inside."""
    if offset is None or not position <= offset < position + len(data):
        return data
    corrupted = bytearray(data)
    corrupted[offset - position] ^= 0xFF
    return bytes(corrupted)


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\n", " ")


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "modelctl-hub/1"
    # Headers and body go in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every small keep-alive response.
    disable_nagle_algorithm = True

    _status = 0
    _sent = 0
    _logged: RequestRecord | None = None
    _header_delay: float | None = None  # trickle the next answer's headers (see Faults)

    def version_string(self) -> str:
        return self.server_version

    @property
    def hub(self) -> LocalHub:
        server = self.server
        assert isinstance(server, _Server)
        return server.hub

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr; the request log has them.
        logger.debug("%s %s", self.address_string(), format % args)

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        self._status, self._sent, self._logged = 0, 0, None
        split = urlsplit(self.path)
        try:
            if self.command not in ("GET", "HEAD"):
                self.close_connection = True  # a request body we did not read may follow
                raise HubError(405, f"Method {self.command} not allowed")
            self._route(split.path, split.query)
        except HubError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-response
        except Exception:
            logger.exception("local hub: error while answering %s %s", self.command, split.path)
            self.close_connection = True
            if not self._status:
                with contextlib.suppress(OSError):
                    self._send_json(500, {"error": "internal error in the local hub"})
        finally:
            self._log_outcome()

    def _record_for(self, status: int, bytes_sent: int) -> RequestRecord:
        split = urlsplit(self.path)
        path, query = unquote(split.path), split.query
        return RequestRecord(
            self.command, path, query, self.headers.get("Range"), status, bytes_sent
        )

    def _log_outcome(self) -> None:
        """Log a request that never started a response, or correct a short body's count."""
        if self._logged is None:
            self.hub._record(self._record_for(self._status, self._sent))
        elif self._logged.bytes_sent != self._sent:
            self.hub._amend(self._logged, replace(self._logged, bytes_sent=self._sent))

    def _route(self, raw_path: str, raw_query: str) -> None:
        seg = raw_path.strip("/").split("/")
        query = parse_qs(raw_query)
        if len(seg) == 2 and seg[0] == "blobs":
            self._blob(unquote(seg[1]))
            return
        self._check_auth()
        if len(seg) >= 6 and seg[:2] == ["api", "resolve-cache"]:
            # /api/resolve-cache/{models|datasets}/{org}/{name}/{commit}/{path}
            repo_type: RepoType = "model" if seg[2] == "models" else "dataset"
            repo = RepoRef(repo_type, f"{unquote(seg[3])}/{unquote(seg[4])}")
            self._resolve(repo, unquote(seg[5]), unquote("/".join(seg[6:])), cached=True)
            return
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in ("models", "datasets"):
            repo_type = "model" if seg[1] == "models" else "dataset"
            repo = RepoRef(repo_type, f"{unquote(seg[2])}/{unquote(seg[3])}")
            self._api(repo, seg[4:], query, raw_path)
            return
        if len(seg) >= 5 and seg[0] == "datasets" and seg[3] == "resolve":
            repo = RepoRef("dataset", f"{unquote(seg[1])}/{unquote(seg[2])}")
            self._resolve(repo, unquote(seg[4]), unquote("/".join(seg[5:])))
            return
        if len(seg) >= 4 and seg[2] == "resolve":
            repo = RepoRef("model", f"{unquote(seg[0])}/{unquote(seg[1])}")
            self._resolve(repo, unquote(seg[3]), unquote("/".join(seg[4:])))
            return
        raise HubError(404, "Not Found")

    def _check_auth(self) -> None:
        token = self.hub._token
        if token is None:
            return
        sent = self.headers.get("Authorization")
        if not sent:
            raise HubError(401, "Access to this repo is restricted: authenticate", "GatedRepo")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            # The message huggingface_hub recognises as a bad token (not a missing repo).
            raise HubError(401, "Invalid credentials in Authorization header")

    # ---------------------------------------------------------------- endpoints

    def _check_repo_access(self, repo: RepoRef) -> None:
        """What the Hub answers for a gated repo or, without a token, a missing one."""
        faults = self.hub.faults
        sent = self.headers.get("Authorization")
        granted = faults.gated.get(repo.repo_id)
        if granted is not None:
            page = f"{self.hub.url}/{'' if repo.repo_type == 'model' else 'datasets/'}"
            page += repo.repo_id
            if not sent:
                raise HubError(
                    401,
                    f"Access to model {repo.repo_id} is restricted. You must have access to "
                    "it and be authenticated to access it. Please log in.",
                    "GatedRepo",
                )
            if not hmac.compare_digest(sent.encode(), f"Bearer {granted}".encode()):
                raise HubError(
                    403,
                    f"Access to model {repo.repo_id} is restricted and you are not in the "
                    f"authorized list. Visit {page} to ask for access.",
                    "GatedRepo",
                )
        if faults.missing_repo_401 and not sent:
            try:
                self.hub._store.repo_dir(repo)
            except HubError:
                raise HubError(
                    401,
                    "Repository not found",  # the Hub's own words: it never says "private"
                    "RepoNotFound",
                ) from None

    def _api(self, repo: RepoRef, rest: list[str], query: dict[str, list[str]], raw: str) -> None:
        store = self.hub._store
        self._check_repo_access(repo)
        self._check_rate_limit()
        injected = self.hub.faults.take_api_status()
        if injected is not None:
            raise HubError(
                injected, f"Injected fault: HTTP {injected}", None, self._wait_headers(injected)
            )
        if not rest or (rest[0] == "revision" and len(rest) >= 2):
            revision = unquote("/".join(rest[1:])) if rest else "main"
            blobs = _flag(query, "blobs") and not self.hub.faults.omit_metadata
            info = repo_info(store.snapshot(repo, revision), blobs)
            body = self.hub.faults.repo_info_body
            self._send_json(200, self.hub.faults.patch_repo_info(info), raw=body)
        elif rest[0] == "tree" and len(rest) >= 2:
            snap = store.snapshot(repo, unquote(rest[1]))
            items = tree_page(
                snap, unquote("/".join(rest[2:])).strip("/"), _flag(query, "recursive")
            )
            if self.hub.faults.omit_metadata:
                items = [{"type": i["type"], "path": i["path"]} for i in items]
            self._send_tree_page(items, query, raw)
        else:
            raise HubError(404, "Not Found")

    def _send_tree_page(
        self, items: list[dict[str, Any]], query: dict[str, list[str]], raw_path: str
    ) -> None:
        size = self.hub._page_size
        cursor = query.get("cursor", ["0"])[0] or "0"
        if not cursor.isdigit():
            raise HubError(400, f"Invalid cursor: {cursor}")
        start = int(cursor)
        page = items[start : start + size]
        headers: list[tuple[str, str]] = []
        if start + size < len(items):
            params = {k: v[0] for k, v in query.items()} | {"cursor": str(start + size)}
            host = self.headers.get("Host") or self.hub.url.split("://", 1)[1]
            link = f"{self.hub.scheme}://{host}{raw_path}?{urlencode(params)}"
            headers.append(("Link", f'<{link}>; rel="next"'))
        self._send_json(200, page, headers)

    def _resolve(self, repo: RepoRef, revision: str, path: str, cached: bool = False) -> None:
        store = self.hub._store
        self._check_repo_access(repo)
        snap = store.snapshot(repo, revision)
        found = snap.by_path.get(path)
        if found is None:
            raise entry_not_found(snap.commit, path)
        entry = store.current(found, snap.commit)
        faults = self.hub.faults
        if self.command == "GET":
            self._maybe_injected_status(entry.path)
        headers = [("X-Repo-Commit", snap.commit), ("ETag", f'"{entry.oid}"')]
        echo = faults.echo_auth_location
        if echo is not None and self.command == "GET" and faults.should_apply(entry.path):
            auth = self.headers.get("Authorization") or ""
            self._send_empty(302, [*headers, ("Location", echo + auth.replace(" ", "%20"))])
            return
        if entry.lfs:
            linked_size = faults.linked_size or str(entry.size)
            headers += [("X-Linked-Etag", f'"{entry.oid}"'), ("X-Linked-Size", linked_size)]
            if faults.should_redirect(entry.path):
                location = (
                    faults.redirect_location or f"{self.hub._blob_origin()}/blobs/{entry.oid}"
                )
                self._send_empty(302, [*headers, ("Location", location)])
                return
        elif faults.resolve_cache_redirect and not cached and faults.should_apply(entry.path):
            # The Hub sends small files to a cached copy on its own origin: a relative 307.
            kind = "models" if repo.repo_type == "model" else "datasets"
            location = f"/api/resolve-cache/{kind}/{repo.repo_id}/{snap.commit}/{entry.path}"
            self._send_empty(307, [*headers, ("Location", quote(location))])
            return
        self._send_content(entry, headers)

    def _blob(self, sha256: str) -> None:
        """The CDN stand-in: content by sha256, no auth (like a signed URL)."""
        known = self.hub._store.blob(sha256) if SHA256_RE.match(sha256) else None
        if known is None:
            raise HubError(404, "No such blob")
        found, commit = known
        failure = self.hub.faults.blob_failure(found.path)
        if failure is not None:
            raise HubError(failure, f"Injected blob failure (HTTP {failure})")
        if self.hub.faults.cdn_rejects_authorization and self.headers.get("Authorization"):
            # What S3-style signed URLs answer when a bearer token comes along.
            raise HubError(400, "Only one auth mechanism allowed; signed URL and Authorization")
        entry = self.hub._store.current(found, commit)
        if self.command == "GET":
            self._maybe_injected_status(entry.path)
        # X-Repo-Commit lets a client that followed a same-origin redirect complete its
        # metadata (huggingface_hub needs it on the final HEAD response).
        self._send_content(
            entry,
            [("ETag", f'"{entry.oid}"'), ("X-Repo-Commit", commit)],
            ignore_range=self.hub.faults.cdn_ignores_range,
        )

    def _check_rate_limit(self) -> None:
        left = self.hub.faults.rate_limit_left()
        if left is not None:
            raise HubError(
                429,
                "You have been rate-limited; you can retry this action in about 5 minutes.",
                None,
                [
                    ("RateLimit", f'"resolvers";r=0;t={left}'),
                    ("RateLimit-Policy", '"fixed window";"resolvers";q=3000;w=300'),
                ],
            )

    def _maybe_injected_status(self, path: str) -> None:
        self._check_rate_limit()
        status = self.hub.faults.take_status(path)
        if status is None:
            return
        raise HubError(status, f"Injected fault: HTTP {status}", None, self._wait_headers(status))

    def _wait_headers(self, status: int) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        faults = self.hub.faults
        if status in (429, 503) and faults.retry_after is not None:
            headers.append(("Retry-After", str(faults.retry_after)))
        if status == 429 and faults.rate_limit_reset is not None:
            headers.append(("RateLimit", f'"resolvers";r=0;t={faults.rate_limit_reset}'))
            headers.append(("RateLimit-Policy", '"fixed window";"resolvers";q=3000;w=300'))
        return headers

    # ---------------------------------------------------------------- responses

    def _send_content(
        self, entry: FileEntry, headers: list[tuple[str, str]], ignore_range: bool = False
    ) -> None:
        faults = self.hub.faults
        delay = faults.header_delay(entry.path) if self.command == "GET" else None
        if delay:
            time.sleep(delay)
        if (
            faults.gzip_text
            and not entry.lfs
            and _accepts_gzip(self.headers.get("Accept-Encoding"))
        ):
            self._send_gzip(entry, headers)
            return
        byte_range = None if ignore_range else _parse_range(self.headers.get("Range"), entry.size)
        if self.command == "GET" and faults.ignores_range(entry.path):
            byte_range = None
        start, last = byte_range if byte_range is not None else (0, entry.size - 1)
        length = last - start + 1
        headers = [
            *headers,
            ("Accept-Ranges", "bytes"),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(length)),
        ]
        if byte_range is not None:
            headers.append(("Content-Range", f"bytes {start}-{last}/{entry.size}"))
        is_get = self.command == "GET"
        plan = self.hub.faults.body_plan(entry.path, entry.size) if is_get else PLAIN
        faults = self.hub.faults
        if is_get and faults.header_byte_delay_s is not None and faults.should_apply(entry.path):
            self._header_delay = faults.header_byte_delay_s
        limit = length if plan.drop_after is None else min(length, plan.drop_after)
        with entry.fs_path.open("rb") as f:  # opened before the headers: a vanished file is a 500
            self._start(206 if byte_range is not None else 200, headers, limit)
            if is_get:
                self._send_body(f, start, length, limit, plan)

    def _send_gzip(self, entry: FileEntry, headers: list[tuple[str, str]]) -> None:
        """The whole file gzip-encoded (the Hub compresses text for clients that allow it)."""
        body = gzip.compress(entry.fs_path.read_bytes(), mtime=0)
        self._start(
            200,
            [
                *headers,
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Encoding", "gzip"),
                ("Content-Length", str(len(body))),
            ],
            len(body),
        )
        if self.command == "GET":
            self.wfile.write(body)
            self._sent = len(body)

    def _send_body(self, f: BinaryIO, start: int, length: int, limit: int, plan: BodyPlan) -> None:
        """Send up to limit bytes of the range; a shorter body than length drops the connection."""
        # Over TLS, socket.sendfile falls back to 8 KiB writes: the loop's larger ones are
        # about 3 times faster here.
        if plan.needs_loop or self.hub.scheme == "https":
            self._send_loop(f, start, limit, plan)
        elif limit > 0:  # sendfile(count=0) would mean "to the end of the file"
            self._sent = self.connection.sendfile(f, start, limit)
        if self._sent < length:
            self._drop_connection()

    def _send_loop(self, f: BinaryIO, start: int, limit: int, plan: BodyPlan) -> None:
        chunk = _LOOP_CHUNK if plan.rate is None else max(1, min(_LOOP_CHUNK, plan.rate // 20))
        began = time.monotonic()
        f.seek(start)
        while self._sent < limit:
            data = f.read(min(chunk, limit - self._sent))
            if not data:
                break
            self.connection.sendall(_flip(data, start + self._sent, plan.flip_offset))
            self._sent += len(data)
            if plan.rate is not None:
                time.sleep(max(0.0, began + self._sent / plan.rate - time.monotonic()))

    def _drop_connection(self) -> None:
        # FIN, not RST: the client must see a short body (a protocol error it may resume
        # from), not a reset.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)

    def _send_error(self, err: HubError) -> None:
        headers = list(err.headers)
        if err.code is not None:
            headers.append(("X-Error-Code", err.code))
        headers.append(("X-Error-Message", _header_safe(err.message)))
        self._send_json(err.status, {"error": err.message}, headers)

    def _send_json(
        self,
        status: int,
        payload: object,
        headers: Sequence[tuple[str, str]] = (),
        raw: bytes | None = None,
    ) -> None:
        body = json.dumps(payload).encode() if raw is None else raw
        self._start(
            status,
            [
                *headers,
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
            len(body),
        )
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent = len(body)

    def _send_empty(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        self._start(status, [*headers, ("Content-Length", "0")])

    def _start(self, status: int, headers: Sequence[tuple[str, str]], body: int = 0) -> None:
        """Log, then send the status line and headers; body = bytes about to follow."""
        self._status = status
        # Logged before anything is sent: a client holding its response must find the
        # request in the log. _log_outcome corrects the count if the body falls short.
        self._logged = self._record_for(status, 0 if self.command == "HEAD" else body)
        self.hub._record(self._logged)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        delay = self._header_delay
        if delay is None:
            self.end_headers()
            return
        self._header_delay = None
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        raw = b"".join(buffered) + b"\r\n"
        buffered.clear()
        for i in range(len(raw)):
            self.wfile.write(raw[i : i + 1])
            self.wfile.flush()
            time.sleep(delay)


def _accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (only clients that ask get it)."""
    if header is None:
        return False
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*") and params.replace(" ", "") != "q=0":
            return True
    return False


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, [""])[0].lower() in ("1", "true", "yes")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: LocalHub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the host: a DNS lookup we never need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints to stderr; route it through logging instead. A client that
        # hangs up is routine, not an error.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.debug("local hub: connection from %s lost", client_address)
            return
        logger.exception("local hub: error on connection from %s", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


# --------------------------------------------------------------------------- public API


class LocalHub:
    """The server: ``with LocalHub(root) as hub: ...`` serves ``root`` at ``hub.url``."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        token: str | None = None,
        page_size: int = 1000,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``tls`` = (certificate chain, key) in PEM: serve HTTPS (see :mod:`.tls`)."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.root = Path(root)
        self.host = host
        self.port = port
        self.url = ""
        self.faults = Faults()
        self._token = token
        self._page_size = page_size
        self._tls = tls
        self._store = RepoStore(self.root, lfs_threshold)
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"LocalHub(root={str(self.root)!r}, url={self.url!r})"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalHub:
        """Bind and serve in a daemon thread; ``url`` is valid afterwards."""
        if self._server is not None:
            raise RuntimeError("this LocalHub is already started")
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self.port), self)
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
            # The handshake happens in the handler's thread, on its first read.
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = int(server.server_address[1])
        self.url = f"{self.scheme}://{_url_host(self.host)}:{self.port}"
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"local-hub-{self.port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close keep-alive connections and the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- observability

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many logged requests match the method and contain the text in their path."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_contains is None or path_contains in r.path)
        )

    @property
    def hashes_computed(self) -> int:
        """How many times a file was read to be hashed (caching makes repeats free)."""
        return self._store.hashes.computed

    def commit_of(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """The commit sha the server reports for ``repo_id`` at ``revision``."""
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"unsupported repo_type: {repo_type!r}")
        repo = RepoRef("model" if repo_type == "model" else "dataset", repo_id)
        try:
            return self._store.snapshot(repo, revision).commit
        except HubError as err:
            raise LookupError(err.message) from None

    # ---------------------------------------------------------------- internals

    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(record)

    def _amend(self, old: RequestRecord, new: RequestRecord) -> None:
        """Replace a logged record (by identity: equal records may repeat)."""
        with self._log_lock:
            for i in range(len(self._log) - 1, -1, -1):  # it is almost always near the end
                if self._log[i] is old:
                    self._log[i] = new
                    return

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    def _blob_origin(self) -> str:
        host = self.faults.redirect_host or _other_loopback_name(self.host)
        return f"{self.scheme}://{_url_host(host)}:{self.port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _other_loopback_name(host: str) -> str:
    """Same socket, another origin: what makes a redirect look like a CDN to clients."""
    return {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(host, host)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modelctl.testing.hub",
        description="Serve a directory of repos as a Hugging Face Hub on loopback.",
    )
    p.add_argument("--root", type=Path, required=True, help="directory of <org>/<name>/<branch>/")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN'")
    p.add_argument("--page-size", type=int, default=1000, help="tree entries per page")
    p.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate chain (PEM)")
    p.add_argument("--tls-key", type=Path, help="... and this key (see tests.support.servers.tls)")
    f = p.add_argument_group("faults (see Faults)")
    f.add_argument("--drop-after-bytes", type=int)
    f.add_argument("--drop-count", type=int)
    f.add_argument("--status-codes", type=_int_list, default=[], help="e.g. 503,500")
    f.add_argument("--retry-after", type=int, default=1)
    f.add_argument("--wrong-bytes", action="store_true")
    f.add_argument("--wrong-byte-offset", type=int)
    f.add_argument("--redirect-lfs", action="store_true")
    f.add_argument("--redirect-host")
    f.add_argument("--fail-blob-redirect", action="store_true")
    f.add_argument("--fail-blob-status", type=int, default=403)
    f.add_argument("--slow-bytes-per-sec", type=int)
    f.add_argument("--omit-metadata", action="store_true", help="model info without sizes/hashes")
    f.add_argument("--fault-path", action="append", dest="fault_paths", metavar="PATH")
    return p


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _faults_from_args(args: argparse.Namespace) -> dict[str, Any]:
    options = {
        name: getattr(args, name)
        for name in public_field_names(Faults())
        if name != "paths" and hasattr(args, name)
    }
    options["paths"] = set(args.fault_paths) if args.fault_paths else None
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints one line with the URL when ready."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    hub = LocalHub(
        args.root,
        host=args.host,
        port=args.port,
        lfs_threshold=args.lfs_threshold,
        token=args.token,
        page_size=args.page_size,
        tls=(args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None,
    )
    hub.faults.set(**_faults_from_args(args))
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with hub:
        print(f"modelctl-hub listening on {hub.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
