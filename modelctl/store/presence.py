"""What is on disk for one locked file: one read-only answer, and the verifying one.

:func:`look` (and :func:`presence`, at a store's final path) answers from a ``stat`` and
the file's record (see :mod:`modelctl.store.record`), never reading content and never writing,
so the runtime may call it on a read-only file system. States:

- ``verified``    present, with a record vouching for exactly this file version;
- ``unverified``  present with the locked size, but no record vouches for it (placed by
  another tool, or changed since);
- ``wrong-size``  present with another size than the lock says;
- ``missing``     not there.

``status`` reports it, the runtime refuses on it, ``bundle`` requires files present, and
``plan`` counts what is cached. :func:`check_local` goes further for sync and verify: it
hashes what no record vouches for (and writes a fresh record when it matches).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelctl.errors import StorageError, VerificationError
from modelctl.fs.safeio import kind
from modelctl.lock.digest import Digest
from modelctl.lock.types import FileRef
from modelctl.store.layout import Store
from modelctl.store.record import (
    FileStamp,
    Record,
    drop_record,
    hash_file,
    read_record,
    remember,
)

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

STATES: Final = ("verified", "unverified", "wrong-size", "missing")


@dataclass(frozen=True)
class Presence:
    """One locked file as the disk shows it (see the module docstring for ``state``)."""

    state: str  # one of STATES
    path: Path
    stat: os.stat_result | None = None  # None when missing
    record: Record | None = None  # this content's record, when the size is right
    error: OSError | None = None  # why the file could not be seen (missing)

    @property
    def there(self) -> bool:
        """Present with the locked size (verified or not)."""
        return self.state in ("verified", "unverified")

    @property
    def size(self) -> int:
        return self.stat.st_size if self.stat is not None else 0

    @property
    def stamp(self) -> FileStamp | None:
        return FileStamp.of(self.stat) if self.stat is not None else None


def look(path: Path, digest: Digest, size: int | None, record_path: Path) -> Presence:
    """The state of ``path`` for a file locked as ``digest`` / ``size``: stat + record."""
    try:
        st = path.stat()
    except OSError as exc:
        return Presence("missing", path, error=exc)
    if not stat.S_ISREG(st.st_mode):
        # A FIFO, device or folder is no locked content, whatever its size says (and
        # reading it could block or never end): sync replaces it, verify refuses it.
        return Presence("wrong-size", path, st)
    if size is not None and st.st_size != size:
        return Presence("wrong-size", path, st)
    record = read_record(record_path)
    vouched = record is not None and record.vouches_for(digest, FileStamp.of(st))
    return Presence("verified" if vouched else "unverified", path, st, record)


def presence(store: Store, ref: FileRef) -> Presence:
    """The state of a locked file at its final path in ``store`` (where applications read)."""
    return look(store.final_path(ref), ref.digest, ref.size, store.record_path(ref))


def present_refs(store: Store, refs: Iterable[FileRef]) -> list[FileRef]:
    """The refs present with their locked size (the plan's "cached"; nothing hashed)."""
    return [r for r in refs if presence(store, r).there]


@dataclass(frozen=True)
class LocalCheck:
    """What is on disk for one locked file, compared with the lock."""

    status: str  # "ok", "missing", "wrong-size", "wrong-content"
    how: str  # "record" (trusted), "blake3" or the lock's algorithm (hashed now), or ""
    actual: str | None = None  # the size or digest found, for messages

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_local(
    path: Path, digest: Digest, size: int | None, record_path: Path, *, full: bool = False
) -> LocalCheck:
    """Is ``path`` the locked content? Cheap when a record vouches for it.

    - no file, or another size: not ok (no hashing);
    - a record for this digest and this exact size/mtime/inode: ok, unless ``full``;
    - a record with a blake3, and the file changed or ``full``: blake3 compared;
    - no usable record: the lock's own digest computed (with blake3, for the record).

    A successful hash writes a fresh record. Raises StorageError if the file cannot be
    read for another reason than being absent.
    """
    seen = look(path, digest, size, record_path)
    if seen.state == "missing":
        if isinstance(seen.error, FileNotFoundError):
            return LocalCheck("missing", "")
        raise _unreadable(path, seen.error)
    if seen.state == "wrong-size":
        assert seen.stat is not None
        if not stat.S_ISREG(seen.stat.st_mode):
            return LocalCheck("wrong-size", "", kind(seen.stat.st_mode))
        return LocalCheck("wrong-size", "", f"{seen.size} bytes")
    if seen.state == "verified" and not full:
        return LocalCheck("ok", "record")
    stamp = seen.stamp
    assert stamp is not None
    record = seen.record
    if record is not None and record.digest == digest and record.blake3 is not None:
        actual = _hash(path, ("blake3",), seen.size)["blake3"]
        if actual != record.blake3:
            return LocalCheck("wrong-content", "blake3", str(actual))
        if record.stamp != stamp:
            remember(record_path, Record(digest, stamp, record.blake3))
        return LocalCheck("ok", "blake3")
    found = _hash(path, (digest.algorithm, "blake3"), seen.size)
    if found[digest.algorithm] != digest:
        if record is not None:
            drop_record(record_path)
        return LocalCheck("wrong-content", digest.algorithm, str(found[digest.algorithm]))
    # Records are an optimisation: on a read-only cache the check still succeeds.
    remember(record_path, Record(digest, stamp, found["blake3"]))
    return LocalCheck("ok", digest.algorithm)


def _unreadable(path: Path, exc: OSError | None) -> StorageError:
    reason = exc.strerror if exc is not None else "unknown error"
    return StorageError(f"cannot read {path.name}: {reason}", where=str(path))


def _hash(path: Path, algorithms: Iterable[str], size: int) -> dict[str, Digest]:
    try:
        return hash_file(path, algorithms, size)
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def require_present(refs: Sequence[FileRef], store: Store, action: str) -> None:
    """Raise VerificationError unless every file of ``refs`` is on disk with its locked
    size; ``action`` names what needs them ("bundle", "push") in the message."""
    problems = []
    for ref in refs:
        seen = presence(store, ref)
        if seen.state == "missing":
            problems.append(f"{ref.label()} (missing) at {seen.path}")
        elif seen.state == "wrong-size":
            problems.append(
                f"{ref.label()} (wrong size: {seen.size}, locked {ref.size}) at {seen.path}"
            )
    if problems:
        raise VerificationError(
            f"cannot {action}: {len(problems)} of {len(refs)} locked file(s) are not on disk "
            "as locked",
            where=str(store.root),
            details=tuple(problems),
            hint=f"run `modelctl sync` first (with the same --target, if you {action} a tree)",
        )
