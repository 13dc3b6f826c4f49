"""The repos a local Hub serves: a folder of files per branch, commits, hashes, JSON bodies.

``ROOT/<org>/<name>/<branch>/...`` is model repo ``org/name`` at branch ``<branch>``;
``ROOT/@datasets/<org>/<name>/<branch>/...`` is a dataset repo. Each branch's commit is a
sha1 over its content, so rewriting a file on disk is a new commit. Snapshots seen earlier
stay addressable by their commit for metadata; their files are served only while the
bytes are unchanged. Files at or above the LFS threshold (or matched by the branch's
``.gitattributes``) are LFS files (sha256), the others regular files (git blob sha1).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

MiB = 1024 * 1024
DEFAULT_LFS_THRESHOLD = 10 * MiB
DATASETS_DIR = "@datasets"

RepoType = Literal["model", "dataset"]
_Algorithm = Literal["gitsha1", "sha256"]

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 8 * MiB
# A hash is cached only for files last changed (mtime or ctime, which utime cannot fake)
# this long before hashing started: file timestamps come from a coarse clock, so a
# same-size rewrite within one tick would keep the stat key and serve a stale hash (git's
# "racy clean" problem).
_RACY_NS = 100_000_000
_HISTORY_PER_REPO = 64


# --------------------------------------------------------------------------- errors


class HubError(Exception):
    """An error answer: status, message, the Hub's X-Error-Code and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = tuple(headers)


def _repo_not_found(repo: RepoRef) -> HubError:
    return HubError(404, f"Repository not found: {repo.label}", "RepoNotFound")


def _revision_not_found(repo: RepoRef, revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision} ({repo.label})", "RevisionNotFound")


def entry_not_found(commit: str, path: str, why: str = "Entry not found") -> HubError:
    return HubError(404, f"{why}: {path}", "EntryNotFound", [("X-Repo-Commit", commit)])


# --------------------------------------------------------------------------- hashing


@dataclass(frozen=True)
class _Sig:
    """What identifies a file's content without reading it."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


def _sig(st: os.stat_result) -> _Sig:
    return _Sig(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _hash_file(path: Path, algorithm: _Algorithm, size: int) -> tuple[str, int]:
    """(hexdigest, bytes read). gitsha1 is git's blob id: sha1 of "blob <size>\\0" + data."""
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(b"blob %d\0" % size)
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    read = 0
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            read += n
    return h.hexdigest(), read


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _HashCache:
    """Digests keyed by (path, algorithm) and valid while the file's _Sig is unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[_Sig, str]] = {}
        self._path_locks: dict[str, threading.Lock] = {}
        self.computed = 0  # how many files were actually read (for tests)

    def digest(self, path: Path, algorithm: _Algorithm) -> tuple[_Sig, str]:
        """The file's current signature and its digest, hashing only on a cache miss."""
        for _ in range(5):
            sig = _sig(path.stat())
            key = (str(path), algorithm)
            cached = self._lookup(key, sig)
            if cached is not None:
                return sig, cached
            # One hasher per file: concurrent requests for a big file wait for it instead
            # of hashing it again in parallel.
            with self._path_lock(str(path)):
                cached = self._lookup(key, sig)
                if cached is not None:
                    return sig, cached
                started = time.time_ns()
                hexdigest, read = _hash_file(path, algorithm, sig.size)
                with self._lock:
                    self.computed += 1
                if _sig(path.stat()) != sig or read != sig.size:
                    continue  # rewritten while we read it: start over
                if started - max(sig.mtime_ns, sig.ctime_ns) > _RACY_NS:
                    with self._lock:
                        self._entries[key] = (sig, hexdigest)
                return sig, hexdigest
        raise OSError(f"{path} keeps changing while it is hashed")

    def _lookup(self, key: tuple[str, str], sig: _Sig) -> str | None:
        with self._lock:
            hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] == sig else None

    def _path_lock(self, path: str) -> threading.Lock:
        with self._lock:
            return self._path_locks.setdefault(path, threading.Lock())


# --------------------------------------------------------------------------- repos


@dataclass(frozen=True)
class RepoRef:
    repo_type: RepoType
    repo_id: str  # "org/name"

    @property
    def label(self) -> str:
        return self.repo_id if self.repo_type == "model" else f"datasets/{self.repo_id}"


