"""Segmented downloads: one large file over several connections, verified in order.

Per-connection throughput is what a CDN limits (tens of MB/s), so a large file is split
into byte ranges fetched at once, like ``aria2c -x``. The rules:

- **Budget.** A sync opens at most ``connections`` connections in all (default
  :data:`DEFAULT_CONNECTIONS`; ``sync --connections N``). Every file being fetched holds
  one; a file of at least two pieces takes more while some are free (files finishing hand
  theirs to the files still running), and gives them back between pieces when another
  file waits for its first. ``--connections 1`` is one stream per file.
- **Pieces.** A connection asks for ``Range: bytes=a-b`` of the first bytes no one has
  taken yet. A piece is a share of what is left (``left / (2 x connections)``, so pieces
  shrink toward the end and the connections finish together), at least ``min_piece``,
  at most what the connection receives in ``piece_seconds`` (the throughput seen), and
  at most ``max_piece``. A piece that fails is retried alone, from where it stopped,
  with the retry policy of :mod:`modelctl.transfer.retry`; the other connections go on.
- **Verification.** sha256 / git-sha1 are sequential: the bytes are written at their
  offsets (:meth:`~modelctl.store.partial.PartialFile.write_at`), and the contiguous prefix
  written so far is read back and hashed while the rest arrives
  (:meth:`~modelctl.store.partial.PartialFile.hash_written`, one reused buffer). Nothing is
  renamed to its final path before every byte matched the locked digest and size.
- **Memory.** One :data:`BUFFER` per connection plus one for hashing: with 8
  connections, 9 MiB whatever the file size.
- **Resume.** The partial file gets its full size at once; which ranges it holds is
  recorded in a sidecar file beside it (``<partial stem>.ranges<partial suffix>``,
  e.g. ``blobs/<sha256>.ranges.incomplete``): JSON ``{"modelctl_ranges": 1, "size": N,
  "digest": "sha256:...", "done": [[start, end], ...]}``, written atomically (a temporary
  file, then ``os.replace``) at most every :data:`SAVE_EVERY_S` and when the transfer
  stops. Ranges are recorded only after their bytes were written, so after ``kill -9``
  the sidecar claims no byte that is not in the file; a restart re-hashes the recorded
  prefix and fetches only the missing ranges. A sidecar that does not match the lock
  (size, digest) or cannot be read counts for nothing. The sidecar is deleted before
  the rename, so a file that holds everything but has no sidecar is a complete prefix.
- **Fallbacks.** A file of unknown size, smaller than two pieces, or with a budget of one
  connection goes in one stream (:func:`modelctl.transfer.fetch.single_download`); so does a
  file whose server ignores ``Range`` (200, or a 416 for a range inside the file): the
  partial file is cut back to its contiguous prefix first.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from modelctl.errors import ModelctlError, NetworkError
from modelctl.fs.atomic import atomic_write
from modelctl.fs.flock import Cancelled
from modelctl.fs.paths import storage_error
from modelctl.lock.plan import PlannedFile
from modelctl.parallel import DEFAULT_CONNECTIONS
from modelctl.progress import ProgressTracker
from modelctl.store.layout import Store
from modelctl.store.partial import Mismatch, PartialFile
from modelctl.transfer.fetch import (
    _CONTENT_RANGE,
    FetchContext,
    FetchOutcome,
    _Transient,
    check_refusal,
    count_mismatch,
    gave_up,
    single_download,
)
from modelctl.transfer.http import TRANSPORT_ERRORS, Response, abort
from modelctl.transfer.retry import Backoff

MiB: Final = 1024 * 1024
BUFFER: Final = 1 * MiB  # per connection: bytes are written at their offset in this size
SAVE_EVERY_S: Final = 0.5  # the sidecar is rewritten at most this often while bytes arrive
_WAIT_S: Final = 0.05  # the coordinating thread wakes up at least this often
_STATE_VERSION: Final = 1


@dataclass(frozen=True)
class SegmentPolicy:
    connections: int = DEFAULT_CONNECTIONS  # in all, over every file of a sync
    min_piece: int = 8 * MiB  # a file is split only if it holds two of these
    max_piece: int = 64 * MiB
    piece_seconds: float = 1.0  # a piece is at most this long at the throughput seen


# --------------------------------------------------------------------------- ranges


class Ranges:
    """Disjoint, sorted half-open byte ranges ``[start, end)`` (pure; not thread-safe)."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self._spans: list[tuple[int, int]] = []
        for a, b in spans:
            self.add(a, b)

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return tuple(self._spans)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        merged: list[tuple[int, int]] = []
        for a, b in self._spans:
            if b < start or a > end:
                merged.append((a, b))
            else:
                start, end = min(a, start), max(b, end)
        merged.append((start, end))
        merged.sort()
        self._spans = merged

    def prefix(self) -> int:
        """How many bytes from offset 0 on are covered without a gap."""
        if self._spans and self._spans[0][0] == 0:
            return self._spans[0][1]
        return 0

    def total(self) -> int:
        return sum(b - a for a, b in self._spans)

    def gaps(self, size: int) -> list[tuple[int, int]]:
        """The ranges of ``[0, size)`` not covered."""
        out: list[tuple[int, int]] = []
        pos = 0
        for a, b in self._spans:
            if a > pos:
                out.append((pos, min(a, size)))
            pos = max(pos, b)
        if pos < size:
            out.append((pos, size))
        return [(a, b) for a, b in out if b > a]


