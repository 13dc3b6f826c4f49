"""Render sync progress events: a live display on a TTY, plain lines otherwise, or NDJSON.

- :class:`TtyProgress` (stderr is a terminal): one aggregate bar (bytes, rate, ETA, files
  n/m) and a line per active file, redrawn in place at most 10 times a second. Every
  line it writes fits the terminal's width (read at each redraw): a wrapped line would
  take two rows and break the cursor-up redraw. The bar shrinks first, then the least
  needed parts go, and names are shortened in the middle.
- :class:`PlainProgress` (logs, Docker builds): a line every few seconds and one per file
  done; nothing is redrawn.
- :class:`JsonProgress` (``--json``): one JSON object per event and line, on stdout.

Events arrive one at a time (the tracker serializes them) but from worker threads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Final, TextIO

from modelctl.cli.format import human_bytes
from modelctl.lock.plan import PlannedFile
from modelctl.progress import (
    AggregateProgress,
    DownloadPlanReady,
    Event,
    FileDone,
    FileFailed,
    FileProgress,
    FileStarted,
    FileWaiting,
    SyncFinished,
)

BAR_WIDTH: Final = 28
MIN_BAR_WIDTH: Final = 8
MIN_WIDTH: Final = 20  # narrower terminals are treated as this wide
ELLIPSIS: Final = "…"
TTY_REDRAW_S: Final = 0.1
PLAIN_EVERY_S: Final = 5.0
MAX_ACTIVE_SHOWN: Final = 8


def waiting_text(event: FileWaiting) -> str:
    # Tenths below 10 s: a short wait shows as "0.5 s", not "0 s".
    secs = (
        f"{event.seconds:.1f}".removesuffix(".0") if event.seconds < 10 else f"{event.seconds:.0f}"
    )
    return f"waiting {secs} s before retrying {_name(event.file)} ({event.reason})"


def rate_text(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e6:.1f} MB/s"


MAX_ETA_S: Final = 100 * 3600 - 1  # longer than that is no estimate worth a column


def eta_text(seconds: float | None) -> str:
    if seconds is None or not seconds <= MAX_ETA_S:  # None, NaN, inf, or days away
        return "--:--"
    s = int(max(seconds, 0.0) + 0.5)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    frac = 1.0 if total <= 0 else min(done / total, 1.0)
    full = int(frac * width)
    return "[" + "#" * full + "-" * (width - full) + "]"


def summary_line(event: SyncFinished) -> str:
    """The final line: what was downloaded, how fast, and where the files are."""
    rate = event.bytes_transferred / event.seconds if event.seconds > 0 else 0.0
    head = (
        f"synced: {event.files_downloaded} file(s) downloaded "
        f"({human_bytes(event.bytes_transferred)}) in {event.seconds:.1f} s, {rate_text(rate)}"
    )
    tail = f"; {event.files_present} already present"
    failed = f"; {event.files_failed} failed" if event.files_failed else ""
    return f"{head}{tail}{failed}; files in {event.location}"


def fit(text: str, width: int) -> str:
    """``text`` shortened to ``width`` characters by cutting out its middle."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def terminal_width(out: TextIO) -> int:
    """Columns of the terminal ``out`` writes to (80 if it cannot be told)."""
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        import shutil  # here: ~1.5 ms of a warm sync, which draws nothing

        return shutil.get_terminal_size((80, 24)).columns


def first_fitting(candidates: Sequence[str], width: int) -> str:
    """The first candidate that fits ``width``, else the last one cut to fit."""
    for text in candidates:
        if len(text) <= width:
            return text
    return fit(candidates[-1], width)


