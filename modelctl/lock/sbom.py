"""The lock as a CycloneDX 1.6 SBOM (JSON): one component per locked file.

- ``purl``: ``pkg:huggingface/<org>/<name>@<commit>#<path>`` (the purl spec's huggingface
  type: namespace = org, version = the commit; the file is the purl's subpath). Dataset
  repos add ``?repository_url=https://huggingface.co/datasets``.
- ``hashes``: the file's SHA-256, for every file: LFS files' lock digest, regular files'
  ``sha256`` (hashed at lock time). A regular file's lock digest is a git blob id
  (``sha1("blob <size>\\0" + content)``), which is not the SHA-1 of the file, so it is
  given only as the ``modelctl:digest`` and ``modelctl:git_blob`` properties, never as a
  hash. A lock written before modelctl recorded regular files' SHA-256 gives those files
  no ``hashes`` (run ``modelctl lock`` to add them).
- ``properties``: ``modelctl:asset`` (once per asset that locks the file),
  ``modelctl:role``, ``modelctl:size`` (bytes), ``modelctl:digest``, ``modelctl:revision``,
  and ``modelctl:git_blob`` (the git blob id, regular files only).
- ``type``: ``machine-learning-model`` for a model file, ``file`` for tokenizers, voices
  and other files.

Deterministic: no timestamp, and the serial number is a UUID derived from the lockfile's
bytes, so the same lock always gives the same SBOM.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import quote

from modelctl._version import __version__
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest
from modelctl.lock.types import ROLE_MODEL, FileRef, Lock

SPEC_VERSION = "1.6"


def purl(repo_id: str, repo_type: str, commit: str, path: str | None = None) -> str:
    """``pkg:huggingface/<org>/<name>@<commit>[?repository_url=...][#<path>]``."""
    parts = [quote(p, safe="") for p in repo_id.split("/")]
    text = "pkg:huggingface/" + "/".join(parts) + "@" + quote(commit.lower(), safe="")
    if repo_type == "dataset":
        text += "?repository_url=" + quote("https://huggingface.co/datasets", safe="")
    if path:
        text += "#" + "/".join(quote(seg, safe="") for seg in path.split("/"))
    return text


def cyclonedx(lock: Lock) -> str:
    """The SBOM as JSON text (indented, keys in a fixed order, newline at the end)."""
    return json.dumps(cyclonedx_data(lock), indent=2, ensure_ascii=False) + "\n"


def cyclonedx_data(lock: Lock) -> dict[str, Any]:
    lock_text = lockfile.render(lock)
    lock_sha = hashlib.sha256(lock_text.encode("utf-8")).hexdigest()
    by_file: dict[tuple[str, str, str, str], list[FileRef]] = {}
    for ref in lock.files():
        by_file.setdefault((ref.repo_type, ref.repo_id, ref.commit, ref.path), []).append(ref)
    revisions: dict[tuple[str, str, str], str] = {
        (s.repo_type, s.repo_id, s.commit): s.revision for a in lock.assets for s in a.sources
    }
    sha256s: dict[tuple[str, str, str, str], Digest] = {
        (s.repo_type, s.repo_id, s.commit, f.path): sha
        for a in lock.assets
        for s in a.sources
        for f in s.files
        if (sha := f.content_sha256) is not None
    }
    components = [
        _component(refs, revisions[key[:3]], sha256s.get(key))
        for key, refs in sorted(by_file.items())
    ]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"modelctl:{lock_sha}")),
        "version": 1,
        "metadata": {
            "tools": {
                "components": [{"type": "application", "name": "modelctl", "version": __version__}]
            },
            "properties": [
                {"name": "modelctl:lock_sha256", "value": f"sha256:{lock_sha}"},
                {"name": "modelctl:manifest", "value": lock.manifest_hash},
            ],
        },
        "components": components,
    }


def _component(refs: list[FileRef], revision: str, sha256: Digest | None) -> dict[str, Any]:
    ref = refs[0]
    ident = purl(ref.repo_id, ref.repo_type, ref.commit, ref.path)
    component: dict[str, Any] = {
        "type": "machine-learning-model" if ref.role == ROLE_MODEL else "file",
        "bom-ref": ident,
        "group": ref.repo_id,
        "name": ref.path,
        "version": ref.commit,
        "purl": ident,
    }
    if sha256 is not None:
        component["hashes"] = [{"alg": "SHA-256", "content": sha256.hex}]
    props = [{"name": "modelctl:asset", "value": a} for a in sorted({r.asset for r in refs})]
    props += [
        {"name": "modelctl:role", "value": ref.role},
        {"name": "modelctl:digest", "value": str(ref.digest)},
        {"name": "modelctl:revision", "value": revision},
    ]
    if ref.digest.algorithm == "gitsha1":
        props.append({"name": "modelctl:git_blob", "value": ref.digest.hex})
    if ref.size is not None:
        props.append({"name": "modelctl:size", "value": str(ref.size)})
    component["properties"] = props
    return component