def piece_length(left: int, connections: int, rate: float | None, policy: SegmentPolicy) -> int:
    """How many bytes the next piece asks for, out of ``left`` not yet taken (pure)."""
    share = left // (2 * max(1, connections))
    cap = policy.max_piece
    if rate is not None and rate > 0:
        cap = min(cap, max(policy.min_piece, int(rate * policy.piece_seconds)))
    n = max(policy.min_piece, min(share, cap))
    # A tail shorter than half a piece goes with this piece rather than alone.
    return left if left - n < policy.min_piece // 2 else n


# --------------------------------------------------------------------------- sidecar


def state_path(partial: Path) -> Path:
    """The sidecar recording which ranges of a segmented partial file are written."""
    return partial.with_name(f"{partial.stem}.ranges{partial.suffix}")


def load_state(path: Path, size: int, digest: str) -> Ranges | None:
    """The ranges recorded for this exact file, or None (no sidecar, or one that does not
    match the lock or cannot be read: then it counts for nothing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # a symlink planted there, or unreadable: not ours to trust
    try:
        with open(fd, "rb") as f:
            data: Any = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    if not (
        isinstance(data, dict)
        and data.get("modelctl_ranges") == _STATE_VERSION
        and data.get("size") == size
        and data.get("digest") == digest
        and isinstance(data.get("done"), list)
    ):
        return None
    ranges = Ranges()
    for span in data["done"]:
        if not (
            isinstance(span, list)
            and len(span) == 2
            and all(type(x) is int for x in span)
            and 0 <= span[0] <= span[1] <= size
        ):
            return None
        ranges.add(span[0], span[1])
    return ranges


def save_state(path: Path, size: int, digest: str, done: Ranges) -> None:
    """Write the sidecar atomically (:func:`modelctl.fs.atomic.atomic_write`)."""
    text = json.dumps(
        {"modelctl_ranges": _STATE_VERSION, "size": size, "digest": digest,
         "done": [list(s) for s in done.spans]},
    )  # fmt: skip
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise storage_error("cannot record the download's progress", path, exc) from exc


def remove_state(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise storage_error("cannot remove the download's progress record", path, exc) from exc


def collapse(partial: Path, size: int | None, digest: str) -> None:
    """Turn a segmented partial file into a one-stream one: cut it back to its contiguous
    prefix and delete its sidecar (nothing to do without a sidecar)."""
    state = state_path(partial)
    if not state.exists():
        return
    done = load_state(state, size, digest) if size is not None else None
    keep = done.prefix() if done is not None else 0
    try:
        fd = os.open(partial, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        raise storage_error("cannot use the partial download", partial, exc) from exc
    if fd >= 0:
        try:
            if os.fstat(fd).st_size > keep:
                os.ftruncate(fd, keep)
        except OSError as exc:
            raise storage_error("cannot use the partial download", partial, exc) from exc
        finally:
            os.close(fd)
    remove_state(state)


# --------------------------------------------------------------------------- budget


class ConnectionBudget:
    """The connections of one sync: each file holds one, extra ones are taken while free.

    A file waiting for its first connection has priority over extra ones."""

    def __init__(self, total: int) -> None:
        self._cond = threading.Condition()
        self._free = max(1, total)
        self._waiting = 0

    def acquire(self, cancel: threading.Event) -> None:
        with self._cond:
            self._waiting += 1
            try:
                while self._free == 0:
                    if cancel.is_set():
                        raise Cancelled()
                    self._cond.wait(_WAIT_S * 4)
                self._free -= 1
            finally:
                self._waiting -= 1

    def try_acquire(self) -> bool:
        with self._cond:
            if self._free == 0 or self._waiting:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify()

    def wanted(self) -> bool:
        """A file waits for its first connection."""
        with self._cond:
            return self._waiting > 0


# --------------------------------------------------------------------------- the download


class RangeIgnored(Exception):
    """The server answered a range request with the whole file (or refused a valid range)."""


class _Piece:
    def __init__(self, start: int, end: int) -> None:
        self.pos = start  # the next byte to receive; [start, pos) is written
        self.end = end


class _Schedule:
    """Which bytes are written and which are taken, shared by a file's connections."""

    def __init__(self, size: int, done: Ranges, policy: SegmentPolicy) -> None:
        self.size = size
        self.policy = policy
        self.done = done  # written (and recorded in the sidecar after the next save)
        self._free = done.gaps(size)  # not taken by any connection yet
        self.cond = threading.Condition()
        self.received = 0
        self._began = time.monotonic()
        self.workers = 0
        # Set by the first 206 answer: until then, one connection (the server may ignore
        # Range, and then the others would only fetch the whole file again).
        self.ranged = threading.Event()

    def take(self) -> _Piece | None:
        with self.cond:
            if not self._free:
                return None
            a, b = self._free[0]
            left = sum(e - s for s, e in self._free)
            elapsed = time.monotonic() - self._began
            rate = self.received / elapsed / max(1, self.workers) if self.received else None
            n = min(b - a, piece_length(left, self.policy.connections, rate, self.policy))
            if b - (a + n) < self.policy.min_piece // 2:
                n = b - a
            if a + n == b:
                self._free.pop(0)
            else:
                self._free[0] = (a + n, b)
            return _Piece(a, a + n)

    def unassigned(self) -> int:
        with self.cond:
            return sum(e - s for s, e in self._free)

    def wrote(self, start: int, n: int) -> int:
        """Bytes ``[start, start + n)`` are written; returns how many bytes are."""
        with self.cond:
            self.done.add(start, start + n)
            self.received += n
            total = self.done.total()
            self.cond.notify_all()
            return total

    def snapshot(self) -> tuple[int, Ranges]:
        with self.cond:
            return self.done.prefix(), Ranges(self.done.spans)