class _Rate:
    """Bytes per second over the whole run so far (simple and monotone-friendly)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._start = clock()

    def of(self, transferred: int) -> float:
        elapsed = self._clock() - self._start
        return transferred / elapsed if elapsed > 0 else 0.0


class JsonProgress:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def on_event(self, event: Event) -> None:
        self._out.write(json.dumps(event.to_json(), sort_keys=False) + "\n")
        self._out.flush()


class PlainProgress:
    """Log-friendly: periodic aggregate lines and one line per finished file."""

    def __init__(
        self,
        out: TextIO,
        every_s: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._every = every_s
        self._clock = clock
        self._rate = _Rate(clock)
        self._last = clock()

    def _line(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def on_event(self, event: Event) -> None:
        if isinstance(event, DownloadPlanReady):
            plan = event.plan
            todo = plan.to_download()
            self._line(
                f"sync: {len(todo)} of {len(plan.files)} file(s) to download "
                f"({human_bytes(plan.download_bytes())}) into {event.location}"
            )
        elif isinstance(event, FileStarted) and event.resume_from:
            self._line(f"  resuming {_name(event.file)} at {human_bytes(event.resume_from)}")
        elif isinstance(event, FileDone):
            self._line(f"  done {_name(event.file)} ({human_bytes(event.file.size_bytes)})")
        elif isinstance(event, FileFailed):
            self._line(f"  FAILED {_name(event.file)}")
        elif isinstance(event, FileWaiting):
            self._line(f"  {waiting_text(event)}")
        elif isinstance(event, AggregateProgress):
            now = self._clock()
            if now - self._last >= self._every:
                self._last = now
                self._line("  " + _aggregate_text(event, self._rate.of(event.bytes_transferred)))


class TtyProgress:
    """A live display on a terminal, redrawn in place (ANSI cursor movement)."""

    def __init__(
        self,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
        width: Callable[[], int] | None = None,
    ) -> None:
        self._out = out
        self._clock = clock
        self._width = width if width is not None else (lambda: terminal_width(out))
        self._rate = _Rate(clock)
        self._active: dict[PlannedFile, tuple[int, int | None]] = {}
        self._aggregate: AggregateProgress | None = None
        self._drawn_lines = 0
        self._last_draw = 0.0

    def on_event(self, event: Event) -> None:
        force = False
        if isinstance(event, DownloadPlanReady):
            todo = event.plan.to_download()
            self._print(
                f"sync: {len(todo)} of {len(event.plan.files)} file(s) to download "
                f"({human_bytes(event.plan.download_bytes())}) into {event.location}"
            )
            return
        if isinstance(event, FileStarted):
            self._active[event.file] = (event.resume_from, event.file.size_bytes)
        elif isinstance(event, FileProgress):
            self._active[event.file] = (event.bytes_done, event.bytes_total)
        elif isinstance(event, FileDone):
            self._active.pop(event.file, None)
            self._print(f"  done {_name(event.file)} ({human_bytes(event.file.size_bytes)})")
            force = True
        elif isinstance(event, FileFailed):
            self._active.pop(event.file, None)
            self._print(f"  FAILED {_name(event.file)}")
            force = True
        elif isinstance(event, FileWaiting):
            # Printed above the live lines: a wait of minutes must not look like a hang.
            self._print(f"  {waiting_text(event)}")
            force = True
        elif isinstance(event, AggregateProgress):
            previous = self._aggregate
            self._aggregate = event
            # A finished file changes the n/m count: show it even if a redraw just happened.
            force = previous is None or previous.files_complete != event.files_complete
        elif isinstance(event, SyncFinished):
            self._clear()
            return
        self._draw(force)

    def _columns(self) -> int:
        # One column spare: a line that fills the last column leaves some terminals with
        # the cursor pending a wrap, which moves the redraw down a row.
        return max(MIN_WIDTH, self._width()) - 1

    def _print(self, text: str) -> None:
        """A permanent line above the live display."""
        self._clear()
        self._out.write(fit(text, self._columns()) + "\n")
        self._out.flush()

    def _clear(self) -> None:
        if self._drawn_lines:
            self._out.write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self._drawn_lines = 0

    def _draw(self, force: bool) -> None:
        now = self._clock()
        if not force and now - self._last_draw < TTY_REDRAW_S:
            return
        self._last_draw = now
        width = self._columns()
        lines = []
        if self._aggregate is not None:
            rate = self._rate.of(self._aggregate.bytes_transferred)
            lines.append(aggregate_line(self._aggregate, rate, width))
        shown = list(self._active.items())[:MAX_ACTIVE_SHOWN]
        for f, (done, total) in shown:
            lines.append(file_line(f, done, total, width))
        if len(self._active) > len(shown):
            lines.append(fit(f"  ... and {len(self._active) - len(shown)} more", width))
        self._clear()
        self._out.write("".join(line + "\x1b[K\n" for line in lines))
        self._out.flush()
        self._drawn_lines = len(lines)


def aggregate_line(a: AggregateProgress, rate: float, width: int) -> str:
    """The aggregate within ``width``: the bar shrinks (to MIN_BAR_WIDTH), then goes; then
    the rate, the ETA and the word "files" go; bytes and n/m stay as long as they fit."""
    remaining = a.total_bytes - a.bytes_downloaded
    eta = f"ETA {eta_text(remaining / rate if rate > 0 else None)}"
    size = f"{human_bytes(a.bytes_downloaded)}/{human_bytes(a.total_bytes)}"
    files = f"files {a.files_complete}/{a.files_total}"
    count = f"{a.files_complete}/{a.files_total}"
    full = f"{size} {rate_text(rate)} {eta} {files}"
    room = width - len(full) - 3  # "[" + "]" + " "
    if room >= MIN_BAR_WIDTH:
        return f"{bar(a.bytes_downloaded, a.total_bytes, min(BAR_WIDTH, room))} {full}"
    return first_fitting(
        [full, f"{size} {eta} {files}", f"{size} {files}", f"{size} {count}", count], width
    )


def file_line(f: PlannedFile, done: int, total: int | None, width: int) -> str:
    """``  pct name done/total``, the name shortened in the middle to fit ``width``."""
    pct = f"{100 * done / total:5.1f}%" if total else "     "
    sizes = f"{human_bytes(done)}/{human_bytes(total)}"
    room = width - len(pct) - len(sizes) - 4
    if room >= 8:
        return f"  {pct} {fit(_name(f), room)} {sizes}"
    return fit(f"  {pct} {_name(f)}", width)


def _aggregate_text(a: AggregateProgress, rate: float) -> str:
    remaining = a.total_bytes - a.bytes_downloaded
    eta = remaining / rate if rate > 0 else None
    return (
        f"{bar(a.bytes_downloaded, a.total_bytes)} "
        f"{human_bytes(a.bytes_downloaded)}/{human_bytes(a.total_bytes)} "
        f"{rate_text(rate)} ETA {eta_text(eta)} files {a.files_complete}/{a.files_total}"
    )


def _name(f: PlannedFile) -> str:
    return f"{f.asset}/{f.filename}"