@dataclass(frozen=True)
class FileEntry:
    """One file of a snapshot, with the hashes the Hub reports for it."""

    path: str  # repo path, "/"-separated
    fs_path: Path
    size: int
    lfs: bool
    oid: str  # ETag: sha256 for LFS, git blob sha1 otherwise
    blob_id: str  # git blob id (of the LFS pointer file for LFS files)
    pointer_size: int | None
    sig: _Sig


@dataclass(frozen=True)
class Snapshot:
    repo: RepoRef
    branch: str
    commit: str
    files: tuple[FileEntry, ...]  # sorted by path
    by_path: dict[str, FileEntry] = field(repr=False, compare=False)

    @property
    def last_modified(self) -> str:
        newest = max((f.sig.mtime_ns for f in self.files), default=0)
        stamp = datetime.fromtimestamp(newest / 1e9, tz=timezone.utc)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class _LfsRules:
    """`.gitattributes` filter=lfs rules; like git, the last matching line wins."""

    rules: tuple[tuple[str, bool], ...] = ()

    def is_lfs(self, path: str) -> bool:
        base = path.rsplit("/", 1)[-1]
        verdict = False
        for pattern, lfs in self.rules:
            anchored = pattern.lstrip("/")
            if fnmatch.fnmatchcase(path, anchored) or (
                "/" not in pattern and fnmatch.fnmatchcase(base, pattern)
            ):
                verdict = lfs
        return verdict


def _parse_gitattributes(text: str) -> _LfsRules:
    rules: list[tuple[str, bool]] = []
    for line in text.splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        for attr in tokens[1:]:
            if attr == "filter=lfs":
                rules.append((tokens[0], True))
            elif attr.startswith("filter=") or attr in ("-filter", "!filter"):
                rules.append((tokens[0], False))
    return _LfsRules(tuple(rules))


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _valid_name(name: str) -> bool:
    """A single path segment we may join to the root: no traversal, no hidden names."""
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


def _walk_files(base: Path) -> Iterator[tuple[Path, str]]:
    """(filesystem path, repo path) for every file under base, skipping .git."""
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            fs_path = Path(dirpath, name)
            if fs_path.is_file():
                yield fs_path, fs_path.relative_to(base).as_posix()


def _commit_sha(repo: RepoRef, branch: str, files: Sequence[FileEntry]) -> str:
    h = hashlib.sha1(f"{repo.repo_type}\0{repo.repo_id}\0{branch}\n".encode())
    for f in files:
        h.update(f"{f.path}\0{f.oid}\0{f.size}\n".encode())
    return h.hexdigest()


