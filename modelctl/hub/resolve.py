"""Resolve a manifest into a lock: one metadata request per (repo, revision).

Commits already in the previous lock are kept (the metadata is re-read at that commit)
unless the asset is upgraded; so re-locking an unchanged manifest is a no-op.

Every locked file gets a SHA-256. LFS files have it in the listing. Regular (non-LFS)
files have only their git blob id there, so each one not yet known is downloaded once at
lock time (checked against its blob id and size while it streams) and hashed: the lock
is then the whole record before any sync, which ``sync --frozen`` (the lock, unchanged)
and a signature check (it covers SHA-256s) need. A SHA-256 already in the previous lock
for the same blob id is reused without a request (the blob id names the content), so
re-locking costs nothing more; an older lock without them gains them on the next
``modelctl lock``.
"""

from __future__ import annotations

from collections.abc import Collection
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from modelctl.errors import IntegrityError, ResolveError
from modelctl.fs.paths import check_relpath
from modelctl.hub.answers import RemoteFile, RepoSnapshot, check_pinned
from modelctl.hub.client import Fetched, HubClient
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest
from modelctl.lock.types import (
    ROLE_SIGNATURE,
    Asset,
    FileRequest,
    Lock,
    LockedAsset,
    LockedFile,
    LockedSignature,
    LockedSource,
    Manifest,
    SignatureSpec,
    Source,
)
from modelctl.lock.types import repo_where as where
from modelctl.provenance import oms

if TYPE_CHECKING:
    from dataclasses import replace
else:
    from modelctl.values import replace

SourceKey = tuple[str, str, str]  # (repo_type, repo_id, revision)


def resolve(
    manifest: Manifest,
    client: HubClient,
    previous: Lock | None = None,
    *,
    upgrade: bool = False,
    upgrade_assets: Collection[str] = (),
    hash_regular: bool = True,
) -> Lock:
    """The lock of ``manifest``. ``hash_regular=False`` (outdated, which compares blob ids)
    skips the lock-time download of regular files, so their ``sha256`` stays unset, and
    the signature checks."""
    unknown = sorted(set(upgrade_assets) - {a.name for a in manifest.assets})
    if unknown:
        raise ResolveError(
            f"--upgrade-asset names no asset of the manifest: {', '.join(unknown)}",
            where=manifest.source,
            hint="use asset names from the manifest's `assets:`",
        )
    pinned = {} if upgrade or previous is None else _pinned_commits(previous)
    for asset in manifest.assets:
        if asset.name in upgrade_assets:
            for src in asset.sources:
                pinned.pop(src.key, None)
    snapshots: dict[SourceKey, RepoSnapshot] = {}
    for asset in manifest.assets:
        if not asset.declares_files:
            continue
        for src in asset.sources:
            if src.key not in snapshots:
                rev = pinned.get(src.key, src.revision)
                snap = client.snapshot(src.repo_id, src.repo_type, rev)
                check_pinned(rev, snap)
                snapshots[src.key] = snap
    assets = tuple(_lock_asset(a, snapshots, client) for a in manifest.assets)
    if hash_regular:
        signatures = _fetch_signatures(manifest, assets, client)
        known = {sig.file.digest: sig.fetched.sha256 for sig in signatures.values()}
        assets = _with_sha256(assets, previous, client, known)
        base = Path(manifest.source).parent
        assets = tuple(
            _checked_signature(a, signatures[a.name], base) if a.name in signatures else a
            for a in assets
        )
    # Everything above came from a server: check it like a lockfile read from disk before
    # anything (a sync, a write) uses it.
    new = Lock(lockfile.LOCK_VERSION, manifest.manifest_hash(), assets)
    return lockfile.validated(new, f"the lock resolved from {manifest.source}")


class _Signature(NamedTuple):
    spec: SignatureSpec
    file: LockedFile
    fetched: Fetched


def _fetch_signatures(
    manifest: Manifest, assets: tuple[LockedAsset, ...], client: HubClient
) -> dict[str, _Signature]:
    """The signature file of each signed asset, downloaded (bounded) and checked against
    its listed digest."""
    found: dict[str, _Signature] = {}
    for asset, locked in zip(manifest.assets, assets, strict=True):
        spec = asset.signature
        if spec is None or not locked.sources:
            continue
        src = locked.sources[0]
        file = next(f for f in src.files if f.path == spec.path)  # match_files saw it
        here = where(src.repo_id, src.repo_type, src.commit, file.path)
        if file.size is not None and file.size > oms.MAX_SIGNATURE_BYTES:
            raise IntegrityError(
                "the signature file is larger than modelctl reads",
                where=here,
                expected=f"at most {oms.MAX_SIGNATURE_BYTES} bytes",
                actual=f"{file.size} bytes",
                hint="a signature is a few kB per thousand files: this one is not a signature",
            )
        fetched = client.fetch_checked(
            src.repo_id, src.repo_type, src.commit, file, oms.MAX_SIGNATURE_BYTES
        )
        found[asset.name] = _Signature(spec, file, fetched)
    return found


