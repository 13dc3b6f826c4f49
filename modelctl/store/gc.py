"""What no lock needs any more in a cache or ``--target`` tree: ``modelctl gc``.

:func:`find_garbage` lists (reads only) what no lock of a given set references;
:func:`collect` deletes such a list. Scope, to stay conservative on a cache other tools
share: only the repo folders (HF cache) or asset folders (``--target`` tree) that appear in
the given locks are looked at, unless ``all_repos``. Inside them:

- HF cache: blobs no lock references (with their verification records), snapshot folders
  of commits no lock references, other files in locked snapshots, broken snapshot links,
  and ``*.incomplete`` downloads older than ``partial_age_s`` (a younger one may belong to
  a running download). With ``all_repos``, whole repo folders no lock references.
- target tree: files no lock references (with their records), ``*.modelctl-partial``
  files older than ``partial_age_s``; with ``all_repos``, top-level folders that are no
  locked asset.

A content whose lock file (the one sync and huggingface_hub hold while writing it) is
held by another process is skipped. Lock files themselves are never deleted (see
:mod:`modelctl.fs.flock`), nor ``refs/`` or anything outside the cache or tree.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from modelctl.errors import StorageError, UnsafePathError
from modelctl.lock.digest import Digest
from modelctl.lock.types import FileRef, Lock
from modelctl.store.layout import META_DIR, HfCacheStore, Store, TargetStore, repo_folder_name

DEFAULT_PARTIAL_AGE_S: Final = 24 * 3600.0
EMPTY_DIR_AGE_S: Final = 60.0  # an empty folder this young may be one a sync just made
REPO_PREFIXES: Final = ("models--", "datasets--", "spaces--")


# --------------------------------------------------------------------------- what


@dataclass(frozen=True)
class Garbage:
    """One thing to delete: a file, a link or a whole folder."""

    kind: str  # blob, partial, temp, snapshot, snapshot-file, broken-link, record, repo, ...
    path: Path
    bytes: int  # what deleting it frees (real files only; links count 0)
    lock_file: Path | None = None  # held by a writer of this content: skip it then
    extra: tuple[Path, ...] = ()  # deleted with it (its verification records)

    def to_json(self, root: Path) -> dict[str, Any]:
        return {"kind": self.kind, "path": _rel(self.path, root), "bytes": self.bytes}


@dataclass(frozen=True)
class GcPlan:
    location: Path
    layout: str  # "hf-cache" or "target"
    scanned: tuple[str, ...]  # the repo (or asset) folders looked at
    items: tuple[Garbage, ...]

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "location": str(self.location),
            "layout": self.layout,
            "scanned": list(self.scanned),
            "items": [g.to_json(self.location) for g in self.items],
            "total_bytes": self.bytes,
        }


@dataclass(frozen=True)
class _Wanted:
    """What the locks reference inside one HF cache repo folder."""

    blobs: set[str] = field(default_factory=set)  # digest hex = blob file name
    commits: set[str] = field(default_factory=set)
    files: set[tuple[str, str]] = field(default_factory=set)  # (commit, path)


def find_garbage(
    locks: Sequence[Lock],
    store: Store,
    *,
    all_repos: bool = False,
    partial_age_s: float = DEFAULT_PARTIAL_AGE_S,
    now: float,
) -> GcPlan:
    """What no lock in ``locks`` references, in ``store`` (reads only)."""
    if isinstance(store, TargetStore):
        return _target_garbage(locks, store.root, all_repos, partial_age_s, now)
    if isinstance(store, HfCacheStore):
        return _cache_garbage(locks, store.root, all_repos, partial_age_s, now)
    raise TypeError(f"gc does not know this store: {type(store).__name__}")


def _cache_garbage(
    locks: Sequence[Lock], root: Path, all_repos: bool, partial_age_s: float, now: float
) -> GcPlan:
    wanted: dict[str, _Wanted] = {}
    for lock in locks:
        for asset in lock.assets:
            for src in asset.sources:
                w = wanted.setdefault(repo_folder_name(src.repo_id, src.repo_type), _Wanted())
                if not asset.enabled:
                    continue  # its repo stays in scope, but its files are not needed
                w.commits.add(src.commit)
                for f in src.files:
                    w.blobs.add(f.digest.hex)
                    w.files.add((src.commit, f.path))
    folders = set(wanted)
    if all_repos:
        folders |= {p.name for p in _children(root) if p.name.startswith(REPO_PREFIXES)}
    items: list[Garbage] = []
    for name in sorted(folders):
        repo = root / name
        if not repo.is_dir() or repo.is_symlink():
            continue
        w = wanted.get(name, _Wanted())
        if all_repos and not w.blobs:
            items.append(Garbage("repo", repo, _du(repo)))
            continue
        items.extend(_repo_garbage(root, repo, w, partial_age_s, now))
    return GcPlan(root, "hf-cache", tuple(sorted(folders)), tuple(items))


def _repo_garbage(
    root: Path, repo: Path, w: _Wanted, partial_age_s: float, now: float
) -> Iterator[Garbage]:
    locks = root / ".locks" / repo.name
    records = repo / META_DIR / "verified"
    blobs = repo / "blobs"
    for blob in _children(blobs):
        st = _lstat(blob)
        if st is None:
            continue  # gone since it was listed (a download renamed or removed it)
        if blob.name.endswith(".incomplete"):
            if now - st.st_mtime >= partial_age_s:
                etag = blob.name.split(".", 1)[0]
                yield Garbage("partial", blob, st.st_size, locks / f"{etag}.lock")
        elif blob.name not in w.blobs:
            extra = tuple(sorted(records.glob(f"*-{blob.name}.json")))
            yield Garbage("blob", blob, _size(st), locks / f"{blob.name}.lock", extra)
    yield from _stale_temps(records, partial_age_s, now)
    yield from _stale_temps(repo / "refs", partial_age_s, now)
    present = {b.name for b in _children(blobs)}
    for record in _children(records):
        hexdigest = record.name.removesuffix(".json").split("-", 1)[-1]
        if record.suffix == ".json" and hexdigest not in w.blobs and hexdigest not in present:
            yield Garbage("record", record, 0)
    for snap in _children(repo / "snapshots"):
        if snap.name not in w.commits:
            yield Garbage("snapshot", snap, _du(snap))
            continue
        for path, rel in _walk(snap):
            if (snap.name, rel) not in w.files:
                yield Garbage("snapshot-file", path, _size(_lstat(path)))
            elif path.is_symlink() and not path.exists():
                yield Garbage("broken-link", path, 0)


def _target_garbage(
    locks: Sequence[Lock], root: Path, all_repos: bool, partial_age_s: float, now: float
) -> GcPlan:
    assets = {a.name for lock in locks for a in lock.assets}
    wanted = {(r.asset, r.path) for lock in locks for r in lock.files()}
    folders = set(assets)
    if all_repos:
        folders |= {p.name for p in _children(root) if p.name != META_DIR}
    meta = _TargetMeta(TargetStore(root))
    items: list[Garbage] = []
    for asset in sorted(folders):
        top = root / asset
        if asset not in assets:
            if top.is_dir() and not top.is_symlink():
                items.append(Garbage("folder", top, _du(top)))
            elif top.exists() or top.is_symlink():
                items.append(Garbage("file", top, _size(_lstat(top))))
            continue
        if top.is_symlink():
            # sync refuses to write through it; gc never walks or deletes through it.
            continue
        for path, rel in _walk(top):
            name = path.name
            if name.startswith(".") and name.endswith(".modelctl-partial"):
                st = _lstat(path)
                if st is not None and now - st.st_mtime >= partial_age_s:
                    final = rel[: -len(name)] + name[1 : -len(".modelctl-partial")]
                    items.append(Garbage("partial", path, st.st_size, meta.lock(asset, final)))
            elif (asset, rel) not in wanted:
                record = meta.record(asset, rel)
                extra = (record,) if record is not None and record.exists() else ()
                lock_file = meta.lock(asset, rel)
                items.append(Garbage("file", path, _size(_lstat(path)), lock_file, extra))
    items.extend(_orphan_target_records(root, folders, wanted))
    items.extend(_stale_temps(root / META_DIR / "verified", partial_age_s, now))
    return GcPlan(root, "target", tuple(sorted(folders)), tuple(items))


def _orphan_target_records(
    root: Path, folders: Iterable[str], wanted: set[tuple[str, str]]
) -> Iterator[Garbage]:
    for asset in sorted(folders):
        base = root / META_DIR / "verified" / asset
        for path, rel in _walk(base):
            if not rel.endswith(".json"):
                continue
            file_rel = rel.removesuffix(".json")
            if (asset, file_rel) not in wanted and not (root / asset / file_rel).exists():
                yield Garbage("record", path, 0)


@dataclass(frozen=True)
class _TargetMeta:
    """A tree's lock file and record of any (asset, path), locked or not.

    TargetStore names them from the asset and path alone, so a ref carrying only those
    asks it; a file name that is no safe repo path (never written by sync) has neither.
    """

    store: TargetStore

    def lock(self, asset: str, path: str) -> Path | None:
        try:
            return self.store.lock_path(_path_ref(asset, path))
        except UnsafePathError:
            return None

    def record(self, asset: str, path: str) -> Path | None:
        try:
            return self.store.record_path(_path_ref(asset, path))
        except UnsafePathError:
            return None


def _path_ref(asset: str, path: str) -> FileRef:
    return FileRef(asset, "model", "", "", path, None, Digest("sha256", "0" * 64), "file")


# --------------------------------------------------------------------------- do


@dataclass(frozen=True)
class GcResult:
    deleted: tuple[Garbage, ...]
    skipped: tuple[Garbage, ...]  # in use by another process (its lock file is held)
    links_removed: int  # snapshot links left broken by the deletions

    @property
    def bytes_freed(self) -> int:
        return sum(g.bytes for g in self.deleted)


def collect(plan: GcPlan) -> GcResult:
    """Delete what ``plan`` lists (checked again: only what still exists), then remove
    snapshot links and folders left broken or empty inside the scanned folders.

    Each content is deleted while holding its lock file, the one sync and huggingface_hub
    hold while writing it: content being written is skipped, and no writer starts on it
    meanwhile. Deletions go down from the cache or tree root one folder at a time with
    ``O_NOFOLLOW``: a symlink planted anywhere below the root is never followed out of it.
    """
    root = plan.location
    deleted: list[Garbage] = []
    skipped: list[Garbage] = []
    emptied: set[Path] = set()  # folders this run deleted something in
    for item in plan.items:
        with _writer_lock(item.lock_file) as free:
            if not free:
                skipped.append(item)
                continue
            outcome = _remove(root, item.path)
            if outcome == "refused":
                skipped.append(item)
            elif outcome == "deleted":
                for extra in item.extra:
                    _remove(root, extra)
                    emptied.add(extra.parent)
                emptied.add(item.path.parent)
                deleted.append(item)
    links = 0
    # Only folders that deleting files can leave empty are tidied, and of those only the
    # ones this run emptied or older than EMPTY_DIR_AGE_S: a young empty folder may be one
    # a running sync has just made for its next file (and sync makes a folder again if
    # one it made vanishes before it wrote into it).
    tidy = _Tidy(root, emptied, time.time())
    for name in plan.scanned:
        folder = root / name
        if plan.layout == "hf-cache":
            links += _remove_broken_links(root, folder / "snapshots", emptied)
            tidy.empty_dirs(folder / "snapshots", keep_root=True)
        else:
            tidy.empty_dirs(folder, keep_root=True)
            tidy.empty_dirs(root / META_DIR / "verified" / name, keep_root=False)
    return GcResult(tuple(deleted), tuple(skipped), links)


@contextlib.contextmanager
def _writer_lock(lock_file: Path | None) -> Iterator[bool]:
    """Hold ``lock_file`` (yields True), or yield False when a writer holds it.

    The lock file is created if missing (as sync creates it): else a sync starting right
    after the check would write what is being deleted. Lock files are never deleted.
    """
    if lock_file is None:
        yield True
        return
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o664)
    except OSError as exc:
        raise StorageError(
            f"cannot open a lock file: {exc.strerror}", where=str(lock_file)
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError as exc:
            raise StorageError(f"cannot lock a file: {exc.strerror}", where=str(lock_file)) from exc
        yield True
    finally:
        # Closing releases the flock.
        os.close(fd)


def _remove(root: Path, path: Path) -> str:
    """Delete a file, link or folder below ``root``, never following a link on the way
    or at the end: "deleted", "gone" (already), or "refused" (a symlink in the way)."""
    try:
        with _parent_fd(root, path) as (dirfd, name):
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(dirfd, name)
            else:
                os.unlink(name, dir_fd=dirfd)
    except FileNotFoundError:
        return "gone"
    except _Refused:
        return "refused"
    except OSError as exc:
        raise StorageError(f"cannot delete: {exc.strerror}", where=str(path)) from exc
    return "deleted"


def _rmtree_at(dirfd: int, name: str) -> None:
    """Remove the folder ``name`` of ``dirfd`` and all in it, by descriptors, never
    following a link (shutil.rmtree has no ``dir_fd`` before Python 3.11)."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        with os.scandir(fd) as entries:
            children = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        for child, is_dir in children:
            try:
                if is_dir:
                    _rmtree_at(fd, child)
                else:
                    os.unlink(child, dir_fd=fd)
            except FileNotFoundError:
                continue  # removed meanwhile
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dirfd)


