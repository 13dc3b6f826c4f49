"""The pure parts of segmented downloads: byte ranges, piece sizes, the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from modelctl.transfer.segments import (
    Ranges,
    SegmentPolicy,
    load_state,
    piece_length,
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


@given(
    st.integers(1, 10**12),
    st.integers(1, 64),
    st.one_of(st.none(), st.floats(1.0, 1e10)),
)
def test_pieces_stay_within_bounds_and_never_leave_a_crumb(
    left: int, connections: int, rate: float | None
) -> None:
    p = SegmentPolicy(connections=connections, min_piece=8 << 20, max_piece=64 << 20)
    n = piece_length(left, connections, rate, p)
    assert n <= max(left, p.min_piece)
    if n < left:
        assert p.min_piece <= n <= p.max_piece
        assert left - n >= p.min_piece // 2  # no tail piece smaller than half a piece


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
