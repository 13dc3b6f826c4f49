"""Failures the local Hub injects at runtime: drops, statuses, wrong bytes, redirects, slowness.

Set them on ``LocalHub.faults`` (:class:`Faults`) from any thread; the server asks them once
per request (:class:`BodyPlan`).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class BodyPlan:
    """How one response body is sent, decided (and counters consumed) once per request."""

    drop_after: int | None = None  # close the connection after this many body bytes
    flip_offset: int | None = None  # absolute file offset of the byte to corrupt
    rate: int | None = None  # bytes per second

    @property
    def needs_loop(self) -> bool:
        """Byte-level control needs a read/write loop; otherwise the body goes by sendfile."""
        return self.flip_offset is not None or self.rate is not None


PLAIN = BodyPlan()


@dataclass
class Faults:
    """Failures to inject, mutable at runtime from any thread (use :meth:`set`/:meth:`reset`).

    A "content GET" is a GET on ``/resolve/`` or ``/blobs/`` for a file that exists
    (including a resolve GET answered by the LFS redirect). Status, drop, wrong-bytes
    and slow faults apply to content GETs only; ``redirect_lfs`` to HEAD and GET of LFS
    files on ``/resolve/``; ``fail_blob_redirect`` to every ``/blobs/`` request. The API
    endpoints never see faults. Every fault applies only to repo paths in ``paths``
    (None = every path); a blob counts as the repo path it was listed under. The exception
    are ``repo_info_patch`` / ``repo_info_body``, which rewrite the repo-info endpoint's
    answer, and ``linked_size``, which applies to every LFS HEAD and GET.
    """

    # Send full headers, then close the connection after N body bytes ...
    drop_after_bytes: int | None = None
    # ... for the next N content GETs (None = all of them).
    drop_count: int | None = None
    # Answer the next content GETs with these statuses, one popped per request.
    status_codes: list[int] = field(default_factory=list)
    # Retry-After (seconds) sent with injected 429/503; None = no header.
    retry_after: int | None = 1
    # Serve the content with one byte XOR-ed with 0xFF (same length, same headers).
    wrong_bytes: bool = False
    # Offset of that byte in the file; None = the middle byte (size // 2).
    wrong_byte_offset: int | None = None
    # LFS resolve answers 302 to /blobs/<sha256> (like the Hub's CDN redirect).
    redirect_lfs: bool = False
    # Host in the redirect; None = the other loopback name (127.0.0.1 <-> localhost), so
    # clients see another origin, as with the real CDN. Same host = same-origin redirect.
    redirect_host: str | None = None
    # The Location of those redirects, sent as is (a hostile value: "http://h:99999/x").
    redirect_location: str | None = None
    # /blobs/ answers fail_blob_status instead of the content.
    fail_blob_redirect: bool = False
    fail_blob_status: int = 403
    # Throttle bodies to this many bytes per second.
    slow_bytes_per_sec: int | None = None
    # Ignore Range headers: answer every content GET with 200 and the whole file.
    ignore_range: bool = False
    # Model info lists files without size/blobId/lfs even with blobs=true, like a mirror
    # that does not report metadata (clients must fall back to HEAD).
    omit_metadata: bool = False
    # Keys replaced in every repo-info answer (model_info / dataset_info), as a hostile or
    # broken server would send them, e.g. {"sha": "../../.."}. Applies to every repo.
    repo_info_patch: dict[str, Any] | None = None
    # The whole repo-info body, sent as is (status 200, application/json): malformed JSON.
    repo_info_body: bytes | None = None
    # X-Linked-Size sent for LFS files on /resolve/ instead of the real size.
    linked_size: str | None = None
    # --- behaviours of the real Hub (docs/hub-compatibility.md), off by default ---
    # Repo info lists only the first N files (huggingface_hub PR 3565: `siblings` may be
    # cut short on large repos; the tree listing has them all).
    siblings_limit: int | None = None
    # Injected 429s carry `RateLimit: "resolvers";r=0;t=<N>` (and a RateLimit-Policy), as
    # the Hub sends them; combine with retry_after=None for no Retry-After.
    rate_limit_reset: int | None = None
    # Until this time.monotonic(), every content GET and API request answers 429 with
    # `RateLimit: "resolvers";r=0;t=<seconds left>` and no Retry-After: a real window.
    # Set it with rate_limit_for(seconds).
    rate_limited_until: float | None = None
    # Statuses for the next repo-info / tree requests, one popped per request.
    api_status_codes: list[int] = field(default_factory=list)
    # Without a token, a repo that does not exist answers 401 RepoNotFound (as the Hub).
    missing_repo_401: bool = False
    # Gated repos: repo id -> the token granted access. No token: 401 GatedRepo; another
    # token: 403 GatedRepo.
    gated: dict[str, str] = field(default_factory=dict)
    # A non-LFS /resolve/ answers a same-origin 307 to /api/resolve-cache/... .
    resolve_cache_redirect: bool = False
    # The CDN stand-in (/blobs/) answers 400 to a request carrying Authorization (a
    # signed URL must come alone), and/or ignores Range (200 with the whole body).
    cdn_rejects_authorization: bool = False
    cdn_ignores_range: bool = False
    # Non-LFS content is sent gzip-encoded when the request's Accept-Encoding allows it.
    gzip_text: bool = False
    # Content GETs wait this long before the status line (slow storage, caching proxies).
    header_delay_s: float | None = None
    # Content GETs send their status line and headers one byte at a time, this many
    # seconds apart (a socket timeout restarts with every byte: only a total bound ends it).
    header_byte_delay_s: float | None = None
    # GETs on /resolve/ answer 302 to this prefix + the request's Authorization header,
    # as a server would that tries to have the token shown or sent elsewhere.
    echo_auth_location: str | None = None
    # Restrict every fault to these repo paths (None = all paths).
    paths: set[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set(self, **changes: Any) -> None:
        """Change several fault fields atomically; unknown names raise TypeError."""
        names = public_field_names(self)
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown fault option(s): {', '.join(unknown)}")
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def reset(self) -> None:
        """Back to no faults at all."""
        fresh = Faults()
        with self._lock:
            for name in public_field_names(self):
                setattr(self, name, getattr(fresh, name))

    def take_status(self, path: str) -> int | None:
        """The injected status for this content GET, if any (consumes it)."""
        with self._lock:
            if self.status_codes and self._applies(path):
                return self.status_codes.pop(0)
        return None

    def should_redirect(self, path: str) -> bool:
        with self._lock:
            return self.redirect_lfs and self._applies(path)

    def blob_failure(self, path: str) -> int | None:
        with self._lock:
            if self.fail_blob_redirect and self._applies(path):
                return self.fail_blob_status
        return None

    def ignores_range(self, path: str) -> bool:
        with self._lock:
            return self.ignore_range and self._applies(path)

    def body_plan(self, path: str, size: int) -> BodyPlan:
        """How to send this content GET's body (consumes one drop if a drop applies)."""
        with self._lock:
            if not self._applies(path):
                return PLAIN
            return BodyPlan(
                drop_after=self._take_drop(),
                flip_offset=self._flip_offset(size),
                rate=self.slow_bytes_per_sec,
            )

    def patch_repo_info(self, info: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.siblings_limit is not None:
                info = info | {"siblings": info["siblings"][: self.siblings_limit]}
            return info | self.repo_info_patch if self.repo_info_patch else info

    def rate_limit_for(self, seconds: float) -> None:
        """Answer 429 (RateLimit, no Retry-After) to every request for ``seconds`` from now."""
        self.set(rate_limited_until=time.monotonic() + seconds)

    def rate_limit_left(self) -> int | None:
        """Whole seconds until the rate-limit window ends, if one is open."""
        with self._lock:
            until = self.rate_limited_until
        left = None if until is None else until - time.monotonic()
        return None if left is None or left <= 0 else max(1, math.ceil(left))

    def take_api_status(self) -> int | None:
        with self._lock:
            return self.api_status_codes.pop(0) if self.api_status_codes else None

    def header_delay(self, path: str) -> float | None:
        with self._lock:
            return self.header_delay_s if self._applies(path) else None

    def should_apply(self, path: str) -> bool:
        with self._lock:
            return self._applies(path)

    def _applies(self, path: str) -> bool:
        return self.paths is None or path in self.paths

    def _take_drop(self) -> int | None:
        if self.drop_after_bytes is None or self.drop_count == 0:
            return None
        if self.drop_count is not None:
            self.drop_count -= 1
        return self.drop_after_bytes

    def _flip_offset(self, size: int) -> int | None:
        if not self.wrong_bytes or size == 0:
            return None
        offset = size // 2 if self.wrong_byte_offset is None else self.wrong_byte_offset
        return offset if 0 <= offset < size else None


def public_field_names(faults: Faults) -> set[str]:
    return {f.name for f in fields(faults) if not f.name.startswith("_")}
