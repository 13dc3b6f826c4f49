"""The Hub boundary: what lock needs from a Hub, and its huggingface_hub implementation.

``HubClient`` is the seam (a protocol); ``HfHubClient`` talks to any Hub-compatible
endpoint through huggingface_hub's HTTP session. Every huggingface_hub / HTTP exception
is translated here (:mod:`modelctl.hub.refusals`) into a :mod:`modelctl.errors` error naming
``repo@revision[:path]``.

Requests per (repo, revision), as ``snapshot_download`` makes them in huggingface_hub 2.x:
one repo-info GET (the commit; its ``siblings`` may be cut short on large repos) and the
paginated tree listing at that commit (``?recursive=true``, 1,000 entries, files and
folders, per page, pages linked by ``Link: <...>; rel="next"``). So a lock costs two
requests per repo up to 1,000 entries, one more per further 1,000. A server without the
tree endpoint (some mirrors) is asked for the repo info with ``blobs=true`` instead.
Every request goes through :mod:`modelctl.transfer.retry`'s policy (408/429/5xx, dropped
connections; ``Retry-After`` and ``RateLimit`` waits honoured), and each wait is told to
``on_wait``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, TypeVar
from urllib.parse import quote

import httpx2
import huggingface_hub as hf
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    get_session,
    hf_raise_for_status,
)

from modelctl.errors import HubResponseError, IntegrityError, ModelctlError, OfflineError
from modelctl.hub.answers import (
    MAX_FILE_SIZE,
    MAX_INFO_BYTES,
    RemoteFile,
    RepoSnapshot,
    check_pinned,
    checked_listing,
    parse_repo_info,
    parse_tree_page,
    shown,
)
from modelctl.hub.refusals import refusal, translate
from modelctl.lock.digest import Digest, new_hasher
from modelctl.lock.types import LockedFile, RepoType
from modelctl.lock.types import repo_where as where
from modelctl.settings import request_headers
from modelctl.transfer.retry import (
    DEFAULT_POLICY,
    RETRY_STATUSES,
    Backoff,
    RetryPolicy,
    ServerWait,
    server_wait,
)
from modelctl.transfer.urls import BadUrl, Url, parse_url

# What huggingface_hub and its HTTP client raise for Hub and network failures.
HUB_ERRORS: tuple[type[BaseException], ...] = (
    hf_errors.HfHubHTTPError,
    hf_errors.OfflineModeIsEnabled,
    hf_errors.HFValidationError,
    httpx2.HTTPError,
    OSError,
)
GET_TIMEOUT_S = 30.0  # at least, for listings (HF_HUB_ETAG_TIMEOUT may raise it)
MAX_TREE_PAGES = 10_000  # 10 million entries: a server linking on past that loops
# A tree answer other than this, with no X-Error-Code: the server has no tree endpoint.
_NO_TREE_STATUSES = frozenset({404, 405, 501})

T = TypeVar("T")


class HubClient(Protocol):
    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        """The commit and every file's size and digest (where known)."""
        ...

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        """Fallback when the listing lacks sizes or digests: one HEAD for one file."""
        ...

    def fetch_checked(
        self, repo_id: str, repo_type: RepoType, commit: str, locked: LockedFile, keep: int
    ) -> Fetched:
        """Download one file at lock time, check its size and digest against ``locked``,
        and return its SHA-256 (and its bytes, when it is at most ``keep`` bytes long;
        a file larger than ``keep`` is refused when ``keep`` > 0)."""
        ...


class Fetched(NamedTuple):
    """A file downloaded and checked at lock time."""

    sha256: Digest
    data: bytes | None  # kept only when asked for (a signature), else None


