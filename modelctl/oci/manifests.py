"""Manifests: read one by tag or digest (checked against a pinned digest), write one."""

from __future__ import annotations

import hashlib
from typing import Final

from modelctl.errors import IntegrityError, NetworkError, ResolveError
from modelctl.oci.auth import registry_message
from modelctl.oci.reference import Reference
from modelctl.oci.registry import MAX_ANSWER_BYTES, Registry

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_MANIFESTS: Final = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MAX_MANIFEST_BYTES: Final = MAX_ANSWER_BYTES  # the distribution spec's limit registries apply


def get_manifest(registry: Registry, ref: Reference) -> tuple[bytes, str, str]:
    """``(bytes, media type, sha256 digest)`` of the manifest ``ref`` names; checks a
    pinned digest. A redirect (a registry serving manifests from elsewhere) is followed;
    credentials go along only on the registry's own origin."""
    version = ref.version
    answer = registry.request(
        "GET",
        registry.url(f"/v2/{registry.name}/manifests/{version}"),
        {"Accept": ACCEPT_MANIFESTS},
        what=f"the manifest {version}",
        limit=MAX_MANIFEST_BYTES,
        follow=True,
    )
    if answer.status == 404:
        raise ResolveError(
            f"the registry has no manifest {version!r} in this repository "
            f"({registry_message(answer.body)})",
            where=str(ref),
            hint="check the name and tag (push it first with `modelctl push`)",
        )
    if answer.status != 200:
        raise NetworkError(
            f"the registry answered HTTP {answer.status} for the manifest "
            f"({registry_message(answer.body)})",
            where=str(ref),
        )
    digest = "sha256:" + hashlib.sha256(answer.body).hexdigest()
    if ref.digest is not None and digest != ref.digest:
        raise IntegrityError(
            "the manifest the registry sent does not match the digest asked for",
            where=str(ref),
            expected=ref.digest,
            actual=digest,
            hint="the registry (or something between) altered it: do not use it",
        )
    media = (answer.header("Content-Type") or "").split(";")[0].strip()
    return answer.body, media, digest


def put_manifest(registry: Registry, tag: str, body: bytes, media_type: str) -> str:
    """Upload a manifest under ``tag``; returns its digest."""
    answer = registry.request(
        "PUT",
        registry.url(f"/v2/{registry.name}/manifests/{tag}"),
        {"Content-Type": media_type},
        body,
        actions="pull,push",
        what="the manifest upload",
    )
    if answer.status != 201:
        raise NetworkError(
            f"the registry refused the manifest (HTTP {answer.status}: "
            f"{registry_message(answer.body)})",
            where=f"{registry.where}:{tag}",
        )
    return "sha256:" + hashlib.sha256(body).hexdigest()
