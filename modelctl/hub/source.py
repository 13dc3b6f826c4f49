"""The Hub as a sync source: missing files downloaded in parallel, largest first.

Each file is one :func:`modelctl.transfer.fetch.fetch_file` (retries, resume, verification);
``-j N`` of them run at once, a large file over up to ``-x N`` connections (byte ranges,
:mod:`modelctl.transfer.segments`), at most ``--max-connections`` in all. Offline
(``--offline`` or ``HF_HUB_OFFLINE=1``), no connection is opened: the error names every
missing file.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from modelctl.errors import ModelctlError, OfflineError, ResolveError
from modelctl.lock.plan import PlannedFile
from modelctl.lock.types import FileRef
from modelctl.parallel import default_jobs
from modelctl.progress import ProgressTracker
from modelctl.settings import Settings, request_headers
from modelctl.store.layout import Store
from modelctl.transfer.fetch import FetchContext, fetch_all
from modelctl.transfer.http import Timeouts, Transport, default_transport, system_proxies
from modelctl.transfer.remote import Headers, Hints
from modelctl.transfer.retry import RetryPolicy
from modelctl.transfer.segments import Segmenter, SegmentPolicy

if TYPE_CHECKING:
    from dataclasses import dataclass, replace

    import httpx2
else:
    from modelctl.values import dataclass, replace

DEFAULT_SEGMENTS = SegmentPolicy()
# huggingface_hub's REPO_TYPES_URL_PREFIXES: a model's URL has no prefix.
_URL_PREFIX: Final = {"dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}

HUB_HINTS: Final = Hints(
    auth="set HF_TOKEN to a token with access to this repo",
    missing="the repo changed or was deleted; `modelctl lock --upgrade` re-resolves",
    mismatch="retry later; if it persists the Hub content or the lock is wrong "
    "(`modelctl lock --upgrade` re-reads it)",
    rate_limited="the Hub rate-limits this client: wait for its window (5 minutes on "
    "huggingface.co), log in (`hf auth login`) for a larger quota, then run "
    "`modelctl sync` again: it resumes",
)


@dataclass(frozen=True)
class HubRemote:
    """The Hub (or a mirror) as a :class:`~modelctl.transfer.remote.Remote`: files at
    ``<endpoint>/<repo>/resolve/<commit>/<path>``, refusals explained by its
    ``X-Error-Code`` (:mod:`modelctl.hub.refusals`)."""

    endpoint: str
    token: str | None
    name: str = "the Hub"
    hints: Hints = HUB_HINTS

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token,) if self.token else ()

    def url(self, ref: FileRef) -> str:
        # As huggingface_hub's hf_hub_url, without importing it.
        prefix = _URL_PREFIX.get(ref.repo_type, "")
        return (
            f"{self.endpoint.rstrip('/')}/{prefix}{ref.repo_id}/resolve/"
            f"{quote(ref.commit, safe='')}/{quote(ref.path)}"
        )

    def headers(self) -> dict[str, str]:
        return request_headers(self.token)

    def refused(self, status: int, headers: Headers, where: str, ref: FileRef) -> ModelctlError:
        code = headers.get("X-Error-Code") or ""
        if status == 404 and code in ("", "EntryNotFound", "RevisionNotFound"):
            return ResolveError(
                f"{self.name} has no such file at the locked commit ({code or 'not found'})",
                where=where,
                hint=self.hints.missing,
            )
        # Imports huggingface_hub (its error types): only when the Hub refuses.
        from modelctl.hub.refusals import refusal

        return refusal(
            status, headers, where, self.endpoint, ref.repo_id, ref.repo_type, self.token
        )


def _hf_session() -> httpx2.Client:
    import huggingface_hub as hf  # only for a proxy http.client cannot use

    return hf.get_session()


def transport_for(settings: Settings, proxies: Mapping[str, str]) -> Transport:
    """The download transport: through ``proxies`` (``urllib.request.getproxies()`` names),
    with HF_HUB_DOWNLOAD_TIMEOUT; huggingface_hub's session for a proxy only it can use."""
    timeouts = Timeouts.for_download(settings.download_timeout_s, settings.limits.headers_s)
    return default_transport(proxies, timeouts, _hf_session)


def policy_for(settings: Settings) -> RetryPolicy:
    """The default retry policy, with the server-asked wait and the waiting budget as
    configured (MODELCTL_RETRY_WAIT_MAX, MODELCTL_RETRY_BUDGET)."""
    return RetryPolicy(
        retry_after_max_s=settings.retry_wait_max_s, budget_s=settings.retry_budget_s
    )


@dataclass(frozen=True)
class HubSource:
    """Download from ``settings.endpoint`` (a Hub or a mirror) with ``settings.token``."""

    settings: Settings
    jobs: int | None = None  # parallel downloads; default min(8, files)
    transport: Transport | None = None  # default: http.client, or httpx with a proxy
    policy: RetryPolicy | None = None  # default: policy_for(settings)
    record_blake3: bool = False  # see FetchContext.record_blake3
    # Connections per file (like aria2c -x) and in all (None: settings.max_connections);
    # files of at least 2 x min_piece may be split.
    segments: SegmentPolicy = DEFAULT_SEGMENTS

    def fetch(
        self,
        todo: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> list[PlannedFile]:
        if not todo:
            return []
        if self.settings.offline:
            raise offline_error(todo)
        ctx = FetchContext(
            remote=HubRemote(self.settings.endpoint, self.settings.token),
            # Proxies as the CLI honours them: http.client alone would ignore them.
            transport=self.transport
            if self.transport is not None
            else transport_for(self.settings, system_proxies()),
            policy=self.policy if self.policy is not None else policy_for(self.settings),
            record_blake3=self.record_blake3,
            cancel=cancel,
            limits=self.settings.limits,
        ).starting_now()

        segments = self.segments
        if segments.total is None:
            segments = replace(segments, total=self.settings.max_connections)
        # Every file being fetched holds a connection: never more files than connections.
        jobs = min(self.jobs or default_jobs(len(todo)), segments.total or 1)
        return fetch_all(todo, store, ctx, tracker, jobs, Segmenter.of(segments).download)


def offline_error(todo: Sequence[PlannedFile]) -> OfflineError:
    names = tuple(f.ref.label() for f in sorted(todo, key=lambda f: (f.asset, f.filename)))
    return OfflineError(
        f"offline mode, and {len(todo)} locked file(s) are not on disk",
        details=names,
        hint="run `modelctl sync` once with network access (unset HF_HUB_OFFLINE)",
    )
