"""Local records of verified files: one small JSON file per stored file.

A record says "the file with this size, mtime and inode was checked against the locked
digest", so a later sync or verify can trust it without reading the content. It may also
hold the file's blake3, computed in the same pass as the locked digest (during the
download if asked, else the first time the file is hashed again), so later ``verify
--full`` runs re-check the content at blake3 speed. The lock's digest stays the
authority: a record is written only after the locked digest matched, and it names it.

Records are written atomically (temp file + ``os.replace``) and each file has its own, so
concurrent processes never contend; an unreadable or foreign record is ignored (the file
is then hashed again), since a record is a cache and never a source of truth.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelctl.fs.atomic import atomic_write
from modelctl.fs.paths import in_folder, storage_error
from modelctl.fs.safeio import RECORD_MAX, open_regular, read_bounded
from modelctl.lock.digest import Digest, Hasher, new_hasher

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

RECORD_VERSION: Final = 1
HASH_CHUNK: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileStamp:
    """What cheaply identifies one version of a file on disk."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class Record:
    digest: Digest  # the locked digest the content matched
    stamp: FileStamp
    blake3: Digest | None

    def vouches_for(self, digest: Digest, stamp: FileStamp) -> bool:
        """True when this record covers exactly this file version and this locked digest."""
        return self.digest == digest and self.stamp == stamp

    def to_json(self) -> dict[str, object]:
        return {
            "version": RECORD_VERSION,
            "digest": str(self.digest),
            "size": self.stamp.size,
            "mtime_ns": self.stamp.mtime_ns,
            "inode": self.stamp.inode,
            "blake3": str(self.blake3) if self.blake3 else None,
        }


def read_record(path: Path) -> Record | None:
    """The record at ``path``, or None if there is none or it cannot be understood."""
    try:
        # No FIFO, device or huge file: a record is a few hundred bytes of our own.
        data = json.loads(read_bounded(path, RECORD_MAX, follow=False))
        if data.get("version") != RECORD_VERSION:
            return None
        blake3 = Digest.parse(data["blake3"]) if data.get("blake3") else None
        stamp = FileStamp(int(data["size"]), int(data["mtime_ns"]), int(data["inode"]))
        return Record(Digest.parse(data["digest"]), stamp, blake3)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        # A damaged record only costs one re-hash: treat it as absent.
        return None


# Why a record may not be writable where the content is readable: a read-only cache
# (a mounted volume, an image layer) or one owned by another user.
_CANNOT_WRITE: Final = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def remember(path: Path, record: Record) -> bool:
    """Write a record if the disk lets us; False when it is read-only or not ours.

    For checks of content that is already in place (verify, sync's "already there"): a
    record only saves a later re-hash, so failing to write one must not fail the check.
    """
    try:
        _write(path, record)
    except OSError as exc:
        if exc.errno in _CANNOT_WRITE:
            return False
        raise storage_error("cannot write a verification record", path, exc) from exc
    return True


def write_record(path: Path, record: Record) -> None:
    """Write atomically: concurrent writers of the same record each replace it whole."""
    try:
        _write(path, record)
    except OSError as exc:
        raise storage_error("cannot write a verification record", path, exc) from exc


def _write(path: Path, record: Record) -> None:
    data = json.dumps(record.to_json(), sort_keys=True).encode()
    # 0o666 minus the umask: a shared cache's group reads it. in_folder: gc may remove an
    # empty folder between the mkdir and the write.
    in_folder(path, lambda: atomic_write(path, data))


def drop_record(path: Path) -> None:
    """Remove a record that no longer vouches for its file (on a read-only cache it
    stays: it names another file version, so it vouches for nothing)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno in _CANNOT_WRITE:
            return
        raise storage_error("cannot remove a stale verification record", path, exc) from exc


def hash_file(path: Path, algorithms: Iterable[str], size: int) -> dict[str, Digest]:
    """Hash ``path`` once with several algorithms (``size`` is needed for gitsha1).

    Raises OSError: callers decide whether a read failure means "missing" or "storage".
    """
    hashers: dict[str, Hasher] = {a: new_hasher(a, size) for a in dict.fromkeys(algorithms)}
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with os.fdopen(open_regular(path), "rb", buffering=0) as f:
        while n := f.readinto(buf):
            for h in hashers.values():
                h.update(view[:n])
    return {a: Digest(a, h.hexdigest()) for a, h in hashers.items()}
