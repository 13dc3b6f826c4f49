"""``modelctl push``: a lock's files, from the HF cache or a ``--target`` tree, to a registry.

1. Every locked file must be on disk with its locked size (else: run `modelctl sync`).
2. Each content's sha256 (the layer digest) is the locked digest for LFS files; a regular
   file (``gitsha1:`` in the lock) is hashed once, sha256 and gitsha1 together, and must
   match the lock.
3. The artifact is built (:mod:`.modelpack`); for each distinct blob (lockfile, config,
   files): ``HEAD`` -> already there, skipped; else a cross-repository mount from each
   ``--mount-from`` repository; else an upload, its bytes hashed again on the way out
   (the registry checks the sha256 when the upload is committed).
4. The manifest goes last, under the tag: a reader never sees a manifest whose blobs are
   missing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from modelctl.errors import IntegrityError, StorageError, VerificationError
from modelctl.fs.safeio import open_regular
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest, HashingReader
from modelctl.lock.types import FileRef, Lock
from modelctl.oci import modelpack
from modelctl.oci.blobs import has_blob, mount
from modelctl.oci.manifests import put_manifest
from modelctl.oci.registry import Registry
from modelctl.oci.upload import Outgoing, upload
from modelctl.parallel import run_parallel
from modelctl.store.layout import Store
from modelctl.store.presence import require_present

CHUNK: Final = 8 * 1024 * 1024
DEFAULT_PUSH_JOBS: Final = 4


@dataclass(frozen=True)
class PushResult:
    reference: str  # registry/name:tag@sha256:...
    digest: str  # the manifest's
    files: int  # locked files
    blobs: int  # distinct blobs the artifact references (lockfile and config included)
    uploaded: int
    mounted: int
    present: int  # already in the repository
    bytes_uploaded: int
    requests: int
    config_digest: str
    uploaded_digests: tuple[str, ...]


def _open_locked(path: Path, ref: FileRef, size: int) -> HashingReader:
    """A local file read for upload: sha256 and the locked algorithm computed as it goes."""
    try:
        f = os.fdopen(open_regular(path), "rb")
    except OSError as exc:
        raise StorageError(f"cannot read a locked file: {exc.strerror}", where=str(path)) from exc
    return HashingReader(f, path, size, *dict.fromkeys(("sha256", ref.digest.algorithm)))


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int) -> bytes:
        piece = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(piece)
        return piece


def content_sha256(ref: FileRef, path: Path) -> tuple[str, int]:
    """The sha256 and size of a locked file's bytes; hashes (and checks) a gitsha1 file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot read a locked file: {exc.strerror}", where=str(path)) from exc
    if ref.digest.algorithm == "sha256":
        return str(ref.digest), size
    f = _open_locked(path, ref, size)
    try:
        while f.read(CHUNK):
            pass
    finally:
        f.close()
    _check_locked(ref, path, f.digest(ref.digest.algorithm))
    return str(f.digest("sha256")), size


def _check_locked(ref: FileRef, path: Path, actual: Digest) -> None:
    if actual != ref.digest:
        raise VerificationError(
            "cannot push: a local file differs from the lock",
            where=f"{ref.label()} at {path}",
            expected=str(ref.digest),
            actual=str(actual),
            hint="run `modelctl verify` and `modelctl sync` to repair it; the manifest was "
            "not pushed",
        )


def push(
    lock: Lock,
    store: Store,
    registry: Registry,
    tag: str,
    *,
    mount_from: Sequence[str] = (),
    jobs: int = DEFAULT_PUSH_JOBS,
    cancel: threading.Event | None = None,
) -> PushResult:
    cancel = cancel if cancel is not None else threading.Event()
    refs = sorted(
        dict.fromkeys(lock.files()), key=lambda r: (r.asset, r.repo_type, r.repo_id, r.path)
    )
    require_present(refs, store, "push")
    registry.connect()  # fail fast (unreachable, TLS, auth scheme) before hashing anything

    def sha(ref: FileRef) -> modelpack.PushedFile:
        digest, size = content_sha256(ref, store.final_path(ref))
        return modelpack.PushedFile(ref, digest, size)

    pushed = run_parallel(sha, refs, max(1, jobs), cancel)
    lock_bytes = lockfile.render(lock).encode("utf-8")
    built = modelpack.build(lock_bytes, pushed, [a.name for a in lock.assets if a.enabled])
    openers: dict[str, tuple[int, Callable[[], Outgoing], _FileSource | None]] = {}
    openers[modelpack.sha256_digest(built.config)] = (
        len(built.config), lambda: _Bytes(built.config), None,
    )  # fmt: skip
    openers.setdefault(built.layers[0].digest, (len(lock_bytes), lambda: _Bytes(lock_bytes), None))
    for pf in pushed:
        if pf.sha256 not in openers:
            source = _FileSource(store.final_path(pf.ref), pf)
            openers[pf.sha256] = (pf.size, source, source)

    outcomes: dict[str, str] = {}

    def put(digest: str) -> None:
        size, opener, source = openers[digest]
        outcomes[digest] = _put_blob(registry, digest, size, opener, source, mount_from)

    # Largest first, so the long uploads start early.
    order = sorted(openers, key=lambda d: -openers[d][0])
    run_parallel(put, order, max(1, min(jobs, len(order))), cancel)
    digest = put_manifest(registry, tag, built.manifest, modelpack.OCI_MANIFEST)
    counts = list(outcomes.values())
    return PushResult(
        f"{registry.ref.registry}/{registry.name}:{tag}@{digest}",
        digest,
        len(refs),
        len(openers),
        counts.count("uploaded"),
        counts.count("mounted"),
        counts.count("present"),
        registry.traffic.bytes_up,
        registry.traffic.requests,
        modelpack.sha256_digest(built.config),
        tuple(sorted(d for d, o in outcomes.items() if o == "uploaded")),
    )


class _FileSource:
    """Opens a locked file for upload, afresh on each try; keeps the last for its hashes."""

    def __init__(self, path: Path, pf: modelpack.PushedFile) -> None:
        self.path = path
        self.pf = pf
        self.last: HashingReader | None = None

    def __call__(self) -> Outgoing:
        self.close()
        self.last = _open_locked(self.path, self.pf.ref, self.pf.size)
        return self.last

    def close(self) -> None:
        if self.last is not None:
            self.last.close()


def _put_blob(
    registry: Registry,
    digest: str,
    size: int,
    opener: Callable[[], Outgoing],
    source: _FileSource | None,
    mount_from: Sequence[str],
) -> str:
    if has_blob(registry, digest):
        return "present"
    for repo in mount_from:
        if repo != registry.name and mount(registry, digest, repo):
            return "mounted"
    try:
        upload(registry, digest, size, opener)
    except IntegrityError as exc:
        if source is None or source.last is None:
            raise
        ref = source.pf.ref
        actual = source.last.digest(ref.digest.algorithm)
        raise VerificationError(
            "cannot push: a local file changed while it was uploaded",
            where=f"{ref.label()} at {source.path}",
            expected=str(ref.digest),
            actual=str(actual),
            hint="run `modelctl verify` and `modelctl sync` to repair it; the manifest was "
            "not pushed",
        ) from exc
    finally:
        if source is not None:
            source.close()
    return "uploaded"
