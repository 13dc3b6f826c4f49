"""``modelctl sync --from oci://...``: the registry as a sync :class:`~modelctl.sync.Source`.

:func:`modelctl.sync.sync` keeps what is present and verified and hands the rest to
:class:`OciSource`; when nothing is missing the registry is not contacted at all (a warm
node costs it nothing). Otherwise :class:`OciSource`:

1. reads the manifest (by tag or pinned digest), checks it is a ModelPack artifact made by
   ``modelctl push``, reads its lockfile layer and refuses an artifact of another lock,
   naming what differs (as bundles are refused);
2. fetches each missing file from its layer's blob with :func:`modelctl.transfer.fetch.fetch_file`,
   i.e. through a :class:`~modelctl.store.partial.PartialFile`, resumed with ``Range`` after a
   dropped connection, every byte hashed against the LOCAL lock's digest (the artifact's
   own claims are never trusted), renamed into place only when it matches; in parallel,
   largest first. No request goes to the Hub.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from modelctl.errors import LockfileError, ModelctlError
from modelctl.lock import lockfile
from modelctl.lock.plan import PlannedFile
from modelctl.lock.types import FileRef, Lock
from modelctl.oci import modelpack
from modelctl.oci.blobs import get_small_blob
from modelctl.oci.manifests import get_manifest
from modelctl.oci.reference import Reference
from modelctl.oci.registry import Registry
from modelctl.parallel import default_jobs
from modelctl.progress import ProgressTracker
from modelctl.store.layout import Store
from modelctl.transfer.fetch import FetchContext, fetch_all
from modelctl.transfer.remote import Headers, Hints, plain_refusal
from modelctl.transfer.retry import RetryPolicy

REGISTRY_HINTS: Final = Hints(
    auth="check the registry credentials (`docker login` / `podman login`, REGISTRY_AUTH_FILE)",
    missing="the artifact's blob is gone from the registry: push the lock again (`modelctl push`)",
    mismatch="the registry's copy is damaged or was altered: push the lock again "
    "(`modelctl push`), or sync from the Hub",
    rate_limited="the registry rate-limits this client: wait, then run `modelctl sync` "
    "again: it resumes",
)


@dataclass(frozen=True)
class RegistryRemote:
    """Where each file's bytes are: its layer's blob URL, with the registry's auth (a
    :class:`~modelctl.transfer.remote.Remote`)."""

    registry: Registry
    urls: Mapping[FileRef, str]
    hints: Hints = REGISTRY_HINTS
    secrets: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"the registry ({self.registry.where})"

    def url(self, ref: FileRef) -> str:
        return self.urls[ref]

    def headers(self) -> dict[str, str]:
        return {**self.registry.headers(), **self.registry.auth_headers("pull")}

    def refused(self, status: int, headers: Headers, where: str, ref: FileRef) -> ModelctlError:
        return plain_refusal(self, status, where)


def read_artifact(registry: Registry, ref: Reference) -> tuple[modelpack.Artifact, Lock, str]:
    """The artifact's manifest and lock, checked; and its manifest digest."""
    data, media, digest = get_manifest(registry, ref)
    where = str(ref.with_digest(digest))
    artifact = modelpack.parse(data, media, where)
    raw = get_small_blob(registry, artifact.lock_layer.digest, lockfile.MAX_LOCK_BYTES)
    try:
        theirs = lockfile.parse(raw.decode("utf-8"), f"{where}:{modelpack.LOCK_TITLE}")
    except (LockfileError, UnicodeDecodeError) as exc:
        raise modelpack.ArtifactError(
            f"the artifact's {modelpack.LOCK_TITLE} is not a valid lockfile",
            where=where,
            details=(str(exc).splitlines()[0],),
            hint="push it again with `modelctl push`",
        ) from exc
    return artifact, theirs, digest


def check_artifact(
    lock: Lock, registry: Registry, ref: Reference
) -> tuple[modelpack.Artifact, str]:
    """The artifact ``ref`` names, if it was pushed from ``lock``; else ArtifactMismatchError
    naming what differs. Returns it and its reference with the manifest digest."""
    artifact, theirs, digest = read_artifact(registry, ref)
    where = str(ref.with_digest(digest))
    ours_hash, theirs_hash = lockfile.lock_hash(lock), lockfile.lock_hash(theirs)
    if ours_hash != theirs_hash:
        raise modelpack.ArtifactMismatchError(
            "the artifact was pushed from another lock than this project's",
            where=where,
            details=lockfile.lock_differences(lock, theirs, "the artifact"),
            expected=f"{ours_hash} (this project's lock)",
            actual=f"{theirs_hash} (the lock inside the artifact)",
            hint="push this lock (`modelctl push` on a synced machine), or deploy the lock "
            "the artifact holds (its modelctl.lock layer)",
        )
    return artifact, where


@dataclass(frozen=True)
class OciSource:
    """Fetch missing files from the artifact ``ref`` names, pushed from ``lock``."""

    lock: Lock
    registry: Registry
    ref: Reference
    jobs: int | None = None  # parallel downloads; default min(8, files)
    policy: RetryPolicy | None = None  # default: the registry's (RegistryOptions.policy)

    def fetch(
        self,
        todo: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> list[PlannedFile]:
        if not todo:
            return []  # a warm node: the registry is not asked anything
        artifact, where = check_artifact(self.lock, self.registry, self.ref)
        urls = {pf.ref: self.registry.blob_url(_layer(artifact, pf, where).digest) for pf in todo}
        ctx = FetchContext(
            remote=RegistryRemote(self.registry, urls),
            transport=self.registry.transport,  # one pool for the registry's requests and blobs
            policy=self.policy or self.registry.options.policy,
            cancel=cancel,
        )

        return fetch_all(todo, store, ctx, tracker, self.jobs or default_jobs(len(todo)))


def _layer(artifact: modelpack.Artifact, pf: PlannedFile, where: str) -> modelpack.Layer:
    layer = artifact.layer_for(pf.ref)
    if layer is None:
        raise modelpack.ArtifactError(
            "the artifact has no layer for a locked file",
            where=where,
            details=(f"{pf.ref.label()} ({pf.ref.digest})",),
            hint="push it again with `modelctl push`",
        )
    return layer
