"""Bundles: a lock's files and the lockfile in one tar, for machines without network.

Members, in this order (so a reader streaming the archive checks the lock before any data)::

    modelctl.lock          the lock, rendered as `modelctl lock` writes it
    index.json             format, the lock's sha256, one entry per locked file
    blobs/<algo>-<hex>     each distinct content once, named by its locked digest

A plain, uncompressed tar: model weights do not compress, and a plain tar streams (``sync
--from-bundle -`` reads stdin; a compressed tar is read too). Members carry mtime 0, uid/gid
0 and mode 0644, so the same lock and the same files give a byte-identical bundle.

The lock hash is the sha256 of the lock's canonical rendering, which is the byte content of
a ``modelctl.lock`` written by ``modelctl lock`` (so ``sha256sum modelctl.lock`` shows it).

Reading and installing one is :mod:`modelctl.bundle.source` (a sync whose Source is the
bundle); what two locks differ in is said here, for it and for OCI pulls.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from modelctl._version import __version__
from modelctl.errors import (
    InputError,
    StorageError,
    VerificationError,
)
from modelctl.fs.paths import check_relpath, in_folder
from modelctl.fs.safeio import fsync_dir, fsync_file, open_regular
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest, HashingReader
from modelctl.lock.lockfile import lock_hash
from modelctl.lock.types import FileRef, Lock
from modelctl.store.layout import Store
from modelctl.store.partial import open_own_file
from modelctl.store.presence import require_present

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "BundleError",
    "BundleIndex",
    "BundleMismatchError",
    "BundleWritten",
    "IndexEntry",
    "lock_differences",
    "lock_hash",
    "member_name",
    "require_present",
    "write_bundle",
]

BUNDLE_FORMAT: Final = "modelctl-bundle"
BUNDLE_VERSION: Final = 1
LOCK_MEMBER: Final = "modelctl.lock"
INDEX_MEMBER: Final = "index.json"
CHUNK: Final = 8 * 1024 * 1024
# The lock and the index are read into memory: the lockfile bound keeps a hostile bundle
# from exhausting it.
MAX_META_BYTES: Final = lockfile.MAX_LOCK_BYTES


class BundleError(InputError):
    """A bundle that cannot be used: not a bundle, damaged, unsafe, or incomplete (exit 2)."""

    label = "bundle error"


class BundleMismatchError(BundleError):
    """A bundle made from another lock than the project's (exit 2)."""

    label = "bundle mismatch"


def lock_differences(ours: Lock, theirs: Lock) -> tuple[str, ...]:
    """What differs between this project's lock and the one a bundle was made from."""
    return lockfile.lock_differences(ours, theirs, "the bundle")


def member_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}-{digest.hex}"


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class IndexEntry:
    """One locked file of one asset, and the member holding its bytes."""

    asset: str
    repo_type: str
    repo_id: str
    commit: str
    path: str
    size: int | None
    digest: Digest
    member: str

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "repo_type": self.repo_type,
            "repo": self.repo_id,
            "commit": self.commit,
            "path": self.path,
            "size": self.size,
            "digest": str(self.digest),
            "member": self.member,
        }


@dataclass(frozen=True)
class BundleIndex:
    lock_sha256: str
    files: tuple[IndexEntry, ...]
    created_by: str = f"modelctl {__version__}"

    @classmethod
    def of(cls, lock: Lock) -> BundleIndex:
        refs = sorted(dict.fromkeys(lock.files()), key=_order)
        entries = tuple(
            IndexEntry(
                r.asset, r.repo_type, r.repo_id, r.commit, r.path, r.size, r.digest,
                member_name(r.digest),
            )
            for r in refs
        )  # fmt: skip
        return cls(lock_hash(lock), entries)

    @property
    def members(self) -> frozenset[str]:
        return frozenset(e.member for e in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "created_by": self.created_by,
            "lock_sha256": self.lock_sha256,
            "files": [e.to_json() for e in self.files],
        }

    def render(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, where: str) -> BundleIndex:
        """Parse and check ``index.json``; BundleError naming what is wrong."""
        try:
            doc = json.loads(data)
            if doc.get("format") != BUNDLE_FORMAT:
                raise ValueError(f"format is {doc.get('format')!r}, not {BUNDLE_FORMAT!r}")
            if doc.get("version") != BUNDLE_VERSION:
                raise ValueError(
                    f"version {doc.get('version')!r}; this modelctl reads version {BUNDLE_VERSION}"
                )
            entries = tuple(_entry(e) for e in doc["files"])
            return cls(str(doc["lock_sha256"]), entries, str(doc.get("created_by", "")))
        except RecursionError as exc:
            raise BundleError(
                f"{INDEX_MEMBER} is not a valid bundle index: nested too deeply",
                where=where,
                hint="make the bundle again with `modelctl bundle`",
            ) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(
                f"{INDEX_MEMBER} is not a valid bundle index: {exc}",
                where=where,
                hint="make the bundle again with `modelctl bundle`",
            ) from exc


