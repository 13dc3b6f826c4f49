"""What a Hub's repo-info answer may say, checked where it enters (pure, no I/O).

``GET /api/{models|datasets}/{repo}/revision/{rev}?blobs=true`` answers a JSON object with
``sha`` (the commit) and ``siblings[]`` (``rfilename``, ``size``, ``blobId``, and for LFS
files ``lfs{size, sha256, pointerSize}``). Nothing in it is trusted: the commit becomes a
folder name, paths become file names and sizes bound downloads. So every value is checked
here, and anything malformed is one :class:`~modelctl.errors.HubResponseError` (exit 3)
naming the repo, what was expected and what came: never a traceback from deep inside a
parser, never a value that a lockfile could not hold.

Missing metadata is not malformed: a mirror that omits sizes or hashes gives files with
``size``/``digest`` of None, and lock asks for them one HEAD at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from modelctl.errors import HubResponseError
from modelctl.fs.paths import MAX_PATH_CHARS
from modelctl.lock.digest import Digest
from modelctl.lock.types import RepoType, is_commit
from modelctl.lock.types import repo_where as where

# The largest size a lockfile holds (its schema's bound, 1000 TiB); larger is a lie.
MAX_FILE_SIZE: Final = 1_099_511_627_776_000
# A repo-info answer larger than this is refused unread (100k files are about 20 MB).
MAX_INFO_BYTES: Final = 256 * 1024 * 1024


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    digest: Digest | None


@dataclass(frozen=True)
class RepoSnapshot:
    """A repo at one commit: every file with its size and digest (where known)."""

    repo_id: str
    repo_type: RepoType
    commit: str
    files: tuple[RemoteFile, ...]


def shown(value: object, limit: int = 80) -> str:
    """A server-sent value as it may appear in a message: its repr, cut to ``limit``."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reader:
    """Raises HubResponseError for one repo-info answer, all naming the same place."""

    def __init__(self, here: str, endpoint: str, what: str = "repo metadata") -> None:
        self.here = here
        self.endpoint = endpoint
        self.what = what

    def bad(self, what: str, expected: str, actual: object) -> HubResponseError:
        return HubResponseError(
            f"the Hub's {self.what} is malformed: {what}",
            where=self.here,
            expected=expected,
            actual=shown(actual),
            hint=f"{self.endpoint} is not a Hugging Face Hub or compatible mirror, or it "
            "misbehaves: try again later, or tell whoever runs it",
        )

    def size(self, value: object, path: str) -> int | None:
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= MAX_FILE_SIZE:
            raise self.bad(
                f"the size of {path!r}", f"a whole number from 0 to {MAX_FILE_SIZE}", value
            )
        return value


def parse_repo_info(
    body: bytes, repo_id: str, repo_type: RepoType, revision: str, endpoint: str
) -> RepoSnapshot:
    """The commit and every file of one repo-info answer, or HubResponseError."""
    r = _Reader(where(repo_id, repo_type, revision), endpoint)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep
        raise r.bad("not a JSON document", "a JSON object", _cause(exc)) from exc
    if not isinstance(data, dict):
        raise r.bad("the answer is not an object", "a JSON object", type(data).__name__)
    commit = data.get("sha")
    if not is_commit(commit):
        raise r.bad("no valid commit id", "a commit id of 40 lower-case hex characters", commit)
    siblings = data.get("siblings")
    if not isinstance(siblings, list):
        raise r.bad("no file list (`siblings`)", "a list of files", siblings)
    files = tuple(_sibling(r, s) for s in siblings)
    check_listing(r, (f.path for f in files))
    return RepoSnapshot(repo_id, repo_type, commit, files)


def parse_tree_page(
    body: bytes, repo_id: str, repo_type: RepoType, commit: str, endpoint: str
) -> list[RemoteFile]:
    """The files of one page of ``GET /api/{type}s/{repo}/tree/{commit}?recursive=true``:
    a list of ``{type, path, size, oid, lfs{oid, size, pointerSize}, xetHash}``, where
    ``oid`` is the git blob id and ``lfs.oid`` the sha256 (as huggingface_hub's RepoFile
    reads them). Folders are skipped; every value is checked as in the repo info."""
    r = _Reader(where(repo_id, repo_type, commit), endpoint, "tree listing")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise r.bad("not a JSON document", "a JSON list", _cause(exc)) from exc
    if not isinstance(data, list):
        raise r.bad("the answer is not a list", "a JSON list of entries", type(data).__name__)
    files: list[RemoteFile] = []
    for entry in data:
        if not isinstance(entry, dict):
            raise r.bad("an entry is not an object", "an object with `type` and `path`", entry)
        kind = entry.get("type")
        if kind == "directory":
            continue
        if kind != "file":
            raise r.bad("an entry of unknown `type`", "'file' or 'directory'", kind)
        files.append(_tree_file(r, entry))
    return files


