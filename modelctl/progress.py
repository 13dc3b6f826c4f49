"""Progress of a sync as events sent to a listener; the library never prints.

Events, in order::

    DownloadPlanReady               once, before any transfer
    FileStarted / FileProgress /    per file, from worker threads (serialized here),
    FileDone / FileFailed /         each followed by an AggregateProgress
    FileWaiting                     a retry waits (rate limit, server error, dropped link)
    SyncFinished                    once, at the end (also after a failure)

Before these, when ``provision(lock_mode="update")`` must lock first (the lockfile is
missing or stale)::

    LockStarted                     once: why, and which manifest
    LockWaiting                     a metadata request waits before a retry (rate limit)
    LockWritten                     once: the lockfile written, how many files it locks

:class:`ProgressTracker` turns what the workers report into these events. It holds one
lock, so events reach the listener one at a time and the aggregate only grows: a file
that starts again from zero (a 200 answer to a Range request, a digest mismatch) adds
nothing until it passes the point it had reached. FileProgress is throttled (every
:data:`PROGRESS_EVERY_BYTES` or :data:`PROGRESS_EVERY_S`, whichever comes first); the
last one of a file is always sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from modelctl.lock.digest import Digest
from modelctl.lock.plan import DownloadPlan, PlannedFile

if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from modelctl.values import dataclass, field

PROGRESS_EVERY_BYTES: Final = 1024 * 1024
PROGRESS_EVERY_S: Final = 0.1


def _file_json(f: PlannedFile) -> dict[str, Any]:
    return {"asset": f.asset, "repo_id": f.repo_id, "filename": f.filename}


@dataclass(frozen=True)
class DownloadPlanReady:
    plan: DownloadPlan
    location: str  # the cache folder or --target tree

    def to_json(self) -> dict[str, Any]:
        return {"event": "plan", "location": self.location, **self.plan.to_json()}


@dataclass(frozen=True)
class FileStarted:
    file: PlannedFile
    resume_from: int  # bytes already on disk from an earlier attempt

    def to_json(self) -> dict[str, Any]:
        return {"event": "file_started", **_file_json(self.file), "resume_from": self.resume_from}


@dataclass(frozen=True)
class FileProgress:
    file: PlannedFile
    bytes_done: int
    bytes_total: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "file_progress",
            **_file_json(self.file),
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
        }


@dataclass(frozen=True)
class FileDone:
    file: PlannedFile
    digest: Digest  # the locked digest, checked against every byte
    bytes_transferred: int  # over the network in this run (0 when hashed locally)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "file_done",
            **_file_json(self.file),
            "digest": str(self.digest),
            "bytes_transferred": self.bytes_transferred,
        }


@dataclass(frozen=True)
class FileFailed:
    file: PlannedFile
    error: str  # the rendered modelctl error

    def to_json(self) -> dict[str, Any]:
        return {"event": "file_failed", **_file_json(self.file), "error": self.error}


@dataclass(frozen=True)
class FileWaiting:
    """A retry of this file waits ``seconds`` first, for ``reason`` (told to the user)."""

    file: PlannedFile
    seconds: float
    reason: str  # e.g. 'rate limited: RateLimit "resolvers" resets in 30 s'

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "file_waiting",
            **_file_json(self.file),
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AggregateProgress:
    bytes_downloaded: int  # toward total_bytes, resumed prefixes included; never decreases
    total_bytes: int  # known sizes of the files to download
    files_complete: int
    files_total: int
    bytes_transferred: int  # over the network in this run: what a rate is computed from

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "progress",
            "bytes_downloaded": self.bytes_downloaded,
            "total_bytes": self.total_bytes,
            "files_complete": self.files_complete,
            "files_total": self.files_total,
            "bytes_transferred": self.bytes_transferred,
        }


@dataclass(frozen=True)
class SyncFinished:
    files_downloaded: int
    files_present: int  # already there (and verified) before this run
    files_failed: int
    bytes_transferred: int
    seconds: float
    location: str

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "finished",
            "files_downloaded": self.files_downloaded,
            "files_present": self.files_present,
            "files_failed": self.files_failed,
            "bytes_transferred": self.bytes_transferred,
            "seconds": round(self.seconds, 3),
            "location": self.location,
        }


@dataclass(frozen=True)
class LockStarted:
    """The lock is missing or stale (``reason``): ``manifest`` is resolved against the Hub."""

    manifest: str
    reason: str  # e.g. "there is no lockfile", "the lock does not match the manifest"

    def to_json(self) -> dict[str, Any]:
        return {"event": "lock_started", "manifest": self.manifest, "reason": self.reason}


@dataclass(frozen=True)
class LockWaiting:
    """A Hub metadata request of the lock waits before a retry; ``text`` says how long, why."""

    text: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "lock_waiting", "text": self.text}


@dataclass(frozen=True)
class LockWritten:
    """The lockfile at ``lock_path`` was written: ``files`` locked files."""

    lock_path: str
    files: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "lock_written",
            "lock_path": self.lock_path,
            "files": self.files,
            "seconds": round(self.seconds, 3),
        }


Event = (
    LockStarted
    | LockWaiting
    | LockWritten
    | DownloadPlanReady
    | FileStarted
    | FileProgress
    | FileDone
    | FileFailed
    | FileWaiting
    | AggregateProgress
    | SyncFinished
)


class ProgressListener(Protocol):
    def on_event(self, event: Event) -> None: ...


class NullProgress:
    """The default listener: ignores everything."""

    def on_event(self, event: Event) -> None:
        return None


@dataclass
class _FileState:
    high_water: int = 0  # the most bytes of this file ever on disk in this run
    reported_bytes: int = -1
    reported_at: float = 0.0


@dataclass
class Totals:
    """The aggregate as plain numbers (pure: unit-tested without threads)."""

    total_bytes: int
    files_total: int
    bytes_downloaded: int = 0
    files_complete: int = 0
    bytes_transferred: int = 0
    _files: dict[PlannedFile, _FileState] = field(default_factory=dict)

    def state(self, f: PlannedFile) -> _FileState:
        return self._files.setdefault(f, _FileState())

    def reached(self, f: PlannedFile, bytes_on_disk: int) -> None:
        """The file now has ``bytes_on_disk`` bytes; only growth past its high water counts."""
        st = self.state(f)
        cap = f.size_bytes if f.size_bytes is not None else bytes_on_disk
        on_disk = min(bytes_on_disk, cap)
        if on_disk > st.high_water:
            if f.size_bytes is not None:
                self.bytes_downloaded += on_disk - st.high_water
            st.high_water = on_disk

    def completed(self, f: PlannedFile) -> None:
        if f.size_bytes is not None:
            self.reached(f, f.size_bytes)
        self.files_complete += 1

    def snapshot(self) -> AggregateProgress:
        return AggregateProgress(
            self.bytes_downloaded,
            self.total_bytes,
            self.files_complete,
            self.files_total,
            self.bytes_transferred,
        )


class ProgressTracker:
    """Thread-safe: workers report, the listener receives ordered, throttled events."""

    def __init__(
        self,
        listener: ProgressListener,
        plan: DownloadPlan,
        location: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        todo = plan.to_download()
        self._listener = listener
        self._clock = clock
        self._lock = threading.Lock()
        self._totals = Totals(sum(f.size_bytes or 0 for f in todo), len(todo))
        self._started = clock()
        self._done = 0
        self._failed = 0
        with self._lock:
            self._listener.on_event(DownloadPlanReady(plan, location))

    @property
    def totals(self) -> AggregateProgress:
        with self._lock:
            return self._totals.snapshot()

    def mark(self) -> tuple[int, int]:
        """(bytes received, files completed) so far: changes whenever the sync advances
        (a retry's waiting budget starts again then: see modelctl.transfer.retry)."""
        with self._lock:
            return self._totals.bytes_transferred, self._totals.files_complete

    def _emit(self, event: Event) -> None:
        # Called with the lock held: the aggregate is sent right after the event it counts.
        self._listener.on_event(event)
        self._listener.on_event(self._totals.snapshot())

    def started(self, f: PlannedFile, resume_from: int) -> None:
        with self._lock:
            self._totals.reached(f, resume_from)
            self._emit(FileStarted(f, resume_from))

    def restarted(self, f: PlannedFile) -> None:
        """The file starts again from zero: its bytes count again only past its high water."""
        with self._lock:
            self._totals.state(f).reported_bytes = -1

    def advanced(self, f: PlannedFile, bytes_on_disk: int, transferred: int) -> None:
        """``transferred`` new bytes arrived; the file now has ``bytes_on_disk``."""
        with self._lock:
            self._totals.bytes_transferred += transferred
            self._totals.reached(f, bytes_on_disk)
            st = self._totals.state(f)
            now = self._clock()
            due = (
                bytes_on_disk - st.reported_bytes >= PROGRESS_EVERY_BYTES
                or now - st.reported_at >= PROGRESS_EVERY_S
                or bytes_on_disk == f.size_bytes
            )
            if due and bytes_on_disk != st.reported_bytes:
                st.reported_bytes = bytes_on_disk
                st.reported_at = now
                self._emit(FileProgress(f, bytes_on_disk, f.size_bytes))

    def done(self, f: PlannedFile, digest: Digest, transferred: int) -> None:
        with self._lock:
            st = self._totals.state(f)
            final = f.size_bytes if f.size_bytes is not None else st.high_water
            if st.reported_bytes != final:
                # The last FileProgress of a file is never throttled away.
                st.reported_bytes = final
                self._totals.reached(f, final)
                self._emit(FileProgress(f, final, f.size_bytes))
            self._totals.completed(f)
            self._done += 1
            self._emit(FileDone(f, digest, transferred))

    def waiting(self, f: PlannedFile, seconds: float, reason: str) -> None:
        with self._lock:
            self._emit(FileWaiting(f, seconds, reason))

    def failed(self, f: PlannedFile, error: str) -> None:
        with self._lock:
            self._failed += 1
            self._emit(FileFailed(f, error))

    def finished(self, files_present: int, location: str) -> SyncFinished:
        with self._lock:
            event = SyncFinished(
                files_downloaded=self._done,
                files_present=files_present,
                files_failed=self._failed,
                bytes_transferred=self._totals.bytes_transferred,
                seconds=self._clock() - self._started,
                location=location,
            )
            self._listener.on_event(event)
            return event
