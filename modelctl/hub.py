"""The Hub boundary: what lock needs from a Hub, and its huggingface_hub implementation.

``HubClient`` is the seam (a protocol); ``HfHubClient`` talks to any Hub-compatible
endpoint through huggingface_hub. Every huggingface_hub / HTTP exception is translated
here into a :mod:`modelctl.errors` error naming ``repo@revision[:path]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx2
import huggingface_hub as hf
from huggingface_hub import errors as hf_errors

from modelctl.digest import Digest
from modelctl.errors import (
    AuthError,
    ModelctlError,
    NetworkError,
    OfflineError,
    ResolveError,
)
from modelctl.types import RepoType, is_commit
from modelctl.types import repo_where as where

# What huggingface_hub and its HTTP client raise for Hub and network failures.
HUB_ERRORS: tuple[type[BaseException], ...] = (
    hf_errors.HfHubHTTPError,
    hf_errors.OfflineModeIsEnabled,
    hf_errors.HFValidationError,
    httpx2.HTTPError,
    OSError,
)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    digest: Digest | None


@dataclass(frozen=True)
class RepoSnapshot:
    """A repo at one commit: every file with its size and digest (where known)."""

    repo_id: str
    repo_type: RepoType
    commit: str
    files: tuple[RemoteFile, ...]


class HubClient(Protocol):
    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        """One metadata request: the commit and every file's size and digest."""
        ...

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        """Fallback when the listing lacks sizes or digests: one HEAD for one file."""
        ...


class HfHubClient:
    """HubClient over huggingface_hub's HfApi, against ``endpoint``."""

    def __init__(self, endpoint: str, token: str | None = None, offline: bool = False) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._api = hf.HfApi(endpoint=self.endpoint, token=token or False)
        self._token = token
        self._offline = offline

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        self._refuse_offline(repo_id, repo_type, revision)
        try:
            info: hf.ModelInfo | hf.DatasetInfo
            if repo_type == "dataset":
                info = self._api.dataset_info(repo_id, revision=revision, files_metadata=True)
            else:
                info = self._api.model_info(repo_id, revision=revision, files_metadata=True)
        except HUB_ERRORS as exc:
            raise translate(exc, where(repo_id, repo_type, revision), self.endpoint) from exc
        commit = info.sha
        if not is_commit(commit):
            raise ResolveError(
                "the Hub did not report a valid commit id for this revision",
                where=where(repo_id, repo_type, revision),
                expected="a commit id of 40 lower-case hex characters",
                actual=shown(commit),
                hint="check that the endpoint is a Hugging Face Hub (or a compatible mirror)",
            )
        files = tuple(_remote_file(s) for s in (info.siblings or ()))
        return RepoSnapshot(repo_id, repo_type, commit, files)

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        self._refuse_offline(repo_id, repo_type, commit)
        url = hf.hf_hub_url(
            repo_id, path, repo_type=repo_type, revision=commit, endpoint=self.endpoint
        )
        try:
            meta = hf.get_hf_file_metadata(url, token=self._token or False)
        except HUB_ERRORS as exc:
            raise translate(exc, where(repo_id, repo_type, commit, path), self.endpoint) from exc
        digest = Digest.from_etag(meta.etag) if meta.etag else None
        return RemoteFile(path, meta.size, digest)

    def _refuse_offline(self, repo_id: str, repo_type: str, revision: str) -> None:
        if self._offline:
            raise OfflineError(
                "offline mode: cannot ask the Hub for repo metadata",
                where=where(repo_id, repo_type, revision),
                hint="run without --offline / HF_HUB_OFFLINE=1, or use an existing lockfile",
            )


def shown(value: object, limit: int = 80) -> str:
    """A server-sent value as it may appear in a message: its repr, cut to ``limit``."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _remote_file(sibling: hf.hf_api.RepoSibling) -> RemoteFile:
    if sibling.lfs is not None:
        lfs = sibling.lfs
        sha = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        size = lfs.get("size") if isinstance(lfs, dict) else getattr(lfs, "size", None)
        digest = _try_digest("sha256", sha)
        return RemoteFile(sibling.rfilename, size if size is not None else sibling.size, digest)
    return RemoteFile(sibling.rfilename, sibling.size, _try_digest("gitsha1", sibling.blob_id))


def _try_digest(algorithm: str, hexdigest: object) -> Digest | None:
    if not isinstance(hexdigest, str):
        return None
    try:
        return Digest(algorithm, hexdigest.lower())
    except ValueError:
        return None


def translate(exc: BaseException, where_: str, endpoint: str) -> ModelctlError:
    """Map a huggingface_hub / HTTP exception to a modelctl error with a hint."""
    if isinstance(exc, ModelctlError):
        return exc
    if isinstance(exc, hf_errors.GatedRepoError) or _status(exc) in (401, 403):
        return AuthError(
            "the Hub refused access (gated or private repo, or a bad token)",
            where=where_,
            hint="set HF_TOKEN to a token with access to this repo",
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return ResolveError(
            "repository not found",
            where=where_,
            hint=f"check the repo id in the manifest (endpoint {endpoint})",
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ResolveError(
            "revision not found",
            where=where_,
            hint="check the branch, tag or commit in the manifest's `revision:`",
        )
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return ResolveError(
            "file not found in the repo", where=where_, hint="check the file path in the manifest"
        )
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return OfflineError(
            "offline mode (HF_HUB_OFFLINE=1) forbids this request",
            where=where_,
            hint="unset HF_HUB_OFFLINE, or use files already synced",
        )
    status = _status(exc)
    detail = f"HTTP {status}" if status else f"{type(exc).__name__}: {exc}"
    return NetworkError(
        f"the Hub request failed ({detail})",
        where=where_,
        hint=f"check the network and the endpoint {endpoint} (HF_ENDPOINT or `endpoint:`)",
    )


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None
