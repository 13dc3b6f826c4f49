"""Verify: are the locked files on disk, where applications look for them, byte-exact?

Checked at each file's final path (the snapshot symlink in the HF cache, the file in a
``--target`` tree), see :func:`modelctl.store.presence.check_local`:

- default: size, and the record written after a verified download (the file is hashed
  only when it has no record, or changed since: blake3 against the record, else the
  lock's own sha256 / gitsha1);
- ``full``: the content is hashed in every case.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from modelctl.errors import VerificationError
from modelctl.lock.types import FileRef, Lock
from modelctl.parallel import DEFAULT_MAX_JOBS, run_parallel
from modelctl.store.layout import Store, check_writable
from modelctl.store.presence import LocalCheck, check_local


@dataclass(frozen=True)
class FileCheck:
    ref: FileRef
    path: Path
    check: LocalCheck

    def describe(self) -> str:
        r = self.ref
        what = {
            "missing": "missing",
            "wrong-size": f"wrong size: {self.check.actual}, locked {r.size} bytes",
            "wrong-content": f"wrong content: {self.check.actual}, locked {r.digest}",
        }.get(self.check.status, self.check.status)
        return f"{r.label()} ({what}) at {self.path}"


@dataclass(frozen=True)
class VerifyReport:
    location: str
    files: tuple[FileCheck, ...]

    @property
    def problems(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if not f.check.ok)

    @property
    def hashed(self) -> int:
        return sum(1 for f in self.files if f.check.ok and f.check.how != "record")


def check(
    lock: Lock,
    store: Store,
    *,
    full: bool = False,
    jobs: int = DEFAULT_MAX_JOBS,
    cancel: threading.Event | None = None,
) -> VerifyReport:
    """Check every locked file; never raises for a bad file (see :func:`verify`)."""
    refs = sorted(dict.fromkeys(lock.files()), key=lambda r: (r.asset, r.repo_id, r.path))
    # Checking writes records, and a symlink could make it vouch for a file outside the tree.
    check_writable(store, refs)

    def one(ref: FileRef) -> FileCheck:
        path = store.final_path(ref)
        return FileCheck(
            ref, path, check_local(path, ref.digest, ref.size, store.record_path(ref), full=full)
        )

    files = run_parallel(one, refs, max(1, min(jobs, len(refs))), cancel or threading.Event())
    return VerifyReport(str(store.root), tuple(files))


def verify(
    lock: Lock,
    store: Store,
    *,
    full: bool = False,
    jobs: int = DEFAULT_MAX_JOBS,
    cancel: threading.Event | None = None,
) -> VerifyReport:
    """:func:`check`, raising VerificationError naming every bad file."""
    report = check(lock, store, full=full, jobs=jobs, cancel=cancel)
    raise_problems(report)
    return report


def raise_problems(report: VerifyReport) -> None:
    """VerificationError naming every bad file of ``report``; nothing when all are good."""
    bad = report.problems
    if bad:
        raise VerificationError(
            f"{len(bad)} of {len(report.files)} locked file(s) differ from the lock",
            where=report.location,
            details=tuple(f.describe() for f in bad),
            hint="run `modelctl sync` to repair them",
        )