def _tree_file(r: _Reader, e: dict[str, Any]) -> RemoteFile:
    return _file(r, e, path_key="path", blob_key="oid", lfs_sha_key="oid")


def _path(r: _Reader, path: object, key: str) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS:
        raise r.bad(
            f"a file without a usable `{key}`",
            f"a path of 1 to {MAX_PATH_CHARS} characters",
            path,
        )
    return path


def _sibling(r: _Reader, s: object) -> RemoteFile:
    if not isinstance(s, dict):
        raise r.bad("a `siblings` entry is not an object", "an object with `rfilename`", s)
    return _file(r, s, path_key="rfilename", blob_key="blobId", lfs_sha_key="sha256")


def _file(
    r: _Reader, entry: dict[str, Any], *, path_key: str, blob_key: str, lfs_sha_key: str
) -> RemoteFile:
    """One file of either listing (repo info's ``siblings`` or the tree API): the same
    checks, under the key names each listing uses."""
    path = _path(r, entry.get(path_key), path_key)
    size = r.size(entry.get("size"), path)
    lfs = entry.get("lfs")
    if lfs is None:
        return RemoteFile(path, size, _try_digest("gitsha1", entry.get(blob_key)))
    if not isinstance(lfs, dict):
        raise r.bad(
            f"the `lfs` entry of {path!r}", f"an object with `size` and `{lfs_sha_key}`", lfs
        )
    lfs_size = r.size(lfs.get("size"), path)
    if lfs_size is not None and size is not None and lfs_size != size:
        raise r.bad(f"two sizes for {path!r}", f"size {size} in both places", lfs_size)
    # Without the LFS sha256 (some mirrors) the digest is unknown: lock asks with a HEAD.
    digest = _try_digest("sha256", lfs.get(lfs_sha_key))
    return RemoteFile(path, lfs_size if lfs_size is not None else size, digest)


def _try_digest(algorithm: str, hexdigest: object) -> Digest | None:
    if not isinstance(hexdigest, str):
        return None
    try:
        return Digest(algorithm, hexdigest.lower())
    except ValueError:
        return None  # not a digest of that algorithm: treated as unknown, asked by HEAD


def checked_listing(
    files: Iterable[RemoteFile], listed: Iterable[str], here: str, endpoint: str
) -> tuple[RemoteFile, ...]:
    """All pages of a tree listing as one listing a disk can hold, which names every
    file the repo info listed (its ``siblings`` may be cut short, never longer)."""
    r = _Reader(here, endpoint, "tree listing")
    files = tuple(files)
    check_listing(r, (f.path for f in files))
    names = {f.path for f in files}
    missing = sorted(set(listed) - names)
    if missing:
        raise r.bad(
            f"{len(missing)} file(s) of the repo info are not in it, e.g. {missing[0]!r}",
            "every file of `siblings` in the tree",
            missing[:3],
        )
    return files


def check_listing(r: _Reader, paths: Iterable[str]) -> None:
    """A listing a disk can hold: no path twice, no path that is a file and a folder."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise r.bad(f"{path!r} is listed twice", "each path once", path)
        seen.add(path)
    for path in seen:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in seen:
                raise r.bad(
                    f"{folder!r} is listed both as a file and as the folder of {path!r}",
                    "a path to be a file or a folder, not both",
                    folder,
                )


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def check_pinned(revision: str, snap: RepoSnapshot) -> None:
    """Asked for a commit (pinned by the lock or the manifest), the Hub must answer that very
    commit: otherwise the lock would silently move to other bytes."""
    if is_commit(revision) and snap.commit != revision:
        raise HubResponseError(
            "the Hub answered another commit than the one pinned",
            where=where(snap.repo_id, snap.repo_type, revision),
            expected=f"commit {revision}",
            actual=f"commit {snap.commit}",
            hint="the endpoint misbehaves (or a mirror rewrites history): lock against a "
            "trusted endpoint; `modelctl lock --upgrade` re-resolves branches on purpose",
        )
