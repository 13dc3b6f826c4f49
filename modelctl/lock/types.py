"""Plain frozen values shared by every layer: what the manifest asks for, what the lock holds.

No I/O here. Ordering is explicit (tuples sorted by name/path) so that everything built
from these values, the lockfile above all, is deterministic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeGuard

from modelctl.errors import InputError
from modelctl.lock.digest import Digest

if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from modelctl.values import dataclass, field

RepoType = Literal["model", "dataset"]
REPO_TYPES: tuple[RepoType, ...] = ("model", "dataset")

# Roles say what a file is for; the runtime loader's typed accessors rely on them.
ROLE_FILE = "file"
ROLE_MODEL = "model"
ROLE_TOKENIZER = "tokenizer"
ROLE_VOICE = "voice"
ROLE_SIGNATURE = "signature"  # an OpenSSF Model Signing bundle (model.sig)

_GLOB_CHARS = frozenset("*?[")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def is_commit(value: object) -> TypeGuard[str]:
    """A git commit id as the Hub reports it: exactly 40 lower-case hex characters.

    Commits name folders (``snapshots/<commit>``), so anything else from a server is refused
    before it reaches a path.
    """
    return isinstance(value, str) and _COMMIT_RE.fullmatch(value) is not None


def repo_where(repo_id: str, repo_type: str, revision: str, path: str | None = None) -> str:
    """How errors name a place on the Hub: ``[datasets/]org/name@revision[:path]``."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{prefix}{repo_id}@{revision}" + (f":{path}" if path is not None else "")


def canonical_json(value: Any) -> str:
    """The one JSON form hashed anywhere: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_of(value: Any) -> str:
    import hashlib  # here: OpenSSL's hashlib costs ~2 ms of a warm start-up, which never hashes

    return "sha256:" + hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FileRequest:
    """One entry of an asset's file list: an exact path or a glob, and its role."""

    pattern: str
    role: str = ROLE_FILE

    @property
    def is_glob(self) -> bool:
        return any(c in _GLOB_CHARS for c in self.pattern)


@dataclass(frozen=True)
class Source:
    """Files requested from one repo at one revision (branch, tag or commit)."""

    repo_id: str
    repo_type: RepoType
    revision: str
    requests: tuple[FileRequest, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo_type, self.repo_id, self.revision)


SIGNATURE_DEFAULT_PATH = "model.sig"


@dataclass(frozen=True)
class SignatureSpec:
    """What the manifest's ``signature:`` asks: an OpenSSF Model Signing bundle at ``path``
    in the asset's repo, trusted by exactly one of: a public key file, a certificate chain
    (PEM files), or a Sigstore identity and its OIDC issuer (keyless). Key and chain
    paths are relative to the manifest's folder."""

    path: str = SIGNATURE_DEFAULT_PATH
    key: str | None = None
    certificate_chain: tuple[str, ...] = ()
    identity: str | None = None
    issuer: str | None = None

    @property
    def method(self) -> str:
        if self.key is not None:
            return "key"
        if self.certificate_chain:
            return "certificate"
        return "sigstore"

    def spec(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "method": self.method}
        if self.key is not None:
            data["key"] = self.key
        if self.certificate_chain:
            data["certificate_chain"] = list(self.certificate_chain)
        if self.identity is not None:
            data["identity"] = self.identity
            data["issuer"] = self.issuer
        return data


