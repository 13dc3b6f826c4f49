"""The CLI's progress renderers: NDJSON, plain log lines, the live TTY display."""

from __future__ import annotations

import io
import json
import re

from hypothesis import given
from hypothesis import strategies as st

from modelctl.cli.progress import (
    JsonProgress,
    PlainProgress,
    TtyProgress,
    aggregate_line,
    file_line,
    fit,
    summary_line,
)
from modelctl.lock.digest import Digest
from modelctl.lock.plan import make_plan
from modelctl.lock.types import FileRef
from modelctl.progress import AggregateProgress, ProgressListener, ProgressTracker, SyncFinished

DIGEST = Digest("sha256", "1" * 64)


def drive(listener: ProgressListener) -> SyncFinished:
    refs = [
        FileRef("a", "model", "org/r", "c" * 40, f"f{i}.bin", 2048, DIGEST, "file")
        for i in range(2)
    ]
    plan = make_plan(refs)
    tracker = ProgressTracker(listener, plan, "/cache")
    for f in plan.files:
        tracker.started(f, 0)
        tracker.advanced(f, 1024, 1024)
        tracker.advanced(f, 2048, 1024)
        tracker.done(f, DIGEST, 2048)
    return tracker.finished(0, "/cache")


def test_json_is_one_object_per_line() -> None:
    out = io.StringIO()
    drive(JsonProgress(out))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["event"] == "plan" and events[-1]["event"] == "finished"
    assert events[-1]["files_downloaded"] == 2 and events[-1]["location"] == "/cache"


def test_plain_lines_name_each_file_and_never_redraw() -> None:
    out = io.StringIO()
    drive(PlainProgress(out, every_s=0.0))
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert "done a/f0.bin" in text and "done a/f1.bin" in text
    assert "files 2/2" in text


def test_tty_redraws_in_place_and_clears_at_the_end() -> None:
    out = io.StringIO()
    finished = drive(TtyProgress(out))
    text = out.getvalue()
    assert "\x1b[" in text and "files 2/2" in text
    line = summary_line(finished)
    assert line.startswith("synced: 2 file(s) downloaded (4.0 KiB)") and "/cache" in line


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@given(text=st.text(max_size=200), width=st.integers(min_value=1, max_value=200))
def test_fit_keeps_both_ends_within_width(text: str, width: int) -> None:
    out = fit(text, width)
    assert len(out) <= width
    if len(text) <= width:
        assert out == text
    elif width >= 3:
        assert out[0] == text[0] and out[-1] == text[-1] and "…" in out


sizes = st.integers(min_value=0, max_value=10**15)


@given(
    done=sizes,
    total=sizes,
    files=st.integers(min_value=0, max_value=10**6),
    rate=st.floats(min_value=0, max_value=1e12),
    width=st.integers(min_value=19, max_value=300),
)
def test_aggregate_line_fits_any_width(
    done: int, total: int, files: int, rate: float, width: int
) -> None:
    a = AggregateProgress(done, total, files // 2, files, done)
    line = aggregate_line(a, rate, width)
    assert len(line) <= width
    if width >= 79 and total < 1024**4 and rate < 1e9:
        assert line.startswith("[") and line.endswith(f"files {files // 2}/{files}")


@given(
    name=st.text(min_size=1, max_size=300).filter(lambda s: "\n" not in s),
    done=sizes,
    width=st.integers(min_value=19, max_value=300),
)
def test_file_line_fits_any_width(name: str, done: int, width: int) -> None:
    ref = FileRef("asset", "model", "org/r", "c" * 40, name, done + 1, DIGEST, "file")
    f = make_plan([ref]).files[0]
    assert len(file_line(f, done, done + 1, width)) <= width


def test_tty_lines_fit_a_narrow_terminal() -> None:
    """Every row the live display writes fits 60 columns (no wrap breaks the redraw)."""
    out = io.StringIO()
    refs = [
        FileRef("speech-to-text", "model", "org/r", "c" * 40, f"very/long/path/{i}" * 5,
                3 * 1024**3, DIGEST, "file")
        for i in range(3)
    ]  # fmt: skip
    plan = make_plan(refs)
    tracker = ProgressTracker(TtyProgress(out, width=lambda: 60), plan, "/a/long/cache/" * 8)
    for f in plan.files:
        tracker.started(f, 0)
        tracker.advanced(f, 1024**3, 1024**3)
        tracker.done(f, DIGEST, 3 * 1024**3)
    tracker.finished(0, "/cache")
    rows = ANSI.sub("", out.getvalue()).split("\n")
    assert max(len(r) for r in rows) <= 59
    assert any(r.startswith("[") for r in rows)  # the bar is still shown at 60 columns
