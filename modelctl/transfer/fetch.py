"""Download one locked file: the retry policy and the download loop.

The steps for one file, all under its lock file (see :mod:`modelctl.fs.flock`):

1. Another process may have finished it while we waited: check again, cheaply.
2. Resume the partial file (:class:`~modelctl.store.partial.PartialFile`: its bytes are hashed
   first), then ask for the rest with ``Range: bytes=N-`` (nothing, if a killed run had
   written them all). A 200 answer means "from zero"; a 206 must carry a matching
   ``Content-Range``.
3. Every byte is hashed with the locked algorithm as it is written (blake3 too, for the
   local record, only if asked: see ``FetchContext.record_blake3``). More bytes than the
   locked size, or a Content-Length / Content-Range total that disagrees with it, stop
   the transfer at once.
4. A dropped connection, a 408/429/5xx answer, or a refusal (401/403/404) from the
   storage the server redirected to is retried from where it stopped, with backoff
   (``Retry-After`` honoured, capped). A digest or size mismatch deletes the
   partial file and starts once more from zero; a second mismatch is an IntegrityError.
5. Only complete, verified content is renamed to its final path and recorded
   (:meth:`~modelctl.store.partial.PartialFile.commit`); then (HF cache) the snapshot link.

HTTP itself (transports, redirects, timeouts) is :mod:`modelctl.transfer.http`. While no more
downloads run than half the cores, a second thread per file writes what the first
received and hashed (:class:`_Pipeline`).
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from modelctl.errors import (
    IntegrityError,
    ModelctlError,
    NetworkError,
    redact,
)
from modelctl.fs.flock import Cancelled, exclusive
from modelctl.lock.digest import Digest
from modelctl.lock.plan import PlannedFile
from modelctl.lock.types import FileRef
from modelctl.parallel import run_parallel
from modelctl.progress import ProgressTracker
from modelctl.settings import DEFAULT_LIMITS, Limits
from modelctl.store.layout import Store, check_writable
from modelctl.store.partial import Mismatch, PartialFile
from modelctl.store.presence import check_local
from modelctl.transfer.http import (
    TRANSPORT_ERRORS,
    Response,
    Transport,
    abort,
    describe,
    header_int,
)
from modelctl.transfer.remote import Remote
from modelctl.transfer.retry import (
    DEFAULT_POLICY,
    RETRY_STATUSES,
    Backoff,
    RetryPolicy,
    ServerWait,
    server_wait,
)

if TYPE_CHECKING:
    from dataclasses import dataclass, field, replace
else:
    from modelctl.values import dataclass, field, replace

MiB: Final = 1024 * 1024
CHUNK: Final = 8 * MiB  # per transfer; reused, so 8 jobs hold 64 MiB
_CONTENT_RANGE: Final = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_PIPE_POLL_S: Final = 0.1  # a reader waiting for a free buffer checks cancel this often
RANGE_ALWAYS_ABOVE = 50 * 10**9  # bytes; larger files are asked with Range from the start
PIPELINE_BUFFERS: Final = 4  # of chunk_size each, per file receiving on two threads


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class FetchContext:
    """What every file's fetch shares: where from, how, and how to stop."""

    remote: Remote  # where the bytes are, and how messages name it
    transport: Transport
    policy: RetryPolicy = DEFAULT_POLICY
    chunk_size: int = CHUNK
    # blake3 while streaming makes later `verify --full` runs fast, but costs a third of
    # the download rate (measured: 4 x 128 MiB on 2 cores, 1.4 -> 1.0 GB/s). Without it,
    # the record gets its blake3 the first time the file is hashed again (verify --full).
    record_blake3: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], None] = time.sleep
    limits: Limits = DEFAULT_LIMITS
    # time.monotonic() past which every download gives up (from limits.deadline_s).
    deadline_at: float | None = None

    def starting_now(self) -> FetchContext:
        """This context with its ``limits.deadline_s`` (if any) counting from now."""
        if self.limits.deadline_s is None:
            return self
        return replace(self, deadline_at=time.monotonic() + self.limits.deadline_s)

    def check_deadline(self, where: str) -> None:
        if self.deadline_at is not None and time.monotonic() >= self.deadline_at:
            raise NetworkError(
                f"the sync's deadline of {self.limits.deadline_s:g} s passed",
                where=where,
                hint="run `modelctl sync` again (it resumes), or give it a longer --deadline",
            )

    @property
    def server(self) -> str:
        return self.remote.name

    def describe(self, exc: BaseException) -> str:
        # Credentials are never shown: errors show statuses, and what a server put in
        # them (a redirect's Location ...) passes through errors.redact first.
        return redact(describe(exc), self.remote.secrets)

    def pause(self, seconds: float, where: str = "") -> None:
        """Sleep, but wake up at once on cancel, and give up at the deadline."""
        if self.deadline_at is not None:
            seconds = min(seconds, max(self.deadline_at - time.monotonic(), 0.0))
        if self.cancel.wait(seconds):
            raise Cancelled()
        self.check_deadline(where)


