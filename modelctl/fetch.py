"""Fetch one locked file: partial file -> streamed, hashed bytes -> verify -> rename.

The steps for one file, all under its lock file (see :mod:`modelctl.filelock`):

1. Another process may have finished it while we waited: check again, cheaply.
2. Open the deterministic partial file (never through a symlink or a hard link). Its
   bytes are hashed first (resume), then the rest is asked for with ``Range: bytes=N-``
   (nothing, if a killed run had written them all). A 200 answer means "from zero"; a
   206 must carry a matching ``Content-Range``.
3. Every byte is hashed with the locked algorithm as it is written (blake3 too, for the
   local record, only if asked: see ``FetchContext.record_blake3``). More bytes than the
   locked size, or a Content-Length / Content-Range total that disagrees with it, stop
   the transfer at once.
4. A dropped connection, a 408/429/5xx answer, or a refusal (401/403/404) from the
   storage the Hub redirected to is retried from where it stopped, with backoff
   (``Retry-After`` honoured, capped). A digest or size mismatch deletes the
   partial file and starts once more from zero; a second mismatch is an IntegrityError.
5. Only complete, verified content is renamed (``os.replace``) to its final path; then
   the record and (HF cache) the snapshot symlink are written.

HTTP: the body is streamed with the standard library's ``http.client``, read straight
into a reused buffer. Measured on loopback (2 cores, 512 MiB file, same server): httpx2
(huggingface_hub's session) ``iter_raw`` gives about 0.47 GB/s, ``http.client`` about
1.5 GB/s, and downloads are meant to run near curl speed. While no more downloads run
than half the cores, a second thread per file writes what the first received and hashed
(:class:`_Pipeline`). :class:`HttpxTransport` (huggingface_hub's
session) is used instead when a proxy is configured, since http.client ignores proxy
variables.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import http.client
import os
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urljoin, urlsplit

import httpx2
import huggingface_hub as hf

# Public API, but re-exported without __all__, which mypy --strict does not accept.
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from modelctl.digest import Digest, Hasher, new_hasher
from modelctl.errors import (
    AuthError,
    IntegrityError,
    NetworkError,
    ResolveError,
    UnsafePathError,
)
from modelctl.filelock import Cancelled, exclusive
from modelctl.paths import storage_error
from modelctl.plan import PlannedFile
from modelctl.progress import ProgressTracker
from modelctl.record import FileStamp, Record, check_local, write_record
from modelctl.store import Store, check_writable
from modelctl.types import FileRef

MiB: Final = 1024 * 1024
CHUNK: Final = 8 * MiB  # per transfer; reused, so 8 jobs hold 64 MiB
MAX_REDIRECTS: Final = 10
RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE: Final = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_PIPE_POLL_S: Final = 0.1  # a reader waiting for a free buffer checks cancel this often
PIPELINE_BUFFERS: Final = 4  # of chunk_size each, per file receiving on two threads


# --------------------------------------------------------------------------- transport


class Response(Protocol):
    status: int
    redirected: bool  # the answer comes from where the Hub redirected (its file storage)

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
    connect_s: float = 10.0
    read_s: float = 60.0  # a stalled socket read fails after this, and is retried


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

    def __init__(self, timeouts: Timeouts = Timeouts()) -> None:
        self._timeouts = timeouts
        self._local = threading.local()
        self._ssl = ssl.create_default_context()

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
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self._timeouts.connect_s, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._timeouts.connect_s)
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
                url = urljoin(url, location)
                if _origin(url) != origin:
                    # Like browsers and httpx: credentials never follow a redirect to
                    # another host (the Hub sends LFS files to a CDN with a signed URL).
                    hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
                continue

            return _StdlibResponse(resp, self._releaser(origin, conn), redirected=hops > 0)
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
        self, origin: tuple[str, str, int], url: str, headers: Mapping[str, str]
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        while True:
            conn, reused = self._connection(origin)
            try:
                conn.request("GET", target, headers=dict(headers))
                resp = conn.getresponse()
                if conn.sock is not None:
                    conn.sock.settimeout(self._timeouts.read_s)
                return resp, conn
            except (OSError, http.client.HTTPException):
                conn.close()
                if not reused:
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


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise http.client.InvalidURL(f"unsupported URL: {url}")
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


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
            self._left = memoryview(next(self._chunks, b""))
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        self._resp.close()


class HttpxTransport:
    """huggingface_hub's shared httpx2 session: proxies, custom client factories."""

    def __init__(
        self, client: httpx2.Client | None = None, timeouts: Timeouts = Timeouts()
    ) -> None:
        self._client = client if client is not None else hf.get_session()
        self._timeout = httpx2.Timeout(timeouts.read_s, connect=timeouts.connect_s)

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        hdrs = {**headers, "Accept-Encoding": "identity"}
        request = self._client.build_request("GET", url, headers=hdrs, timeout=self._timeout)
        return _HttpxResponse(self._client.send(request, stream=True, follow_redirects=True))


