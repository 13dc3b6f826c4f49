"""Early writeback (fs.safeio.start_writeback): a partial file asks the kernel to write its
bytes while the download runs, so the fsync before the rename finds little left. It is an
optimisation only: the bytes, the digest and the fsync before the rename stay the same."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import threading
from pathlib import Path

import pytest

from modelctl.errors import StorageError
from modelctl.fs.safeio import start_writeback
from modelctl.lock.digest import Digest
from modelctl.store import partial
from modelctl.store.partial import WRITEBACK_EVERY, PartialFile
from modelctl.store.record import read_record

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range")


@linux_only
def test_start_writeback_starts_on_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        assert start_writeback(fd) is True
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_start_writeback_on_a_pipe_does_nothing() -> None:
    r, w = os.pipe()
    try:
        assert start_writeback(w) is False
    finally:
        os.close(r)
        os.close(w)


@linux_only
def test_start_writeback_raises_what_is_not_unsupported(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    os.close(fd)
    with pytest.raises(OSError) as info:
        start_writeback(fd)  # closed: a bug, not "unsupported"
    assert info.value.errno == errno.EBADF


@linux_only
def test_a_partial_file_starts_writeback_every_writeback_every_bytes(tmp_path: Path) -> None:
    """Fails without the early writeback: the count never goes back to zero."""
    size = 2 * WRITEBACK_EVERY + 12345
    data = os.urandom(size)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    part = PartialFile.create(tmp_path / ".w.partial", digest, size)
    half = WRITEBACK_EVERY // 2
    part.append(data[:half])
    assert part._dirty == half
    part.append(data[half:WRITEBACK_EVERY])
    assert part._dirty == 0  # the kernel was asked to write the first WRITEBACK_EVERY bytes
    # The rest out of order from several threads (as a segmented download writes it).
    pieces = [(a, min(a + 1024 * 1024, size)) for a in range(WRITEBACK_EVERY, size, 1024 * 1024)]

    def write(chunk: list[tuple[int, int]]) -> None:
        for a, b in chunk:
            part.write_at(data[a:b], a)

    threads = [threading.Thread(target=write, args=(pieces[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One more start once WRITEBACK_EVERY more bytes were written (whichever piece it was).
    assert part._dirty in (0, size - 2 * WRITEBACK_EVERY)
    buf = memoryview(bytearray(1024 * 1024))
    part.hash_written(size, buf)
    assert part.commit(tmp_path / "w", tmp_path / "w.json") == digest
    assert (tmp_path / "w").read_bytes() == data
    record = read_record(tmp_path / "w.json")
    assert record is not None and record.digest == digest


def test_where_writeback_is_unsupported_the_partial_file_stops_asking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sync_file_range (not Linux, an old libc): counted once, then never asked again,
    and the file is committed (fsynced) as before."""
    calls: list[int] = []

    def unsupported(fd: int) -> bool:
        calls.append(fd)
        return False

    monkeypatch.setattr(partial, "start_writeback", unsupported)
    size = 3 * WRITEBACK_EVERY
    data = bytes(size)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    part = PartialFile.create(tmp_path / ".w.partial", digest, size)
    for a in range(0, size, WRITEBACK_EVERY // 4):
        part.append(data[a : a + WRITEBACK_EVERY // 4])
    assert len(calls) == 1 and part._dirty is None
    assert part.commit(tmp_path / "w", tmp_path / "w.json") == digest


def test_the_writing_thread_never_waits_for_the_writeback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync_file_range(WRITE) waits for room in the disk's queue: it runs on a thread of its
    own, so a congested disk never stalls the thread that receives and writes. Fails when
    the writer calls it itself: the write loop below then never ends."""
    congested = threading.Event()
    callers: list[str] = []

    def slow(fd: int) -> bool:
        callers.append(threading.current_thread().name)
        congested.wait(30)
        return True

    monkeypatch.setattr(partial, "start_writeback", slow)
    size = 4 * WRITEBACK_EVERY
    data = os.urandom(size)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    part = PartialFile.create(tmp_path / ".w.partial", digest, size)
    writer = threading.Thread(
        target=lambda: [
            part.append(data[a : a + 1024 * 1024]) for a in range(0, size, 1024 * 1024)
        ],
        name="receiving",
    )
    writer.start()
    writer.join(10)
    assert not writer.is_alive(), "the writer waited for the writeback"
    assert callers and "receiving" not in callers
    congested.set()
    assert part.commit(tmp_path / "w", tmp_path / "w.json") == digest
    assert (tmp_path / "w").read_bytes() == data


def test_a_writeback_error_fails_the_download_as_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error met while starting the writeback is not lost: the next write or the
    commit reports it, and nothing is renamed into place."""

    def failing(fd: int) -> bool:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(partial, "start_writeback", failing)
    size = 2 * WRITEBACK_EVERY
    data = bytes(size)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    part = PartialFile.create(tmp_path / ".w.partial", digest, size)
    with pytest.raises(StorageError, match="cannot write the download"):
        for a in range(0, size, 1024 * 1024):
            part.append(data[a : a + 1024 * 1024])
        part.commit(tmp_path / "w", tmp_path / "w.json")
    part.close()
    assert not (tmp_path / "w").exists()
