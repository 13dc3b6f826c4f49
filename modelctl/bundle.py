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

Reading never uses a member's name as a path (nothing like ``extractall``): where bytes go
comes from the lock, through the same :class:`~modelctl.store.Store` that sync fills. A
member is accepted only if it is a regular file named ``blobs/<algo>-<hex>`` that the index
lists, and its bytes are hashed while written and must match the locked digest; then they
are renamed into place and recorded, exactly as a download would be.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from modelctl import __version__, lockfile
from modelctl.atomic import atomic_file
from modelctl.digest import Digest, new_hasher
from modelctl.errors import (
    InputError,
    IntegrityError,
    LockfileError,
    ModelctlError,
    StorageError,
    VerificationError,
)
from modelctl.filelock import Cancelled, exclusive
from modelctl.partial import Mismatch, PartialFile
from modelctl.paths import check_relpath
from modelctl.plan import PlannedFile
from modelctl.presence import check_local, presence
from modelctl.progress import ProgressListener, ProgressTracker
from modelctl.store import Store, check_writable
from modelctl.sync import sync
from modelctl.types import FileRef, Lock

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "BundleError",
    "BundleIndex",
    "BundleInstalled",
    "BundleMismatchError",
    "BundleSource",
    "BundleWritten",
    "IndexEntry",
    "install_bundle",
    "lock_hash",
    "member_name",
    "write_bundle",
]

BUNDLE_FORMAT: Final = "modelctl-bundle"
BUNDLE_VERSION: Final = 1
LOCK_MEMBER: Final = "modelctl.lock"
INDEX_MEMBER: Final = "index.json"
CHUNK: Final = 8 * 1024 * 1024
# The lock and the index are read into memory: a bound keeps a hostile bundle from
# exhausting it (a lock of 10,000 files is about 2 MiB).
MAX_META_BYTES: Final = 64 * 1024 * 1024
_BLOB_RE: Final = re.compile(r"^blobs/(sha256|gitsha1|blake3)-([0-9a-f]{40,64})$")
# tarfile raises these for damaged or truncated archives (EOFError from the decompressors).
_TAR_ERRORS: Final = (tarfile.TarError, EOFError, OSError, ValueError)


class BundleError(InputError):
    """A bundle that cannot be used: not a bundle, damaged, unsafe, or incomplete (exit 2)."""

    label = "bundle error"


class BundleMismatchError(BundleError):
    """A bundle made from another lock than the project's (exit 2)."""

    label = "bundle mismatch"


def lock_hash(lock: Lock) -> str:
    """``sha256:<hex>`` of the lock's canonical rendering (= its lockfile's bytes)."""
    return "sha256:" + hashlib.sha256(lockfile.render(lock).encode("utf-8")).hexdigest()


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
    _require_present(refs, store)
    sources: dict[str, FileRef] = {}
    for ref in refs:
        sources.setdefault(member_name(ref.digest), ref)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # A temp file beside OUT, renamed when complete; 0666 minus the umask, since a
        # bundle is meant to be copied and shared (see modelctl.atomic).
        with atomic_file(out) as raw:
            content = _write_tar(raw, lock, index, sources, store)
        size = out.stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot write the bundle: {exc.strerror}", where=str(out)) from exc
    return BundleWritten(out, index.lock_sha256, len(refs), len(sources), content, size)


def _require_present(refs: Sequence[FileRef], store: Store) -> None:
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
            f"cannot bundle: {len(problems)} of {len(refs)} locked file(s) are not on disk "
            "as locked",
            where=str(store.root),
            details=tuple(problems),
            hint="run `modelctl sync` first (with the same --target, if you bundle a tree)",
        )


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


class _HashingReader:
    """A source file as tarfile reads it: every byte hashed, read errors named."""

    def __init__(self, f: IO[bytes], algorithm: str, size: int, path: Path) -> None:
        self._f = f
        self._hasher = new_hasher(algorithm, size)
        self._algorithm = algorithm
        self._path = path

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._f.read(n)
        except OSError as exc:
            raise StorageError(
                f"cannot read a locked file: {exc.strerror}", where=str(self._path)
            ) from exc
        self._hasher.update(data)
        return data

    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hasher.hexdigest())


