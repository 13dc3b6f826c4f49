"""One file on its way to its final path: the only place bytes are written into a store.

Every way of getting bytes (a download, a bundle, later ones) writes through
:class:`PartialFile`, so the promise "no wrong file is ever accepted" rests on one copy of
these steps:

1. **open**: the deterministic partial file beside the content (same folder, so the
   final rename is atomic), never through a symlink (``O_NOFOLLOW``) or a hard link, and
   created 0o666 minus the umask like any file the user makes. ``resume`` keeps the bytes
   already there and hashes them first; ``create`` starts a fresh file.
2. **write + hash**: every byte is hashed with the locked algorithm (and blake3 for the
   record, if asked) before it is written, in order; the partial file only ever holds
   hashed bytes. After a failed write only the bytes known to be written are kept.
   Every :data:`WRITEBACK_EVERY` bytes written, the kernel is asked to start writing them
   to the disk (:func:`~modelctl.fs.safeio.start_writeback`), so the fsync of step 5
   finds little left to do.
3. **restart**: back to zero (a server ignoring ``Range``, a digest mismatch).
4. **verify**: the size and the digest against the lock (:class:`Mismatch` if not).
5. **commit**: rename (``os.replace``) onto the content path and write the record.

The caller holds the content's lock file (:mod:`modelctl.fs.flock`) throughout.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from modelctl.errors import UnsafePathError
from modelctl.fs.flock import Cancelled
from modelctl.fs.paths import in_folder, storage_error
from modelctl.fs.safeio import fsync_dir, fsync_file, start_writeback
from modelctl.lock.digest import Digest, Hasher, new_hasher
from modelctl.store.record import FileStamp, Record, write_record

CHUNK: Final = 8 * 1024 * 1024
# Written bytes between two starts of writeback: at 320 MB/s, one every 50 ms.
WRITEBACK_EVERY: Final = 16 * 1024 * 1024
_Opener = Callable[[Path], int]  # path -> open file descriptor


class Mismatch(Exception):
    """The bytes do not match the lock (digest or size)."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual


