"""The Hub boundary: what lock needs from a Hub, and its huggingface_hub implementation.

``HubClient`` is the seam (a protocol); ``HfHubClient`` talks to any Hub-compatible
endpoint through huggingface_hub. Every huggingface_hub / HTTP exception is translated
here into a :mod:`modelctl.errors` error naming ``repo@revision[:path]``.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

import httpx2
import huggingface_hub as hf
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    get_session,
    hf_raise_for_status,
)

from modelctl.digest import Digest
from modelctl.errors import (
    AuthError,
    HubResponseError,
    ModelctlError,
    NetworkError,
    OfflineError,
    ResolveError,
)
from modelctl.hubjson import (
    MAX_FILE_SIZE,
    MAX_INFO_BYTES,
    RemoteFile,
    RepoSnapshot,
    parse_repo_info,
    shown,
)
from modelctl.types import RepoType
from modelctl.types import repo_where as where

# What huggingface_hub and its HTTP client raise for Hub and network failures.
HUB_ERRORS: tuple[type[BaseException], ...] = (
    hf_errors.HfHubHTTPError,
    hf_errors.OfflineModeIsEnabled,
    hf_errors.HFValidationError,
    httpx2.HTTPError,
    OSError,
)


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

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        offline: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._offline = offline
        self._timeout = timeout

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        """``GET /api/{models|datasets}/{repo}/revision/{rev}?blobs=true``, as
        ``model_info(files_metadata=True)`` sends it, parsed by :mod:`modelctl.hubjson`
        (huggingface_hub's own parser raises KeyError/TypeError on malformed answers)."""
        self._refuse_offline(repo_id, repo_type, revision)
        here = where(repo_id, repo_type, revision)
        url = f"{self.endpoint}/api/{repo_type}s/{repo_id}/revision/{quote(revision, safe='')}"
        try:
            body = self._get_capped(url, {"blobs": "true"}, here)
        except HUB_ERRORS as exc:
            raise translate(exc, here, self.endpoint) from exc
        return parse_repo_info(body, repo_id, repo_type, revision, self.endpoint)

    def _get_capped(self, url: str, params: dict[str, str], here: str) -> bytes:
        """The body of a GET, refused past MAX_INFO_BYTES; HTTP errors raised as
        huggingface_hub raises them (typed by ``X-Error-Code``)."""
        headers = {"user-agent": "modelctl"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        with get_session().stream(
            "GET", url, params=params, headers=headers, timeout=self._timeout
        ) as resp:
            chunks: list[bytes] = []
            received = 0
            for chunk in resp.iter_bytes():
                received += len(chunk)
                if received > MAX_INFO_BYTES:
                    raise HubResponseError(
                        "the Hub's repo metadata is larger than modelctl reads",
                        where=here,
                        expected=f"at most {MAX_INFO_BYTES} bytes",
                        actual=f"more than {MAX_INFO_BYTES} bytes",
                        hint=f"check that {self.endpoint} is a Hugging Face Hub or mirror",
                    )
                chunks.append(chunk)
            body = b"".join(chunks)
            if resp.status_code >= 400:
                # hf_raise_for_status reads the body for its message: hand it a decoded copy.
                kept = [
                    (k, v)
                    for k, v in resp.headers.multi_items()
                    if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
                ]
                hf_raise_for_status(
                    httpx2.Response(
                        resp.status_code, headers=kept, content=body, request=resp.request
                    )
                )
            elif resp.status_code != 200:
                raise HubResponseError(
                    f"the Hub answered HTTP {resp.status_code} to a metadata request",
                    where=here,
                    expected="HTTP 200 with the repo's metadata",
                    actual=f"HTTP {resp.status_code}",
                    hint=f"check that {self.endpoint} is a Hugging Face Hub or mirror",
                )
        return body

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
        here = where(repo_id, repo_type, commit, path)
        if meta.size is not None and not 0 <= meta.size <= MAX_FILE_SIZE:
            raise HubResponseError(
                "the Hub announced an impossible file size",
                where=here,
                expected=f"a size from 0 to {MAX_FILE_SIZE} (X-Linked-Size / Content-Length)",
                actual=shown(meta.size),
                hint=f"check that {self.endpoint} is a Hugging Face Hub or mirror",
            )
        digest = Digest.from_etag(meta.etag) if meta.etag else None
        return RemoteFile(path, meta.size, digest)

    def _refuse_offline(self, repo_id: str, repo_type: str, revision: str) -> None:
        if self._offline:
            raise OfflineError(
                "offline mode: cannot ask the Hub for repo metadata",
                where=where(repo_id, repo_type, revision),
                hint="run without --offline / HF_HUB_OFFLINE=1, or use an existing lockfile",
            )


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