def _add_file(tar: tarfile.TarFile, member: str, ref: FileRef, store: Store) -> int:
    path = store.final_path(ref)
    try:
        f = path.open("rb")
    except OSError as exc:
        raise StorageError(f"cannot read a locked file: {exc.strerror}", where=str(path)) from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        reader = _HashingReader(f, ref.digest.algorithm, size, path)
        tar.addfile(_tarinfo(member, size), reader)
    actual = reader.digest()
    if actual != ref.digest:
        raise VerificationError(
            "cannot bundle: a local file differs from the lock",
            where=f"{ref.label()} at {path}",
            expected=str(ref.digest),
            actual=str(actual),
            hint="run `modelctl verify` and `modelctl sync` to repair it; nothing was written",
        )
    return size


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class BundleInstalled:
    location: str
    lock_sha256: str
    installed: tuple[FileRef, ...]  # written from the bundle in this run
    files_present: int  # already present and verified before
    bytes_read: int  # content bytes read from the bundle (or copied locally)


def install_bundle(
    source: Path | IO[bytes],
    lock: Lock,
    store: Store,
    *,
    listener: ProgressListener | None = None,
    cancel: threading.Event | None = None,
) -> BundleInstalled:
    """Install the files of ``lock`` from a bundle into ``store``: a sync whose source is
    the bundle (:class:`BundleSource`).

    Never opens a network connection. Refuses (BundleMismatchError) a bundle made from
    another lock and (BundleError) damaged or unsafe archives, or one missing a needed
    file; bytes that differ from the lock raise IntegrityError, and nothing unverified is
    ever left at a final path. Progress goes to ``listener`` as sync's events.
    """
    name = str(source) if isinstance(source, Path) else str(getattr(source, "name", "<stream>"))
    with _opened(source, name) as raw, _BundleReader(raw, name) as reader:
        index = reader.header(lock)
        result = sync(lock, store, BundleSource(reader), listener=listener, cancel=cancel)
    return BundleInstalled(
        result.location,
        index.lock_sha256,
        tuple(pf.ref for pf in result.downloaded),
        result.files_present,
        result.bytes_transferred,
    )


