"""A Hugging Face Hub-compatible HTTP server on loopback, for tests (stdlib only).

``--root DIR`` lays out the repos: ``DIR/<org>/<name>/<branch>/...`` is model repo
``org/name`` at branch ``<branch>``; ``DIR/@datasets/<org>/<name>/<branch>/...`` is a
dataset repo. Each branch's commit is a sha1 over its content, so rewriting a file on
disk is a new commit. Snapshots seen earlier stay addressable by their commit for
metadata (model_info, tree); their files are served only while the bytes are unchanged.

It speaks the endpoints huggingface_hub 2.x uses: repo info (``?blobs=true``), the
paginated tree, HEAD/GET ``/resolve/`` with Range, typed 404s, and optional bearer-token
auth. :class:`Faults` injects failures at runtime (dropped connections, status codes,
flipped bytes, CDN-like redirects, throttling); every request is recorded for assertions.

Run it standalone with ``python -m modelctl.testing.hub --root DIR --port 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO, Literal
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_LFS_THRESHOLD = 10 * MiB
DATASETS_DIR = "@datasets"

RepoType = Literal["model", "dataset"]
_Algorithm = Literal["gitsha1", "sha256"]

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_HASH_CHUNK = 8 * MiB
_LOOP_CHUNK = 256 * 1024
# A hash is cached only for files last changed (mtime or ctime, which utime cannot fake)
# this long before hashing started: file timestamps come from a coarse clock, so a
# same-size rewrite within one tick would keep the stat key and serve a stale hash (git's
# "racy clean" problem).
_RACY_NS = 100_000_000
_HISTORY_PER_REPO = 64


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server answered it (the token is never recorded)."""

    method: str
    path: str  # URL-decoded path, without the query
    query: str  # raw query string
    range: str | None  # the Range header, as sent
    status: int
    bytes_sent: int  # body bytes actually written


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class BodyPlan:
    """How one response body is sent, decided (and counters consumed) once per request."""

    drop_after: int | None = None  # close the connection after this many body bytes
    flip_offset: int | None = None  # absolute file offset of the byte to corrupt
    rate: int | None = None  # bytes per second

    @property
    def needs_loop(self) -> bool:
        """Byte-level control needs a read/write loop; otherwise the body goes by sendfile."""
        return self.flip_offset is not None or self.rate is not None


_PLAIN = BodyPlan()


