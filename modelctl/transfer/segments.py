"""Segmented downloads: one large file over several connections, verified in order.

Per-connection throughput is what a CDN limits (tens of MB/s), so a large file may be
fetched as byte ranges over several connections at once, like ``aria2c -x``. The rules:

- **Budget.** At most ``connections`` per file (``sync -x N``, default
  :data:`~modelctl.parallel.DEFAULT_CONNECTIONS`, as ``aria2c -x``), and at most ``total``
  over every file of a sync (``--max-connections``, ``MODELCTL_MAX_CONNECTIONS``, default
  :data:`~modelctl.settings.DEFAULT_MAX_CONNECTIONS`: what ``aria2c -x8 -j8`` opens).
  Every file being fetched holds one; extra ones are taken while free, and given back
  between ranges when another file waits for its first.
- **Split only where it pays.** A file starts on one connection asking for all of it.
  Every ``probe_s`` the sync's CPU use is measured: while the CPU could carry more than
  the current rate (:func:`connections_wanted`: cores / cores busy), the file opens as
  many more connections as that spare CPU carries (behind a per-connection cap: all of
  ``connections`` at the first step, taken after :data:`EARLY` of a window from the
  first answer if that short window already shows it: :func:`early_step`); if a step did
  not raise the file's rate by half of what it promised (:func:`growth_paid`), the file
  stops growing, and if it did, the next step is decided at once from the window that
  measured it. On an uncapped link the first connection already keeps the CPU busy: the
  file stays one stream, hashed as it arrives.
- **Ranges.** A new connection takes the next ``chunk`` bytes no one holds; when none
  are free, the connection with the most bytes left keeps the next chunk, the new one
  takes the chunk after it, and the rest is free (:meth:`Schedule.steal`); the cut
  request stops at its new end and its connection is dropped. A chunk is what one
  connection receives in ``piece_seconds`` (at most ``max_piece``, less toward the end
  so the connections finish together); both parts of a cut hold ``min_split`` bytes
  (less where round trips are short: :meth:`Schedule.split_min`).
  Ranges stay close to the hashed prefix, so hashing keeps pace with the bytes. A range
  that fails is retried alone, from where it stopped, with the retry policy of
  :mod:`modelctl.transfer.retry`; the other connections go on.
- **Verification.** sha256 / git-sha1 are sequential, and one thread hashes: the file's
  coordinating thread. Every connection writes what it received at its offset
  (:meth:`~modelctl.store.partial.PartialFile.write_at`). The connection whose bytes come
  right after what is hashed (or queued to be) hands its buffer to the coordinating
  thread, which hashes it in memory (:meth:`~modelctl.store.partial.PartialFile.hash_next`)
  while the connection receives into its next buffer: on one stream, receiving and
  writing overlap the hashing, as in ``curl | sha256sum`` but without reading anything
  twice. Bytes other connections wrote are read back and hashed once the prefix reaches
  them (:meth:`~modelctl.store.partial.PartialFile.hash_written`). Nothing is renamed to
  its final path before every byte matched the locked digest and size.
- **Memory.** One :data:`BUFFER` per connection, up to :data:`HANDOFF_BUFFERS` for the
  one at the front, plus one for reading back: with 8 connections, at most 12 MiB
  whatever the file size.
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
- **Fallbacks.** A file of unknown size or smaller than two pieces goes in one stream
  (:func:`modelctl.transfer.fetch.single_download`); so does a file whose server
  ignores ``Range`` (200, or a 416 for a range inside the file): the partial file is cut
  back to its contiguous prefix first.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from modelctl.errors import ModelctlError, NetworkError
from modelctl.fs.atomic import atomic_write
from modelctl.fs.flock import Cancelled
from modelctl.fs.paths import storage_error
from modelctl.fs.safeio import read_bounded
from modelctl.lock.plan import PlannedFile
from modelctl.parallel import DEFAULT_CONNECTIONS
from modelctl.progress import ProgressTracker
from modelctl.settings import DEFAULT_MAX_CONNECTIONS
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

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

MiB: Final = 1024 * 1024
BUFFER: Final = 1 * MiB  # per connection: bytes are written at their offset in this size
# Buffers a connection at the front may have waiting to be hashed (it receives into the
# next meanwhile): enough to ride out the hasher's hiccups, few enough to bound memory.
HANDOFF_BUFFERS: Final = 4
SAVE_EVERY_S: Final = 0.5  # the sidecar is rewritten at most this often while bytes arrive
_WAIT_S: Final = 0.02  # the coordinating thread wakes up at least this often
_STATE_VERSION: Final = 1
# A file grows to what the spare CPU carries, times this (each connection costs some).
GROWTH_MARGIN: Final = 0.8
# A file's first step may come after this part of probe_s, if it opens all of -x
# (early_step): on a capped link each 0.1 s on one connection costs 7/8 of 0.1 s of -x 8.
EARLY: Final = 0.25
_STATE_MAX: Final = 1 << 20  # a sidecar of 20,000 ranges is ~0.5 MiB


@dataclass(frozen=True)
class SegmentPolicy:
    connections: int = DEFAULT_CONNECTIONS  # per file, like aria2c -x
    total: int | None = None  # over every file of a sync; None: DEFAULT_MAX_CONNECTIONS
    min_piece: int = 8 * MiB  # a file is split only if it holds two of these
    # A range being fetched is split (its second half taken by an idle connection) only
    # if both halves hold this much (at most min_piece): small, so that no connection
    # fetches a long tail alone while the others are done. Less (down to one BUFFER) where
    # a round trip is short: see Schedule.split_min.
    min_split: int = 2 * MiB
    # Once a file has several connections, each asks for about what it receives in this
    # long (at most max_piece), and for less toward the end so they finish together.
    piece_seconds: float = 0.25
    max_piece: int = 64 * MiB
    probe_s: float = 0.1  # the rates and the CPU use are measured over windows this long
    adaptive: bool = True  # False: open `connections` at once (tests)


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


# --------------------------------------------------------------------------- sidecar


def state_path(partial: Path) -> Path:
    """The sidecar recording which ranges of a segmented partial file are written."""
    return partial.with_name(f"{partial.stem}.ranges{partial.suffix}")


def load_state(path: Path, size: int, digest: str) -> Ranges | None:
    """The ranges recorded for this exact file, or None (no sidecar, or one that does not
    match the lock or cannot be read: then it counts for nothing)."""
    try:
        # Non-blocking, regular files only (fs.safeio): a FIFO planted there would
        # otherwise hang the open forever, before any request.
        data: Any = json.loads(read_bounded(path, _STATE_MAX, follow=False))
    except (OSError, ValueError):
        return None  # absent, a symlink, a FIFO, too big, unreadable: not ours to trust
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


# --------------------------------------------------------------------------- growth


def connections_wanted(current: int, headroom: float, policy: SegmentPolicy) -> int:
    """How many connections a file should have, from ``current`` and the CPU's
    ``headroom`` (cores / cores busy): as many as the spare CPU carries (with a margin),
    never fewer than now, at most ``policy.connections`` (pure)."""
    if not policy.adaptive:
        return max(current, policy.connections)
    # The margin applies to what the CPU carries, before the cap: a capped link (the CPU
    # could carry ten times the first connection's rate) opens all of -x at the first step.
    grown = min(
        policy.connections, int(current * min(headroom, policy.connections * 2) * GROWTH_MARGIN)
    )
    return max(current, grown)


def early_step(current: int, headroom: float | None, policy: SegmentPolicy) -> bool:
    """May a file's first step be taken after :data:`EARLY` of a window instead of a whole
    one? Only if even that short window shows the CPU carrying all of ``policy.connections``
    (a capped link: the first connection's bytes cost a small part of the cores). Anything
    less (an uncapped link keeps a core busy from the first byte) waits for the whole window
    and is decided as before (pure)."""
    return (
        policy.adaptive
        and headroom is not None
        and current < policy.connections
        and connections_wanted(current, headroom, policy) >= policy.connections
    )


def growth_paid(before: int, after: int, rate_before: float, rate_after: float) -> bool:
    """Did going from ``before`` to ``after`` connections raise the rate by at least half
    of what the new ones promised (the old per-connection rate each)? (pure)"""
    if after <= before or before <= 0:
        return True
    promised = rate_before * (after - before) / before
    return rate_after >= rate_before + promised / 2


class Governor:
    """The sync's CPU use, measured over windows of ``window_s``: :meth:`headroom` is how
    many times the current load the cores could carry (cores / cores busy)."""

    def __init__(self, window_s: float, cores: int | None = None) -> None:
        self._window = window_s
        self._cores = cores if cores is not None else _usable_cores()
        self._lock = threading.Lock()
        self._since = (time.monotonic(), time.process_time())
        self._headroom: float | None = None

    def headroom(self) -> float | None:
        """None until one window was measured."""
        with self._lock:
            now, cpu = time.monotonic(), self.cpu()
            t0, c0 = self._since
            if now - t0 >= self._window:
                self._headroom = self.headroom_over(cpu - c0, now - t0)
                self._since = (now, cpu)
            return self._headroom

    def cpu(self) -> float:
        """The CPU seconds this process used so far (every thread, user + sys)."""
        return time.process_time()

    def headroom_over(self, cpu_s: float, wall_s: float) -> float:
        """The headroom of a window of ``wall_s`` in which the process used ``cpu_s``."""
        busy = cpu_s / wall_s if wall_s > 0 else 0.0
        return self._cores / busy if busy > 0 else float(self._cores) * 8


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- budget


class ConnectionBudget:
    """The connections of one sync: each file holds one, extra ones are taken while free.

    A file waiting for its first connection has priority over extra ones."""

    def __init__(self, total: int) -> None:
        self._cond = threading.Condition()
        self.total = max(1, total)
        self._free = self.total
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
            assert self._free < self.total, "released more connections than taken"
            self._free += 1
            self._cond.notify()

    def in_use(self) -> int:
        with self._cond:
            return self.total - self._free

    def wanted(self) -> bool:
        """A file waits for its first connection, none being free (not merely a file
        taking a free one right now)."""
        with self._cond:
            return self._waiting > 0 and self._free == 0


# --------------------------------------------------------------------------- schedule


class RangeIgnored(Exception):
    """The server answered a range request with the whole file (or refused a valid range)."""


class Piece:
    """A range one connection fetches: ``[start, pos)`` is written, ``[pos, end)`` is its
    to get; ``end`` only shrinks (another connection takes the rest)."""

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.pos = start
        self.end = end

    def __repr__(self) -> str:
        return f"Piece({self.start}, pos={self.pos}, end={self.end})"


class Schedule:
    """Which bytes of one file are written, which are held by a connection, which are
    free; shared by the file's connections (thread-safe)."""

    def __init__(self, size: int, done: Ranges, min_split: int, reserve: int = BUFFER) -> None:
        self.size = size
        self.min_split = min_split
        # A connection may hold up to this many received bytes not yet counted in `pos`:
        # a split leaves it at least that much.
        self.reserve = reserve
        self.done = done  # written (and recorded in the sidecar after the next save)
        self._free = done.gaps(size)  # held by no connection
        self.active: list[Piece] = []
        self.cond = threading.Condition()
        self.received = 0
        self.conn_rate: float | None = None  # bytes/s of one connection, as last seen
        self.rtt: float | None = None  # the shortest request -> answer seen, in seconds
        # Set by the first 206 answer: until then, one connection (the server may ignore
        # Range, and then the others would only fetch the whole file again).
        self.ranged = threading.Event()

    def steal(self, chunk: int | None = None) -> Piece | None:
        """A range for a connection, of about ``chunk`` bytes (None: as many as there
        are): the first bytes no connection holds; else, from the range with the most
        bytes left, its connection keeps the next ``chunk`` (or half), this one takes the
        ``chunk`` after that, and the rest is free for the others. Ranges stay close to
        the hashed prefix, so the hashing keeps up with the bytes. None when no range
        is worth splitting (both parts must hold ``min_split``)."""
        with self.cond:
            if self._free:
                a, b = self._free[0]
                end = self._bounded(a, b, chunk)
                if end == b:
                    self._free.pop(0)
                else:
                    self._free[0] = (end, b)
                return self._hold(Piece(a, end))
            best: Piece | None = None
            for p in self.active:
                if best is None or p.end - p.pos > best.end - best.pos:
                    best = p
            if best is None:
                return None
            left = best.end - best.pos
            keep = left // 2 if chunk is None else min(chunk, left // 2)
            cut = best.pos + max(self.reserve, keep)
            least = self.split_min()
            if cut - best.pos < least or best.end - cut < least:
                return None
            end = self._bounded(cut, best.end, chunk)
            if end < best.end:
                self._free.append((end, best.end))
                self._free.sort()
            best.end = cut
            return self._hold(Piece(cut, end))

    def _bounded(self, start: int, end: int, chunk: int | None) -> int:
        """The end of a range from ``start`` of about ``chunk`` bytes, before ``end``:
        what is left is never shorter than ``min_split``."""
        if chunk is None:
            return end
        least = self.split_min()
        bound = start + max(chunk, least, 1)
        return end if end - bound < least else bound

    def left(self) -> int:
        """Bytes no connection has got yet."""
        with self.cond:
            return sum(b - a for a, b in self._free) + sum(p.end - p.pos for p in self.active)

    def splittable(self) -> bool:
        with self.cond:
            if self._free:
                return True
            least = self.split_min()
            return any(p.end - p.pos - max(self.reserve, least) >= least for p in self.active)

    def split_min(self) -> int:
        """The least a part of a split (or the rest of a range) holds: ``min_split``, or
        less where a request's round trip is short. Taking half of a range pays if the
        round trip of the new request is shorter than the half takes to arrive (half >=
        rate x RTT), so the floor is one round trip's bytes, at least ``reserve`` and at
        most ``min_split``: on loopback or a LAN the tail is cut finer and the connections
        finish closer together; on a far CDN nothing changes."""
        rate, rtt = self.conn_rate, self.rtt
        if rate is None or rtt is None:
            return self.min_split
        return max(min(self.reserve, self.min_split), min(self.min_split, int(rate * rtt)))

    def _hold(self, piece: Piece) -> Piece:
        self.active.append(piece)
        return piece

    def wrote(self, piece: Piece, at: int, n: int) -> int:
        """Bytes ``[at, at + n)`` of ``piece`` are written; returns how many of the file are."""
        with self.cond:
            assert at == piece.pos and at + n <= piece.end, (piece, at, n)
            piece.pos += n
            self.done.add(at, at + n)
            self.received += n
            total = self.done.total()
            self.cond.notify_all()
            return total

    def release(self, piece: Piece) -> None:
        """The connection gives ``piece`` up (finished, failed or stopped): what it did
        not get is free again."""
        with self.cond:
            if piece in self.active:
                self.active.remove(piece)
            if piece.pos < piece.end:
                self._free.append((piece.pos, piece.end))
                self._free.sort()

    def answered(self) -> None:
        """A connection's range was answered (206): from now on the file may grow; the
        coordinating thread is woken, so its first window starts now."""
        if not self.ranged.is_set():
            with self.cond:
                self.ranged.set()
                self.cond.notify_all()

    def saw_round_trip(self, seconds: float) -> None:
        """A request was answered ``seconds`` after it was sent (the shortest is kept: a
        new connection's handshakes only make it longer)."""
        with self.cond:
            self.rtt = seconds if self.rtt is None else min(self.rtt, seconds)

    def saw_rate(self, rate: float) -> None:
        """A connection received at ``rate`` bytes/s (averaged with what was seen)."""
        with self.cond:
            self.conn_rate = rate if self.conn_rate is None else (self.conn_rate + rate) / 2

    def chunk(self, policy: SegmentPolicy, connections: int) -> int | None:
        """How much a connection asks for next: what it receives in ``piece_seconds``, at
        most ``max_piece``, and a share of what is left (so they finish together)."""
        rate = self.conn_rate
        if rate is None:
            return None
        share = self.left() // (2 * max(1, connections))
        least = self.split_min()
        return max(least, min(int(rate * policy.piece_seconds), policy.max_piece, share))

    def prefix(self) -> int:
        with self.cond:
            return self.done.prefix()

    def snapshot(self) -> Ranges:
        with self.cond:
            return Ranges(self.done.spans)


# --------------------------------------------------------------------------- the download


@dataclass
class Segmenter:
    """Chooses, per file, one stream or several ranges; shared by every file of a sync."""

    policy: SegmentPolicy
    budget: ConnectionBudget
    governor: Governor

    @classmethod
    def of(cls, policy: SegmentPolicy) -> Segmenter:
        total = policy.total if policy.total is not None else DEFAULT_MAX_CONNECTIONS
        return cls(policy, ConnectionBudget(total), Governor(policy.probe_s))

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


class _Growth:
    """One file's decisions to open more connections (see the module docstring)."""

    def __init__(self, segmenter: Segmenter, started: float | None = None) -> None:
        self.segmenter = segmenter
        self.window = segmenter.policy.probe_s
        self.frozen = False
        # When (default: now, time.monotonic()) and at how many bytes the window began.
        self._mark = (time.monotonic() if started is None else started, 0)
        # A step under test: (connections before, after, rate before, when it was taken).
        self._step: tuple[int, int, float, float] | None = None
        self._after: tuple[float, int] | None = None  # the measuring window's start
        self.rate_per_connection: float | None = None  # as measured when it last grew
        self._grown = False  # a step was taken: later ones wait for whole windows
        # The first call (the first answer came): when, and the CPU used until then.
        self._answered: tuple[float, float] | None = None

    def more(self, now: float, received: int, workers: int) -> int:
        """How many connections to open now."""
        if self.frozen:
            return 0
        policy = self.segmenter.policy
        if self._answered is None:
            self._answered = (now, self.segmenter.governor.cpu())
        if self._step is not None:
            before, after, rate_before, taken = self._step
            if self._after is None:
                if now - taken >= self.window:  # the new connections had time to start
                    self._after = (now, received)
                return 0
            t1, r1 = self._after
            if now - t1 < self.window:
                return 0
            rate_after = (received - r1) / (now - t1)
            self._step, self._after = None, None
            if not growth_paid(before, after, rate_before, rate_after):
                self.frozen = True
                return 0
            # Paid: the window just measured is the rate at `after` connections, so the
            # next step is decided now, not one window later.
            self._mark = (t1, r1)
        t0, r0 = self._mark
        if policy.adaptive and now - t0 < self.window:
            early = self._early(now, received, workers)
            if early is None:
                return 0
            headroom: float | None = early
            t0, r0 = self._answered[0], 0  # every byte came after the first answer
        else:
            headroom = self.segmenter.governor.headroom()
            if policy.adaptive and headroom is None:
                return 0
        want = connections_wanted(workers, headroom or 1.0, policy) - workers
        rate = (received - r0) / max(now - t0, 1e-9)
        if want > 0 and policy.adaptive:
            self._step = (workers, workers + want, rate, now)
            self._grown = True
        if want > 0 and received > r0:
            self.rate_per_connection = rate / max(1, workers)
        return max(0, want)

    def wait_s(self, now: float, longest: float) -> float:
        """How long the coordinating thread may sleep: ``longest``, or less so that it
        wakes when the first window's early part (:data:`EARLY`) ends."""
        if self._grown or self.frozen or self._answered is None:
            return longest
        due = self._answered[0] + self.window * EARLY - now
        return longest if due <= 0 else min(longest, due + 0.001)

    def _early(self, now: float, received: int, workers: int) -> float | None:
        """The headroom of the file's first :data:`EARLY` of a window, from its first
        answer on, if bytes came and it opens all of -x (:func:`early_step`); else None."""
        if self._grown or self._answered is None:
            return None
        t0, c0 = self._answered
        if now - t0 < self.window * EARLY or received <= 0:
            return None
        governor = self.segmenter.governor
        headroom = governor.headroom_over(governor.cpu() - c0, now - t0)
        return headroom if early_step(workers, headroom, self.segmenter.policy) else None


class _Ring:
    """One connection's buffers: the one it receives into, and those handed to the
    coordinating thread to hash (given back once hashed). At most ``count`` exist; they
    are made as needed, so a connection that never hands one off has just one."""

    def __init__(self, count: int, size: int) -> None:
        self._count = count
        self._size = size
        self._made = 1
        self._free: list[memoryview] = []
        self._cond = threading.Condition()
        self._current: memoryview | None = memoryview(bytearray(size))

    def buffer(self, stop: threading.Event) -> memoryview:
        """The buffer to receive into (waits while all are being hashed). Once ``stop`` is
        set it does not wait: the connection is about to end."""
        with self._cond:
            while self._current is None:
                if self._free:
                    self._current = self._free.pop()
                elif self._made < self._count or stop.is_set():
                    self._made += 1
                    self._current = memoryview(bytearray(self._size))
                else:
                    self._cond.wait(_WAIT_S)
            return self._current

    def hand_off(self) -> memoryview:
        """The buffer received into goes to the hasher; the next :meth:`buffer` is another."""
        with self._cond:
            buf = self._current
            assert buf is not None
            self._current = None
            return buf

    def give(self, buf: memoryview) -> None:
        """A handed-off buffer is hashed: it may be filled again."""
        with self._cond:
            self._free.append(buf)
            self._cond.notify()


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
        # Only the coordinating thread hashes. Under this lock: the buffers handed to it
        # (in file order, from `PartialFile.offset` on) and where they end.
        self._hash_lock = threading.Lock()
        self._handed: collections.deque[tuple[int, memoryview, _Ring, memoryview]] = (
            collections.deque()
        )
        self._handed_end = 0
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
        policy = self.segmenter.policy
        sched = Schedule(self.size, done, min(policy.min_split, policy.min_piece))
        save_state(self.state, self.size, self.digest, done)  # before the file grows
        try:
            if os.fstat(part.fd).st_size != self.size:
                os.ftruncate(part.fd, self.size)
        except OSError as exc:
            raise storage_error("cannot size the partial download", self.partial, exc) from exc
        with self._hash_lock:
            self._handed.clear()
            self._handed_end = part.offset
        stop = threading.Event()
        errors: list[BaseException] = []
        threads: list[threading.Thread] = []
        workers = [0]  # alive, under sched.cond

        def spawn(piece: Piece, extra: bool) -> None:
            with sched.cond:
                workers[0] += 1
            t = threading.Thread(
                target=self._worker, args=(sched, part, piece, stop, errors, extra, workers),
                name=f"modelctl-range {self.where}", daemon=True,
            )  # fmt: skip
            threads.append(t)
            t.start()

        buf = memoryview(bytearray(BUFFER))
        last_save = time.monotonic()
        growth = _Growth(self.segmenter)
        first = sched.steal()
        if first is not None:
            spawn(first, extra=False)
        try:
            while True:
                if self.ctx.cancel.is_set():
                    raise Cancelled()
                if errors:
                    raise errors[0]
                if self._hash_some(part, sched.prefix(), buf):
                    continue
                alive = any(t.is_alive() for t in threads)
                if not alive:
                    if errors:
                        raise errors[0]
                    if part.offset >= self.size:
                        return
                    if self._hash_some(part, sched.prefix(), buf):
                        continue  # the last bytes were written after the prefix was read
                    # Ranges given back by connections that left (another file wanted
                    # theirs): the file's own connection takes them on.
                    piece = sched.steal(sched.chunk(policy, 1))
                    if piece is not None:
                        spawn(piece, extra=False)
                        continue
                    raise NetworkError(
                        "the ranges of a segmented download ended with bytes missing",
                        where=self.where,
                        hint="run `modelctl sync` again: it resumes",
                    )
                now = time.monotonic()
                if sched.ranged.is_set():
                    with sched.cond:
                        received, running = sched.received, workers[0]
                    more = growth.more(now, received, running)
                    if more and sched.conn_rate is None and growth.rate_per_connection:
                        sched.saw_rate(growth.rate_per_connection)
                    for _ in range(more):
                        if not sched.splittable() or not self.segmenter.budget.try_acquire():
                            break
                        piece = sched.steal(sched.chunk(policy, running + more))
                        if piece is None:
                            self.segmenter.budget.release()
                            break
                        spawn(piece, extra=True)
                if now - last_save >= SAVE_EVERY_S:
                    save_state(self.state, self.size, self.digest, sched.snapshot())
                    last_save = now
                with sched.cond:
                    sched.cond.wait(growth.wait_s(now, _WAIT_S))
        finally:
            stop.set()
            for t in threads:
                t.join()
            if part.offset < self.size:
                with contextlib.suppress(ModelctlError):
                    # Best effort: failing to record progress costs a re-fetch, not a byte.
                    save_state(self.state, self.size, self.digest, sched.snapshot())

    def _hash_some(self, part: PartialFile, prefix: int, buf: memoryview) -> bool:
        """Hash the next bytes: a buffer a connection handed over, else some written bytes
        past the hashed prefix, read back through ``buf``; False if there were none."""
        with self._hash_lock:
            if self._handed:
                at, data, ring, owned = self._handed.popleft()
            elif part.offset < prefix:
                # Claimed: a connection finishing a buffer right there now hands it over
                # only after these, at the new end.
                at, upto = part.offset, min(prefix, part.offset + BUFFER * 8)
                self._handed_end = upto
                data = None
            else:
                return False
        if data is None:
            part.hash_written(upto, buf)
            return True
        assert at == part.offset, (at, part.offset)
        part.hash_next(data)
        ring.give(owned)
        return True

    def _worker(
        self,
        sched: Schedule,
        part: PartialFile,
        piece: Piece | None,
        stop: threading.Event,
        errors: list[BaseException],
        extra: bool,
        workers: list[int],
    ) -> None:
        ring = _Ring(HANDOFF_BUFFERS, BUFFER)
        try:
            while piece is not None and not stop.is_set():
                try:
                    self._fetch_piece(piece, sched, part, stop, ring)
                finally:
                    sched.release(piece)
                if extra and self.segmenter.budget.wanted():
                    return  # another file waits for its first connection: give this one back
                with sched.cond:
                    running = workers[0]
                piece = sched.steal(sched.chunk(self.segmenter.policy, running))
        # Handed to the coordinating thread, which raises the first one.
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            stop.set()
        finally:
            if extra:
                self.segmenter.budget.release()
            with sched.cond:
                workers[0] -= 1
                sched.cond.notify_all()

    def _fetch_piece(
        self,
        piece: Piece,
        sched: Schedule,
        part: PartialFile,
        stop: threading.Event,
        ring: _Ring,
    ) -> None:
        """Get ``piece``, retrying it alone from where it stopped (modelctl.transfer.retry's
        policy: only attempts that bring nothing new count toward giving up)."""
        retries = Backoff(self.ctx.policy, self.tracker.mark)
        while piece.pos < piece.end and not stop.is_set():
            before = piece.pos
            try:
                self._request(piece, sched, part, stop, ring)
                if piece.pos < piece.end and not stop.is_set():
                    raise _Transient(f"the answer ended at byte {piece.pos} of {piece.end}")
            except _Transient as exc:
                if piece.pos > before:
                    retries.progressed()
                wait = retries.next(exc.told)
                if wait is None:
                    reason = f"{exc.reason}, range at byte {piece.pos}"
                    raise gave_up(reason, retries, self.where, self.ctx) from None
                self.tracker.waiting(self.pf, wait, exc.told.why if exc.told else exc.reason)
                if stop.wait(wait):
                    return

    def _request(
        self,
        piece: Piece,
        sched: Schedule,
        part: PartialFile,
        stop: threading.Event,
        ring: _Ring,
    ) -> None:
        first, last = piece.pos, piece.end - 1
        headers = {**self.headers, "Range": f"bytes={first}-{last}"}
        began = time.monotonic()
        try:
            resp = self.ctx.transport.get(self.url, headers)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(self.ctx.describe(exc)) from exc
        sched.saw_round_trip(time.monotonic() - began)
        complete = False
        try:
            self._accept(resp, first, last)
            sched.answered()
            self._stream(resp, piece, sched, part, stop, ring)
            # The whole answer was read only if the range was not cut short meanwhile.
            complete = piece.pos == last + 1
            got = piece.pos - first
            if got >= sched.min_split:
                sched.saw_rate(got / max(time.monotonic() - began, 1e-6))
        finally:
            if complete:
                resp.close()
            else:
                abort(resp)

    def _accept(self, resp: Response, first: int, last: int) -> None:
        status = resp.status
        check_refusal(resp, self.ctx, self.ref, self.where)  # retry, or refused: as fetch
        if status in (200, 416):
            raise RangeIgnored()
        if status != 206:
            raise NetworkError(
                f"unexpected answer from {self.ctx.server} (HTTP {status})", where=self.where
            )
        m = _CONTENT_RANGE.match(resp.header("Content-Range") or "")
        if not m or int(m.group(1)) != first or int(m.group(2)) != last:
            raise _Transient(f"206 answer with a Content-Range other than {first}-{last}")
        if m.group(3) != "*" and int(m.group(3)) != self.size:
            raise Mismatch(
                "the source announces a different size (Content-Range total)",
                expected=f"{self.size} bytes",
                actual=f"{m.group(3)} bytes",
            )

    def _stream(
        self,
        resp: Response,
        piece: Piece,
        sched: Schedule,
        part: PartialFile,
        stop: threading.Event,
        ring: _Ring,
    ) -> None:
        """The body into the ring's buffer, written at its offset each time the buffer is
        full, up to ``piece.end`` as it is now (another connection may have taken the rest)."""
        filled = 0
        try:
            while not stop.is_set():
                buf = ring.buffer(stop)
                # piece.end only shrinks, never below pos + BUFFER (Schedule.steal).
                want = min(len(buf) - filled, piece.end - piece.pos - filled)
                if want <= 0:
                    break
                try:
                    n = resp.readinto(buf[filled : filled + want])
                except TRANSPORT_ERRORS as exc:
                    raise _Transient(self.ctx.describe(exc)) from exc
                if not n:
                    break
                filled += n
                if filled == len(buf):
                    self._flush(piece, sched, part, ring, filled, stop)
                    filled = 0
        finally:
            # What was received is kept, also after a dropped connection.
            self._flush(piece, sched, part, ring, filled, stop)

    def _flush(
        self,
        piece: Piece,
        sched: Schedule,
        part: PartialFile,
        ring: _Ring,
        n: int,
        stop: threading.Event,
    ) -> None:
        if not n:
            return
        data = ring.buffer(stop)[:n]
        at = piece.pos
        part.write_at(data, at)
        with self._hash_lock:
            # Right after what is hashed or queued: hashed from memory, never read back.
            handed = at == self._handed_end
            if handed:
                self._handed.append((at, data, ring, ring.hand_off()))
                self._handed_end = at + n
        total = sched.wrote(piece, at, n)  # wakes the coordinating thread
        with self._count:
            self.transferred += n
        self.tracker.advanced(self.pf, total, n)