class _Refused(Exception):
    """A symlink (or a file) where a folder on the way to a deletion should be."""


@contextlib.contextmanager
def _parent_fd(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """An open descriptor of ``path``'s folder, reached from ``root`` without following
    any link, and ``path``'s name in it."""
    parts = path.relative_to(root).parts
    if not parts:
        raise _Refused(str(path))
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _Refused(str(path)) from exc
                raise
            os.close(fd)
            fd = child
        yield fd, parts[-1]
    finally:
        os.close(fd)


def _remove_broken_links(root: Path, folder: Path, emptied: set[Path]) -> int:
    removed = 0
    for path, _ in _walk(folder):
        if path.is_symlink() and not path.exists() and _remove(root, path) == "deleted":
            emptied.add(path.parent)
            removed += 1
    return removed


@dataclass
class _Tidy:
    root: Path
    emptied: set[Path]  # grows as folders are removed: their parents were emptied too
    now: float

    def empty_dirs(self, folder: Path, *, keep_root: bool) -> None:
        if not folder.is_dir() or folder.is_symlink():
            return
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda t: -len(t[0])):
            path = Path(dirpath)
            if keep_root and path == folder:
                continue
            if path not in self.emptied:
                st = _lstat(path)
                if st is None or self.now - st.st_mtime < EMPTY_DIR_AGE_S:
                    continue
            try:
                with _parent_fd(self.root, path) as (dirfd, name):
                    os.rmdir(name, dir_fd=dirfd)
            except _Refused:
                continue
            except OSError as exc:
                # Not empty (or in use, or gone): it stays. Anything else is a real problem.
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY, errno.ENOENT):
                    raise StorageError(f"cannot delete: {exc.strerror}", where=dirpath) from exc
                continue
            self.emptied.add(path.parent)