class RepoStore:
    """Repos on disk -> snapshots, hashed lazily, plus what was seen before (by commit)."""

    def __init__(self, root: Path, lfs_threshold: int) -> None:
        self.root = root
        self.lfs_threshold = lfs_threshold
        self.hashes = _HashCache()
        self._lock = threading.Lock()
        self._history: dict[RepoRef, OrderedDict[str, Snapshot]] = {}
        self._blobs: dict[str, tuple[FileEntry, str]] = {}  # sha256 -> (entry, commit)

    def repo_dir(self, repo: RepoRef) -> Path:
        org, _, name = repo.repo_id.partition("/")
        if not (_valid_name(org) and _valid_name(name)):
            raise _repo_not_found(repo)
        base = self.root / DATASETS_DIR if repo.repo_type == "dataset" else self.root
        path = base / org / name
        if not path.is_dir():
            raise _repo_not_found(repo)
        return path

    def snapshot(self, repo: RepoRef, revision: str) -> Snapshot:
        """The repo at a branch name or at a commit sha (current or seen before)."""
        repo_dir = self.repo_dir(repo)
        if _valid_name(revision) and (repo_dir / revision).is_dir():
            return self._build(repo, repo_dir, revision)
        if _COMMIT_RE.match(revision):
            # A commit seen before is that snapshot (its files are served only while their
            # bytes are unchanged: see current()). Checked first: building a branch walks
            # the whole repo, which would make every file request cost O(files).
            with self._lock:
                seen = self._history.get(repo, OrderedDict()).get(revision)
            if seen is not None:
                return seen
            for branch in self._branches(repo_dir):
                snap = self._build(repo, repo_dir, branch)
                if snap.commit == revision:
                    return snap
            with self._lock:
                old = self._history.get(repo, OrderedDict()).get(revision)
            if old is not None:
                return old
        raise _revision_not_found(repo, revision)

    def current(self, entry: FileEntry, commit: str) -> FileEntry:
        """The entry if the bytes on disk are still those it describes (old snapshots)."""
        algorithm: _Algorithm = "sha256" if entry.lfs else "gitsha1"
        try:
            _, oid = self.hashes.digest(entry.fs_path, algorithm)
        except FileNotFoundError:
            oid = ""
        if oid != entry.oid:
            raise entry_not_found(commit, entry.path, "Content no longer available on this server")
        return entry

    def blob(self, sha256: str) -> tuple[FileEntry, str] | None:
        with self._lock:
            return self._blobs.get(sha256)

    def _branches(self, repo_dir: Path) -> list[str]:
        return sorted(p.name for p in repo_dir.iterdir() if p.is_dir() and _valid_name(p.name))

    def _build(self, repo: RepoRef, repo_dir: Path, branch: str) -> Snapshot:
        base = repo_dir / branch
        attributes = base / ".gitattributes"
        rules = (
            _parse_gitattributes(attributes.read_text()) if attributes.is_file() else _LfsRules()
        )
        files = tuple(self._entry(fs_path, rel, rules) for fs_path, rel in _walk_files(base))
        snap = Snapshot(repo, branch, _commit_sha(repo, branch, files), files, {})
        snap.by_path.update((f.path, f) for f in files)
        self._remember(snap)
        return snap

    def _entry(self, fs_path: Path, rel: str, rules: _LfsRules) -> FileEntry:
        size = fs_path.stat().st_size
        lfs = rel != ".gitattributes" and (size >= self.lfs_threshold or rules.is_lfs(rel))
        if not lfs:
            sig, oid = self.hashes.digest(fs_path, "gitsha1")
            return FileEntry(rel, fs_path, sig.size, False, oid, oid, None, sig)
        sig, sha256 = self.hashes.digest(fs_path, "sha256")
        pointer = _lfs_pointer(sha256, sig.size)
        return FileEntry(
            rel, fs_path, sig.size, True, sha256, git_blob_sha1(pointer), len(pointer), sig
        )

    def _remember(self, snap: Snapshot) -> None:
        with self._lock:
            history = self._history.setdefault(snap.repo, OrderedDict())
            history[snap.commit] = snap
            history.move_to_end(snap.commit)
            while len(history) > _HISTORY_PER_REPO:
                history.popitem(last=False)
            for f in snap.files:
                if f.lfs:
                    self._blobs[f.oid] = (f, snap.commit)


# --------------------------------------------------------------------------- JSON bodies


def _sibling(f: FileEntry, blobs: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"rfilename": f.path}
    if blobs:
        item.update(size=f.size, blobId=f.blob_id)
        if f.lfs:
            item["lfs"] = {"size": f.size, "sha256": f.oid, "pointerSize": f.pointer_size}
    return item


def repo_info(snap: Snapshot, blobs: bool) -> dict[str, Any]:
    repo_id = snap.repo.repo_id
    info: dict[str, Any] = {
        "_id": snap.commit[:24],
        "id": repo_id,
        "author": repo_id.split("/", 1)[0],
        "sha": snap.commit,
        "lastModified": snap.last_modified,
        "createdAt": snap.last_modified,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": [_sibling(f, blobs) for f in snap.files],
        "usedStorage": sum(f.size for f in snap.files),
    }
    if snap.repo.repo_type == "model":
        info.update(modelId=repo_id, spaces=[])
    return info


def _tree_file(f: FileEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
    if f.lfs:
        item["lfs"] = {"oid": f.oid, "size": f.size, "pointerSize": f.pointer_size}
    return item


def tree_page(snap: Snapshot, folder: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and directories under folder ("" = root), sorted by path."""
    prefix = f"{folder}/" if folder else ""
    under = [f for f in snap.files if f.path.startswith(prefix)]
    if folder and not under:
        raise entry_not_found(snap.commit, folder)
    dirs: dict[str, list[str]] = {}  # directory -> its files' "path blob_id" lines
    items: list[dict[str, Any]] = []
    for f in under:
        parts = f.path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            dirs.setdefault(prefix + "/".join(parts[:depth]), []).append(f"{f.path} {f.blob_id}")
        if recursive or len(parts) == 1:
            items.append(_tree_file(f))
    for d, lines in dirs.items():
        if recursive or "/" not in d[len(prefix) :]:
            oid = hashlib.sha1("\n".join(lines).encode()).hexdigest()
            items.append({"type": "directory", "oid": oid, "size": 0, "path": d})
    return sorted(items, key=lambda item: str(item["path"]))
