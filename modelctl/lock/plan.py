"""The DownloadPlan: which locked files there are, how big, and which are already here.

Pure: cache status is passed in as the set of :class:`FileRef` already present, so the
math can be property-tested with plain values. Unknown sizes (``None``) are carried
through and counted, never guessed: totals are over the known sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from modelctl.lock.types import FileRef, Lock

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass


@dataclass(frozen=True)
class PlannedFile:
    asset: str
    repo_id: str
    revision: str  # the locked commit
    filename: str
    size_bytes: int | None
    digest: str
    cached: bool
    ref: FileRef

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "filename": self.filename,
            "size_bytes": self.size_bytes,
            "digest": self.digest,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class DownloadPlan:
    files: tuple[PlannedFile, ...]
    total_bytes: int
    cached_bytes: int
    unknown_sizes: int  # files whose size the Hub did not report

    def download_bytes(self) -> int:
        return self.total_bytes - self.cached_bytes

    def needs_download(self) -> bool:
        return any(not f.cached for f in self.files)

    def to_download(self) -> tuple[PlannedFile, ...]:
        return tuple(f for f in self.files if not f.cached)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [f.to_json() for f in self.files],
            "total_bytes": self.total_bytes,
            "cached_bytes": self.cached_bytes,
            "download_bytes": self.download_bytes(),
        }


def make_plan(refs: Iterable[FileRef], cached: Iterable[FileRef] = ()) -> DownloadPlan:
    """Plan over ``refs`` (sorted by asset, repo, path: input order never matters)."""
    present = frozenset(cached)
    files = tuple(
        PlannedFile(
            asset=r.asset,
            repo_id=r.repo_id,
            revision=r.commit,
            filename=r.path,
            size_bytes=r.size,
            digest=str(r.digest),
            cached=r in present,
            ref=r,
        )
        for r in sorted(set(refs), key=_order)
    )
    return DownloadPlan(
        files=files,
        total_bytes=sum(f.size_bytes or 0 for f in files),
        cached_bytes=sum(f.size_bytes or 0 for f in files if f.cached),
        unknown_sizes=sum(1 for f in files if f.size_bytes is None),
    )


def plan_lock(lock: Lock, cached: Iterable[FileRef] = ()) -> DownloadPlan:
    return make_plan(lock.files(), cached)


def _order(r: FileRef) -> tuple[str, str, str, str, str]:
    return (r.asset, r.repo_type, r.repo_id, r.commit, r.path)
