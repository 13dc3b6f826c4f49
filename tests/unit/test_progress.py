"""Progress aggregation: pure numbers (Totals) and the thread-safe tracker's event stream."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from modelctl.lock.digest import Digest
from modelctl.lock.plan import PlannedFile, make_plan
from modelctl.lock.types import FileRef
from modelctl.progress import (
    PROGRESS_EVERY_BYTES,
    AggregateProgress,
    DownloadPlanReady,
    Event,
    FileDone,
    FileProgress,
    FileStarted,
    ProgressTracker,
    SyncFinished,
    Totals,
)

DIGEST = Digest("sha256", "0" * 64)


def ref(i: int, size: int | None) -> FileRef:
    return FileRef("a", "model", "org/r", "c" * 40, f"f{i}", size, DIGEST, "file")


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


sizes = st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=5)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]]]:
    """File sizes and a sequence of (file, bytes on disk) reports; 0 means a restart."""
    file_sizes = draw(sizes)
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(file_sizes) - 1), st.integers(min_value=0, max_value=6000)
            ),
            max_size=40,
        )
    )
    return file_sizes, steps


@given(histories())
def test_totals_never_decrease_never_exceed_and_end_at_total(
    h: tuple[list[int], list[tuple[int, int]]],
) -> None:
    file_sizes, steps = h
    plan = make_plan([ref(i, s) for i, s in enumerate(file_sizes)])
    files = list(plan.files)
    totals = Totals(plan.total_bytes, len(files))
    seen = [0]
    for i, on_disk in steps:
        f = files[i % len(files)]
        totals.reached(f, on_disk)  # a restart reports a smaller number: ignored
        seen.append(totals.bytes_downloaded)
        assert totals.bytes_downloaded <= totals.total_bytes
    for f in files:
        totals.completed(f)
        seen.append(totals.bytes_downloaded)
    assert seen == sorted(seen)
    assert totals.bytes_downloaded == plan.total_bytes
    assert totals.files_complete == len(files)


def test_unknown_sizes_are_counted_as_files_but_not_bytes() -> None:
    plan = make_plan([ref(0, None), ref(1, 10)])
    totals = Totals(plan.total_bytes, 2)
    f_unknown = next(f for f in plan.files if f.size_bytes is None)
    totals.reached(f_unknown, 999)
    assert totals.bytes_downloaded == 0
    totals.completed(f_unknown)
    assert totals.files_complete == 1


def test_tracker_throttles_progress_but_always_sends_the_last() -> None:
    size = 10 * PROGRESS_EVERY_BYTES
    plan = make_plan([ref(0, size)])
    (f,) = plan.files
    out, clock = Collect(), Clock()
    tracker = ProgressTracker(out, plan, "/cache", clock=clock)
    tracker.started(f, 0)
    for done in range(4096, size + 1, 4096):  # 2560 tiny updates, no time passing
        tracker.advanced(f, done, 4096)
    tracker.done(f, DIGEST, size)
    tracker.finished(0, "/cache")
    progress = [e for e in out.events if isinstance(e, FileProgress)]
    assert 1 <= len(progress) <= 11
    assert progress[-1].bytes_done == size
    kinds = [type(e) for e in out.events if not isinstance(e, AggregateProgress)]
    assert kinds[0] is DownloadPlanReady and kinds[1] is FileStarted
    assert kinds[-2] is FileDone and kinds[-1] is SyncFinished
    # every per-file event is followed by the aggregate it changed
    for i, e in enumerate(out.events[1:-1], start=1):
        if not isinstance(e, AggregateProgress):
            assert isinstance(out.events[i + 1], AggregateProgress)


def test_time_also_triggers_progress() -> None:
    plan = make_plan([ref(0, 1000)])
    (f,) = plan.files
    out, clock = Collect(), Clock()
    tracker = ProgressTracker(out, plan, "/x", clock=clock)
    for now, done in ((0.2, 1), (0.25, 2), (0.4, 3)):
        clock.now = now
        tracker.advanced(f, done, 1)
    assert [e.bytes_done for e in out.events if isinstance(e, FileProgress)] == [1, 3]


def test_restart_after_a_mismatch_keeps_the_aggregate_monotone() -> None:
    plan = make_plan([ref(0, 100)])
    (f,) = plan.files
    out = Collect()
    tracker = ProgressTracker(out, plan, "/x")
    tracker.advanced(f, 80, 80)
    tracker.restarted(f)
    tracker.advanced(f, 50, 50)
    tracker.advanced(f, 100, 50)
    tracker.done(f, DIGEST, 180)
    agg = [e.bytes_downloaded for e in out.events if isinstance(e, AggregateProgress)]
    assert agg == sorted(agg) and agg[-1] == 100
    assert tracker.totals.bytes_transferred == 180


def test_concurrent_workers_give_a_consistent_monotone_stream() -> None:
    n, size, step = 8, 64 * 1024, 1024
    plan = make_plan([ref(i, size) for i in range(n)])
    out = Collect()
    tracker = ProgressTracker(out, plan, "/x")

    def work(f: PlannedFile) -> None:
        tracker.started(f, 0)
        for done in range(step, size + 1, step):
            tracker.advanced(f, done, step)
        tracker.done(f, DIGEST, size)

    threads = [threading.Thread(target=work, args=(f,)) for f in plan.files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tracker.finished(0, "/x")
    agg = [e for e in out.events if isinstance(e, AggregateProgress)]
    assert [a.bytes_downloaded for a in agg] == sorted(a.bytes_downloaded for a in agg)
    assert agg[-1].bytes_downloaded == agg[-1].total_bytes == n * size
    assert agg[-1].files_complete == n
    finished = out.events[-1]
    assert isinstance(finished, SyncFinished) and finished.bytes_transferred == n * size


def test_events_serialize_to_json() -> None:
    plan = make_plan([ref(0, 10)])
    (f,) = plan.files
    out = Collect()
    tracker = ProgressTracker(out, plan, "/x")
    tracker.started(f, 0)
    tracker.done(f, DIGEST, 10)
    tracker.finished(0, "/x")
    names = [e.to_json()["event"] for e in out.events]
    assert names[0] == "plan" and names[-1] == "finished"
    assert {"file_started", "file_progress", "file_done", "progress"} <= set(names)