def default_transport(proxies: Mapping[str, str]) -> Transport:
    """The fast stdlib transport, unless a proxy is configured (``urllib.request.getproxies()``)."""
    if any(k in proxies for k in ("http", "https", "all")):
        return HttpxTransport()
    return StdlibTransport()


TRANSPORT_ERRORS: Final = (OSError, http.client.HTTPException, httpx2.HTTPError)


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class RetryPolicy:
    failures: int = 5  # consecutive failed attempts (no new byte) before giving up
    backoff_s: float = 0.5  # doubled after each failure ...
    backoff_max_s: float = 8.0  # ... up to this
    retry_after_max_s: float = 30.0  # a server's Retry-After is honoured up to this
    mismatches: int = 1  # a digest/size mismatch starts again from zero this many times


@dataclass(frozen=True)
class FetchContext:
    """What every file's fetch shares: where from, how, and how to stop."""

    endpoint: str
    token: str | None
    transport: Transport
    policy: RetryPolicy = RetryPolicy()
    chunk_size: int = CHUNK
    # blake3 while streaming makes later `verify --full` runs fast, but costs a third of
    # the download rate (measured: 4 x 128 MiB on 2 cores, 1.4 -> 1.0 GB/s). Without it,
    # the record gets its blake3 the first time the file is hashed again (verify --full).
    record_blake3: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], None] = time.sleep

    def url(self, ref: FileRef) -> str:
        return hf.hf_hub_url(
            ref.repo_id, ref.path, repo_type=ref.repo_type, revision=ref.commit,
            endpoint=self.endpoint,
        )  # fmt: skip

    def headers(self) -> dict[str, str]:
        # build_hf_headers adds the user agent and, if set, "authorization: Bearer ...".
        # The token is never logged: errors below show URLs and statuses only.
        return dict(build_hf_headers(token=self.token or False))

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once on cancel."""
        if self.cancel.wait(seconds):
            raise Cancelled()


@dataclass(frozen=True)
class FetchOutcome:
    digest: Digest  # the locked digest, matched
    bytes_transferred: int  # over the network
    resumed_from: int  # bytes of an earlier partial file reused
    downloaded: bool  # False when another process (or an earlier run) had finished it


# --------------------------------------------------------------------------- one file


def fetch_file(
    pf: PlannedFile, store: Store, ctx: FetchContext, tracker: ProgressTracker
) -> FetchOutcome:
    """Make ``pf`` present and verified in ``store``; raise a modelctl error if not."""
    ref = pf.ref
    # sync checked every path before it began; checked again right before this file's
    # first write, so a symlink planted meanwhile is refused too.
    check_writable(store, (ref,))
    with exclusive(store.lock_path(ref), ctx.cancel):
        content = store.content_path(ref)
        check = check_local(content, ref.digest, ref.size, store.record_path(ref))
        if check.ok:
            # Done by another process while we waited for its lock.
            tracker.started(pf, ref.size or 0)
            tracker.done(pf, ref.digest, 0)
            store.link(ref)
            return FetchOutcome(ref.digest, 0, 0, downloaded=False)
        outcome = _Download(pf, store, ctx, tracker).run()
        store.link(ref)
    tracker.done(pf, ref.digest, outcome.bytes_transferred)
    return outcome


class _Mismatch(Exception):
    """The bytes do not match the lock (digest or size): start again from zero."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual


