"""Digests as ``"<algorithm>:<hex>"`` strings: parsed, produced and computed here only.

Algorithms:

- ``sha256``  — what the Hub records for LFS files (and what ETags of LFS files are).
- ``gitsha1`` — the git blob id ``sha1(b"blob <size>\\0" + data)``: the only hash the Hub
  has for regular (non-LFS) files. It needs the size up front, which the lock knows.
- ``blake3``  — local only: recorded after a verified download to make re-checks cheap.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Protocol

from modelctl.errors import StorageError
from modelctl.fs.safeio import open_regular

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

ALGORITHMS: Final = ("sha256", "gitsha1", "blake3")
_HEX_LEN: Final = {"sha256": 64, "gitsha1": 40, "blake3": 64}
_DIGEST_RE: Final = re.compile(r"^(sha256|gitsha1|blake3):([0-9a-f]+)$")
_CHUNK: Final = 8 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest; ``str(d)`` is its canonical ``algo:hex`` form."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        expected = _HEX_LEN.get(self.algorithm)
        if expected is None:
            raise ValueError(f"unknown digest algorithm {self.algorithm!r}")
        if len(self.hex) != expected or not all(c in "0123456789abcdef" for c in self.hex):
            raise ValueError(
                f"{self.algorithm} digest must be {expected} lowercase hex characters, "
                f"got {self.hex!r}"
            )

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algo:hex``; raises ValueError with the reason."""
        m = _DIGEST_RE.match(text)
        if not m:
            raise ValueError(
                f"not a digest: {text!r} (expected 'sha256:<64 hex>', 'gitsha1:<40 hex>' "
                "or 'blake3:<64 hex>')"
            )
        return cls(m.group(1), m.group(2))

    @classmethod
    def from_etag(cls, etag: str) -> Digest | None:
        """The Hub's ETag is sha256 for LFS files and the git blob sha1 otherwise."""
        etag = etag.strip().removeprefix("W/").strip('"').lower()
        algorithm = {64: "sha256", 40: "gitsha1"}.get(len(etag))
        if algorithm is None or not all(c in "0123456789abcdef" for c in etag):
            return None  # not a content hash (a mirror's own ETag): the digest is unknown
        return cls(algorithm, etag)


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str, size: int | None = None) -> Hasher:
    """A streaming hasher; ``gitsha1`` needs the total size for the blob header."""
    # Imported here: OpenSSL's hashlib costs ~2 ms, and a warm sync or the runtime hashes
    # nothing when the records vouch for every file (after the first call it is free).
    import hashlib

    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake3":
        import blake3  # an extension module: loaded only when a blake3 is computed

        h: Hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        return h
    if algorithm == "gitsha1":
        if size is None:
            raise ValueError("gitsha1 needs the file size")
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha1.update(b"blob %d\0" % size)
        return sha1
    raise ValueError(f"unknown digest algorithm {algorithm!r}")


def digest_bytes(algorithm: str, data: bytes) -> Digest:
    h = new_hasher(algorithm, len(data))
    h.update(data)
    return Digest(algorithm, h.hexdigest())


def digest_file(path: Path, algorithm: str) -> Digest:
    """Hash a whole file in large chunks (hashlib releases the GIL on big buffers)."""
    with os.fdopen(open_regular(path), "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        h = new_hasher(algorithm, size)
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return Digest(algorithm, h.hexdigest())


class HashingReader:
    """A local file read as a stream (into a tar, up to a registry): every byte hashed
    with each of ``algorithms`` as it goes; a read error is a StorageError naming the file."""

    def __init__(self, f: IO[bytes], path: Path, size: int, *algorithms: str) -> None:
        self._f = f
        self.path = path
        self._hashers = {a: new_hasher(a, size) for a in algorithms}

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._f.read(n)
        except OSError as exc:
            raise StorageError(
                f"cannot read a locked file: {exc.strerror}", where=str(self.path)
            ) from exc
        for h in self._hashers.values():
            h.update(data)
        return data

    def digest(self, algorithm: str) -> Digest:
        """What was read so far, hashed with ``algorithm`` (one of those given)."""
        return Digest(algorithm, self._hashers[algorithm].hexdigest())

    def close(self) -> None:
        self._f.close()
