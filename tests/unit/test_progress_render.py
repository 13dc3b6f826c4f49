"""The CLI's progress renderers: NDJSON, plain log lines, the live TTY display."""

from __future__ import annotations

import io
import json

from modelctl.cli.progress import JsonProgress, PlainProgress, TtyProgress, summary_line
from modelctl.digest import Digest
from modelctl.plan import make_plan
from modelctl.progress import ProgressListener, ProgressTracker, SyncFinished
from modelctl.types import FileRef

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
