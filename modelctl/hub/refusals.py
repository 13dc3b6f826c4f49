"""What the Hub's refusals mean, for metadata requests and downloads alike.

The Hub says why in two headers (huggingface_hub's ``hf_raise_for_status`` reads them):
``X-Error-Code`` (``RepoNotFound``, ``GatedRepo``, ``RevisionNotFound``,
``EntryNotFound``) and ``X-Error-Message`` (a sentence for people). Without a token, a
repo that does not exist, or is private, answers **401** ``RepoNotFound``: the Hub never
tells which. Gated repos answer 401 (no token) or 403 (a token without access)
``GatedRepo``. 429 is a rate limit. Each maps to one modelctl error with the Hub's
message, and for gated repos the page where access is asked for.
"""

from __future__ import annotations

import re
from typing import Protocol

from huggingface_hub import errors as hf_errors

from modelctl.errors import (
    AuthError,
    ModelctlError,
    NetworkError,
    OfflineError,
    ResolveError,
)


class Headers(Protocol):
    """What is read of a response's headers (a Mapping, httpx2's Headers, ...)."""

    def get(self, key: str, /) -> str | None: ...


MAX_MESSAGE_CHARS = 300
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


def repo_page(endpoint: str, repo_id: str, repo_type: str) -> str:
    """The repo's page on the Hub (where a gated repo's conditions are accepted)."""
    kind = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{endpoint.rstrip('/')}/{kind}{repo_id}"


def hub_message(headers: Headers | None) -> str | None:
    """``X-Error-Message``, as one printable line of bounded length."""
    text = headers.get("X-Error-Message") if headers is not None else None
    if not text:
        return None
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def refusal(
    status: int,
    headers: Headers | None,
    where: str,
    endpoint: str,
    repo_id: str,
    repo_type: str,
    token: str | None,
) -> ModelctlError:
    """The error for a refusal (4xx/5xx) the Hub explained in its headers."""
    code = (headers.get("X-Error-Code") if headers is not None else None) or ""
    said = hub_message(headers)
    says = f" (the Hub says: {said})" if said else ""
    if code == "GatedRepo":
        page = repo_page(endpoint, repo_id, repo_type)
        if token:
            hint = f"ask for access at {page} with the account of this token, then try again"
        else:
            hint = (
                f"accept the repo's conditions at {page}, then log in (`hf auth login`) or "
                "set HF_TOKEN"
            )
        return AuthError(f"gated repo: access refused until granted{says}", where=where, hint=hint)
    if code == "RepoNotFound" or (status == 404 and not code):
        hint = (
            "check the repo id; a private repo needs a token with read access to it"
            if token
            else "check the repo id; if it is private, log in (`hf auth login`) or set HF_TOKEN"
        )
        return ResolveError(f"repository not found (or private){says}", where=where, hint=hint)
    if code == "RevisionNotFound":
        return ResolveError(
            f"revision not found{says}",
            where=where,
            hint="check the branch, tag or commit in the manifest's `revision:`",
        )
    if code == "EntryNotFound":
        return ResolveError(
            f"file not found in the repo{says}",
            where=where,
            hint="check the file path in the manifest",
        )
    if status == 401:
        return AuthError(
            f"the Hub refused the token (HTTP 401){says}"
            if token
            else f"the Hub asks for a token (HTTP 401){says}",
            where=where,
            hint="log in again (`hf auth login`) or set HF_TOKEN to a valid token"
            if token
            else "log in (`hf auth login`) or set HF_TOKEN",
        )
    if status == 403:
        return AuthError(
            f"forbidden (HTTP 403){says}",
            where=where,
            hint="the token lacks access to this repo: use one with read access"
            if token
            else "log in (`hf auth login`) or set HF_TOKEN to a token with access",
        )
    if status == 429:
        return NetworkError(
            f"rate limited by the Hub (HTTP 429), still after waiting{says}",
            where=where,
            hint="try again after the rate-limit window (5 minutes on huggingface.co); a token "
            "(`hf auth login` or HF_TOKEN) gets a larger quota",
        )
    return NetworkError(
        f"the Hub request failed (HTTP {status}){says}",
        where=where,
        hint=f"check the network and the endpoint {endpoint} (HF_ENDPOINT or `endpoint:`)",
    )


def translate(
    exc: BaseException,
    where: str,
    endpoint: str,
    repo_id: str,
    repo_type: str,
    token: str | None,
) -> ModelctlError:
    """Map a huggingface_hub / HTTP exception to a modelctl error with a hint."""
    if isinstance(exc, ModelctlError):
        return exc
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return OfflineError(
            "offline mode (HF_HUB_OFFLINE=1) forbids this request",
            where=where,
            hint="unset HF_HUB_OFFLINE, or use files already synced",
        )
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        headers = getattr(response, "headers", None)
        return refusal(status, headers, where, endpoint, repo_id, repo_type, token)
    return NetworkError(
        f"the Hub request failed ({type(exc).__name__}: {exc})",
        where=where,
        hint=f"check the network and the endpoint {endpoint} (HF_ENDPOINT or `endpoint:`)",
    )
