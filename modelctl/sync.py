"""Sync: make the machine hold every file of a lock, byte-exact, and change nothing else.

The one skeleton every way of getting bytes goes through; a :class:`Source` only fetches
the files still missing (:class:`~modelctl.hub.source.HubSource`: parallel HTTP from the
Hub; :class:`~modelctl.bundle.source.BundleSource`: a bundle's tar, in order):

0. Refuse a --target tree with a symlink on the way to any file it would write
   (:func:`modelctl.store.layout.check_writable`), before anything is written.
1. Inspect (local only): a file is present when its content exists with the locked size
   and a record vouches for it; present without a record (placed by another tool), it is
   hashed once against the locked digest and recorded
   (:func:`modelctl.store.presence.check_local`). No request is made when every file is present.
2. Plan (pure, :func:`modelctl.lock.plan.plan_lock`) and announce it (the progress tracker).
3. Link the files already present (HF cache snapshots).
4. The source fetches what is missing, each file under its own lock, through
   :class:`~modelctl.store.partial.PartialFile`.
5. Write ``refs/<branch>``; report SyncFinished (also after a failure).

Ctrl-C sets the cancel event: workers stop after their current chunk, partial files stay
for the next run, and KeyboardInterrupt propagates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from modelctl.errors import ModelctlError
from modelctl.lock.plan import DownloadPlan, PlannedFile, plan_lock
from modelctl.lock.types import FileRef, Lock
from modelctl.parallel import DEFAULT_MAX_JOBS, run_parallel
from modelctl.progress import NullProgress, ProgressListener, ProgressTracker
from modelctl.store.layout import Store, check_writable
from modelctl.store.presence import check_local, look

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass


class Source(Protocol):
    """Where the bytes of missing files come from."""

    def fetch(
        self,
        todo: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> Sequence[PlannedFile]:
        """Make every file of ``todo`` present and verified in ``store`` (each under its
        content's lock, written through a PartialFile), reporting to ``tracker``; return
        the files written by this call. ``todo`` may be empty. Raise a modelctl error if
        any file cannot be had."""
        ...


@dataclass(frozen=True)
class SyncResult:
    location: str  # the HF cache folder or the --target tree
    plan: DownloadPlan
    downloaded: tuple[PlannedFile, ...]  # written by the source in this run
    files_present: int
    bytes_transferred: int
    seconds: float


def sync(
    lock: Lock,
    store: Store,
    source: Source,
    *,
    jobs: int | None = None,
    listener: ProgressListener | None = None,
    cancel: threading.Event | None = None,
) -> SyncResult:
    """Fetch from ``source`` what is missing from ``store``; raise a modelctl error if
    anything fails. ``jobs`` bounds the threads that inspect files already there."""
    cancel = cancel if cancel is not None else threading.Event()
    refs = list(dict.fromkeys(lock.files()))
    location = str(store.root)
    check_writable(store, refs)  # before anything is written (inspect writes records)
    present = inspect(store, refs, jobs or DEFAULT_MAX_JOBS, cancel)
    plan = plan_lock(lock, present)
    tracker = ProgressTracker(listener or NullProgress(), plan, location)
    todo = plan.to_download()
    written: Sequence[PlannedFile] = ()
    try:
        for ref in present:
            store.link(ref)
        written = source.fetch(todo, store, tracker, cancel)
        set_refs(lock, store)
    finally:
        finished = tracker.finished(len(plan.files) - len(todo), location)
    return SyncResult(
        location, plan, tuple(written), finished.files_present,
        finished.bytes_transferred, finished.seconds,
    )  # fmt: skip


def inspect(
    store: Store, refs: Sequence[FileRef], jobs: int, cancel: threading.Event
) -> list[FileRef]:
    """The refs whose content is present and verified (hashing only unrecorded files)."""
    # Usually a record vouches for every file: a stat and a small read each, done here in
    # order (no thread pool to start, the most of a warm sync). The others go through
    # check_local on a pool: hashing pays for threads, and hashlib releases the GIL on large
    # buffers. (A path the store refuses is left to the pool too, which reports every
    # such file in one error.)
    vouched = {r for r in refs if _vouched(store, r)}
    rest = [r for r in refs if r not in vouched]

    def ok(ref: FileRef) -> FileRef | None:
        check = check_local(store.content_path(ref), ref.digest, ref.size, store.record_path(ref))
        return ref if check.ok else None

    found = run_parallel(ok, rest, max(1, min(jobs, len(rest))), cancel)
    checked = {r for r in found if r is not None}
    return [r for r in refs if r in vouched or r in checked]


def _vouched(store: Store, ref: FileRef) -> bool:
    """A record vouches for ``ref``'s content as it is on disk (``look``: never hashes)."""
    try:
        path, record_path = store.content_path(ref), store.record_path(ref)
    except ModelctlError:
        return False  # check_local, on the pool, raises it with the others
    return look(path, ref.digest, ref.size, record_path).state == "verified"


def set_refs(lock: Lock, store: Store) -> None:
    """``refs/<branch>`` = the locked commit, so tools asking for the branch offline find it."""
    for asset in lock.assets:
        if asset.enabled:
            for src in asset.sources:
                if src.files:
                    store.set_ref(src.repo_type, src.repo_id, src.revision, src.commit)
