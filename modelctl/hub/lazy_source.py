"""The one way to make the Hub the source of a sync, for the CLI and :func:`modelctl.provision`.

:func:`hub_source` takes what both are given (settings, ``-j``, ``-x``, the proxies) and
returns a :class:`~modelctl.sync.Source` that builds the
:class:`~modelctl.hub.source.HubSource` (its transport, its segment policy) only when a file
is missing: a sync that finds everything on disk imports no HTTP code. Offline, the
HubSource names every missing file in its OfflineError and opens no connection.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modelctl.parallel import DEFAULT_CONNECTIONS
from modelctl.settings import Settings

if TYPE_CHECKING:
    from dataclasses import dataclass

    from modelctl.hub.source import HubSource
    from modelctl.lock.plan import PlannedFile
    from modelctl.progress import ProgressTracker
    from modelctl.store.layout import Store
    from modelctl.transfer.http import Transport
else:
    from modelctl.values import dataclass


@dataclass(frozen=True)
class LazyHubSource:
    """A :class:`~modelctl.hub.source.HubSource` made on the first fetch with work to do."""

    settings: Settings
    jobs: int | None = None  # parallel downloads; default min(8, files)
    connections: int = DEFAULT_CONNECTIONS  # in all, like aria2c -x
    # Proxies as urllib.request.getproxies() names them; None: that call's answer.
    proxies: Mapping[str, str] | None = None
    transport: Transport | None = None  # given (tests): used as it is

    def fetch(
        self,
        todo: Sequence[PlannedFile],
        store: Store,
        tracker: ProgressTracker,
        cancel: threading.Event,
    ) -> Sequence[PlannedFile]:
        if not todo:
            return []
        return self.build().fetch(todo, store, tracker, cancel)

    def build(self) -> HubSource:
        from modelctl.hub.source import HubSource, transport_for
        from modelctl.transfer.segments import SegmentPolicy

        transport = self.transport
        if transport is None and not self.settings.offline:
            # The stdlib transport goes through HTTP(S)_PROXY itself (httpx2 only for
            # socks:// or https:// proxies).
            transport = transport_for(self.settings, self._proxies())
        segments = SegmentPolicy(connections=self.connections)
        return HubSource(self.settings, jobs=self.jobs, transport=transport, segments=segments)

    def _proxies(self) -> Mapping[str, str]:
        if self.proxies is not None:
            return self.proxies
        from modelctl.transfer.http import system_proxies

        return system_proxies()


def hub_source(
    settings: Settings,
    *,
    jobs: int | None = None,
    connections: int | None = None,
    proxies: Mapping[str, str] | None = None,
    transport: Transport | None = None,
) -> LazyHubSource:
    """The Hub at ``settings.endpoint`` as a sync source (see the module docstring).

    ``connections``: in all, over every file (default :data:`DEFAULT_CONNECTIONS`).
    ``proxies``: default ``urllib.request.getproxies()``, read when a file is fetched.
    """
    return LazyHubSource(
        settings,
        jobs=jobs,
        connections=connections or DEFAULT_CONNECTIONS,
        proxies=proxies,
        transport=transport,
    )
