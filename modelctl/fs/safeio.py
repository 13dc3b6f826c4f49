"""Reading files modelctl did not necessarily write, and making writes durable.

Anything on disk may be planted or damaged: a FIFO opened for reading blocks until a
writer comes (forever), ``/dev/zero`` never ends, a huge file exhausts memory. So every
read of metadata (manifest, lockfile, record, ref) and every open of content to hash goes
through :func:`open_regular`: opened with ``O_NONBLOCK`` (a FIFO cannot hang the open),
then ``fstat`` must show a regular file. Metadata is read with :func:`read_bounded`,
which refuses more than a cap instead of reading on.

Both raise :class:`NotRegularFile` / :class:`TooLarge`, subclasses of OSError with a
``strerror`` saying what was found, so callers that already turn an OSError into "cannot
read X: <reason>" (or treat it as "absent") need no new case.

:func:`fsync_file` / :func:`fsync_dir` are the durability half: a file is flushed before
it is renamed into place, and its folder after, where a crash must not lose it.
:func:`start_writeback` only moves part of that work earlier (while a download still
runs), so that the fsync before the rename finds little left to write.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB
METADATA_MAX: Final = 64 * MiB  # a manifest or lockfile (a 100,000-file lock is ~30 MiB)
RECORD_MAX: Final = 64 * KiB  # a verification record is ~300 bytes


class NotRegularFile(OSError):
    """A FIFO, device, socket or folder where a regular file was expected."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({kind(mode)})", str(path))


class TooLarge(OSError):
    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(errno.EFBIG, f"larger than {limit} bytes", str(path))


def kind(mode: int) -> str:
    """What a file's mode says it is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "a regular file" if stat.S_ISREG(mode) else "an unknown kind of file"


def open_regular(path: Path, *, follow: bool = True) -> int:
    """A read-only descriptor of ``path``, which must be a regular file.

    ``O_NONBLOCK`` keeps a FIFO from blocking the open; it is cleared again once the file
    is known to be regular (it means nothing there). With ``follow=False`` a symlink is
    refused (ELOOP) as well.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, st.st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: Path, limit: int = METADATA_MAX, *, follow: bool = True) -> bytes:
    """The whole content of the regular file ``path``; TooLarge past ``limit`` bytes."""
    fd = open_regular(path, follow=follow)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if os.fstat(fd).st_size > limit:
            raise TooLarge(path, limit)
        data = bytearray()
        while chunk := f.read(MiB):  # the file may grow while it is read
            data += chunk
            if len(data) > limit:
                raise TooLarge(path, limit)
        return bytes(data)


def read_text_bounded(path: Path, limit: int = METADATA_MAX) -> str:
    """:func:`read_bounded` decoded as UTF-8 (UnicodeDecodeError if it is not)."""
    return read_bounded(path, limit).decode("utf-8")


def same_text(path: Path, text: str) -> bool:
    """Does ``path`` hold exactly ``text``? False when it is absent, unreadable or no file:
    a writer then replaces it (never reading a FIFO or a device it finds there)."""
    try:
        data = read_bounded(path, len(text.encode("utf-8")))
    except OSError:
        return False
    return data == text.encode("utf-8")


def fsync_file(fd: int) -> None:
    os.fsync(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new name in ``folder`` survive a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# sync_file_range(2)'s flag: start writing the dirty pages of the range, do not wait.
_SYNC_FILE_RANGE_WRITE: Final = 2
# Errors that mean "this system or file cannot do it": then nothing is done early.
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP})
_sync_file_range: list[Callable[[int, int, int, int], int] | None] = []  # resolved once


def start_writeback(fd: int) -> bool:
    """Start writing ``fd``'s dirty pages to the disk now, without waiting for them (Linux
    ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``).

    A file written while it downloads then reaches its :func:`fsync_file` with little
    left to write: for a 256 MiB file written at 320 MB/s, the fsync before the rename
    took ~0.1 s without this and ~0.01 s with it (benchmarks/bench_fsync.py). It promises
    nothing: the fsync before the rename is what makes the file durable, and reports any
    write error again. Returns False where the system cannot do it (not Linux, no such
    call, a file system that refuses it): then nothing was done. Other errors raise
    OSError.
    """
    if not _sync_file_range:
        _sync_file_range.append(_load_sync_file_range())
    call = _sync_file_range[0]
    if call is None:
        return False
    if call(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err))


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range through ctypes (os has no wrapper), or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    # Imported here, not at the top: only a download of more than a few MiB needs it.
    import ctypes

    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None  # a libc without it (musl before 1.1.x): the fsync does all the work
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func