def _entry(e: dict[str, Any]) -> IndexEntry:
    digest = Digest.parse(e["digest"])
    member = str(e["member"])
    if member != member_name(digest):
        raise ValueError(f"member {member!r} is not named after its digest {digest}")
    path = str(e["path"])
    check_relpath(path, where=INDEX_MEMBER, error=BundleError)
    size = e["size"]
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ValueError(f"bad size {size!r} for {path!r}")
    return IndexEntry(
        str(e["asset"]), str(e["repo_type"]), str(e["repo"]), str(e["commit"]), path, size,
        digest, member,
    )  # fmt: skip


def _order(r: FileRef) -> tuple[str, str, str, str]:
    return (r.asset, r.repo_type, r.repo_id, r.path)


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class BundleWritten:
    path: Path
    lock_sha256: str
    files: int  # locked files (of every enabled asset)
    blobs: int  # distinct contents stored
    content_bytes: int  # bytes of those contents
    bundle_bytes: int  # size of the archive


def write_bundle(lock: Lock, store: Store, out: Path) -> BundleWritten:
    """Write ``out`` (temp file + rename) from the files of ``lock`` found in ``store``.

    Every byte is hashed against the lock as it is copied into the archive, whatever the
    local records say: a bundle carries only locked content. Raises VerificationError
    naming `modelctl sync` when files are missing or differ.
    """
    index = BundleIndex.of(lock)
    refs = sorted(dict.fromkeys(lock.files()), key=_order)
    require_present(refs, store, "bundle")
    sources: dict[str, FileRef] = {}
    for ref in refs:
        sources.setdefault(member_name(ref.digest), ref)
    # One temp name per bundle, reused: a run killed while writing leaves a file the next
    # run to the same OUT takes over (never one more per kill). Its flock, held while it
    # is written, keeps two runs from writing it at once. 0666 minus the umask (as
    # modelctl.fs.atomic): a bundle is meant to be copied and shared.
    tmp = out.with_name(f".{out.name}.modelctl-partial")
    try:
        fd = in_folder(tmp, lambda: open_own_file(tmp))
    except OSError as exc:
        raise StorageError(f"cannot create the bundle: {exc.strerror}", where=str(out)) from exc
    with os.fdopen(fd, "wb") as raw:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                "another modelctl bundle is writing this file",
                where=str(out),
                hint="wait for it to finish, or write the bundle elsewhere",
            ) from None
        try:
            os.ftruncate(fd, 0)
            content = _write_tar(raw, lock, index, sources, store)
            raw.flush()
            fsync_file(fd)  # a bundle renamed into place is complete, even after a crash
            os.replace(tmp, out)  # while the flock is held
            fsync_dir(out.parent)
            size = out.stat().st_size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write the bundle: {exc.strerror}", where=str(out)) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return BundleWritten(out, index.lock_sha256, len(refs), len(sources), content, size)


def _write_tar(
    raw: IO[bytes], lock: Lock, index: BundleIndex, sources: dict[str, FileRef], store: Store
) -> int:
    content = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # tarfile copies in 16 KiB pieces by default: too small for multi-GB files.
        tar.copybufsize = CHUNK  # type: ignore[attr-defined]  # (missing from typeshed)
        _add_bytes(tar, LOCK_MEMBER, lockfile.render(lock).encode("utf-8"))
        _add_bytes(tar, INDEX_MEMBER, index.render())
        for member, ref in sources.items():
            content += _add_file(tar, member, ref, store)
    return content


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, member: str, ref: FileRef, store: Store) -> int:
    path = store.final_path(ref)
    try:
        f = os.fdopen(open_regular(path), "rb")
    except OSError as exc:
        raise StorageError(f"cannot read a locked file: {exc.strerror}", where=str(path)) from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        reader = HashingReader(f, path, size, ref.digest.algorithm)
        tar.addfile(_tarinfo(member, size), reader)
    actual = reader.digest(ref.digest.algorithm)
    if actual != ref.digest:
        raise VerificationError(
            "cannot bundle: a local file differs from the lock",
            where=f"{ref.label()} at {path}",
            expected=str(ref.digest),
            actual=str(actual),
            hint="run `modelctl verify` and `modelctl sync` to repair it; nothing was written",
        )
    return size
