"""The pure parts of segmented downloads: byte ranges, the schedule of ranges over
connections, the connection budget, when to open more, the sidecar."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from modelctl.transfer.segments import (
    GROWTH_MARGIN,
    ConnectionBudget,
    Governor,
    Piece,
    Ranges,
    Schedule,
    Segmenter,
    SegmentPolicy,
    _Growth,
    _Ring,
    connections_wanted,
    early_step,
    growth_paid,
    load_state,
    save_state,
    state_path,
)

SIZE = 200
spans_st = st.lists(
    st.tuples(st.integers(0, SIZE), st.integers(0, SIZE)).map(lambda t: (min(t), max(t))),
    max_size=12,
)


def covered(spans: list[tuple[int, int]]) -> set[int]:
    return {i for a, b in spans for i in range(a, b)}


@given(spans_st)
def test_ranges_hold_exactly_the_bytes_added(spans: list[tuple[int, int]]) -> None:
    r = Ranges(spans)
    model = covered(spans)
    assert covered(list(r.spans)) == model
    assert r.total() == len(model)
    # Disjoint, sorted, never touching (merged), never empty.
    assert all(a < b for a, b in r.spans)
    assert all(b1 < a2 for (_, b1), (a2, _) in zip(r.spans, r.spans[1:], strict=False))
    prefix = 0
    while prefix in model:
        prefix += 1
    assert r.prefix() == prefix
    gaps = r.gaps(SIZE)
    assert covered(gaps) == set(range(SIZE)) - model


# --------------------------------------------------------------------------- schedule

# A program for the connections of one file: open one more, receive bytes, write what was
# received, or drop the connection (its range is given back, from the byte it reached).
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 0), st.integers(0, 3000)),  # chunk (0: all)
        st.tuples(st.just("recv"), st.integers(0, 7), st.integers(1, 5000)),
        st.tuples(st.just("flush"), st.integers(0, 7), st.integers(0, 0)),
        st.tuples(st.just("drop"), st.integers(0, 7), st.integers(0, 0)),
        # A connection's rate (bytes/s) and a request's round trip (1/10,000 s) were seen:
        # the least part of a split may shrink (Schedule.split_min).
        st.tuples(st.just("saw"), st.integers(1, 10**6), st.integers(0, 3000)),
    ),
    max_size=80,
)


class _Conn:
    def __init__(self, piece: Piece) -> None:
        self.piece = piece
        self.buffered = 0  # received, not yet written (at most the reserve)


@given(
    st.one_of(st.integers(1, 3000), st.integers(1, 40_000)),
    st.integers(1, 3000),
    st.integers(1, 2000),
    spans_st,
    ops_st,
)
# A split while the connection holds received bytes beyond the half of what it has left.
@example(100, 1, 80, [], [("recv", 0, 70), ("open", 0, 0)])
def test_ranges_cover_the_file_once_whatever_the_connections_do(
    size: int, min_piece: int, reserve: int, written: list[tuple[int, int]], ops: list
) -> None:
    """Every byte is written exactly once (resumed bytes never again), also when
    connections are opened at any time, split each other's ranges and drop; a
    connection never receives past its range's end, however it shrinks."""
    done = Ranges((a * size // SIZE, b * size // SIZE) for a, b in written)
    resumed = Ranges(done.spans)
    sched = Schedule(size, done, min_piece, reserve)
    counts = bytearray(size)
    for a, b in resumed.spans:
        for i in range(a, b):
            counts[i] += 1
    conns: list[_Conn] = []

    def write(c: _Conn) -> None:
        p = c.piece
        if c.buffered:
            at = p.pos
            sched.wrote(p, at, c.buffered)
            for i in range(at, at + c.buffered):
                counts[i] += 1
            c.buffered = 0

    def open_one(chunk: int = 0) -> bool:
        piece = sched.steal(chunk or None)
        if piece is None:
            return False
        assert piece.end - piece.pos >= 1
        conns.append(_Conn(piece))
        return True

    def check() -> None:
        for c in conns:
            assert c.piece.pos + c.buffered <= c.piece.end  # never past its end
        held = sorted((c.piece.pos, c.piece.end) for c in conns if c.piece.pos < c.piece.end)
        assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(held))

    open_one()
    for op, w, n in ops:
        if op == "open":
            open_one(n)
        elif op == "saw":
            sched.saw_rate(float(w))
            sched.saw_round_trip(n / 10_000)
        elif conns:
            c = conns[w % len(conns)]
            p = c.piece
            if op == "recv":
                # As _stream: at most the buffer's room, at most up to the end as it is now.
                c.buffered += max(0, min(n, reserve - c.buffered, p.end - p.pos - c.buffered))
                if c.buffered == reserve:
                    write(c)
            elif op == "flush":
                write(c)
            else:  # drop: what was received is written, the rest is given back
                write(c)
                sched.release(p)
                conns.remove(c)
            if p.pos == p.end and c in conns:  # done: give it back, take another
                sched.release(p)
                conns.remove(c)
                open_one(n)
        check()
    # Then every connection runs to its end, and the file is finished by whoever is left.
    while conns or open_one():
        c = conns[0]
        c.buffered = c.piece.end - c.piece.pos
        write(c)
        sched.release(c.piece)
        conns.remove(c)
        check()
    assert set(counts) <= {1}, "a byte written twice, or never"
    assert sched.done.spans == ((0, size),)


@given(st.lists(st.sampled_from(["acquire", "try", "release"]), max_size=60), st.integers(1, 9))
def test_the_budget_is_never_exceeded(ops: list[str], total: int) -> None:
    budget = ConnectionBudget(total)
    held = 0
    for op in ops:
        if op == "acquire" and held < total:  # (would block when none is free)
            budget.acquire(threading.Event())
            held += 1
        elif op == "try":
            got = budget.try_acquire()
            assert got == (held < total)
            held += got
        elif op == "release" and held:
            budget.release()
            held -= 1
        assert budget.in_use() == held <= total


@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.floats(0.01, 1000.0),
    st.booleans(),
)
def test_a_file_never_wants_more_than_its_connections_nor_more_than_the_cpu_carries(
    current: int, per_file: int, headroom: float, adaptive: bool
) -> None:
    policy = SegmentPolicy(connections=per_file, adaptive=adaptive)
    want = connections_wanted(current, headroom, policy)
    assert want >= current
    if want > current:
        assert want <= per_file
        assert want <= current * headroom or not adaptive
    if adaptive and headroom * GROWTH_MARGIN < 1 + 1 / current:
        # A busy CPU (one core of two busy, and more) never grows a file.
        assert want == current


