"""Per-file exclusive locks between processes (and threads) with ``fcntl.flock``.

The kernel releases a flock when its holder dies, even by ``kill -9``, so a crashed sync
never leaves a stale lock behind. Lock files are never deleted: unlinking one while
another process waits on it would let a third process lock a new file of the same name
while the waiter holds the old one.

In the HF cache the lock file is ``<cache>/.locks/<repo folder>/<etag>.lock``, the same
file huggingface_hub's own FileLock takes (filelock uses flock on Unix), so modelctl and
``hf_hub_download`` never write the same blob at once.

Waiting polls with ``LOCK_NB`` instead of blocking, so a Ctrl-C (``cancel`` set) stops a
worker that waits for another process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from modelctl.errors import StorageError, UnsafePathError
from modelctl.fs.paths import in_folder, storage_error

POLL_S: Final = 0.05


class Cancelled(BaseException):
    """The sync was interrupted (Ctrl-C): workers stop and keep their partial files.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it.
    """


@contextmanager
def exclusive(path: Path, cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0o664, so a shared cache's group can wait)."""
    try:
        # O_NOFOLLOW: through a symlink, O_CREAT would create its target wherever it points.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = in_folder(path, lambda: os.open(path, flags, 0o664))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                "the lock file is a symlink: refusing to open it",
                where=str(path),
                expected="a regular file, or nothing",
                actual="a symlink",
                hint="remove it; modelctl creates it again",
            ) from exc
        raise storage_error("cannot create a lock file", path, exc) from exc
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancel is not None and cancel.is_set():
                    raise Cancelled() from None
                time.sleep(POLL_S)
            except OSError as exc:
                raise StorageError(
                    f"cannot lock a file: {exc.strerror}",
                    where=str(path),
                    hint="the file system may not support flock (some network mounts)",
                ) from exc
        yield
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)
