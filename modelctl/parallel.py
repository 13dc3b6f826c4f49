"""Run work on a few threads, in order, stoppable with Ctrl-C: sync, verify and bundle use it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, TypeVar

from modelctl.errors import ModelctlError
from modelctl.fs.flock import Cancelled

if TYPE_CHECKING:
    import concurrent.futures as cf

DEFAULT_MAX_JOBS: Final = 8
DEFAULT_CONNECTIONS: Final = 8  # per file (sync -x), like aria2c -x8
_WAIT_S: Final = 0.2  # how often the main thread wakes up, so Ctrl-C is handled promptly

T = TypeVar("T")
R = TypeVar("R")


def default_jobs(items: int) -> int:
    return max(1, min(DEFAULT_MAX_JOBS, items))


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
    # Imported here: concurrent.futures (and the logging it imports) is ~4 ms of a warm
    # start-up, which finds every file vouched for without a thread (sync.inspect).
    import concurrent.futures as cf

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