@given(st.integers(1, 64), st.integers(1, 64), st.floats(0.01, 1000.0))
def test_a_cpu_that_carries_all_of_x_opens_them_in_one_step(
    current: int, per_file: int, headroom: float
) -> None:
    # A capped link: the first connection's rate is a small part of what the CPU hashes,
    # so the file opens every connection -x allows at once, as aria2c does (issue 19).
    policy = SegmentPolicy(connections=per_file)
    want = connections_wanted(current, headroom, policy)
    if current * headroom * GROWTH_MARGIN >= per_file:
        assert want == max(current, per_file)
    else:
        assert want == max(current, int(current * headroom * GROWTH_MARGIN))


class _FixedHeadroom(Governor):
    def __init__(self, headroom: float) -> None:
        super().__init__(0.1, cores=2)
        self.fixed = headroom

    def headroom(self) -> float | None:
        return self.fixed


def test_a_step_that_paid_is_followed_by_the_next_at_once() -> None:
    policy = SegmentPolicy(connections=8, probe_s=0.1)
    segmenter = Segmenter(policy, ConnectionBudget(64), _FixedHeadroom(4.0))
    growth = _Growth(segmenter, started=0.0)
    t0, per = growth._mark[0], 4_000_000  # bytes per connection per window (40 MB/s)
    assert growth.more(t0 + 0.05, per // 2, 1) == 0  # the first window is not over
    assert growth.more(t0 + 0.1, per, 1) == 2  # 1 * 4.0 * 0.8 -> 3 connections
    assert growth.more(t0 + 0.21, 4 * per, 3) == 0  # the new ones start
    # The step tripled the rate: paid, and the window just measured is the new rate, so
    # the next step (3 * 4.0 * 0.8 -> 8) comes now, not one window later.
    assert growth.more(t0 + 0.32, 7 * per, 3) == 5
    assert not growth.frozen


def test_a_step_that_did_not_pay_stops_growth() -> None:
    policy = SegmentPolicy(connections=8, probe_s=0.1)
    segmenter = Segmenter(policy, ConnectionBudget(64), _FixedHeadroom(4.0))
    growth = _Growth(segmenter, started=0.0)
    t0, per = growth._mark[0], 4_000_000
    assert growth.more(t0 + 0.1, per, 1) == 2
    assert growth.more(t0 + 0.21, 2 * per, 3) == 0
    assert growth.more(t0 + 0.32, 3 * per, 3) == 0  # still 40 MB/s on 3: the link is full
    assert growth.frozen
    assert growth.more(t0 + 1.0, 10 * per, 3) == 0


@given(st.integers(1, 16), st.integers(1, 16), st.floats(1.0, 1e9), st.floats(0.0, 1e9))
def test_growth_pays_only_with_half_the_promised_rate(
    before: int, after: int, rate: float, rate_after: float
) -> None:
    paid = growth_paid(before, after, rate, rate_after)
    if after <= before:
        assert paid
    else:
        per_connection = rate / before
        assert paid == (rate_after >= rate + per_connection * (after - before) / 2)


def test_the_sidecar_round_trips_and_refuses_another_file(tmp_path: Path) -> None:
    partial = tmp_path / "abc.incomplete"
    side = state_path(partial)
    assert side.name == "abc.ranges.incomplete"
    digest = "sha256:" + "1" * 64
    save_state(side, 1000, digest, Ranges([(0, 10), (20, 30)]))
    got = load_state(side, 1000, digest)
    assert got is not None and got.spans == ((0, 10), (20, 30))
    assert load_state(side, 999, digest) is None  # another size
    assert load_state(side, 1000, "sha256:" + "2" * 64) is None  # another digest
    bad = {"modelctl_ranges": 1, "size": 1000, "digest": digest, "done": [[5, 2000]]}
    side.write_text(json.dumps(bad))
    assert load_state(side, 1000, digest) is None  # a range past the end
    side.write_text("{not json")
    assert load_state(side, 1000, digest) is None
    assert load_state(tmp_path / "missing", 1000, digest) is None


def test_a_file_is_wanting_only_while_it_is_blocked() -> None:
    """Extra connections are given back only to a file that waits for its first one,
    never merely because a file takes a free one (that handed back ranges no one took)."""
    budget = ConnectionBudget(2)
    budget.acquire(threading.Event())
    assert not budget.wanted()  # one is free: nobody waits
    assert budget.try_acquire()
    waiter = threading.Thread(target=budget.acquire, args=(threading.Event(),))
    waiter.start()
    deadline = time.monotonic() + 10
    while not budget.wanted() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert budget.wanted()  # blocked: every connection is taken
    budget.release()
    waiter.join(10)
    assert not waiter.is_alive() and not budget.wanted() and budget.in_use() == 2


def test_a_ring_holds_at_most_its_count_until_stopped() -> None:
    ring = _Ring(3, 16)
    stop = threading.Event()
    handed = []
    for _ in range(3):
        ring.buffer(stop)
        handed.append(ring.hand_off())
    assert len({id(b) for b in handed}) == 3
    got: list[memoryview] = []
    waiter = threading.Thread(target=lambda: got.append(ring.buffer(stop)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not got  # all three are being hashed: it waits
    ring.give(handed[1])
    waiter.join(5)
    assert got and got[0] is handed[1]  # the one given back, not a fourth
    ring.hand_off()
    stop.set()  # a stopping connection gets a buffer at once, to flush what it holds
    assert len(ring.buffer(stop)) == 16


# --------------------------------------------------------------------------- early step

MiB = 1024 * 1024


@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.one_of(st.none(), st.floats(0.01, 1000.0)),
    st.booleans(),
)
def test_an_early_step_opens_all_of_x_or_waits_for_the_whole_window(
    current: int, per_file: int, headroom: float | None, adaptive: bool
) -> None:
    policy = SegmentPolicy(connections=per_file, adaptive=adaptive)
    early = early_step(current, headroom, policy)
    if early:
        assert adaptive and headroom is not None and current < per_file
        assert connections_wanted(current, headroom, policy) == per_file
    elif adaptive and headroom is not None and current < per_file:
        assert connections_wanted(current, headroom, policy) < per_file
    if headroom is not None and headroom < 2.5 and current == 1:
        # One core of two busy with the first connection (an uncapped link): never early.
        assert not early


class _MeasuredCpu(Governor):
    """The process's CPU seconds as the test sets them; whole windows measure ``fixed``."""

    def __init__(self, fixed: float) -> None:
        super().__init__(0.1, cores=2)
        self.fixed = fixed
        self.used = 0.0

    def headroom(self) -> float | None:
        return self.fixed

    def cpu(self) -> float:
        return self.used


def test_a_capped_link_opens_all_of_x_a_quarter_window_after_the_first_answer() -> None:
    """Fails on 00568e4: nothing opened before a whole window (0.1 s) had passed."""
    policy = SegmentPolicy(connections=8, probe_s=0.1)
    governor = _MeasuredCpu(4.0)  # a whole window would open only 1 * 4.0 * 0.8 -> 3
    growth = _Growth(Segmenter(policy, ConnectionBudget(64), governor), started=0.0)
    answered = growth._mark[0] + 0.003  # the first range is answered
    assert growth.more(answered, 0, 1) == 0
    # The coordinating thread wakes when the early part of the window ends.
    assert growth.wait_s(answered + 0.010, 0.02) == pytest.approx(0.016)
    assert growth.wait_s(answered + 0.030, 0.02) == 0.02
    governor.used = 0.001  # 1 ms of CPU in 25 ms: 0.04 of a core, headroom 50
    assert growth.more(answered + 0.020, MiB, 1) == 0  # not yet a quarter of the window
    assert growth.more(answered + 0.026, MiB, 1) == 7  # all of -x at once
    assert growth.rate_per_connection == pytest.approx(MiB / 0.026)
    assert growth.wait_s(answered + 0.026, 0.02) == 0.02


def test_an_uncapped_link_waits_for_the_whole_window() -> None:
    """The first connection keeps a core busy: no early step; the whole window decides,
    as before (here: 1 * 2.0 * 0.8 -> still one connection)."""
    policy = SegmentPolicy(connections=8, probe_s=0.1)
    governor = _MeasuredCpu(2.0)
    growth = _Growth(Segmenter(policy, ConnectionBudget(64), governor), started=0.0)
    t0 = growth._mark[0]
    answered = t0 + 0.001
    assert growth.more(answered, 0, 1) == 0
    for ms in range(25, 100, 5):
        governor.used = ms / 1000 * 0.95  # one core of two busy
        assert growth.more(answered + ms / 1000, ms * MiB, 1) == 0
    assert growth.more(t0 + 0.1, 100 * MiB, 1) == 0
    assert not growth._grown


def test_an_early_step_needs_bytes() -> None:
    """No byte counted yet (a slow start): no rate to size the pieces by, so no early step."""
    policy = SegmentPolicy(connections=8, probe_s=0.1)
    governor = _MeasuredCpu(50.0)
    growth = _Growth(Segmenter(policy, ConnectionBudget(64), governor), started=0.0)
    t0 = growth._mark[0]
    assert growth.more(t0 + 0.001, 0, 1) == 0
    assert growth.more(t0 + 0.05, 0, 1) == 0
    assert growth.more(t0 + 0.1, 0, 1) == 7  # the whole window decides, as before


@given(
    st.integers(2, 16),
    st.floats(0.5, 100.0),
    st.lists(
        st.tuples(st.floats(0.001, 0.06), st.floats(0.0, 2.0), st.integers(0, 4 * MiB)),
        max_size=40,
    ),
)
@example(8, 4.0, [(0.03, 0.01, MiB)] * 6)  # a capped link: the early step, then no other
@example(8, 4.0, [(0.03, 0.95, 30 * MiB)] * 6)  # uncapped: the whole window decides
def test_growth_never_exceeds_x_and_an_early_step_is_the_first_and_opens_all_of_it(
    per_file: int, window_headroom: float, steps: list[tuple[float, float, int]]
) -> None:
    """Whatever the CPU use and the bytes over time: the file never has more than -x
    connections, and a step taken before a whole window (from the file's start) is its
    first, taken after a quarter of the window from the first answer, and opens all of -x."""
    policy = SegmentPolicy(connections=per_file, probe_s=0.1)
    governor = _MeasuredCpu(window_headroom)
    growth = _Growth(Segmenter(policy, ConnectionBudget(64), governor), started=0.0)
    start = growth._mark[0]
    now, received, workers, steps_taken = start + 0.001, 0, 1, 0
    answered = now
    for dt, cores_busy, more_bytes in steps:
        step = growth.more(now, received, workers)
        assert 0 <= step <= per_file - workers
        if step:
            steps_taken += 1
            if now - start < policy.probe_s:
                assert steps_taken == 1 and workers + step == per_file
                assert now - answered >= policy.probe_s / 4 and received > 0
        workers += step
        now += dt
        governor.used += dt * cores_busy
        received += more_bytes
    assert workers <= per_file


# --------------------------------------------------------------------------- the tail


@given(
    st.integers(1, 64 * MiB),
    st.integers(1, 4 * MiB),
    st.one_of(st.none(), st.floats(1.0, 1e9)),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_the_least_part_of_a_split_is_one_round_trip_of_bytes_within_bounds(
    min_split: int, reserve: int, rate: float | None, rtt: float | None
) -> None:
    sched = Schedule(100 * MiB, Ranges(), min_split, reserve)
    if rate is not None:
        sched.saw_rate(rate)
    if rtt is not None:
        sched.saw_round_trip(rtt)
    least = sched.split_min()
    assert min(reserve, min_split) <= least <= min_split  # never coarser than min_split
    if rate is None or rtt is None:
        assert least == min_split
    else:
        assert least == max(min(reserve, min_split), min(min_split, int(rate * rtt)))


def test_a_short_round_trip_splits_the_tail_finer() -> None:
    """3 MiB left on the last range, nothing free: with 2 MiB parts (min_split) it cannot
    be split and the other connections wait; one round trip of 0.3 ms at 40 MB/s is far
    less than a BUFFER, so it is cut in parts of 1 MiB for three connections. A far CDN
    (80 ms: 3.2 MB per round trip) keeps min_split. Fails on b2ed322 (no round trips)."""
    policy = SegmentPolicy()

    def tail(rtt: float | None) -> tuple[Schedule, Piece, Piece | None]:
        sched = Schedule(64 * MiB, Ranges([(0, 61 * MiB)]), 2 * MiB, reserve=MiB)
        last = sched.steal()
        assert last is not None and (last.start, last.end) == (61 * MiB, 64 * MiB)
        sched.saw_rate(40e6)
        if rtt is not None:
            sched.saw_round_trip(0.5)  # a new connection's handshakes: only the least counts
            sched.saw_round_trip(rtt)
        return sched, last, sched.steal(sched.chunk(policy, 8))

    assert tail(None)[2] is None
    assert tail(0.080)[2] is None
    sched, last, piece = tail(0.0003)
    assert piece is not None and (piece.start, piece.end) == (62 * MiB, 63 * MiB)
    assert last.end == 62 * MiB
    rest = sched.steal(sched.chunk(policy, 8))
    assert rest is not None and (rest.start, rest.end) == (63 * MiB, 64 * MiB)
