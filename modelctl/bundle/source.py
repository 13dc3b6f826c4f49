"""Install a bundle (``modelctl sync --from-bundle``): a sync whose Source is the tar.

The archive is read once, in order (a pipe streams): the lock and the index first (a
bundle of another lock is refused before anything is written), then every blob, each
checked, the needed ones installed. Reading never uses a member's name as a path
(nothing like ``extractall``): where bytes go comes from the lock, through the same
:class:`~modelctl.store.layout.Store` that sync fills. A member is accepted only if it is a
regular file named ``blobs/<algo>-<hex>`` that the index lists, and its bytes are
written through :class:`~modelctl.store.partial.PartialFile`: hashed, checked against the
locked digest, renamed into place and recorded, exactly as a download is.
"""

from __future__ import annotations

import contextlib
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from modelctl.bundle.archive import (
    CHUNK,
    INDEX_MEMBER,
    LOCK_MEMBER,
    MAX_META_BYTES,
    BundleError,
    BundleIndex,
    BundleMismatchError,
    lock_differences,
    lock_hash,
    member_name,
)
from modelctl.errors import (
    IntegrityError,
    LockfileError,
    ModelctlError,
    StorageError,
)
from modelctl.fs.flock import Cancelled, exclusive
from modelctl.fs.safeio import open_regular
from modelctl.lock import lockfile
from modelctl.lock.plan import PlannedFile
from modelctl.lock.types import FileRef, Lock
from modelctl.progress import ProgressListener, ProgressTracker
from modelctl.store.layout import Store, check_writable
from modelctl.store.partial import Mismatch, PartialFile
from modelctl.store.presence import check_local
from modelctl.sync import sync

__all__ = ["BundleInstalled", "BundleSource", "install_bundle"]

_BLOB_RE: Final = re.compile(r"^blobs/(sha256|gitsha1|blake3)-([0-9a-f]{40,64})$")
# tarfile raises these for damaged or truncated archives (EOFError from the decompressors).
_TAR_ERRORS: Final = (tarfile.TarError, EOFError, OSError, ValueError)


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
        f = os.fdopen(open_regular(path), "rb")
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