@dataclass
class Faults:
    """Failures to inject, mutable at runtime from any thread (use :meth:`set`/:meth:`reset`).

    A "content GET" is a GET on ``/resolve/`` or ``/blobs/`` for a file that exists
    (including a resolve GET answered by the LFS redirect). Status, drop, wrong-bytes
    and slow faults apply to content GETs only; ``redirect_lfs`` to HEAD and GET of LFS
    files on ``/resolve/``; ``fail_blob_redirect`` to every ``/blobs/`` request. The API
    endpoints never see faults. Every fault applies only to repo paths in ``paths``
    (None = every path); a blob counts as the repo path it was listed under. The exception
    are ``repo_info_patch`` / ``repo_info_body``, which rewrite the repo-info endpoint's
    answer, and ``linked_size``, which applies to every LFS HEAD and GET.
    """

    # Send full headers, then close the connection after N body bytes ...
    drop_after_bytes: int | None = None
    # ... for the next N content GETs (None = all of them).
    drop_count: int | None = None
    # Answer the next content GETs with these statuses, one popped per request.
    status_codes: list[int] = field(default_factory=list)
    # Retry-After (seconds) sent with injected 429/503; None = no header.
    retry_after: int | None = 1
    # Serve the content with one byte XOR-ed with 0xFF (same length, same headers).
    wrong_bytes: bool = False
    # Offset of that byte in the file; None = the middle byte (size // 2).
    wrong_byte_offset: int | None = None
    # LFS resolve answers 302 to /blobs/<sha256> (like the Hub's CDN redirect).
    redirect_lfs: bool = False
    # Host in the redirect; None = the other loopback name (127.0.0.1 <-> localhost), so
    # clients see another origin, as with the real CDN. Same host = same-origin redirect.
    redirect_host: str | None = None
    # /blobs/ answers fail_blob_status instead of the content.
    fail_blob_redirect: bool = False
    fail_blob_status: int = 403
    # Throttle bodies to this many bytes per second.
    slow_bytes_per_sec: int | None = None
    # Model info lists files without size/blobId/lfs even with blobs=true, like a mirror
    # that does not report metadata (clients must fall back to HEAD).
    omit_metadata: bool = False
    # Keys replaced in every repo-info answer (model_info / dataset_info), as a hostile or
    # broken server would send them, e.g. {"sha": "../../.."}. Applies to every repo.
    repo_info_patch: dict[str, Any] | None = None
    # The whole repo-info body, sent as is (status 200, application/json): malformed JSON.
    repo_info_body: bytes | None = None
    # X-Linked-Size sent for LFS files on /resolve/ instead of the real size.
    linked_size: str | None = None
    # Restrict every fault to these repo paths (None = all paths).
    paths: set[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set(self, **changes: Any) -> None:
        """Change several fault fields atomically; unknown names raise TypeError."""
        names = _public_field_names(self)
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown fault option(s): {', '.join(unknown)}")
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def reset(self) -> None:
        """Back to no faults at all."""
        fresh = Faults()
        with self._lock:
            for name in _public_field_names(self):
                setattr(self, name, getattr(fresh, name))

    def take_status(self, path: str) -> int | None:
        """The injected status for this content GET, if any (consumes it)."""
        with self._lock:
            if self.status_codes and self._applies(path):
                return self.status_codes.pop(0)
        return None

    def should_redirect(self, path: str) -> bool:
        with self._lock:
            return self.redirect_lfs and self._applies(path)

    def blob_failure(self, path: str) -> int | None:
        with self._lock:
            if self.fail_blob_redirect and self._applies(path):
                return self.fail_blob_status
        return None

    def body_plan(self, path: str, size: int) -> BodyPlan:
        """How to send this content GET's body (consumes one drop if a drop applies)."""
        with self._lock:
            if not self._applies(path):
                return _PLAIN
            return BodyPlan(
                drop_after=self._take_drop(),
                flip_offset=self._flip_offset(size),
                rate=self.slow_bytes_per_sec,
            )

    def patch_repo_info(self, info: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return info | self.repo_info_patch if self.repo_info_patch else info

    def _applies(self, path: str) -> bool:
        return self.paths is None or path in self.paths

    def _take_drop(self) -> int | None:
        if self.drop_after_bytes is None or self.drop_count == 0:
            return None
        if self.drop_count is not None:
            self.drop_count -= 1
        return self.drop_after_bytes

    def _flip_offset(self, size: int) -> int | None:
        if not self.wrong_bytes or size == 0:
            return None
        offset = size // 2 if self.wrong_byte_offset is None else self.wrong_byte_offset
        return offset if 0 <= offset < size else None


def _public_field_names(faults: Faults) -> set[str]:
    return {f.name for f in fields(faults) if not f.name.startswith("_")}


# --------------------------------------------------------------------------- errors


class _HubError(Exception):
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


def _repo_not_found(repo: RepoRef) -> _HubError:
    return _HubError(404, f"Repository not found: {repo.label}", "RepoNotFound")


def _revision_not_found(repo: RepoRef, revision: str) -> _HubError:
    return _HubError(404, f"Invalid rev id: {revision} ({repo.label})", "RevisionNotFound")


def _entry_not_found(commit: str, path: str, why: str = "Entry not found") -> _HubError:
    return _HubError(404, f"{why}: {path}", "EntryNotFound", [("X-Repo-Commit", commit)])


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


class _RepoStore:
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
            raise _entry_not_found(commit, entry.path, "Content no longer available on this server")
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


def _repo_info(snap: Snapshot, blobs: bool) -> dict[str, Any]:
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


def _tree(snap: Snapshot, folder: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and directories under folder ("" = root), sorted by path."""
    prefix = f"{folder}/" if folder else ""
    under = [f for f in snap.files if f.path.startswith(prefix)]
    if folder and not under:
        raise _entry_not_found(snap.commit, folder)
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


# --------------------------------------------------------------------------- ranges


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single satisfiable range; None = send everything.

    Multi-range and malformed headers are ignored (RFC 9110 allows it); an unsatisfiable
    range raises 416.
    """
    match = _RANGE_RE.match(header) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        if int(last) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(int(last), size - 1) if last else size - 1


def _unsatisfiable(size: int) -> _HubError:
    return _HubError(
        416, "Requested range not satisfiable", None, [("Content-Range", f"bytes */{size}")]
    )


def _flip(data: bytes, position: int, offset: int | None) -> bytes:
    """data (read at file position) with the byte at offset inverted, if it is inside."""
    if offset is None or not position <= offset < position + len(data):
        return data
    corrupted = bytearray(data)
    corrupted[offset - position] ^= 0xFF
    return bytes(corrupted)


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\n", " ")


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "modelctl-hub/1"
    # Headers and body go in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every small keep-alive response.
    disable_nagle_algorithm = True

    _status = 0
    _sent = 0
    _logged: RequestRecord | None = None

    def version_string(self) -> str:
        return self.server_version

    @property
    def hub(self) -> LocalHub:
        server = self.server
        assert isinstance(server, _Server)
        return server.hub

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr; the request log has them.
        logger.debug("%s %s", self.address_string(), format % args)

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        self._status, self._sent, self._logged = 0, 0, None
        split = urlsplit(self.path)
        try:
            if self.command not in ("GET", "HEAD"):
                self.close_connection = True  # a request body we did not read may follow
                raise _HubError(405, f"Method {self.command} not allowed")
            self._route(split.path, split.query)
        except _HubError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-response
        except Exception:
            logger.exception("local hub: error while answering %s %s", self.command, split.path)
            self.close_connection = True
            if not self._status:
                with contextlib.suppress(OSError):
                    self._send_json(500, {"error": "internal error in the local hub"})
        finally:
            self._log_outcome()

    def _record_for(self, status: int, bytes_sent: int) -> RequestRecord:
        split = urlsplit(self.path)
        path, query = unquote(split.path), split.query
        return RequestRecord(
            self.command, path, query, self.headers.get("Range"), status, bytes_sent
        )

    def _log_outcome(self) -> None:
        """Log a request that never started a response, or correct a short body's count."""
        if self._logged is None:
            self.hub._record(self._record_for(self._status, self._sent))
        elif self._logged.bytes_sent != self._sent:
            self.hub._amend(self._logged, replace(self._logged, bytes_sent=self._sent))

    def _route(self, raw_path: str, raw_query: str) -> None:
        seg = raw_path.strip("/").split("/")
        query = parse_qs(raw_query)
        if len(seg) == 2 and seg[0] == "blobs":
            self._blob(unquote(seg[1]))
            return
        self._check_auth()
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in ("models", "datasets"):
            repo_type: RepoType = "model" if seg[1] == "models" else "dataset"
            repo = RepoRef(repo_type, f"{unquote(seg[2])}/{unquote(seg[3])}")
            self._api(repo, seg[4:], query, raw_path)
            return
        if len(seg) >= 5 and seg[0] == "datasets" and seg[3] == "resolve":
            repo = RepoRef("dataset", f"{unquote(seg[1])}/{unquote(seg[2])}")
            self._resolve(repo, unquote(seg[4]), unquote("/".join(seg[5:])))
            return
        if len(seg) >= 4 and seg[2] == "resolve":
            repo = RepoRef("model", f"{unquote(seg[0])}/{unquote(seg[1])}")
            self._resolve(repo, unquote(seg[3]), unquote("/".join(seg[4:])))
            return
        raise _HubError(404, "Not Found")

    def _check_auth(self) -> None:
        token = self.hub._token
        if token is None:
            return
        sent = self.headers.get("Authorization")
        if not sent:
            raise _HubError(401, "Access to this repo is restricted: authenticate", "GatedRepo")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            # The message huggingface_hub recognises as a bad token (not a missing repo).
            raise _HubError(401, "Invalid credentials in Authorization header")

    # ---------------------------------------------------------------- endpoints

    def _api(self, repo: RepoRef, rest: list[str], query: dict[str, list[str]], raw: str) -> None:
        store = self.hub._store
        if not rest or (rest[0] == "revision" and len(rest) >= 2):
            revision = unquote("/".join(rest[1:])) if rest else "main"
            blobs = _flag(query, "blobs") and not self.hub.faults.omit_metadata
            info = _repo_info(store.snapshot(repo, revision), blobs)
            body = self.hub.faults.repo_info_body
            self._send_json(200, self.hub.faults.patch_repo_info(info), raw=body)
        elif rest[0] == "tree" and len(rest) >= 2:
            snap = store.snapshot(repo, unquote(rest[1]))
            items = _tree(snap, unquote("/".join(rest[2:])).strip("/"), _flag(query, "recursive"))
            self._send_tree_page(items, query, raw)
        else:
            raise _HubError(404, "Not Found")

    def _send_tree_page(
        self, items: list[dict[str, Any]], query: dict[str, list[str]], raw_path: str
    ) -> None:
        size = self.hub._page_size
        cursor = query.get("cursor", ["0"])[0] or "0"
        if not cursor.isdigit():
            raise _HubError(400, f"Invalid cursor: {cursor}")
        start = int(cursor)
        page = items[start : start + size]
        headers: list[tuple[str, str]] = []
        if start + size < len(items):
            params = {k: v[0] for k, v in query.items()} | {"cursor": str(start + size)}
            host = self.headers.get("Host") or self.hub.url.split("://", 1)[1]
            link = f"http://{host}{raw_path}?{urlencode(params)}"
            headers.append(("Link", f'<{link}>; rel="next"'))
        self._send_json(200, page, headers)

    def _resolve(self, repo: RepoRef, revision: str, path: str) -> None:
        store = self.hub._store
        snap = store.snapshot(repo, revision)
        found = snap.by_path.get(path)
        if found is None:
            raise _entry_not_found(snap.commit, path)
        entry = store.current(found, snap.commit)
        faults = self.hub.faults
        if self.command == "GET":
            self._maybe_injected_status(entry.path)
        headers = [("X-Repo-Commit", snap.commit), ("ETag", f'"{entry.oid}"')]
        if entry.lfs:
            linked_size = faults.linked_size or str(entry.size)
            headers += [("X-Linked-Etag", f'"{entry.oid}"'), ("X-Linked-Size", linked_size)]
            if faults.should_redirect(entry.path):
                location = f"{self.hub._blob_origin()}/blobs/{entry.oid}"
                self._send_empty(302, [*headers, ("Location", location)])
                return
        self._send_content(entry, headers)

    def _blob(self, sha256: str) -> None:
        """The CDN stand-in: content by sha256, no auth (like a signed URL)."""
        known = self.hub._store.blob(sha256) if _SHA256_RE.match(sha256) else None
        if known is None:
            raise _HubError(404, "No such blob")
        found, commit = known
        failure = self.hub.faults.blob_failure(found.path)
        if failure is not None:
            raise _HubError(failure, f"Injected blob failure (HTTP {failure})")
        entry = self.hub._store.current(found, commit)
        if self.command == "GET":
            self._maybe_injected_status(entry.path)
        # X-Repo-Commit lets a client that followed a same-origin redirect complete its
        # metadata (huggingface_hub needs it on the final HEAD response).
        self._send_content(entry, [("ETag", f'"{entry.oid}"'), ("X-Repo-Commit", commit)])

    def _maybe_injected_status(self, path: str) -> None:
        status = self.hub.faults.take_status(path)
        if status is None:
            return
        headers: list[tuple[str, str]] = []
        retry_after = self.hub.faults.retry_after
        if status in (429, 503) and retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        raise _HubError(status, f"Injected fault: HTTP {status}", None, headers)

    # ---------------------------------------------------------------- responses

    def _send_content(self, entry: FileEntry, headers: list[tuple[str, str]]) -> None:
        byte_range = _parse_range(self.headers.get("Range"), entry.size)
        start, last = byte_range if byte_range is not None else (0, entry.size - 1)
        length = last - start + 1
        headers = [
            *headers,
            ("Accept-Ranges", "bytes"),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(length)),
        ]
        if byte_range is not None:
            headers.append(("Content-Range", f"bytes {start}-{last}/{entry.size}"))
        is_get = self.command == "GET"
        plan = self.hub.faults.body_plan(entry.path, entry.size) if is_get else _PLAIN
        limit = length if plan.drop_after is None else min(length, plan.drop_after)
        with entry.fs_path.open("rb") as f:  # opened before the headers: a vanished file is a 500
            self._start(206 if byte_range is not None else 200, headers, limit)
            if is_get:
                self._send_body(f, start, length, limit, plan)

    def _send_body(self, f: BinaryIO, start: int, length: int, limit: int, plan: BodyPlan) -> None:
        """Send up to limit bytes of the range; a shorter body than length drops the connection."""
        if plan.needs_loop:
            self._send_loop(f, start, limit, plan)
        elif limit > 0:  # sendfile(count=0) would mean "to the end of the file"
            self._sent = self.connection.sendfile(f, start, limit)
        if self._sent < length:
            self._drop_connection()

    def _send_loop(self, f: BinaryIO, start: int, limit: int, plan: BodyPlan) -> None:
        chunk = _LOOP_CHUNK if plan.rate is None else max(1, min(_LOOP_CHUNK, plan.rate // 20))
        began = time.monotonic()
        f.seek(start)
        while self._sent < limit:
            data = f.read(min(chunk, limit - self._sent))
            if not data:
                break
            self.connection.sendall(_flip(data, start + self._sent, plan.flip_offset))
            self._sent += len(data)
            if plan.rate is not None:
                time.sleep(max(0.0, began + self._sent / plan.rate - time.monotonic()))

    def _drop_connection(self) -> None:
        # FIN, not RST: the client must see a short body (a protocol error it may resume
        # from), not a reset.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)

    def _send_error(self, err: _HubError) -> None:
        headers = list(err.headers)
        if err.code is not None:
            headers.append(("X-Error-Code", err.code))
        headers.append(("X-Error-Message", _header_safe(err.message)))
        self._send_json(err.status, {"error": err.message}, headers)

    def _send_json(
        self,
        status: int,
        payload: object,
        headers: Sequence[tuple[str, str]] = (),
        raw: bytes | None = None,
    ) -> None:
        body = json.dumps(payload).encode() if raw is None else raw
        self._start(
            status,
            [
                *headers,
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
            len(body),
        )
        if self.command != "HEAD":
            self.wfile.write(body)
            self._sent = len(body)

    def _send_empty(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        self._start(status, [*headers, ("Content-Length", "0")])

    def _start(self, status: int, headers: Sequence[tuple[str, str]], body: int = 0) -> None:
        """Log, then send the status line and headers; body = bytes about to follow."""
        self._status = status
        # Logged before anything is sent: a client holding its response must find the
        # request in the log. _log_outcome corrects the count if the body falls short.
        self._logged = self._record_for(status, 0 if self.command == "HEAD" else body)
        self.hub._record(self._logged)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, [""])[0].lower() in ("1", "true", "yes")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: LocalHub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the host: a DNS lookup we never need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints to stderr; route it through logging instead. A client that
        # hangs up is routine, not an error.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.debug("local hub: connection from %s lost", client_address)
            return
        logger.exception("local hub: error on connection from %s", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


# --------------------------------------------------------------------------- public API


class LocalHub:
    """The server: ``with LocalHub(root) as hub: ...`` serves ``root`` at ``hub.url``."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        token: str | None = None,
        page_size: int = 1000,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.root = Path(root)
        self.host = host
        self.port = port
        self.url = ""
        self.faults = Faults()
        self._token = token
        self._page_size = page_size
        self._store = _RepoStore(self.root, lfs_threshold)
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"LocalHub(root={str(self.root)!r}, url={self.url!r})"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalHub:
        """Bind and serve in a daemon thread; ``url`` is valid afterwards."""
        if self._server is not None:
            raise RuntimeError("this LocalHub is already started")
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self.port), self)
        self.port = int(server.server_address[1])
        self.url = f"http://{_url_host(self.host)}:{self.port}"
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"local-hub-{self.port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close keep-alive connections and the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- observability

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._log.clear()

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many logged requests match the method and contain the text in their path."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_contains is None or path_contains in r.path)
        )

    @property
    def hashes_computed(self) -> int:
        """How many times a file was read to be hashed (caching makes repeats free)."""
        return self._store.hashes.computed

    def commit_of(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        """The commit sha the server reports for ``repo_id`` at ``revision``."""
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"unsupported repo_type: {repo_type!r}")
        repo = RepoRef("model" if repo_type == "model" else "dataset", repo_id)
        try:
            return self._store.snapshot(repo, revision).commit
        except _HubError as err:
            raise LookupError(err.message) from None

    # ---------------------------------------------------------------- internals

    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(record)

    def _amend(self, old: RequestRecord, new: RequestRecord) -> None:
        """Replace a logged record (by identity: equal records may repeat)."""
        with self._log_lock:
            for i in range(len(self._log) - 1, -1, -1):  # it is almost always near the end
                if self._log[i] is old:
                    self._log[i] = new
                    return

    def _blob_origin(self) -> str:
        host = self.faults.redirect_host or _other_loopback_name(self.host)
        return f"http://{_url_host(host)}:{self.port}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _other_loopback_name(host: str) -> str:
    """Same socket, another origin: what makes a redirect look like a CDN to clients."""
    return {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(host, host)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modelctl.testing.hub",
        description="Serve a directory of repos as a Hugging Face Hub on loopback.",
    )
    p.add_argument("--root", type=Path, required=True, help="directory of <org>/<name>/<branch>/")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=0, help="0 = any free port")
    p.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN'")
    p.add_argument("--page-size", type=int, default=1000, help="tree entries per page")
    f = p.add_argument_group("faults (see Faults)")
    f.add_argument("--drop-after-bytes", type=int)
    f.add_argument("--drop-count", type=int)
    f.add_argument("--status-codes", type=_int_list, default=[], help="e.g. 503,500")
    f.add_argument("--retry-after", type=int, default=1)
    f.add_argument("--wrong-bytes", action="store_true")
    f.add_argument("--wrong-byte-offset", type=int)
    f.add_argument("--redirect-lfs", action="store_true")
    f.add_argument("--redirect-host")
    f.add_argument("--fail-blob-redirect", action="store_true")
    f.add_argument("--fail-blob-status", type=int, default=403)
    f.add_argument("--slow-bytes-per-sec", type=int)
    f.add_argument("--omit-metadata", action="store_true", help="model info without sizes/hashes")
    f.add_argument("--fault-path", action="append", dest="fault_paths", metavar="PATH")
    return p


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _faults_from_args(args: argparse.Namespace) -> dict[str, Any]:
    options = {
        name: getattr(args, name)
        for name in _public_field_names(Faults())
        if name != "paths" and hasattr(args, name)
    }
    options["paths"] = set(args.fault_paths) if args.fault_paths else None
    return options


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints one line with the URL when ready."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    hub = LocalHub(
        args.root,
        host=args.host,
        port=args.port,
        lfs_threshold=args.lfs_threshold,
        token=args.token,
        page_size=args.page_size,
    )
    hub.faults.set(**_faults_from_args(args))
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with hub:
        print(f"modelctl-hub listening on {hub.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