class _Transient(Exception):
    """A failure worth retrying from where the file stopped."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Gauge:
    """How many downloads this process runs right now (``with gauge:`` counts one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def __enter__(self) -> None:
        with self._lock:
            self._n += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._n -= 1

    def count(self) -> int:
        with self._lock:
            return self._n


_ACTIVE: Final = _Gauge()


class _Pipeline:
    """Writes, on a second thread and in order, the buffers the reader filled and hashed.

    On one thread, a file's bytes are received, hashed and written by turns; recv,
    hashlib on large buffers and os.write all release the GIL, so two threads overlap
    them. A fixed ring of buffers bounds the memory and holds the reader back (the socket
    then fills and TCP slows the sender) when the disk is slower.
    """

    def __init__(
        self, consume: Callable[[memoryview], None], buffers: int, size: int, where: str
    ) -> None:
        self._consume = consume
        self._free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(memoryview(bytearray(size)))
        self._filled: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"modelctl-write {where}", daemon=True
        )
        self._thread.start()

    def free_buffer(self, cancel: threading.Event) -> memoryview:
        """A buffer to fill; raises Cancelled, or the writer's error, instead of waiting on."""
        while True:
            if cancel.is_set():
                raise Cancelled()
            try:
                buf = self._free.get(timeout=_PIPE_POLL_S)
            except queue.Empty:
                continue
            if buf is None:
                assert self._error is not None
                raise self._error
            return buf

    def submit(self, buf: memoryview, n: int) -> None:
        self._filled.put((buf, n))

    def close(self, drain: bool) -> BaseException | None:
        """Stop the writer, after what was submitted if ``drain``; returns its error."""
        if not drain:
            self._stop.set()
        self._filled.put(None)
        self._thread.join()
        return self._error

    def _run(self) -> None:
        try:
            while True:
                item = self._filled.get()
                if item is None or self._stop.is_set():
                    return
                buf, n = item
                self._consume(buf[:n])
                self._free.put(buf)
        # Everything, KeyboardInterrupt included, is handed to the reader, which raises it.
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self._free.put(None)  # wakes a reader waiting for a buffer


