"""``modelctl outdated``: which locked branches or tags have moved, and what would change.

For every asset, its sources are resolved again at their requested revision (as
``modelctl lock -P NAME`` would, nothing written): one metadata request per
(repo, revision), shared between assets. Sources pinned to a commit in the manifest are
reported as pinned, without a request. The answer compares the new resolution with the
lock file by file: added, removed, or changed (size, digest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelctl.errors import InputError
from modelctl.hub.answers import RemoteFile, RepoSnapshot
from modelctl.lock.types import Lock, LockedAsset, LockedFile, LockedSource, Manifest, RepoType

if TYPE_CHECKING:
    from modelctl.hub.client import Fetched, HubClient

# modelctl.hub.resolve (and through it huggingface_hub) is imported where a resolve runs:
# importing this module costs a CLI start-up nothing.

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class FileChange:
    path: str
    change: str  # "added", "removed", "changed"
    old: LockedFile | None
    new: LockedFile | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "change": self.change,
            "old_size": self.old.size if self.old else None,
            "new_size": self.new.size if self.new else None,
            "old_digest": str(self.old.digest) if self.old else None,
            "new_digest": str(self.new.digest) if self.new else None,
        }


@dataclass(frozen=True)
class SourceStatus:
    """One locked source of one asset against its revision's newest commit."""

    asset: str
    repo_id: str
    repo_type: str
    revision: str
    locked_commit: str
    latest_commit: str | None  # None when the asset could not be resolved (see error)
    files: tuple[FileChange, ...]
    error: str | None = None

    @property
    def pinned(self) -> bool:
        return bool(_COMMIT.match(self.revision))

    @property
    def outdated(self) -> bool:
        return self.latest_commit is not None and (
            self.latest_commit != self.locked_commit or bool(self.files)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.revision,
            "pinned": self.pinned,
            "locked_commit": self.locked_commit,
            "latest_commit": self.latest_commit,
            "outdated": self.outdated,
            "files": [f.to_json() for f in self.files],
            "error": self.error,
        }


@dataclass(frozen=True)
class OutdatedReport:
    sources: tuple[SourceStatus, ...]

    @property
    def outdated(self) -> tuple[SourceStatus, ...]:
        return tuple(s for s in self.sources if s.outdated)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": [s.to_json() for s in self.sources],
            "outdated": len(self.outdated),
            "errors": sum(1 for s in self.sources if s.error),
        }


class _SharedSnapshots:
    """A HubClient that asks once per (repo_type, repo, revision)."""

    def __init__(self, inner: HubClient) -> None:
        self.inner = inner
        self._seen: dict[tuple[str, str, str], RepoSnapshot] = {}

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        key = (repo_type, repo_id, revision)
        if key not in self._seen:
            self._seen[key] = self.inner.snapshot(repo_id, repo_type, revision)
        return self._seen[key]

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        return self.inner.file_metadata(repo_id, repo_type, commit, path)

    def fetch_checked(
        self, repo_id: str, repo_type: RepoType, commit: str, locked: LockedFile, keep: int
    ) -> Fetched:
        return self.inner.fetch_checked(repo_id, repo_type, commit, locked, keep)


def outdated(manifest: Manifest, lock: Lock, client: HubClient) -> OutdatedReport:
    """Compare every locked asset of ``manifest`` with a fresh resolve of its revisions.

    ``lock`` must match ``manifest`` (``modelctl lock --check``). An asset that no longer
    resolves (a file or glob gone at the new commit) is reported with its error, not raised.
    """
    from modelctl.hub.resolve import resolve

    shared = _SharedSnapshots(client)
    rows: list[SourceStatus] = []
    for asset in manifest.assets:
        locked = lock.asset(asset.name)
        if locked is None or not asset.declares_files:
            continue
        if all(_COMMIT.match(s.revision) for s in locked.sources):
            rows.extend(_row(asset.name, s, s.commit, ()) for s in locked.sources)
            continue
        only = Manifest(manifest.source, manifest.endpoint, (asset,))
        try:
            fresh = resolve(
                only, shared, lock, upgrade_assets=(asset.name,), hash_regular=False
            ).assets[0]
        except InputError as exc:
            rows.extend(_row(asset.name, s, None, (), exc.render()) for s in locked.sources)
            continue
        rows.extend(_compare(locked, fresh))
    return OutdatedReport(tuple(rows))


def _compare(locked: LockedAsset, fresh: LockedAsset) -> list[SourceStatus]:
    new_by_key = {s.key: s for s in fresh.sources}
    rows = []
    for src in locked.sources:
        new = new_by_key.get(src.key)
        if new is None:  # cannot happen for a fresh lock; reported rather than hidden
            rows.append(_row(locked.name, src, None, (), "source no longer in the manifest"))
            continue
        rows.append(_row(locked.name, src, new.commit, file_changes(src.files, new.files)))
    return rows


def _row(
    asset: str,
    src: LockedSource,
    latest: str | None,
    files: tuple[FileChange, ...],
    error: str | None = None,
) -> SourceStatus:
    return SourceStatus(
        asset, src.repo_id, src.repo_type, src.revision, src.commit, latest, files, error
    )


def file_changes(
    old: tuple[LockedFile, ...], new: tuple[LockedFile, ...]
) -> tuple[FileChange, ...]:
    """Pure: files added, removed or changed (size or digest), sorted by path."""
    before = {f.path: f for f in old}
    after = {f.path: f for f in new}
    changes = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is None:
            changes.append(FileChange(path, "added", None, b))
        elif b is None:
            changes.append(FileChange(path, "removed", a, None))
        elif (a.size, a.digest) != (b.size, b.digest):
            changes.append(FileChange(path, "changed", a, b))
    return tuple(changes)