@dataclass(frozen=True)
class Asset:
    """A named asset after preset expansion. ``kind`` is kept for the runtime loader."""

    name: str
    kind: str
    enabled: bool
    sources: tuple[Source, ...]
    line: str = field(default="", compare=False)  # file:line of its declaration
    signature: SignatureSpec | None = None  # checked against sources[0], the asset's repo

    def spec(self) -> dict[str, Any]:
        """What the lock must match: everything that decides which files are locked (and,
        when the asset is signed, how the signature is trusted)."""
        spec: dict[str, Any] = {
            "kind": self.kind,
            "enabled": self.enabled,
            "sources": [
                {
                    "repo": s.repo_id,
                    "repo_type": s.repo_type,
                    "revision": s.revision,
                    "files": [[r.pattern, r.role] for r in s.requests],
                }
                for s in self.sources
            ],
        }
        if self.signature is not None:  # absent otherwise: unsigned assets keep their hash
            spec["signature"] = self.signature.spec()
        return spec

    def spec_hash(self) -> str:
        return sha256_of(self.spec())

    @property
    def declares_files(self) -> bool:
        return self.enabled and any(s.requests for s in self.sources)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest; ``assets`` sorted by name."""

    source: str
    endpoint: str | None
    assets: tuple[Asset, ...]

    def asset(self, name: str) -> Asset | None:
        return next((a for a in self.assets if a.name == name), None)

    def manifest_hash(self) -> str:
        return sha256_of({"version": 1, "assets": {a.name: a.spec() for a in self.assets}})


@dataclass(frozen=True)
class LockedFile:
    """One locked file. ``digest`` is what the Hub names the content by (sha256 for LFS
    files, the git blob id for regular ones); ``sha256`` is the file's SHA-256 when the
    digest is not one already (a regular file: hashed at lock time; ``None`` in a lock
    written before modelctl recorded it)."""

    path: str
    size: int | None
    digest: Digest
    role: str = ROLE_FILE
    sha256: Digest | None = None

    @property
    def content_sha256(self) -> Digest | None:
        """The file's SHA-256, whichever field holds it."""
        return self.digest if self.digest.algorithm == "sha256" else self.sha256


@dataclass(frozen=True)
class LockedSource:
    repo_id: str
    repo_type: RepoType
    revision: str  # as requested in the manifest
    commit: str  # what it resolved to
    files: tuple[LockedFile, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo_type, self.repo_id, self.revision)


@dataclass(frozen=True)
class LockedSignature:
    """The signature checked at lock time: the file (also a locked file of the asset's
    repo, so sync and verify check its bytes), its SHA-256, how it was trusted and the
    identity it was checked against."""

    path: str
    sha256: Digest
    method: str  # key | certificate | sigstore
    identity: str


@dataclass(frozen=True)
class LockedAsset:
    name: str
    kind: str
    enabled: bool
    spec_hash: str
    sources: tuple[LockedSource, ...]
    signature: LockedSignature | None = None


class FileRef(NamedTuple):
    """One locked file of one asset: the unit that plan, sync and runtime work on."""

    asset: str
    repo_type: RepoType
    repo_id: str
    commit: str
    path: str
    size: int | None
    digest: Digest
    role: str

    def where(self) -> str:
        """``[datasets/]org/name@commit:path``."""
        return repo_where(self.repo_id, self.repo_type, self.commit, self.path)

    def label(self) -> str:
        """How every message names this file: ``asset: [datasets/]org/name@commit:path``."""
        return f"{self.asset}: {self.where()}"


@dataclass(frozen=True)
class Lock:
    version: int
    manifest_hash: str
    assets: tuple[LockedAsset, ...]

    def asset(self, name: str) -> LockedAsset | None:
        return next((a for a in self.assets if a.name == name), None)

    def select(self, names: Collection[str]) -> Lock:
        """The sub-lock of the named assets (``--asset``); the whole lock when none is named.

        One lock, a subset per service image: plan, sync, verify, status and bundle work on
        the sub-lock alone. An unknown name is an InputError listing the locked ones.
        """
        if not names:
            return self
        known = [a.name for a in self.assets]
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise InputError(
                f"--asset names no locked asset: {', '.join(unknown)}",
                expected="one of: " + (", ".join(known) or "(the lock has no assets)"),
                hint="use asset names from the lockfile (`modelctl status` lists them)",
            )
        wanted = set(names)
        return Lock(
            self.version, self.manifest_hash, tuple(a for a in self.assets if a.name in wanted)
        )

    def files(self) -> Iterator[FileRef]:
        """Every locked file of every enabled asset, in lockfile order."""
        for asset in self.assets:
            if not asset.enabled:
                continue
            for src in asset.sources:
                for f in src.files:
                    yield FileRef(
                        asset.name,
                        src.repo_type,
                        src.repo_id,
                        src.commit,
                        f.path,
                        f.size,
                        f.digest,
                        f.role,
                    )
