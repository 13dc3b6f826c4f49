"""Sync: make the machine hold every file of a lock, byte-exact, and change nothing else.

0. Refuse a --target tree with a symlink on the way to any file it would write
   (:func:`modelctl.store.check_writable`), before anything is written.
1. Inspect (local only): a file is present when its content exists with the locked size
   and a record vouches for it; present without a record (placed by another tool), it is
   hashed once against the locked digest and recorded. No request is made when every
   file is present.
2. Plan (pure, :func:`modelctl.plan.plan_lock`) and announce it.
3. Offline: fail naming every missing file, before any connection.
4. Fetch what is missing in parallel (largest first), each file under its own lock
   (:func:`modelctl.fetch.fetch_file`); then link snapshots and write ``refs/<branch>``.

Ctrl-C sets the cancel event: workers stop after their current chunk, partial files stay
for the next run, and KeyboardInterrupt propagates.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from modelctl.errors import ModelctlError, OfflineError
from modelctl.fetch import FetchContext, RetryPolicy, Transport, default_transport, fetch_file
from modelctl.filelock import Cancelled
from modelctl.plan import DownloadPlan, PlannedFile, plan_lock
from modelctl.progress import NullProgress, ProgressListener, ProgressTracker
from modelctl.record import check_local
from modelctl.settings import Settings
from modelctl.store import Store, check_writable
from modelctl.types import FileRef, Lock

DEFAULT_MAX_JOBS: Final = 8
_WAIT_S: Final = 0.2  # how often the main thread wakes up, so Ctrl-C is handled promptly
DEFAULT_POLICY: Final = RetryPolicy()

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SyncResult:
    location: str  # the HF cache folder or the --target tree
    plan: DownloadPlan
    downloaded: tuple[PlannedFile, ...]
    files_present: int
    bytes_transferred: int
    seconds: float


def default_jobs(files: int) -> int:
    return max(1, min(DEFAULT_MAX_JOBS, files))


def sync(
    lock: Lock,
    store: Store,
    settings: Settings,
    *,
    jobs: int | None = None,
    listener: ProgressListener | None = None,
    transport: Transport | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    cancel: threading.Event | None = None,
    record_blake3: bool = False,
) -> SyncResult:
    """Download what is missing from ``store``; raise a modelctl error if anything fails."""
    cancel = cancel if cancel is not None else threading.Event()
    refs = list(dict.fromkeys(lock.files()))
    location = str(store.root)
    check_writable(store, refs)  # before anything is written (inspect writes records)
    present = inspect(store, refs, jobs or DEFAULT_MAX_JOBS, cancel)
    plan = plan_lock(lock, present)
    tracker = ProgressTracker(listener or NullProgress(), plan, location)
    todo = sorted(plan.to_download(), key=lambda f: -(f.size_bytes or 0))
    downloaded: list[PlannedFile] = []
    try:
        for ref in present:
            store.link(ref)
        if todo and settings.offline:
            raise _offline_error(todo)
        if todo:
            ctx = FetchContext(
                endpoint=settings.endpoint,
                token=settings.token,
                # Proxies as the CLI honours them: http.client alone would ignore them.
                transport=transport
                if transport is not None
                else default_transport(urllib.request.getproxies()),
                policy=policy,
                record_blake3=record_blake3,
                cancel=cancel,
            )

            def one(pf: PlannedFile) -> PlannedFile | None:
                try:
                    outcome = fetch_file(pf, store, ctx, tracker)
                except ModelctlError as exc:
                    tracker.failed(pf, exc.render())
                    raise
                return pf if outcome.downloaded else None

            results = run_parallel(one, todo, jobs or default_jobs(len(todo)), cancel)
            downloaded = [pf for pf in results if pf is not None]
        set_refs(lock, store)
    finally:
        finished = tracker.finished(len(plan.files) - len(todo), location)
    return SyncResult(
        location, plan, tuple(downloaded), finished.files_present,
        finished.bytes_transferred, finished.seconds,
    )  # fmt: skip


def inspect(
    store: Store, refs: Sequence[FileRef], jobs: int, cancel: threading.Event
) -> list[FileRef]:
    """The refs whose content is present and verified (hashing only unrecorded files)."""

    def ok(ref: FileRef) -> FileRef | None:
        check = check_local(store.content_path(ref), ref.digest, ref.size, store.record_path(ref))
        return ref if check.ok else None

    # Usually a stat and a small read per file; a thread pool only pays when files must
    # be hashed, and hashlib releases the GIL on large buffers.
    found = run_parallel(ok, refs, max(1, min(jobs, len(refs))), cancel)
    return [r for r in found if r is not None]


def run_parallel(
    fn: Callable[[T], R], items: Iterable[T], jobs: int, cancel: threading.Event
) -> list[R]:
    """``[fn(x) for x in items]`` on ``jobs`` threads, results in order.

    Every item runs even if one fails; then the first failure is raised, with the other
    failures named in its details. On Ctrl-C, ``cancel`` is set, the workers are waited
    for (they stop within one chunk) and KeyboardInterrupt propagates.
    """
    items = list(items)
    if not items:
        return []
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="modelctl") as pool:
        futures = [pool.submit(fn, x) for x in items]
        try:
            pending: set[cf.Future[R]] = set(futures)
            while pending:
                _, pending = cf.wait(pending, timeout=_WAIT_S)
        except KeyboardInterrupt:
            cancel.set()
            for f in futures:
                f.cancel()
            cf.wait(futures)
            raise
    errors = [e for f in futures if (e := f.exception()) is not None]
    if errors:
        raise _first_error(errors)
    return [f.result() for f in futures]


def _first_error(errors: list[BaseException]) -> BaseException:
    # Cancelled outranks everything: someone asked to stop, the rest follows from it.
    for e in errors:
        if isinstance(e, Cancelled):
            return e
    first = errors[0]
    if isinstance(first, ModelctlError) and len(errors) > 1:
        others = tuple(
            e.render().splitlines()[0] if isinstance(e, ModelctlError) else repr(e)
            for e in errors[1:]
        )
        first.details = (*first.details, *(f"also: {o}" for o in others))
    return first


def _offline_error(todo: Sequence[PlannedFile]) -> OfflineError:
    names = tuple(
        f"{f.asset}: {f.ref.repo_id}@{f.ref.commit}:{f.filename}"
        for f in sorted(todo, key=lambda f: (f.asset, f.filename))
    )
    return OfflineError(
        f"offline mode, and {len(todo)} locked file(s) are not on disk",
        details=names,
        hint="run `modelctl sync` once with network access (unset HF_HUB_OFFLINE)",
    )


def set_refs(lock: Lock, store: Store) -> None:
    """``refs/<branch>`` = the locked commit, so tools asking for the branch offline find it."""
    for asset in lock.assets:
        if asset.enabled:
            for src in asset.sources:
                if src.files:
                    store.set_ref(src.repo_type, src.repo_id, src.revision, src.commit)