@dataclass(frozen=True)
class FetchOutcome:
    digest: Digest  # the locked digest, matched
    bytes_transferred: int  # over the network
    resumed_from: int  # bytes of an earlier partial file reused
    downloaded: bool  # False when another process (or an earlier run) had finished it


# --------------------------------------------------------------------------- one file


Download = Callable[[PlannedFile, Store, "FetchContext", ProgressTracker], FetchOutcome]


def single_download(
    pf: PlannedFile, store: Store, ctx: FetchContext, tracker: ProgressTracker
) -> FetchOutcome:
    """One stream (``Range: bytes=N-`` to resume) into the partial file; the caller holds
    the content's lock."""
    return _Download(pf, store, ctx, tracker).run()


def fetch_file(
    pf: PlannedFile,
    store: Store,
    ctx: FetchContext,
    tracker: ProgressTracker,
    download: Download = single_download,
) -> FetchOutcome:
    """Make ``pf`` present and verified in ``store``; raise a modelctl error if not.

    ``download`` gets the bytes once the lock is held and the file is still missing
    (:func:`single_download`, or :meth:`modelctl.transfer.segments.Segmenter.download`)."""
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
        outcome = download(pf, store, ctx, tracker)
        store.link(ref)
    tracker.done(pf, ref.digest, outcome.bytes_transferred)
    return outcome


def fetch_all(
    todo: Sequence[PlannedFile],
    store: Store,
    ctx: FetchContext,
    tracker: ProgressTracker,
    jobs: int,
    download: Download = single_download,
) -> list[PlannedFile]:
    """:func:`fetch_file` for every file of ``todo``, largest first, ``jobs`` at a time
    (until ``ctx.cancel``); a failure is reported to ``tracker`` before it propagates.
    Returns the files this call downloaded (not those another process finished first)."""

    def one(pf: PlannedFile) -> PlannedFile | None:
        try:
            outcome = fetch_file(pf, store, ctx, tracker, download)
        except ModelctlError as exc:
            tracker.failed(pf, exc.render())
            raise
        return pf if outcome.downloaded else None

    largest_first = sorted(todo, key=lambda f: -(f.size_bytes or 0))
    results = run_parallel(one, largest_first, jobs, ctx.cancel)
    return [pf for pf in results if pf is not None]


