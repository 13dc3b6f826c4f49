"""The Hub as a sync source: missing files downloaded in parallel, largest first.

Each file is one :func:`modelctl.transfer.fetch.fetch_file` (retries, resume, verification);
``-j N`` of them run at once, over at most ``--connections`` connections in all: a large
file is split into ranges fetched at once (:mod:`modelctl.transfer.segments`). Offline
(``--offline`` or ``HF_HUB_OFFLINE=1``), no connection is opened: the error names every
missing file.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelctl.errors import OfflineError
from modelctl.lock.plan import PlannedFile
from modelctl.parallel import default_jobs
from modelctl.progress import ProgressTracker
from modelctl.settings import Settings
from modelctl.store.layout import Store
from modelctl.transfer.fetch import FetchContext, fetch_all
from modelctl.transfer.http import Timeouts, Transport, default_transport
from modelctl.transfer.retry import RetryPolicy
from modelctl.transfer.segments import Segmenter, SegmentPolicy

DEFAULT_SEGMENTS = SegmentPolicy()


def transport_for(settings: Settings, proxies: Mapping[str, str]) -> Transport:
    """The download transport: through ``proxies`` (``urllib.request.getproxies()`` names),
    with HF_HUB_DOWNLOAD_TIMEOUT."""
    timeouts = Timeouts.for_download(settings.download_timeout_s, settings.limits.headers_s)
    return default_transport(proxies, timeouts)


def policy_for(settings: Settings) -> RetryPolicy:
    """The default retry policy, with the server-asked wait capped as configured."""
    return RetryPolicy(retry_after_max_s=settings.retry_wait_max_s)


@dataclass(frozen=True)
class HubSource:
    """Download from ``settings.endpoint`` (a Hub or a mirror) with ``settings.token``."""

    settings: Settings
    jobs: int | None = None  # parallel downloads; default min(8, files)
    transport: Transport | None = None  # default: http.client, or httpx with a proxy
    policy: RetryPolicy | None = None  # default: policy_for(settings)
    record_blake3: bool = False  # see FetchContext.record_blake3
    # Connections in all (like aria2c -x); files above 2 x min_piece are split.
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
            endpoint=self.settings.endpoint,
            token=self.settings.token,
            # Proxies as the CLI honours them: http.client alone would ignore them.
            transport=self.transport
            if self.transport is not None
            else transport_for(self.settings, urllib.request.getproxies()),
            policy=self.policy if self.policy is not None else policy_for(self.settings),
            record_blake3=self.record_blake3,
            cancel=cancel,
            limits=self.settings.limits,
        ).starting_now()

        # Every file being fetched holds a connection: never more files than connections.
        jobs = min(self.jobs or default_jobs(len(todo)), self.segments.connections)
        return fetch_all(todo, store, ctx, tracker, jobs, Segmenter.of(self.segments).download)


def offline_error(todo: Sequence[PlannedFile]) -> OfflineError:
    names = tuple(f.ref.label() for f in sorted(todo, key=lambda f: (f.asset, f.filename)))
    return OfflineError(
        f"offline mode, and {len(todo)} locked file(s) are not on disk",
        details=names,
        hint="run `modelctl sync` once with network access (unset HF_HUB_OFFLINE)",
    )