class BundleSource:
    """A bundle as a sync source: its members read once, in archive order (a tar streams).

    Every remaining member is read and checked, also those not needed; a needed file the
    index does not list is refused before anything is written.
    """

    def __init__(self, reader: _BundleReader) -> None:
        self.reader = reader

    def fetch(
        self,
        todo: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> list[PlannedFile]:
        _require_listed(self.reader.index, todo, self.reader.name)
        return self.reader.install(todo, store, tracker, cancel)


@contextlib.contextmanager
def _opened(source: Path | IO[bytes], name: str) -> Iterator[IO[bytes]]:
    if not isinstance(source, Path):
        yield source
        return
    try:
        f = source.open("rb")
    except FileNotFoundError as exc:
        raise BundleError(
            "no such bundle", where=name, hint="make one with `modelctl bundle OUT.tar`"
        ) from exc
    except OSError as exc:
        raise StorageError(f"cannot open the bundle: {exc.strerror}", where=name) from exc
    with f:
        yield f


def _require_listed(index: BundleIndex, todo: Sequence[PlannedFile], name: str) -> None:
    members = index.members
    lacking = [pf for pf in todo if member_name(pf.ref.digest) not in members]
    if lacking:
        raise BundleError(
            f"the bundle lacks {len(lacking)} file(s) the lock needs",
            where=name,
            details=tuple(pf.ref.label() for pf in lacking),
            hint="make the bundle again with `modelctl bundle` from a complete sync",
        )


class _BundleReader:
    """One pass over the archive: the lock and index first, then the blobs."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self.name = name
        self.index = BundleIndex("", ())
        # Random access skips unneeded members by seeking; a pipe is read as a stream.
        seekable = raw.seekable()
        self.tar: tarfile.TarFile
        try:
            if seekable:
                self.tar = tarfile.open(fileobj=raw, mode="r:*")  # noqa: SIM115
            else:
                # A stream is read in ``bufsize`` pieces: 10 KiB by default, too small.
                self.tar = tarfile.open(fileobj=raw, mode="r|*", bufsize=CHUNK)  # noqa: SIM115
        except _TAR_ERRORS as exc:
            raise self._damaged(exc) from exc

    def __enter__(self) -> _BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tar.close()  # closes only tarfile's own state: ``raw`` belongs to the caller

    def _damaged(self, exc: BaseException) -> BundleError:
        return BundleError(
            f"cannot read the bundle ({type(exc).__name__}: {exc})",
            where=self.name,
            hint="the file is not a tar archive, or it is truncated or damaged: copy it "
            "again (compare its sha256 with the original)",
        )

    def _next(self) -> tarfile.TarInfo | None:
        try:
            return self.tar.next()
        except _TAR_ERRORS as exc:
            raise self._damaged(exc) from exc

    def _read_small(self, expected: str) -> bytes:
        member = self._next()
        if member is None or member.name != expected or not member.isreg():
            found = "the end of the archive" if member is None else repr(member.name)
            raise BundleError(
                f"not a modelctl bundle: expected {expected!r} here, found {found}",
                where=self.name,
                hint=f"a bundle starts with {LOCK_MEMBER} and {INDEX_MEMBER}; make one with "
                "`modelctl bundle OUT.tar`",
            )
        if member.size > MAX_META_BYTES:
            raise BundleError(f"{expected} is too large ({member.size} bytes)", where=self.name)
        try:
            f = self.tar.extractfile(member)
            data = f.read() if f is not None else b""
        except _TAR_ERRORS as exc:
            raise self._damaged(exc) from exc
        if len(data) != member.size:
            raise self._damaged(EOFError(f"{expected} is truncated"))
        return data

    def header(self, lock: Lock) -> BundleIndex:
        """Read the lock and index, and refuse a bundle made from another lock."""
        text = self._read_small(LOCK_MEMBER)
        index = BundleIndex.parse(self._read_small(INDEX_MEMBER), f"{self.name}:{INDEX_MEMBER}")
        try:
            bundled = lockfile.parse(text.decode("utf-8"), f"{self.name}:{LOCK_MEMBER}")
        except (LockfileError, UnicodeDecodeError) as exc:
            raise BundleError(
                f"the bundle's {LOCK_MEMBER} is not a valid lockfile",
                where=self.name,
                details=(str(exc).splitlines()[0],),
                hint="make the bundle again with `modelctl bundle`",
            ) from exc
        bundled_hash = lock_hash(bundled)
        self.index = index
        if index.lock_sha256 != bundled_hash or index.members != BundleIndex.of(bundled).members:
            raise BundleError(
                f"the bundle's {INDEX_MEMBER} does not describe its {LOCK_MEMBER}",
                where=self.name,
                expected=bundled_hash,
                actual=index.lock_sha256,
                hint="the bundle was altered: make it again with `modelctl bundle`",
            )
        ours = lock_hash(lock)
        if bundled_hash != ours:
            raise BundleMismatchError(
                "the bundle was made from another lock than this project's",
                where=self.name,
                details=lock_differences(lock, bundled),
                expected=f"{ours} (this project's lock)",
                actual=f"{bundled_hash} (the lock inside the bundle)",
                hint="make a bundle from this lock (`modelctl bundle` on a synced machine), or "
                f"deploy the lock it was made from (`tar -xOf {self.name} {LOCK_MEMBER}`)",
            )
        return index

    def install(
        self,
        todo: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> list[PlannedFile]:
        """Read every remaining member (checking each), installing the needed ones."""
        wanted: dict[str, list[PlannedFile]] = {}
        for pf in todo:
            wanted.setdefault(member_name(pf.ref.digest), []).append(pf)
        installed: list[PlannedFile] = []
        seen: set[str] = set()
        while (member := self._next()) is not None:
            if cancel.is_set():
                raise Cancelled()
            self._check_member(member, seen)
            group = wanted.pop(member.name, None)
            if group is None:
                continue  # present already, or not in this lock: checked, then skipped
            try:
                installed.extend(self._install_member(member, group, store, tracker, cancel))
            except ModelctlError as exc:
                for pf in group:
                    tracker.failed(pf, exc.render())
                raise
        if wanted:
            raise BundleError(
                f"the bundle ends without {len(wanted)} file(s) its index lists",
                where=self.name,
                details=tuple(pf.ref.label() for g in wanted.values() for pf in g),
                hint="the bundle is truncated: copy it again, or make it again with "
                "`modelctl bundle`",
            )
        return installed

    def _check_member(self, member: tarfile.TarInfo, seen: set[str]) -> None:
        """Only regular files named ``blobs/<algo>-<hex>``, listed in the index, once."""
        problem = None
        if not _BLOB_RE.match(member.name):
            problem = "an unexpected name (a bundle holds only blobs/<algo>-<hex>)"
        elif not member.isreg():
            problem = "not a regular file (links and devices are refused)"
        elif member.name in seen:
            problem = "a second copy of the same member"
        elif member.name not in self.index.members:
            problem = f"not listed in {INDEX_MEMBER}"
        if problem:
            raise BundleError(
                f"unsafe or unexpected member {member.name!r}: {problem}",
                where=self.name,
                hint="the bundle was not made by `modelctl bundle` or was altered; nothing "
                "outside the lock's own paths is ever written",
            )
        seen.add(member.name)

    def _install_member(
        self,
        member: tarfile.TarInfo,
        group: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> list[PlannedFile]:
        """Write one content to every place that needs it: streamed from the archive into
        the first, copied (and hashed again) from there into the others."""
        where = f"{self.name}:{member.name}"
        sizes = {pf.ref.size for pf in group} - {None}
        if sizes and sizes != {member.size}:
            raise IntegrityError(
                "a bundled file has another size than the lock says",
                where=where,
                expected=f"{sizes.pop()} bytes",
                actual=f"{member.size} bytes",
                hint="the bundle was altered or damaged: make it again with `modelctl bundle`",
            )
        try:
            stream = self.tar.extractfile(member)
        except _TAR_ERRORS as exc:
            raise self._damaged(exc) from exc
        if stream is None:
            raise self._damaged(ValueError(f"{member.name} has no data"))
        by_content: dict[Path, list[PlannedFile]] = {}
        for pf in group:
            by_content.setdefault(store.content_path(pf.ref), []).append(pf)
        installed: list[PlannedFile] = []
        placed: Path | None = None  # a verified copy of this content, once there is one
        for content, pfs in by_content.items():
            first = pfs[0]
            for pf in pfs:
                tracker.started(pf, 0)
            check_writable(store, [pf.ref for pf in pfs])  # again, right before writing
            with exclusive(store.lock_path(first.ref), cancel):
                check = check_local(
                    content, first.ref.digest, first.ref.size, store.record_path(first.ref)
                )
                if not check.ok:
                    with contextlib.ExitStack() as stack:
                        if placed is None:
                            read, origin = self._reader(stream), where
                        else:
                            f = stack.enter_context(_open_local(placed))
                            read, origin = _local_reader(f, placed), str(placed)
                        _write_verified(read, first, member.size, origin, store, tracker, cancel)
                    installed.extend(pfs)
                placed = placed or content
                for pf in pfs:
                    store.link(pf.ref)
            for pf in pfs:
                tracker.done(pf, pf.ref.digest, member.size if pf is first else 0)
        return installed

    def _reader(self, stream: IO[bytes]) -> Callable[[int], bytes]:
        def read(n: int) -> bytes:
            try:
                return stream.read(n)
            except _TAR_ERRORS as exc:
                raise self._damaged(exc) from exc

        return read


@contextlib.contextmanager
def _open_local(path: Path) -> Iterator[IO[bytes]]:
    try:
        f = path.open("rb")
    except OSError as exc:
        raise StorageError(f"cannot read {path.name}: {exc.strerror}", where=str(path)) from exc
    with f:
        yield f


def _local_reader(f: IO[bytes], path: Path) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        try:
            return f.read(n)
        except OSError as exc:
            raise StorageError(f"cannot read {path.name}: {exc.strerror}", where=str(path)) from exc

    return read


def _write_verified(
    read: Callable[[int], bytes],
    pf: PlannedFile,
    size: int,
    where: str,
    store: Store,
    tracker: ProgressTracker,
    cancel: threading.Event,
) -> None:
    """A fresh partial file <- hashed bytes; checked against the lock; renamed; recorded.

    Called with the content's lock held. A failure removes the partial file: unlike a
    download, there is nothing to resume, the archive is read again from the start.
    """
    ref = pf.ref
    part = PartialFile.create(store.partial_path(ref), ref.digest, size)
    try:
        while part.offset < size:
            if cancel.is_set():
                raise Cancelled()
            data = read(min(CHUNK, size - part.offset))
            if not data:
                break
            part.append(data)
            tracker.advanced(pf, part.offset, len(data))
        try:
            part.commit(store.content_path(ref), store.record_path(ref))
        except Mismatch as exc:
            raise IntegrityError(
                "bundled bytes do not match the locked digest; nothing was installed",
                where=f"{where} for {ref.label()}",
                expected=str(ref.digest) if part.offset == size else exc.expected,
                actual=exc.actual,
                hint="the bundle is damaged or was altered: copy it again, or make it again "
                "with `modelctl bundle`",
            ) from None
    except BaseException:
        # Never left behind: a failed or partial copy is read again from the bundle.
        part.discard()
        raise


def lock_differences(ours: Lock, theirs: Lock) -> tuple[str, ...]:
    """What differs between this project's lock and the one a bundle was made from."""
    mine = {a.name: a for a in ours.assets}
    other = {a.name: a for a in theirs.assets}
    lines = [
        f"asset {n!r} is locked here but not in the bundle"
        for n in sorted(mine.keys() - other.keys())
    ]
    lines += [
        f"asset {n!r} is in the bundle but not locked here"
        for n in sorted(other.keys() - mine.keys())
    ]
    for n in sorted(mine.keys() & other.keys()):
        a, b = mine[n], other[n]
        if a == b:
            continue
        here = ", ".join(f"{s.repo_id}@{s.commit[:12]}" for s in a.sources)
        there = ", ".join(f"{s.repo_id}@{s.commit[:12]}" for s in b.sources)
        if here != there:
            lines.append(f"asset {n!r}: {here} here, {there} in the bundle")
            continue
        mine_files = {(s.repo_id, f.path): f for s in a.sources for f in s.files}
        other_files = {(s.repo_id, f.path): f for s in b.sources for f in s.files}
        only_here = sorted(p for _, p in mine_files.keys() - other_files.keys())
        only_there = sorted(p for _, p in other_files.keys() - mine_files.keys())
        shared = mine_files.keys() & other_files.keys()
        changed = sorted(k[1] for k in shared if mine_files[k] != other_files[k])
        parts = [
            *([f"only here: {', '.join(only_here)}"] if only_here else []),
            *([f"only in the bundle: {', '.join(only_there)}"] if only_there else []),
            *([f"different: {', '.join(changed)}"] if changed else []),
        ]
        lines.append(f"asset {n!r}: " + ("; ".join(parts) or "same files, other settings"))
    if not lines:
        lines.append("same assets and files; the manifest hash or lock version differs")
    return tuple(lines)
