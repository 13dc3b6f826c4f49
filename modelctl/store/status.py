"""What a cache (or ``--target`` tree) holds for a lock: ``modelctl status``.

For each locked file, at the path the application reads (see :mod:`modelctl.store.layout`), the
state :func:`modelctl.store.presence.presence` gives: ``verified``, ``unverified`` (present with
the locked size, but no record vouches for it: ``modelctl verify`` hashes it),
``wrong-size`` or ``missing``. Nothing is hashed and nothing is written: a status costs a
few stats per file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelctl.lock.types import FileRef, Lock
from modelctl.store.layout import Store
from modelctl.store.presence import STATES, presence

__all__ = ["STATES", "FileStatus", "StatusReport", "status"]


@dataclass(frozen=True)
class FileStatus:
    ref: FileRef
    path: Path  # where the application reads it
    state: str  # one of STATES
    bytes_on_disk: int

    def to_json(self) -> dict[str, Any]:
        r = self.ref
        return {
            "asset": r.asset,
            "repo_id": r.repo_id,
            "repo_type": r.repo_type,
            "commit": r.commit,
            "filename": r.path,
            "size_bytes": r.size,
            "digest": str(r.digest),
            "state": self.state,
            "bytes_on_disk": self.bytes_on_disk,
            "path": str(self.path),
        }


@dataclass(frozen=True)
class StatusReport:
    location: str
    files: tuple[FileStatus, ...]
    bytes_on_disk: int  # distinct contents (a blob shared by two files counts once)

    def count(self, state: str) -> int:
        return sum(1 for f in self.files if f.state == state)

    @property
    def locked_bytes(self) -> int:
        return sum(f.ref.size or 0 for f in self.files)

    @property
    def complete(self) -> bool:
        return all(f.state in ("verified", "unverified") for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "files": [f.to_json() for f in self.files],
            "totals": {
                "files": len(self.files),
                **{s.replace("-", "_"): self.count(s) for s in STATES},
                "locked_bytes": self.locked_bytes,
                "bytes_on_disk": self.bytes_on_disk,
            },
        }


def status(lock: Lock, store: Store) -> StatusReport:
    """Every locked file's state at its final path; stats and record reads only."""
    refs = sorted(dict.fromkeys(lock.files()), key=lambda r: (r.asset, r.repo_id, r.path))
    files: list[FileStatus] = []
    seen: dict[tuple[int, int], int] = {}
    for ref in refs:
        found = presence(store, ref)
        if found.stat is not None:
            seen[(found.stat.st_dev, found.stat.st_ino)] = found.size
        files.append(FileStatus(ref, found.path, found.state, found.size))
    return StatusReport(str(store.root), tuple(files), sum(seen.values()))