def _checked_signature(asset: LockedAsset, sig: _Signature, base: Path) -> LockedAsset:
    """The asset with its signature checked: the signature verifies as the manifest says
    to trust it, and covers every file locked from the asset's repo with the same
    SHA-256. Raises IntegrityError (exit 4) naming the file and what differs."""
    src = asset.sources[0]

    def here(path: str) -> str:
        return f"{asset.name}: " + where(src.repo_id, src.repo_type, src.commit, path)

    assert sig.fetched.data is not None
    signed = oms.verify(sig.fetched.data, sig.spec, base, here(sig.spec.path))
    oms.check_covered(signed, src.files, sig.spec.path, here)
    locked = LockedSignature(sig.spec.path, sig.fetched.sha256, sig.spec.method, signed.identity)
    return replace(asset, signature=locked)


def _with_sha256(
    assets: tuple[LockedAsset, ...],
    previous: Lock | None,
    client: HubClient,
    fetched: dict[Digest, Digest],
) -> tuple[LockedAsset, ...]:
    """Every regular file with its SHA-256: already ``fetched`` (blob id -> SHA-256), from
    the previous lock (same blob id), or downloaded and hashed once per blob id."""
    known: dict[Digest, Digest] = dict(fetched)
    for a in previous.assets if previous else ():
        for s in a.sources:
            for f in s.files:
                if f.sha256 is not None and f.digest.algorithm != "sha256":
                    known[f.digest] = f.sha256

    def hashed(src: LockedSource, f: LockedFile) -> LockedFile:
        if f.digest.algorithm == "sha256":
            return f
        if f.digest not in known:
            got = client.fetch_checked(src.repo_id, src.repo_type, src.commit, f, 0)
            known[f.digest] = got.sha256
        return replace(f, sha256=known[f.digest])

    return tuple(
        replace(
            a,
            sources=tuple(
                replace(s, files=tuple(hashed(s, f) for f in s.files)) for s in a.sources
            ),
        )
        for a in assets
    )


def _pinned_commits(lock: Lock) -> dict[SourceKey, str]:
    return {src.key: src.commit for a in lock.assets for src in a.sources}


def _lock_asset(
    asset: Asset, snapshots: dict[SourceKey, RepoSnapshot], client: HubClient
) -> LockedAsset:
    sources: tuple[LockedSource, ...] = ()
    if asset.declares_files:
        sources = tuple(_lock_source(asset, s, snapshots[s.key], client) for s in asset.sources)
    return LockedAsset(asset.name, asset.kind, asset.enabled, asset.spec_hash(), sources)


def _lock_source(asset: Asset, src: Source, snap: RepoSnapshot, client: HubClient) -> LockedSource:
    chosen: dict[str, LockedFile] = {}
    for request in src.requests:
        for remote in match_files(request, snap, asset):
            if remote.path in chosen:
                continue  # the first request naming a file decides its role
            chosen[remote.path] = _locked_file(remote, request, snap, client)
    files = tuple(sorted(chosen.values(), key=lambda f: f.path))
    return LockedSource(src.repo_id, src.repo_type, src.revision, snap.commit, files)


def match_files(request: FileRequest, snap: RepoSnapshot, asset: Asset) -> list[RemoteFile]:
    """Files of ``snap`` named by ``request``; an exact path or glob matching none is an error."""
    here = where(snap.repo_id, snap.repo_type, snap.commit)
    if request.is_glob:
        found = [f for f in snap.files if fnmatchcase(f.path, request.pattern)]
        if not found:
            raise ResolveError(
                f"glob {request.pattern!r} of asset {asset.name!r} matches no file",
                where=f"{asset.line} ({here})",
                hint="fix the pattern; the repo has: " + _sample(snap),
            )
        return found
    found = [f for f in snap.files if f.path == request.pattern]
    if not found and request.role == ROLE_SIGNATURE:
        raise IntegrityError(
            f"the signature the manifest requires for asset {asset.name!r} is not in the repo",
            where=f"{asset.line} ({here}:{request.pattern})",
            expected=f"an OpenSSF Model Signing signature at {request.pattern}",
            actual="no such file at this commit",
            hint="the publisher did not sign this revision (or the mirror dropped the "
            "signature): do not use it unsigned; fix signature.path if it lives elsewhere",
        )
    if not found:
        raise ResolveError(
            f"file {request.pattern!r} of asset {asset.name!r} is not in the repo",
            where=f"{asset.line} ({here}:{request.pattern})",
            hint="fix the path; the repo has: " + _sample(snap),
        )
    return found


def _sample(snap: RepoSnapshot, limit: int = 8) -> str:
    names = sorted(f.path for f in snap.files)
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(no files)"


def _locked_file(
    remote: RemoteFile, request: FileRequest, snap: RepoSnapshot, client: HubClient
) -> LockedFile:
    here = where(snap.repo_id, snap.repo_type, snap.commit, remote.path)
    check_relpath(remote.path, where=here)
    if remote.digest is None or remote.size is None:
        # The listing lacked metadata (some mirrors): ask for this one file.
        head = client.file_metadata(snap.repo_id, snap.repo_type, snap.commit, remote.path)
        remote = RemoteFile(
            remote.path,
            remote.size if remote.size is not None else head.size,
            remote.digest or head.digest,
        )
    if remote.digest is None:
        raise ResolveError(
            "the Hub reports no digest for this file, so its bytes could never be verified",
            where=here,
            hint="lock against the Hub or a mirror that reports file hashes",
        )
    return LockedFile(remote.path, remote.size, remote.digest, request.role)