class _Transient(Exception):
    """A failure worth retrying from where the file stopped."""

    def __init__(self, reason: str, told: ServerWait | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.told = told


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
    """The state of one file's transfer: its partial file, and what came over the network."""

    def __init__(
        self, pf: PlannedFile, store: Store, ctx: FetchContext, tracker: ProgressTracker
    ) -> None:
        self.pf = pf
        self.ref = pf.ref
        self.store = store
        self.ctx = ctx
        self.tracker = tracker
        self.where = self.ref.where()
        self.transferred = 0
        self._speed = _SpeedCheck(ctx.limits)
        self.part = PartialFile(store.partial_path(self.ref), self.ref.digest, self.ref.size)

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> FetchOutcome:
        with _ACTIVE:
            return self._run()

    def _run(self) -> FetchOutcome:
        mismatches = 0
        ref = self.ref
        self.part = PartialFile.resume(
            self.store.partial_path(ref),
            ref.digest,
            ref.size,
            blake3=self.ctx.record_blake3,
            cancel=self.ctx.cancel,
        )
        resumed_from = self.part.offset
        try:
            self.tracker.started(self.pf, self.part.offset)
            while True:
                try:
                    self._transfer()
                    self.part.verify()
                except Mismatch as exc:
                    mismatches = count_mismatch(mismatches, exc, self.part, self.ctx, self.where)
                    self._restart()
                    continue
                break
            digest = self.part.commit(self.store.content_path(ref), self.store.record_path(ref))
        except BaseException:
            self.part.close()
            raise
        return FetchOutcome(digest, self.transferred, resumed_from, downloaded=True)

    def _restart(self) -> None:
        """Start the file again from zero (its bytes count again only past their high mark)."""
        self.part.restart()
        self.tracker.restarted(self.pf)

    def _transfer(self) -> None:
        """Get the rest of the file, retrying transient failures from where it stopped."""
        part = self.part
        if part.size is not None and part.offset == part.size:
            # An earlier run wrote every byte but was stopped before the rename: asking
            # for `bytes=<size>-` would get a 416 and a download from zero. Verify it.
            return
        backoff = Backoff(self.ctx.policy, self.tracker.mark)
        min_progress = self.ctx.limits.min_progress
        while True:
            self.ctx.check_deadline(self.where)
            before = part.offset
            try:
                self._attempt()
                if part.size is None or part.offset >= part.size:
                    return
                raise _Transient(f"the answer ended at byte {part.offset} of {part.size}")
            except _Transient as exc:
                # Only attempts that bring little new count toward giving up: a long
                # download over a flaky link keeps going as long as it advances, but "one
                # byte, then drop" does not reset the count forever.
                left = part.size - before if part.size is not None else min_progress
                if part.offset - before >= min(min_progress, max(left, 1)):
                    backoff.progressed()
                wait = backoff.next(exc.told)
                if wait is None:
                    raise gave_up(exc.reason, backoff, self.where, self.ctx) from None
                self.tracker.waiting(self.pf, wait, exc.told.why if exc.told else exc.reason)
                self.ctx.pause(wait, self.where)

    def _attempt(self) -> None:
        """One request, its body streamed into the partial file."""
        headers = self.ctx.remote.headers()
        if self.part.offset or (self.ref.size or 0) > RANGE_ALWAYS_ABOVE:
            # The Hub serves a single file over 50 GB only to a Range request.
            headers["Range"] = f"bytes={self.part.offset}-"
        try:
            resp = self.ctx.transport.get(self.ctx.remote.url(self.ref), headers)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(self.ctx.describe(exc)) from exc
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
                abort(resp)

    def _accept(self, resp: Response) -> int | None:
        """Check the status and headers; returns the body length announced."""
        status = resp.status
        offset = self.part.offset
        check_refusal(resp, self.ctx, self.ref, self.where)
        if status == 416 and offset:
            self._restart()  # the partial file is not a prefix the server recognizes
            raise _Transient("HTTP 416 for a resumed download")
        if status not in (200, 206):
            raise NetworkError(
                f"unexpected answer from {self.ctx.server} (HTTP {status})", where=self.where
            )
        length = header_int(resp.header("Content-Length"))
        if status == 200:
            if offset:
                self._restart()  # the server ignored Range: it sends everything again
            if length is not None:
                self.part.announce_size(length, "Content-Length")
            return length
        m = _CONTENT_RANGE.match(resp.header("Content-Range") or "")
        if not m or int(m.group(1)) != offset:
            raise _Transient(f"206 answer with a Content-Range not starting at {offset}")
        if m.group(3) != "*":
            self.part.announce_size(int(m.group(3)), "Content-Range total")
        return int(m.group(2)) + 1 - offset

    def _stream(self, resp: Response) -> int:
        # Two threads per file pay only while cores are left over: measured on 2 cores,
        # one 512 MiB file gains ~15% (median), but 4 files at once lose ~30%.
        if _ACTIVE.count() <= max(1, (os.cpu_count() or 1) // 2):
            return self._stream_pipelined(resp)
        return self._stream_serial(resp)

    def _stream_serial(self, resp: Response) -> int:
        got = 0
        start = self.part.offset
        self._speed = _SpeedCheck(self.ctx.limits)
        buf = memoryview(bytearray(self._buffer_size()))
        while True:
            if self.ctx.cancel.is_set():
                raise Cancelled()
            n = self._read(resp, buf, start + got)
            if not n:
                return got
            self.part.hash(buf[:n])
            self._save(buf[:n])
            got += n

    def _stream_pipelined(self, resp: Response) -> int:
        """Receive and hash on this thread while a second one writes, in order.

        recv + hash take about as long as writing into the page cache, so this splits
        the work evenly (hashing on the writer thread measured slower). The hashers run
        ahead of the partial file by what is queued: the writer drains the queue when
        the stream ends or drops, and any other failure ends the download or restarts it
        from zero (and were they ever to disagree, the partial file's size and digest
        checks would refuse the file).
        """
        got = 0
        start = self.part.offset
        self._speed = _SpeedCheck(self.ctx.limits)
        pipe = _Pipeline(self._save, PIPELINE_BUFFERS, self._buffer_size(), self.where)
        try:
            while True:
                buf = pipe.free_buffer(self.ctx.cancel)
                n = self._read(resp, buf, start + got)
                if not n:
                    break
                self.part.hash(buf[:n])
                pipe.submit(buf, n)
                got += n
        except BaseException as exc:
            _close_pipeline(pipe, exc)
            raise
        _close_pipeline(pipe, None)
        return got

    def _buffer_size(self) -> int:
        """The chunk size, or less for what is left of a file of known size: a fresh
        buffer is zero-filled, and 8 MiB per 4 KiB file made small files cost 1-2 ms each."""
        size = self.part.size
        if size is None:
            return self.ctx.chunk_size
        return max(min(self.ctx.chunk_size, size - self.part.offset + 1), 64 * 1024)

    def _read(self, resp: Response, buf: memoryview, at: int) -> int:
        """The body's next bytes into ``buf``, which belong at file offset ``at``."""
        try:
            n = resp.readinto(buf)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(self.ctx.describe(exc)) from exc
        self._speed.add(n)
        self.ctx.check_deadline(self.where)
        # Not part.offset: with a pipeline, it lags behind what was received.
        size = self.part.size
        cap = self.ctx.limits.unknown_size_max
        if size is None and at + n > cap:
            raise NetworkError(
                f"{self.ctx.server} sent more than {cap} bytes for a file locked without a size",
                where=self.where,
                expected=f"at most {cap} bytes (no size in the lock, none announced)",
                actual=f"more than {cap} bytes",
                hint="lock it again from a source that reports sizes (`modelctl lock --upgrade`)",
            )
        if size is not None and at + n > size:
            raise Mismatch(
                f"{self.ctx.server} sent more bytes than the locked size",
                expected=f"{size} bytes",
                actual=f"more than {size} bytes",
            )
        return n

    def _save(self, data: memoryview) -> None:
        self.part.write(data)
        self.transferred += len(data)
        self.tracker.advanced(self.pf, self.part.offset, len(data))


class _Headers:
    """An answer's headers as the Mapping-like ``get`` that :meth:`Remote.refused` reads."""

    def __init__(self, resp: Response) -> None:
        self._resp = resp

    def get(self, key: str, /) -> str | None:
        return self._resp.header(key)


def check_refusal(resp: Response, ctx: FetchContext, ref: FileRef, where: str) -> None:
    """Raise what an answer other than a body means: _Transient (retry), or the modelctl
    error of a refusal (also used by :mod:`modelctl.transfer.segments` for each range)."""
    status = resp.status
    if status in RETRY_STATUSES:
        told = server_wait(status, resp.header("Retry-After"), resp.header("RateLimit"))
        raise _Transient(f"HTTP {status}", told)
    if resp.redirected and status in (401, 403, 404):
        # The server accepted the request and sent us to its file storage (a CDN, with a
        # signed URL): a refusal there is no verdict on the lock or the credentials, and
        # the next attempt gets a fresh URL.
        raise _Transient(f"HTTP {status} from the storage {ctx.server} redirected to")
    if status in (401, 403, 404):
        raise ctx.remote.refused(status, _Headers(resp), where, ref)


def count_mismatch(
    mismatches: int, exc: Mismatch, part: PartialFile, ctx: FetchContext, where: str
) -> int:
    """One more digest or size mismatch: the new count, while the policy allows another
    try from zero; past it, the partial file is deleted and an IntegrityError raised."""
    mismatches += 1
    if mismatches > ctx.policy.mismatches:
        part.discard()
        raise IntegrityError(
            f"{exc.message}; the download was deleted",
            where=where,
            expected=exc.expected,
            actual=exc.actual,
            hint=ctx.remote.hints.mismatch,
        ) from None
    return mismatches


def gave_up(reason: str, backoff: Backoff, where: str, ctx: FetchContext) -> NetworkError:
    hints = ctx.remote.hints
    hint = hints.rate_limited if "HTTP 429" in reason else hints.gave_up
    return NetworkError(f"download failed {backoff.gave_up} ({reason})", where=where, hint=hint)


class _SpeedCheck:
    """curl's --speed-limit / --speed-time for one response body: slower than
    ``low_speed_bps`` on average over ``low_speed_s`` is a transient failure (the
    download resumes from where it stopped, on a new connection)."""

    def __init__(self, limits: Limits) -> None:
        self._bps = limits.low_speed_bps
        self._window = limits.low_speed_s
        self._since = time.monotonic()
        self._bytes = 0

    def add(self, n: int) -> None:
        if self._bps <= 0:
            return
        self._bytes += n
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed < self._window:
            return
        if self._bytes < self._bps * elapsed:
            raise _Transient(
                f"slower than {self._bps} bytes/s for {self._window:g} s "
                f"({self._bytes} bytes in {elapsed:.1f} s)"
            )
        self._since, self._bytes = now, 0


def _close_pipeline(pipe: _Pipeline, failure: BaseException | None) -> None:
    """Join the writer (the caller may truncate the partial file next); raise its error.

    Bytes already received are still written after a dropped connection (the retry then
    resumes past them); any other failure of the reader ends the download at once.
    """
    error = pipe.close(drain=failure is None or isinstance(failure, _Transient))
    if error is not None and error is not failure:
        # The writer's failure (a full disk ...) is the cause, whatever the reader saw.
        raise error from failure