class _Retry(Exception):
    """An attempt worth repeating; ``final`` is raised if no more attempts are allowed."""

    def __init__(self, reason: str, told: ServerWait | None, final: ModelctlError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.told = told
        self.final = final


class _NoTree(Exception):
    """The server does not serve the tree listing."""


class HfHubClient:
    """HubClient over huggingface_hub's HTTP session, against ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        offline: bool = False,
        timeout: float = 10.0,  # HF_HUB_ETAG_TIMEOUT
        *,
        policy: RetryPolicy = DEFAULT_POLICY,
        on_wait: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        # The hint of every refusal of an answer no Hub or mirror would give.
        self._not_a_hub_hint = f"check that {self.endpoint} is a Hugging Face Hub or mirror"
        self._token = token
        self._offline = offline
        self._timeout = timeout
        self._policy = policy
        self._on_wait = on_wait
        self._sleep = sleep
        self.requests = 0  # metadata requests sent (each attempt counts)

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        """The repo info (``GET /api/{type}s/{repo}/revision/{rev}``) for the commit, then
        every page of the tree listing at that commit, each checked by
        :mod:`modelctl.hub.answers` (huggingface_hub's own parsers raise KeyError/TypeError on
        malformed answers)."""
        self._refuse_offline(repo_id, repo_type, revision)
        here = where(repo_id, repo_type, revision)
        url = f"{self.endpoint}/api/{repo_type}s/{repo_id}/revision/{quote(revision, safe='')}"
        body, _ = self._get(url, {}, here, repo_id, repo_type)
        info = parse_repo_info(body, repo_id, repo_type, revision, self.endpoint)
        check_pinned(revision, info)  # before listing the tree of another commit
        try:
            files = self._tree(repo_id, repo_type, info.commit)
        except _NoTree:
            body, _ = self._get(url, {"blobs": "true"}, here, repo_id, repo_type)
            return parse_repo_info(body, repo_id, repo_type, revision, self.endpoint)
        at = where(repo_id, repo_type, info.commit)
        listed = (f.path for f in info.files)
        return RepoSnapshot(
            repo_id, repo_type, info.commit, checked_listing(files, listed, at, self.endpoint)
        )

    def _tree(self, repo_id: str, repo_type: RepoType, commit: str) -> list[RemoteFile]:
        here = where(repo_id, repo_type, commit)
        url: str | None = f"{self.endpoint}/api/{repo_type}s/{repo_id}/tree/{commit}"
        # As huggingface_hub's list_repo_tree sends it (expand=true would add last-commit
        # data the lock does not need, at 50 entries a page instead of 1,000).
        params = {"recursive": "true", "expand": "false"}
        files: list[RemoteFile] = []
        seen: set[str] = set()
        first = True
        while url is not None:
            if len(seen) >= MAX_TREE_PAGES or url in seen:
                raise HubResponseError(
                    "the Hub's tree listing does not end",
                    where=here,
                    expected=f"at most {MAX_TREE_PAGES} pages, none twice",
                    actual=f"page {len(seen) + 1}: {shown(url)}",
                    hint=self._not_a_hub_hint,
                )
            seen.add(url)
            body, next_url = self._get(url, params, here, repo_id, repo_type, tree=first)
            files += parse_tree_page(body, repo_id, repo_type, commit, self.endpoint)
            url, params, first = self._next_page(next_url, here), {}, False
        return files

    def _next_page(self, link: str | None, here: str) -> str | None:
        """The next page's URL: on the endpoint's own origin, or the token would go along."""
        if link is None:
            return None
        try:
            home = parse_url(self.endpoint, what="the endpoint").origin
            there = parse_url(link, what="the next page's link").origin
        except BadUrl as exc:
            raise HubResponseError(
                f"the Hub's tree listing links to {exc}",
                where=here,
                hint=self._not_a_hub_hint,
            ) from None
        if there != home:
            raise HubResponseError(
                "the Hub's tree listing links to another server",
                where=here,
                expected=f"a next page on {home}",
                actual=shown(link),
                hint="the endpoint misbehaves: modelctl never sends the token elsewhere",
            )
        return link

    def _get(
        self,
        url: str,
        params: dict[str, str],
        here: str,
        repo_id: str,
        repo_type: RepoType,
        *,
        tree: bool = False,
    ) -> tuple[bytes, str | None]:
        """The body of a GET (refused past MAX_INFO_BYTES) and its ``rel="next"`` link,
        with retries."""

        def attempt() -> tuple[bytes, str | None]:
            try:
                return self._get_once(url, params, here, repo_id, repo_type, tree)
            except HUB_ERRORS as exc:
                error = translate(exc, here, self.endpoint, repo_id, repo_type, self._token)
                if isinstance(exc, httpx2.TransportError):
                    raise _Retry(type(exc).__name__, None, error) from exc
                raise error from exc

        return self._with_retries(attempt, here)

    def _get_once(
        self,
        url: str,
        params: dict[str, str],
        here: str,
        repo_id: str,
        repo_type: RepoType,
        tree: bool,
    ) -> tuple[bytes, str | None]:
        headers = request_headers(self._token)
        self.requests += 1
        with get_session().stream(
            "GET",
            url,
            params=params or None,  # {} would drop the query of a next-page link
            headers=headers,
            timeout=max(self._timeout, GET_TIMEOUT_S),
        ) as resp:
            status = resp.status_code
            if status in RETRY_STATUSES:
                told = server_wait(
                    status, resp.headers.get("Retry-After"), resp.headers.get("RateLimit")
                )
                final = refusal(
                    status, resp.headers, here, self.endpoint, repo_id, repo_type, self._token
                )
                raise _Retry(told.why if told else f"HTTP {status}", told, final)
            if tree and status in _NO_TREE_STATUSES and not resp.headers.get("X-Error-Code"):
                raise _NoTree()
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
                        hint=self._not_a_hub_hint,
                    )
                chunks.append(chunk)
            body = b"".join(chunks)
            if status >= 400:
                # hf_raise_for_status reads the body for its message: hand it a decoded copy.
                kept = [
                    (k, v)
                    for k, v in resp.headers.multi_items()
                    if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
                ]
                hf_raise_for_status(
                    httpx2.Response(status, headers=kept, content=body, request=resp.request)
                )
            elif status != 200:
                raise HubResponseError(
                    f"the Hub answered HTTP {status} to a metadata request",
                    where=here,
                    expected="HTTP 200 with the repo's metadata",
                    actual=f"HTTP {status}",
                    hint=self._not_a_hub_hint,
                )
            next_url = resp.links.get("next", {}).get("url")
        return body, next_url

    def _with_retries(self, attempt: Callable[[], T], here: str) -> T:
        backoff = Backoff(self._policy)
        while True:
            try:
                return attempt()
            except _Retry as exc:
                wait = backoff.next(exc.told)
                if wait is None:
                    raise exc.final from None
                if self._on_wait is not None:
                    self._on_wait(f"{here}: waiting {wait:.0f} s before retrying ({exc.reason})")
                self._sleep(wait)

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        self._refuse_offline(repo_id, repo_type, commit)
        here = where(repo_id, repo_type, commit, path)
        url = hf.hf_hub_url(
            repo_id, path, repo_type=repo_type, revision=commit, endpoint=self.endpoint
        )

        def attempt() -> _HeadMeta:
            self.requests += 1
            try:
                return self._head(url, here)
            except HUB_ERRORS as exc:
                error = translate(exc, here, self.endpoint, repo_id, repo_type, self._token)
                response = getattr(exc, "response", None)
                status = getattr(response, "status_code", None)
                if isinstance(exc, httpx2.TransportError):
                    raise _Retry(type(exc).__name__, None, error) from exc
                if response is not None and status in RETRY_STATUSES:
                    told = server_wait(
                        status,
                        response.headers.get("Retry-After"),
                        response.headers.get("RateLimit"),
                    )
                    raise _Retry(told.why if told else f"HTTP {status}", told, error) from exc
                raise error from exc

        meta = self._with_retries(attempt, here)
        if meta.size is not None and not 0 <= meta.size <= MAX_FILE_SIZE:
            raise HubResponseError(
                "the Hub announced an impossible file size",
                where=here,
                expected=f"a size from 0 to {MAX_FILE_SIZE} (X-Linked-Size / Content-Length)",
                actual=shown(meta.size),
                hint=self._not_a_hub_hint,
            )
        digest = Digest.from_etag(meta.etag) if meta.etag else None
        return RemoteFile(path, meta.size, digest)

    def _head(self, url: str, here: str) -> _HeadMeta:
        """A HEAD as huggingface_hub's get_hf_file_metadata sends it, but with our own
        headers (settings.request_headers: its header builder may first contact
        HF_ENDPOINT), following only same-origin redirects (the Hub's redirect to its
        file storage carries the X-Linked-* headers, which win over ETag/Content-Length).
        HTTP errors are raised as huggingface_hub raises them."""
        headers = {**request_headers(self._token), "Accept-Encoding": "identity"}
        session = get_session()
        for _ in range(_MAX_REDIRECTS + 1):
            resp = session.head(url, headers=headers, timeout=self._timeout, follow_redirects=False)
            location = resp.headers.get("Location")
            if resp.is_redirect and location:
                target = self._redirect_target(location, url, here, "a file's metadata request")
                if target.origin == parse_url(url).origin:
                    url = target.text
                    continue
            hf_raise_for_status(resp)
            size = resp.headers.get("X-Linked-Size") or (
                None if resp.is_redirect else resp.headers.get("Content-Length")
            )
            return _HeadMeta(
                _int_or_none(size), resp.headers.get("X-Linked-Etag") or resp.headers.get("ETag")
            )
        raise self._too_many_redirects("a file's metadata", here)

    def fetch_checked(
        self, repo_id: str, repo_type: RepoType, commit: str, locked: LockedFile, keep: int
    ) -> Fetched:
        """GET ``/resolve/<commit>/<path>`` (same-origin redirects keep the token, others
        drop it), hashing while it streams: the size and the locked digest must match
        before the SHA-256 is believed. Retried as every metadata request is."""
        self._refuse_offline(repo_id, repo_type, commit)
        here = where(repo_id, repo_type, commit, locked.path)
        url = hf.hf_hub_url(
            repo_id, locked.path, repo_type=repo_type, revision=commit, endpoint=self.endpoint
        )

        def attempt() -> Fetched:
            self.requests += 1
            try:
                return self._fetch_once(url, here, locked, keep)
            except HUB_ERRORS as exc:
                error = translate(exc, here, self.endpoint, repo_id, repo_type, self._token)
                if isinstance(exc, httpx2.TransportError):
                    raise _Retry(type(exc).__name__, None, error) from exc
                raise error from exc

        return self._with_retries(attempt, here)

    def _fetch_once(self, url: str, here: str, locked: LockedFile, keep: int) -> Fetched:
        headers = {**request_headers(self._token), "Accept-Encoding": "identity"}
        session = get_session()
        for _ in range(_MAX_REDIRECTS + 1):
            with session.stream(
                "GET",
                url,
                headers=headers,
                timeout=max(self._timeout, GET_TIMEOUT_S),
                follow_redirects=False,
            ) as resp:
                location = resp.headers.get("Location")
                if resp.is_redirect and location:
                    target = self._redirect_target(location, url, here, "a file request")
                    if target.origin != parse_url(url).origin:
                        headers.pop("authorization", None)  # no token to another origin
                    url = target.text
                    continue
                if resp.status_code in RETRY_STATUSES:
                    told = server_wait(
                        resp.status_code,
                        resp.headers.get("Retry-After"),
                        resp.headers.get("RateLimit"),
                    )
                    final = HubResponseError(
                        f"the Hub kept answering HTTP {resp.status_code} for a file",
                        where=here,
                        hint="try again later",
                    )
                    raise _Retry(told.why if told else f"HTTP {resp.status_code}", told, final)
                if resp.status_code >= 400:
                    resp.read()
                    hf_raise_for_status(resp)
                if resp.status_code != 200:
                    raise HubResponseError(
                        f"the Hub answered HTTP {resp.status_code} to a file download",
                        where=here,
                        expected="HTTP 200 with the file",
                        actual=f"HTTP {resp.status_code}",
                        hint=self._not_a_hub_hint,
                    )
                return _hash_body(resp.iter_bytes(), here, locked, keep)
        raise self._too_many_redirects("a file", here)

    def _redirect_target(self, location: str, url: str, here: str, request: str) -> Url:
        """The checked target of a redirect the Hub answered ``request`` with."""
        try:
            return parse_url(location, url, what="a redirect Location")
        except BadUrl as exc:
            raise HubResponseError(
                f"the Hub answered {request} with {exc}",
                where=here,
                hint=self._not_a_hub_hint,
            ) from None

    def _too_many_redirects(self, what: str, here: str) -> HubResponseError:
        return HubResponseError(
            f"more than {_MAX_REDIRECTS} redirects for {what}",
            where=here,
            hint=self._not_a_hub_hint,
        )

    def _refuse_offline(self, repo_id: str, repo_type: str, revision: str) -> None:
        if self._offline:
            raise OfflineError(
                "offline mode: cannot ask the Hub for repo metadata",
                where=where(repo_id, repo_type, revision),
                hint="run without --offline / HF_HUB_OFFLINE=1, or use an existing lockfile",
            )


class _HeadMeta(NamedTuple):
    size: int | None
    etag: str | None


_MAX_REDIRECTS = 10
# A regular file whose size the Hub did not report is hashed in memory, up to this size
# (the Hub stores files from 10 MiB on in LFS, which always have a size and a sha256).
UNSIZED_MAX = 256 * 1024 * 1024


def _hash_body(chunks: Iterable[bytes], here: str, locked: LockedFile, keep: int) -> Fetched:
    """Hash a body with the locked digest's algorithm and SHA-256 at once; refuse it as
    soon as it runs past the locked size (or ``keep``), and when it ends short or differs.
    A file of unknown size is held in memory (at most UNSIZED_MAX bytes): a git blob id
    needs the size before the first byte is hashed."""
    if locked.size is None:
        limit, hold = (keep or UNSIZED_MAX), True
    else:
        limit, hold = (min(locked.size, keep) if keep else locked.size), bool(keep)
    check = new_hasher(locked.digest.algorithm, locked.size) if locked.size is not None else None
    sha = new_hasher("sha256")
    kept: list[bytes] = []
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > limit:
            signature = bool(keep) and (locked.size is None or locked.size > keep)
            raise IntegrityError(
                "the file is larger than " + ("modelctl reads here" if signature else "locked"),
                where=here,
                expected=f"at most {limit} bytes",
                actual=f"more than {limit} bytes",
                hint="a signature file is a few kB: this one is not a signature"
                if signature
                else "the server sends other bytes than its listing says; try again later",
            )
        if check is not None:
            check.update(chunk)
        sha.update(chunk)
        if hold:
            kept.append(chunk)
    data = b"".join(kept) if hold else None
    if locked.size is not None and received != locked.size:
        raise IntegrityError(
            "the file ended early",
            where=here,
            expected=f"{locked.size} bytes",
            actual=f"{received} bytes",
            hint="try again later",
        )
    if check is None:
        check = new_hasher(locked.digest.algorithm, received)
        check.update(data or b"")
    actual = Digest(locked.digest.algorithm, check.hexdigest())
    if actual != locked.digest:
        raise IntegrityError(
            "the file's bytes do not match the digest the Hub listed",
            where=here,
            expected=str(locked.digest),
            actual=str(actual),
            hint="the server sends other bytes than its listing says; do not trust it",
        )
    return Fetched(Digest("sha256", sha.hexdigest()), data if keep else None)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