class _Download:
    """The state of one file's transfer: the open partial file and its hashers."""

    def __init__(
        self, pf: PlannedFile, store: Store, ctx: FetchContext, tracker: ProgressTracker
    ) -> None:
        self.pf = pf
        self.ref = pf.ref
        self.store = store
        self.ctx = ctx
        self.tracker = tracker
        self.partial = store.partial_path(self.ref)
        self.where = self.ref.where()
        self.size: int | None = self.ref.size
        self.offset = 0  # bytes in the partial file, all hashed
        self.transferred = 0
        self.hashers: dict[str, Hasher] = {}
        self.fd = -1

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> FetchOutcome:
        with _ACTIVE:
            return self._run()

    def _run(self) -> FetchOutcome:
        mismatches = 0
        self._open_partial()
        resumed_from = self.offset
        try:
            self.tracker.started(self.pf, self.offset)
            while True:
                try:
                    self._transfer()
                    digest, blake3 = self._verify()
                except _Mismatch as exc:
                    mismatches += 1
                    self._restart()
                    if mismatches > self.ctx.policy.mismatches:
                        self._discard()
                        raise IntegrityError(
                            f"{exc.message}; the download was deleted",
                            where=self.where,
                            expected=exc.expected,
                            actual=exc.actual,
                            hint="retry later; if it persists the Hub content or the lock is "
                            "wrong (`modelctl lock --upgrade` re-reads it)",
                        ) from None
                    continue
                break
            self._finish(digest, blake3)
        except BaseException:
            self._close()
            raise
        return FetchOutcome(digest, self.transferred, resumed_from, downloaded=True)

    def _transfer(self) -> None:
        """Get the rest of the file, retrying transient failures from where it stopped."""
        if self.size is not None and self.offset == self.size:
            # An earlier run wrote every byte but was stopped before the rename: asking
            # for `bytes=<size>-` would get a 416 and a download from zero. Verify it.
            return
        failures = 0
        while True:
            before = self.offset
            try:
                self._attempt()
                if self.size is None or self.offset >= self.size:
                    return
                raise _Transient(f"the answer ended at byte {self.offset} of {self.size}")
            except _Transient as exc:
                # Only attempts that bring nothing new count toward giving up: a long
                # download over a flaky link keeps going as long as it advances.
                failures = 0 if self.offset > before else failures + 1
                if failures >= self.ctx.policy.failures:
                    raise NetworkError(
                        f"download failed after {failures} attempts ({exc.reason})",
                        where=self.where,
                        hint="check the network and run `modelctl sync` again: it resumes",
                    ) from None
                self.ctx.pause(self._backoff(max(failures, 1), exc.retry_after))

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        p = self.ctx.policy
        if retry_after is not None:
            return min(max(retry_after, 0.0), p.retry_after_max_s)
        return min(p.backoff_s * 2.0 ** (failures - 1), p.backoff_max_s)

    def _attempt(self) -> None:
        """One request, its body streamed into the partial file."""
        headers = self.ctx.headers()
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
        try:
            resp = self.ctx.transport.get(self.ctx.url(self.ref), headers)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(_describe(exc)) from exc
        complete = False
        try:
            expected_len = self._accept(resp)
            got = self._stream(resp)
            if expected_len is not None and got < expected_len:
                raise _Transient(f"connection closed after {got} of {expected_len} bytes")
            complete = True
        finally:
            if complete:
                resp.close()
            else:
                _abort(resp)

    def _accept(self, resp: Response) -> int | None:
        """Check the status and headers; returns the body length announced."""
        status = resp.status
        if status in RETRY_STATUSES:
            raise _Transient(f"HTTP {status}", _retry_after(resp.header("Retry-After")))
        if resp.redirected and status in (401, 403, 404):
            # The Hub accepted the request and sent us to its file storage (a CDN, with a
            # signed URL): a refusal there is no verdict on the lock or the token, and the
            # next attempt gets a fresh URL from the Hub.
            raise _Transient(f"HTTP {status} from the storage the Hub redirected to")
        if status in (401, 403):
            raise AuthError(
                f"the Hub refused the download (HTTP {status})",
                where=self.where,
                hint="set HF_TOKEN to a token with access to this repo",
            )
        if status == 404:
            code = resp.header("X-Error-Code") or "not found"
            raise ResolveError(
                f"the Hub has no such file at the locked commit ({code})",
                where=self.where,
                hint="the repo changed or was deleted; `modelctl lock --upgrade` re-resolves",
            )
        if status == 416 and self.offset:
            self._restart()  # the partial file is not a prefix the server recognizes
            raise _Transient("HTTP 416 for a resumed download")
        if status not in (200, 206):
            raise NetworkError(f"unexpected answer from the Hub (HTTP {status})", where=self.where)
        length = _int(resp.header("Content-Length"))
        if status == 200:
            if self.offset:
                self._restart()  # the server ignored Range: it sends everything again
            self._check_total(length, "Content-Length")
            return length
        m = _CONTENT_RANGE.match(resp.header("Content-Range") or "")
        if not m or int(m.group(1)) != self.offset:
            raise _Transient(f"206 answer with a Content-Range not starting at {self.offset}")
        if m.group(3) != "*":
            self._check_total(int(m.group(3)), "Content-Range total")
        return int(m.group(2)) + 1 - self.offset

    def _check_total(self, total: int | None, what: str) -> None:
        if total is None:
            return
        if self.size is None:
            self.size = total
            self.hashers = self._new_hashers() if self.offset == 0 else self.hashers
        elif total != self.size:
            raise _Mismatch(
                f"the Hub announces a different size ({what})",
                expected=f"{self.size} bytes",
                actual=f"{total} bytes",
            )

    def _stream(self, resp: Response) -> int:
        if not self.hashers:
            self.hashers = self._new_hashers()
        # Two threads per file pay only while cores are left over: measured on 2 cores,
        # one 512 MiB file gains ~15% (median), but 4 files at once lose ~30%.
        if _ACTIVE.count() <= max(1, (os.cpu_count() or 1) // 2):
            return self._stream_pipelined(resp)
        return self._stream_serial(resp)

    def _stream_serial(self, resp: Response) -> int:
        got = 0
        start = self.offset
        buf = memoryview(bytearray(self.ctx.chunk_size))
        while True:
            if self.ctx.cancel.is_set():
                raise Cancelled()
            n = self._read(resp, buf, start + got)
            if not n:
                return got
            self._hash(buf[:n])
            self._save(buf[:n])
            got += n

    def _stream_pipelined(self, resp: Response) -> int:
        """Receive and hash on this thread while a second one writes, in order.

        recv + hash take about as long as writing into the page cache, so this splits
        the work evenly (hashing on the writer thread measured slower). The hashers run
        ahead of the partial file by what is queued: the writer drains the queue when
        the stream ends or drops, and any other failure ends the download or restarts it
        from zero (and were they ever to disagree, ``_verify``'s size and digest checks
        would refuse the file).
        """
        got = 0
        start = self.offset
        pipe = _Pipeline(self._save, PIPELINE_BUFFERS, self.ctx.chunk_size, self.where)
        try:
            while True:
                buf = pipe.free_buffer(self.ctx.cancel)
                n = self._read(resp, buf, start + got)
                if not n:
                    break
                self._hash(buf[:n])
                pipe.submit(buf, n)
                got += n
        except BaseException as exc:
            _close_pipeline(pipe, exc)
            raise
        _close_pipeline(pipe, None)
        return got

    def _read(self, resp: Response, buf: memoryview, at: int) -> int:
        """The body's next bytes into ``buf``, which belong at file offset ``at``."""
        try:
            n = resp.readinto(buf)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(_describe(exc)) from exc
        # Not self.offset: with a pipeline, it lags behind what was received.
        if self.size is not None and at + n > self.size:
            raise _Mismatch(
                "the Hub sent more bytes than the locked size",
                expected=f"{self.size} bytes",
                actual=f"more than {self.size} bytes",
            )
        return n

    def _hash(self, data: memoryview) -> None:
        # Always before _save: the partial file only ever holds hashed bytes, in order.
        for h in self.hashers.values():
            h.update(data)

    def _save(self, data: memoryview) -> None:
        self._write(data)
        self.transferred += len(data)
        self.tracker.advanced(self.pf, self.offset, len(data))

    # -- the partial file ---------------------------------------------------------------
    def _new_hashers(self) -> dict[str, Hasher]:
        algo = self.ref.digest.algorithm
        hashers = {algo: new_hasher(algo, self.size)}
        if self.ctx.record_blake3:
            hashers["blake3"] = new_hasher("blake3")
        return hashers

    def _open_partial(self) -> None:
        try:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.fd = _open_partial_file(self.partial)
            have = os.fstat(self.fd).st_size
            if self.size is None or have > self.size:
                os.ftruncate(self.fd, 0)
                have = 0
            self.hashers = self._new_hashers() if self.size is not None else {}
            self._hash_prefix(have)
        except OSError as exc:
            self._close()
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(
                    "the partial download is a symlink: refusing to write through it",
                    where=str(self.partial),
                    expected="a regular file, or nothing",
                    actual="a symlink",
                    hint="remove it; modelctl creates it again",
                ) from exc
            raise storage_error("cannot use the partial download", self.partial, exc) from exc

    def _hash_prefix(self, have: int) -> None:
        """Resume: the bytes already there are hashed before the rest is asked for."""
        buf = bytearray(self.ctx.chunk_size)
        view = memoryview(buf)
        pos = 0
        with open(self.fd, "rb", buffering=0, closefd=False) as f:
            while pos < have:
                if self.ctx.cancel.is_set():
                    raise Cancelled()
                n = f.readinto(view[: min(len(buf), have - pos)])
                if not n:
                    break
                for h in self.hashers.values():
                    h.update(view[:n])
                pos += n
        self.offset = pos
        os.lseek(self.fd, pos, os.SEEK_SET)

    def _write(self, data: memoryview) -> None:
        view = data
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            self._keep_valid_prefix()
            raise storage_error("cannot write the download", self.partial, exc) from exc
        self.offset += len(data)

    def _keep_valid_prefix(self) -> None:
        """After a failed write, keep only the bytes known to be written (for resume)."""
        try:
            os.ftruncate(self.fd, self.offset)
        except OSError:
            # Cannot vouch for the partial file any more: remove it.
            self._discard()

    def _restart(self) -> None:
        """Start the file again from zero (its bytes count again only past their high mark)."""
        try:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError as exc:
            raise storage_error("cannot reset the partial download", self.partial, exc) from exc
        self.offset = 0
        self.size = self.ref.size
        self.hashers = self._new_hashers() if self.size is not None else {}
        self.tracker.restarted(self.pf)

    def _verify(self) -> tuple[Digest, Digest | None]:
        if self.size is not None and self.offset != self.size:
            raise _Mismatch(
                "the download has the wrong size",
                expected=f"{self.size} bytes",
                actual=f"{self.offset} bytes",
            )
        if not self.hashers:
            self.hashers = self._new_hashers()
        algo = self.ref.digest.algorithm
        actual = Digest(algo, self.hashers[algo].hexdigest())
        if actual != self.ref.digest:
            raise _Mismatch(
                "the downloaded bytes do not match the locked digest",
                expected=str(self.ref.digest),
                actual=str(actual),
            )
        b3 = self.hashers.get("blake3")
        return actual, Digest("blake3", b3.hexdigest()) if b3 is not None else None

    def _finish(self, digest: Digest, blake3: Digest | None) -> None:
        content = self.store.content_path(self.ref)
        try:
            os.close(self.fd)
            self.fd = -1
            os.replace(self.partial, content)
            stamp = FileStamp.of(content.stat())
        except OSError as exc:
            raise storage_error("cannot move the download into place", content, exc) from exc
        write_record(self.store.record_path(self.ref), Record(digest, stamp, blake3))

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _discard(self) -> None:
        self._close()
        try:
            self.partial.unlink(missing_ok=True)
        except OSError as exc:
            raise storage_error("cannot delete a bad download", self.partial, exc) from exc


# --------------------------------------------------------------------------- helpers


def _open_partial_file(path: Path) -> int:
    """Open (or create) a partial download, refusing what would write elsewhere."""
    # O_NOFOLLOW: a symlink planted at this name would make us truncate and write its
    # target (ELOOP instead). 0o666 minus the umask, as for any file the user creates:
    # a shared cache stays readable by the group (mkstemp would make it private).
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o666)
    try:
        if os.fstat(fd).st_nlink > 1:
            # A hard link shares the inode with another name, which our writes would
            # change too: drop this name and start a file of our own.
            os.close(fd)
            fd = -1
            os.unlink(path)
            fd = os.open(path, flags | os.O_EXCL, 0o666)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def _close_pipeline(pipe: _Pipeline, failure: BaseException | None) -> None:
    """Join the writer (the caller may truncate the partial file next); raise its error.

    Bytes already received are still written after a dropped connection (the retry then
    resumes past them); any other failure of the reader ends the download at once.
    """
    error = pipe.close(drain=failure is None or isinstance(failure, _Transient))
    if error is not None and error is not failure:
        # The writer's failure (a full disk ...) is the cause, whatever the reader saw.
        raise error from failure


def _abort(resp: Response) -> None:
    """Close a response whose body was not read to its end (its connection is dropped)."""
    # The connection is being thrown away: a failure to close it changes nothing.
    with contextlib.suppress(*TRANSPORT_ERRORS):
        resp.close()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _retry_after(text: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date."""
    if not text:
        return None
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(float(when.timestamp()) - time.time(), 0.0)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