class PartialFile:
    """An open partial file, its hashers, and how many bytes it holds (all hashed)."""

    def __init__(
        self, path: Path, digest: Digest, size: int | None, *, blake3: bool = False
    ) -> None:
        self.path = path
        self.digest = digest  # the locked digest
        self.size = size  # the locked size, or the one the source announced
        self.locked_size = size
        self.blake3 = blake3
        self.offset = 0
        self.hashers: dict[str, Hasher] = self._new_hashers() if size is not None else {}
        self.fd = -1
        # Bytes written since the kernel was last asked to write them back (write_at is
        # called by several connections at once: under _dirty_lock); None: unsupported.
        self._dirty: int | None = 0
        self._dirty_lock = threading.Lock()
        self._writeback: _Writeback | None = None  # its thread, from the first request

    # -- open -------------------------------------------------------------------------
    @classmethod
    def resume(
        cls,
        path: Path,
        digest: Digest,
        size: int | None,
        *,
        blake3: bool = False,
        cancel: threading.Event | None = None,
        known: int | None = None,
    ) -> PartialFile:
        """Open (or create) ``path`` and hash the bytes an earlier run left there.

        With an unknown size, or more bytes than the locked size, it starts from zero.
        ``known``: only this prefix holds bytes to keep (a segmented download's file has
        its full size at once; :mod:`modelctl.transfer.segments` records which ranges are written).
        """
        part = cls(path, digest, size, blake3=blake3)
        part._open(open_own_file)
        try:
            have = os.fstat(part.fd).st_size
            if known is not None:
                have = known if known <= have else 0
            elif size is None or have > size:
                os.ftruncate(part.fd, 0)
                have = 0
            part._hash_prefix(have, cancel)
        except OSError as exc:
            part.close()
            raise storage_error("cannot use the partial download", path, exc) from exc
        except BaseException:
            part.close()
            raise
        return part

    @classmethod
    def create(
        cls, path: Path, digest: Digest, size: int | None, *, blake3: bool = False
    ) -> PartialFile:
        """A fresh, empty file of our own: whatever had this name (even a symlink or a
        hard link planted there) is removed, never written through."""
        part = cls(path, digest, size, blake3=blake3)
        part._open(_open_fresh)
        return part

    def _open(self, opener: _Opener) -> None:
        try:
            self.fd = in_folder(self.path, lambda: opener(self.path))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(
                    "the partial download is a symlink: refusing to write through it",
                    where=str(self.path),
                    expected="a regular file, or nothing",
                    actual="a symlink",
                    hint="remove it; modelctl creates it again",
                ) from exc
            raise storage_error("cannot use the partial download", self.path, exc) from exc

    def _hash_prefix(self, have: int, cancel: threading.Event | None) -> None:
        buf = bytearray(min(CHUNK, max(have, 1)))
        view = memoryview(buf)
        pos = 0
        with open(self.fd, "rb", buffering=0, closefd=False) as f:
            while pos < have:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                n = f.readinto(view[: min(len(buf), have - pos)])
                if not n:
                    break
                self.hash(view[:n])
                pos += n
        self.offset = pos
        os.lseek(self.fd, pos, os.SEEK_SET)

    def _new_hashers(self, size: int | None = None) -> dict[str, Hasher]:
        algo = self.digest.algorithm
        hashers = {algo: new_hasher(algo, self.size if size is None else size)}
        if self.blake3:
            hashers["blake3"] = new_hasher("blake3")
        return hashers

    # -- write ------------------------------------------------------------------------
    def announce_size(self, total: int, what: str) -> None:
        """The source says the file has ``total`` bytes: learn it, or refuse a mismatch."""
        if self.size is None:
            self.size = total
            if self.offset == 0:
                self.hashers = self._new_hashers()
        elif total != self.size:
            raise Mismatch(
                f"the source announces a different size ({what})",
                expected=f"{self.size} bytes",
                actual=f"{total} bytes",
            )

    def hash(self, data: memoryview | bytes) -> None:
        """Hash the next bytes; always before :meth:`write` of the same bytes."""
        if not self.hashers:
            if self.size is None and self.digest.algorithm == "gitsha1":
                # A git blob id starts with the size, which neither the lock nor the
                # server told: the bytes are hashed from the file once they are all there.
                return
            self.hashers = self._new_hashers()
        for h in self.hashers.values():
            h.update(data)

    def write(self, data: memoryview | bytes) -> None:
        """Write bytes already hashed; after a failure only the bytes written stay."""
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            self._keep_valid_prefix()
            raise storage_error("cannot write the download", self.path, exc) from exc
        self.offset += len(data)
        try:
            self._wrote(len(data))
        except OSError as exc:
            raise storage_error("cannot write the download", self.path, exc) from exc

    def write_at(self, data: memoryview | bytes, at: int) -> None:
        """Write bytes at ``at``, past the hashed prefix (a segmented download: see
        :mod:`modelctl.transfer.segments`); they are hashed later by :meth:`hash_written`."""
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, at)
                view = view[n:]
                at += n
            self._wrote(len(data))
        except OSError as exc:
            raise storage_error("cannot write the download", self.path, exc) from exc

    def _wrote(self, n: int) -> None:
        """Count ``n`` bytes written; past :data:`WRITEBACK_EVERY`, start their writeback."""
        with self._dirty_lock:
            if self._dirty is None:
                return
            self._dirty += n
            if self._dirty < WRITEBACK_EVERY:
                return
            self._dirty = 0
            if self._writeback is None:
                self._writeback = _Writeback(self.fd, self.path.name)
            writeback = self._writeback
        if not writeback.request():
            with self._dirty_lock:
                self._dirty = None  # not on this system: the fsync of commit does it all

    def _stop_writeback(self, quiet: bool = False) -> None:
        """End the writeback thread (before the fd is fsynced or closed); raises the
        OSError it met, if any, unless ``quiet``."""
        writeback, self._writeback = self._writeback, None
        if writeback is not None:
            writeback.stop(quiet)

    def hash_next(self, data: memoryview | bytes) -> None:
        """Hash the bytes that follow the hashed prefix, received in memory and written
        at their offset with :meth:`write_at` (a segmented download's connection at the
        front: its bytes need not be read back)."""
        self.hash(data)
        self.offset += len(data)

    def hash_written(self, upto: int, buf: memoryview) -> None:
        """Hash the bytes written at offsets (:meth:`write_at`) from the hashed prefix up to
        ``upto``, read back from the file through ``buf``: what is hashed is what is on disk."""
        while self.offset < upto:
            want = buf[: min(len(buf), upto - self.offset)]
            try:
                n = os.preadv(self.fd, [want], self.offset)
            except OSError as exc:
                raise storage_error("cannot read the download back", self.path, exc) from exc
            if n == 0:
                raise Mismatch(
                    "the partial download is shorter than the ranges written into it",
                    expected=f"{upto} bytes",
                    actual=f"{self.offset} bytes",
                )
            self.hash(want[:n])
            self.offset += n

    def append(self, data: memoryview | bytes) -> None:
        """Hash and write, on one thread."""
        self.hash(data)
        self.write(data)

    def _keep_valid_prefix(self) -> None:
        try:
            os.ftruncate(self.fd, self.offset)
        except OSError:
            # Cannot vouch for the partial file any more: remove it.
            self.discard()

    def restart(self) -> None:
        """Start again from zero, with the locked size."""
        try:
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError as exc:
            raise storage_error("cannot reset the partial download", self.path, exc) from exc
        self.offset = 0
        self.size = self.locked_size
        self.hashers = self._new_hashers() if self.size is not None else {}

    # -- finish -----------------------------------------------------------------------
    def verify(self) -> tuple[Digest, Digest | None]:
        """The locked digest (and blake3, if hashed), or Mismatch naming what differs."""
        if self.size is not None and self.offset != self.size:
            raise Mismatch(
                "the download has the wrong size",
                expected=f"{self.size} bytes",
                actual=f"{self.offset} bytes",
            )
        if not self.hashers:
            self.hashers = self._hash_written()
        algo = self.digest.algorithm
        actual = Digest(algo, self.hashers[algo].hexdigest())
        if actual != self.digest:
            raise Mismatch(
                "the downloaded bytes do not match the locked digest",
                expected=str(self.digest),
                actual=str(actual),
            )
        b3 = self.hashers.get("blake3")
        return actual, Digest("blake3", b3.hexdigest()) if b3 is not None else None

    def _hash_written(self) -> dict[str, Hasher]:
        """Hashers fed with the ``offset`` bytes written so far, read back from the file."""
        hashers = self._new_hashers(self.offset)
        pos = 0
        try:
            while pos < self.offset:
                data = os.pread(self.fd, min(CHUNK, self.offset - pos), pos)
                if not data:
                    break
                for h in hashers.values():
                    h.update(data)
                pos += len(data)
        except OSError as exc:
            raise storage_error("cannot read the download back", self.path, exc) from exc
        return hashers

    def commit(self, content: Path, record_path: Path) -> Digest:
        """Verify, rename onto ``content`` and record it; returns the matched digest."""
        digest, blake3 = self.verify()
        try:
            self._stop_writeback()
        except OSError as exc:
            raise storage_error("cannot write the download", self.path, exc) from exc
        try:
            # Durability: the bytes reach the disk before the name does, and the rename
            # before the record, so a power loss never leaves a renamed-but-empty file
            # (or a record vouching for one). Cost measured in benchmarks/bench_fsync.py.
            fsync_file(self.fd)
            self.close()
            os.replace(self.path, content)
            fsync_dir(content.parent)
            stamp = FileStamp.of(content.stat())
        except OSError as exc:
            raise storage_error("cannot move the download into place", content, exc) from exc
        write_record(record_path, Record(digest, stamp, blake3))
        return digest

    def close(self) -> None:
        # Closing: the download failed or was stopped, or commit already fsynced. A
        # writeback error here changes nothing (the file is not renamed into place).
        self._stop_writeback(quiet=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and delete the partial file."""
        self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise storage_error("cannot delete a bad download", self.path, exc) from exc


class _Writeback:
    """Asks the kernel to start writing a file's dirty pages (
    :func:`~modelctl.fs.safeio.start_writeback`) on a thread of its own.

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` does not wait for the pages to reach the
    disk, but it does wait for room in the disk's queue: called from the thread that
    receives, it stalled the receiving (one 512 MiB file uncapped on loopback: the last
    byte came ~0.2 s later, what the fsync had saved). Requests made while one is running
    are merged into the next.
    """

    def __init__(self, fd: int, name: str) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._wanted = False
        self._stopping = False
        self._unsupported = False
        self._error: OSError | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"modelctl-writeback {name}", daemon=True
        )
        self._thread.start()

    def request(self) -> bool:
        """Start writing back what is dirty now; False where the system cannot (then the
        fsync before the rename does it all). Raises the OSError an earlier start met."""
        with self._cond:
            if self._error is not None:
                raise self._error
            if self._unsupported:
                return False
            self._wanted = True
            self._cond.notify()
            return True

    def stop(self, quiet: bool = False) -> None:
        """Wait for a start under way, end the thread; raise its OSError unless ``quiet``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None and not quiet:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                self._wanted = False
            try:
                supported = start_writeback(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc  # raised by the next request, or by stop()
                return
            if not supported:
                with self._cond:
                    self._unsupported = True
                return


def open_own_file(path: Path) -> int:
    """Open (or create) a partial download, refusing what would write elsewhere."""
    # O_NOFOLLOW: a symlink planted at this name would make us truncate and write its
    # target (ELOOP instead). 0o666 minus the umask, as for any file the user creates:
    # a shared cache stays readable by the group (mkstemp would make it private).
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o666)
    try:
        if os.fstat(fd).st_nlink > 1:
            # A hard link shares the inode with another name, which our writes would
            # change too: drop this name and start a file of our own.
            os.close(fd)
            fd = -1
            os.unlink(path)
            fd = os.open(path, flags | os.O_EXCL, 0o666)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def _open_fresh(path: Path) -> int:
    path.unlink(missing_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
