"""Atomic whole-file writes: a temp file beside the target, then ``os.replace``.

Every small file modelctl writes whole goes through here: lockfiles, verification
records, ``refs/<branch>``. (Synced files are written by :mod:`modelctl.store.partial`, and
bundles by :mod:`modelctl.bundle.archive` under one reusable temp name, both with the same
mode.) The temp file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0o666
minus the umask (0644 under the usual umask 022), like any file a user writes: never
mkstemp's 0600, which kept ``modelctl.lock`` from a runtime running as another
user (a Docker stage as ``nobody``). A failure removes the temp file; a process killed
in between leaves ``.<name>.<random>.tmp``, which ``modelctl gc`` removes once it is old.
Errors are OSError: each caller names what it was writing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from modelctl.fs.safeio import fsync_dir, fsync_file

FILE_MODE: Final = 0o666  # before the umask


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = FILE_MODE, *, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write; it appears at ``path`` whole when the block ends.

    ``durable``: the content is fsynced before the rename and the folder after it, so a
    power loss leaves the old file or the new one, never a renamed-but-empty file.
    """
    # os.urandom, not uuid: importing uuid costs start-up time (it loads platform).
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                fsync_file(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring and atomic_file)."""
    with atomic_file(path, mode, durable=durable) as f:
        f.write(data)