# --------------------------------------------------------------------------- helpers


# Temp names of small atomic writes (records, refs, snapshot links): a process killed
# between creating one and renaming it into place leaves it behind.
_TEMP_SUFFIXES = (".tmp", ".modelctl-link")


def _stale_temps(folder: Path, age_s: float, now: float) -> Iterator[Garbage]:
    """Leftover temp files under ``folder`` older than ``age_s`` (a younger one may be live)."""
    for path, _ in _walk(folder):
        if path.name.startswith(".") and path.name.endswith(_TEMP_SUFFIXES):
            st = _lstat(path)
            if st is not None and now - st.st_mtime >= age_s:
                yield Garbage("temp", path, _size(st))


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list: {exc.strerror}", where=str(folder)) from exc


def _walk(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every file or link under ``folder`` (links not followed), with its relative path.

    A ``folder`` that is itself a symlink is not entered (os.walk would follow it)."""
    if folder.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        base = Path(dirpath)
        # os.walk lists links to folders among dirnames, without entering them.
        names = sorted(filenames + [d for d in dirnames if (base / d).is_symlink()])
        for name in names:
            path = base / name
            yield path, path.relative_to(folder).as_posix()


def _lstat(path: Path) -> os.stat_result | None:
    """``lstat``, or None when the entry vanished since it was listed (a running sync or
    huggingface_hub renames and removes its temp files at any time)."""
    try:
        return path.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"cannot inspect: {exc.strerror}", where=str(path)) from exc


def _size(st: os.stat_result | None) -> int:
    return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0


def _du(folder: Path) -> int:
    return sum(_size(_lstat(p)) for p, _ in _walk(folder))


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