@dataclass
class Segmenter:
    """Chooses, per file, one stream or several ranges; shared by every file of a sync."""

    policy: SegmentPolicy
    budget: ConnectionBudget

    @classmethod
    def of(cls, policy: SegmentPolicy) -> Segmenter:
        return cls(policy, ConnectionBudget(policy.connections))

    def splits(self, size: int | None) -> bool:
        return (
            size is not None and self.policy.connections > 1 and size >= 2 * self.policy.min_piece
        )

    def download(
        self, pf: PlannedFile, store: Store, ctx: FetchContext, tracker: ProgressTracker
    ) -> FetchOutcome:
        """A :data:`modelctl.transfer.fetch.Download`: called with the content's lock held."""
        ref = pf.ref
        partial = store.partial_path(ref)
        self.budget.acquire(ctx.cancel)
        try:
            if self.splits(ref.size):
                try:
                    return _Segmented(pf, store, ctx, tracker, self).run()
                except RangeIgnored:
                    tracker.restarted(pf)
            collapse(partial, ref.size, str(ref.digest))
            return single_download(pf, store, ctx, tracker)
        finally:
            self.budget.release()


class _Segmented:
    def __init__(
        self,
        pf: PlannedFile,
        store: Store,
        ctx: FetchContext,
        tracker: ProgressTracker,
        segmenter: Segmenter,
    ) -> None:
        assert pf.ref.size is not None
        self.pf = pf
        self.ref = pf.ref
        self.size: int = pf.ref.size
        self.store = store
        self.ctx = ctx
        self.tracker = tracker
        self.segmenter = segmenter
        self.where = self.ref.where()
        self.partial = store.partial_path(self.ref)
        self.state = state_path(self.partial)
        self.digest = str(self.ref.digest)
        self.transferred = 0
        self._count = threading.Lock()
        # Once per file, not per piece: a piece request costs only its round trip.
        self.url = ctx.remote.url(self.ref)
        self.headers = ctx.remote.headers()

    def run(self) -> FetchOutcome:
        done = self._recorded()
        part = PartialFile.resume(
            self.partial, self.ref.digest, self.size, blake3=self.ctx.record_blake3,
            cancel=self.ctx.cancel, known=done.prefix() if done is not None else None,
        )  # fmt: skip
        try:
            if done is None:
                # No sidecar: what the file holds is a one-stream prefix (all hashed).
                done = Ranges([(0, part.offset)])
            resumed_from = done.total()
            self.tracker.started(self.pf, resumed_from)
            mismatches = 0
            while True:
                try:
                    self._transfer(part, done)
                    part.verify()
                    break
                except Mismatch as exc:
                    remove_state(self.state)
                    mismatches = count_mismatch(mismatches, exc, part, self.ctx, self.where)
                    part.restart()
                    self.tracker.restarted(self.pf)
                    done = Ranges()
            # Before the rename: a complete file without a sidecar is a complete prefix.
            remove_state(self.state)
            digest = part.commit(
                self.store.content_path(self.ref), self.store.record_path(self.ref)
            )
        except BaseException:
            part.close()
            raise
        return FetchOutcome(digest, self.transferred, resumed_from, downloaded=True)

    def _recorded(self) -> Ranges | None:
        """The sidecar's ranges if it matches this file and its partial file; else None."""
        if not self.state.exists():
            return None
        done = load_state(self.state, self.size, self.digest)
        try:
            have = os.lstat(self.partial).st_size
        except OSError:
            have = -1
        if done is None or have != self.size:
            # Unusable: start from zero (every byte is written again before it counts).
            return Ranges()
        return done

    # -- one pass over the missing ranges ----------------------------------------------
    def _transfer(self, part: PartialFile, done: Ranges) -> None:
        sched = _Schedule(self.size, done, self.segmenter.policy)
        save_state(self.state, self.size, self.digest, done)  # before the file grows
        try:
            if os.fstat(part.fd).st_size != self.size:
                os.ftruncate(part.fd, self.size)
        except OSError as exc:
            raise storage_error("cannot size the partial download", self.partial, exc) from exc
        stop = threading.Event()
        errors: list[BaseException] = []
        threads: list[threading.Thread] = []

        def spawn(extra: bool) -> None:
            with sched.cond:
                sched.workers += 1
            t = threading.Thread(
                target=self._worker, args=(sched, part, stop, errors, extra),
                name=f"modelctl-range {self.where}", daemon=True,
            )  # fmt: skip
            threads.append(t)
            t.start()

        buf = memoryview(bytearray(BUFFER))
        last_save = time.monotonic()
        spawn(extra=False)
        try:
            while True:
                if self.ctx.cancel.is_set():
                    raise Cancelled()
                if errors:
                    raise errors[0]
                prefix, _ = sched.snapshot()
                if part.offset < prefix:
                    part.hash_written(min(prefix, part.offset + BUFFER * 8), buf)
                    continue
                alive = any(t.is_alive() for t in threads)
                if not alive:
                    if errors:
                        raise errors[0]
                    if part.offset >= self.size:
                        return
                    raise NetworkError(
                        "the ranges of a segmented download ended with bytes missing",
                        where=self.where,
                        hint="run `modelctl sync` again: it resumes",
                    )
                self._grow(sched, spawn)
                now = time.monotonic()
                if now - last_save >= SAVE_EVERY_S:
                    save_state(self.state, self.size, self.digest, sched.snapshot()[1])
                    last_save = now
                with sched.cond:
                    sched.cond.wait(_WAIT_S)
        finally:
            stop.set()
            for t in threads:
                t.join()
            if part.offset < self.size:
                with contextlib.suppress(ModelctlError):
                    # Best effort: failing to record progress costs a re-fetch, not a byte.
                    save_state(self.state, self.size, self.digest, sched.snapshot()[1])

    def _grow(self, sched: _Schedule, spawn: Callable[[bool], None]) -> None:
        """Open more connections while pieces are left for them and the budget allows."""
        policy = self.segmenter.policy
        if not sched.ranged.is_set():
            return
        room = sched.unassigned() // policy.min_piece - 1
        while room > 0 and sched.workers < policy.connections:
            if not self.segmenter.budget.try_acquire():
                return
            spawn(True)
            room -= 1

    def _worker(
        self,
        sched: _Schedule,
        part: PartialFile,
        stop: threading.Event,
        errors: list[BaseException],
        extra: bool,
    ) -> None:
        buf = memoryview(bytearray(BUFFER))
        try:
            while not stop.is_set():
                piece = sched.take()
                if piece is None:
                    return
                self._fetch_piece(piece, sched, part, stop, buf)
                if extra and self.segmenter.budget.wanted():
                    return  # another file waits for its first connection: give this one back
        # Handed to the coordinating thread, which raises the first one.
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()
        finally:
            if extra:
                self.segmenter.budget.release()
            with sched.cond:
                sched.workers -= 1
                sched.cond.notify_all()

    def _fetch_piece(
        self,
        piece: _Piece,
        sched: _Schedule,
        part: PartialFile,
        stop: threading.Event,
        buf: memoryview,
    ) -> None:
        """Get ``piece``, retrying it alone from where it stopped (modelctl.transfer.retry's policy:
        only attempts that bring nothing new count toward giving up)."""
        backoff = Backoff(self.ctx.policy, self.tracker.mark)
        while piece.pos < piece.end:
            before = piece.pos
            try:
                self._request(piece, sched, part, stop, buf)
                if piece.pos < piece.end:
                    raise _Transient(f"the answer ended at byte {piece.pos} of {piece.end}")
            except _Transient as exc:
                if piece.pos > before:
                    backoff.progressed()
                wait = backoff.next(exc.told)
                if wait is None:
                    reason = f"{exc.reason}, range at byte {piece.pos}"
                    raise gave_up(reason, backoff, self.where, self.ctx) from None
                self.tracker.waiting(self.pf, wait, exc.told.why if exc.told else exc.reason)
                if stop.wait(wait):
                    return

    def _request(
        self,
        piece: _Piece,
        sched: _Schedule,
        part: PartialFile,
        stop: threading.Event,
        buf: memoryview,
    ) -> None:
        headers = {**self.headers, "Range": f"bytes={piece.pos}-{piece.end - 1}"}
        try:
            resp = self.ctx.transport.get(self.url, headers)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(self.ctx.describe(exc)) from exc
        complete = False
        try:
            self._accept(resp, piece)
            sched.ranged.set()
            self._stream(resp, piece, sched, part, stop, buf)
            complete = piece.pos == piece.end
        finally:
            if complete:
                resp.close()
            else:
                abort(resp)

    def _accept(self, resp: Response, piece: _Piece) -> None:
        status = resp.status
        check_refusal(resp, self.ctx, self.ref, self.where)  # retry, or refused: as fetch
        if status in (200, 416):
            raise RangeIgnored()
        if status != 206:
            raise NetworkError(
                f"unexpected answer from {self.ctx.server} (HTTP {status})", where=self.where
            )
        m = _CONTENT_RANGE.match(resp.header("Content-Range") or "")
        if not m or int(m.group(1)) != piece.pos or int(m.group(2)) != piece.end - 1:
            raise _Transient(
                f"206 answer with a Content-Range other than {piece.pos}-{piece.end - 1}"
            )
        if m.group(3) != "*" and int(m.group(3)) != self.size:
            raise Mismatch(
                "the source announces a different size (Content-Range total)",
                expected=f"{self.size} bytes",
                actual=f"{m.group(3)} bytes",
            )

    def _stream(
        self,
        resp: Response,
        piece: _Piece,
        sched: _Schedule,
        part: PartialFile,
        stop: threading.Event,
        buf: memoryview,
    ) -> None:
        """The body into ``buf``, written at its offset each time the buffer is full."""
        filled = 0
        while piece.pos + filled < piece.end:
            if stop.is_set():
                break
            want = min(len(buf) - filled, piece.end - piece.pos - filled)
            try:
                n = resp.readinto(buf[filled : filled + want])
            except TRANSPORT_ERRORS as exc:
                self._flush(piece, sched, part, buf, filled)
                raise _Transient(self.ctx.describe(exc)) from exc
            if not n:
                break
            filled += n
            if filled == len(buf):
                self._flush(piece, sched, part, buf, filled)
                filled = 0
        self._flush(piece, sched, part, buf, filled)

    def _flush(
        self, piece: _Piece, sched: _Schedule, part: PartialFile, buf: memoryview, n: int
    ) -> None:
        if not n:
            return
        part.write_at(buf[:n], piece.pos)
        at = piece.pos
        piece.pos += n
        total = sched.wrote(at, n)
        with self._count:
            self.transferred += n
        self.tracker.advanced(self.pf, total, n)
