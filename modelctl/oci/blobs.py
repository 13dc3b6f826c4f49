"""Blobs: is one there, read a small one whole (config, lockfile), mount one from another
repository. Large blobs are downloaded by :mod:`modelctl.transfer.fetch` (see
:mod:`modelctl.oci.source`) and uploaded by :mod:`modelctl.oci.upload`."""

from __future__ import annotations

import contextlib
import hashlib
from urllib.parse import urlencode

from modelctl.errors import AuthError, IntegrityError, NetworkError
from modelctl.oci.auth import registry_message
from modelctl.oci.registry import Registry


def has_blob(registry: Registry, digest: str) -> bool:
    answer = registry.request(
        "HEAD", registry.blob_url(digest), actions="pull,push", what="a blob check"
    )
    return answer.status == 200


def get_small_blob(registry: Registry, digest: str, limit: int) -> bytes:
    """A small blob, read whole (at most ``limit`` bytes: the caller's bound, e.g. the
    lockfile bound) and checked against its digest. A redirect to storage elsewhere (S3)
    is followed without the credentials."""
    where = f"{registry.where}@{digest}"
    answer = registry.request(
        "GET", registry.blob_url(digest), what=f"the blob {digest}", limit=limit, follow=True
    )
    if answer.status != 200:
        raise NetworkError(
            f"the registry answered HTTP {answer.status} for a blob "
            f"({registry_message(answer.body)})",
            where=where,
        )
    actual = "sha256:" + hashlib.sha256(answer.body).hexdigest()
    if actual != digest:
        raise IntegrityError(
            "a blob the registry sent does not match its digest",
            where=where,
            expected=digest,
            actual=actual,
        )
    return answer.body


def mount(registry: Registry, digest: str, source: str) -> bool:
    """Cross-repository mount from ``source`` (same registry); True if mounted."""
    uploads = registry.url(f"/v2/{registry.name}/blobs/uploads/")
    answer = registry.request(
        "POST",
        f"{uploads}?{urlencode({'mount': digest, 'from': source})}",
        body=b"",
        actions="pull,push",
        extra_scopes=(f"repository:{source}:pull",),
        what="a blob mount",
    )
    if answer.status == 201:
        return True
    if answer.status == 202 and answer.header("Location"):
        # Not mounted: the registry opened an upload session instead; close it.
        cancel(registry, registry.location(answer.header("Location"), uploads, "an upload"))
    return False


def cancel(registry: Registry, location: str) -> None:
    """Close an upload session (best effort: it expires on the registry anyway)."""
    with contextlib.suppress(NetworkError, AuthError):
        registry.request("DELETE", location, actions="pull,push", what="an upload cancel")
