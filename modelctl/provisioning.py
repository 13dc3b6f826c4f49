"""The in-process entry point for applications: plan, download what is missing, load.

An application's start-up in three lines::

    import modelctl

    models = modelctl.provision("modelctl.lock", listener=on_event)  # plan + sync
    llm = models.load_llama("llm")                                   # verified paths only

:func:`provision` does what ``modelctl sync --frozen`` does (or ``sync --locked`` when a
manifest is given), sending the same events to ``listener`` (an object with ``on_event``
or a plain callable), and returns :class:`modelctl.runtime.LockedModels` over the synced
files. ``lock_mode="update"`` does what a plain ``modelctl sync`` (and ``uv run``) does:
a missing or stale lock is locked first. :func:`download_plan` is the dry run: what
``modelctl plan`` shows, nothing fetched.

This module lives beside the runtime, not in it: :mod:`modelctl.runtime` never imports
anything that can reach the network; this one does (lazily, from ``import modelctl``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modelctl.hub.client import HubClient
from modelctl.hub.lazy_source import hub_source
from modelctl.lock.plan import DownloadPlan, plan_lock
from modelctl.lock.types import Lock
from modelctl.locking import lock_for, make_client
from modelctl.progress import (
    Event,
    LockStarted,
    LockWaiting,
    LockWritten,
    NullProgress,
    ProgressListener,
)
from modelctl.project import LockMode, find_manifest, make_store
from modelctl.runtime import LockedModels
from modelctl.runtime.loader import Verify
from modelctl.settings import Settings, from_env
from modelctl.store.layout import Store
from modelctl.store.presence import present_refs
from modelctl.sync import sync
from modelctl.transfer.http import Transport

PathLike = str | os.PathLike[str]
#: A listener: anything with ``on_event(event)``, or a plain callable taking the event.
Listener = ProgressListener | Callable[[Event], object]
#: How :func:`provision` treats the lockfile, as ``uv run`` does (see :func:`open_project`).
LockModeName = Literal["update", "locked", "frozen"]


class CallableListener:
    """Adapts ``fn(event)`` to the :class:`~modelctl.progress.ProgressListener` protocol."""

    def __init__(self, fn: Callable[[Event], object]) -> None:
        self.fn = fn

    def on_event(self, event: Event) -> None:
        self.fn(event)


def as_listener(listener: Listener | None) -> ProgressListener:
    if listener is None:
        return NullProgress()
    if callable(getattr(listener, "on_event", None)):
        return listener  # type: ignore[return-value]
    if callable(listener):
        return CallableListener(listener)
    raise TypeError(
        f"listener must have an on_event(event) method or be callable, not {type(listener)!r}"
    )


@dataclass(frozen=True)
class Provisioning:
    """What one call works on: the lock, where it came from, settings and the store."""

    lock: Lock
    lock_path: Path
    settings: Settings
    target: Path | None
    cache_dir: Path | None

    def store(self) -> Store:
        if self.target is not None:
            return make_store(self.settings, self.target)
        settings = self.settings
        if self.cache_dir is not None:
            settings = Settings(settings.endpoint, settings.token, settings.offline, self.cache_dir)
        return make_store(settings, None)


def _path(p: PathLike | None) -> Path | None:
    return None if p is None else Path(p).expanduser()


def open_project(
    lock: PathLike | None,
    manifest: PathLike | None,
    *,
    target: PathLike | None,
    cache_dir: PathLike | None,
    offline: bool,
    env: Mapping[str, str],
    cwd: Path,
    lock_mode: LockModeName | None = None,
    listener: ProgressListener | None = None,
) -> Provisioning:
    """The lock to provision from, in ``lock_mode``:

    - ``None`` (the default, for deployed apps: start-up never re-resolves): ``"locked"``
      when ``manifest`` is given, else ``"frozen"``.
    - ``"locked"``: the manifest's lockfile (``lock``, else beside it) must be up to date
      with it, else :class:`~modelctl.errors.StaleLockError` (run ``modelctl lock``). The
      manifest's ``endpoint:`` is used.
    - ``"frozen"``: the lockfile as it is; the manifest is not read.
    - ``"update"`` (a developer's first run, like ``uv run``): a missing or stale lock is
      locked against the Hub first and written, telling ``listener`` LockStarted,
      LockWaiting (a rate limit), LockWritten; an up-to-date lock is used as it is.

    The lockfile (``"frozen"``, or no ``manifest``): $MODELCTL_LOCK, else beside
    $MODELCTL_MANIFEST, else ``modelctl.lock`` in ``cwd`` or above, as
    :func:`modelctl.runtime.open_lock` finds it. The manifest (``"locked"``/``"update"``
    without ``manifest``): $MODELCTL_MANIFEST, else ``modelctl.yaml`` in ``cwd`` or above.
    """
    mode = _lock_mode(lock_mode, manifest)
    events = listener if listener is not None else NullProgress()
    started = time.monotonic()

    def client(endpoint: str | None) -> HubClient:
        settings = from_env(env, manifest_endpoint=endpoint, offline=offline)
        return make_client(settings, lambda text: events.on_event(LockWaiting(text)))

    def relocking(reason: str) -> None:
        events.on_event(LockStarted(str(find_manifest(_path(manifest), env, cwd)), reason))

    chosen = lock_for(mode, _path(manifest), _path(lock), env, cwd, client, relocking)
    if chosen.relocked is not None:
        files = len(list(chosen.lock.files()))
        seconds = time.monotonic() - started
        events.on_event(LockWritten(str(chosen.lock_path), files, seconds))
    current, lock_path, endpoint = chosen.lock, chosen.lock_path, chosen.endpoint
    target_path = _path(target)
    if target_path is None and env.get("MODELCTL_TARGET"):
        target_path = Path(env["MODELCTL_TARGET"])
    settings = from_env(env, manifest_endpoint=endpoint, offline=offline)
    return Provisioning(current, lock_path, settings, target_path, _path(cache_dir))


def _lock_mode(name: LockModeName | None, manifest: PathLike | None) -> LockMode:
    if name is None:
        # Start-up never re-resolves by default: a deployed app must not lock at start.
        return LockMode.LOCKED if manifest is not None else LockMode.FROZEN
    try:
        return LockMode(name)
    except ValueError:
        raise ValueError(
            f"lock_mode must be 'update', 'locked', 'frozen' or None, not {name!r}"
        ) from None


def proxies_of(env: Mapping[str, str]) -> dict[str, str]:
    """Proxies as :func:`urllib.request.getproxies` reports them, from ``env``."""
    if env is os.environ:
        from modelctl.transfer.http import system_proxies

        return system_proxies()
    found: dict[str, str] = {}
    for name, value in env.items():
        key = name.lower()
        if value and key.endswith("_proxy"):
            found[key.removesuffix("_proxy")] = value
    return found


def download_plan(
    lock: PathLike | None = None,
    *,
    manifest: PathLike | None = None,
    target: PathLike | None = None,
    cache_dir: PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> DownloadPlan:
    """The dry run: every locked file, its size, and whether it is already here.

    Never connects and never writes. Presence is judged as ``modelctl plan`` judges it
    (the final path exists with the locked size); :func:`provision` then verifies
    content before trusting a file. ``plan.needs_download()`` tells whether
    :func:`provision` would download anything. Arguments as for :func:`provision`.
    """
    env = os.environ if env is None else env
    p = open_project(
        lock, manifest, target=target, cache_dir=cache_dir, offline=True, env=env, cwd=Path.cwd()
    )
    return plan_lock(p.lock, present_refs(p.store(), list(p.lock.files())))


def provision(
    lock: PathLike | None = None,
    *,
    manifest: PathLike | None = None,
    target: PathLike | None = None,
    offline: bool = False,
    listener: Listener | None = None,
    jobs: int | None = None,
    connections: int | None = None,
    cache_dir: PathLike | None = None,
    verify: Verify = "fast",
    env: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    lock_mode: LockModeName | None = None,
) -> LockedModels:
    """Plan, download exactly the missing locked files (verified), and open them for loading.

    ``lock``: the lockfile (default $MODELCTL_LOCK, else modelctl.lock here or above).
    ``manifest``: check the lock against it first (stale: StaleLockError, exit code 1).
    ``lock_mode``: what to do with a missing or stale lock, as ``uv run``'s flags:

    - default (``None``), for a deployed app: ``"locked"`` when ``manifest`` is given,
      else ``"frozen"``. Start-up never resolves against the Hub and never writes the lock:
      a stale lock, or a missing one beside the manifest, is
      :class:`~modelctl.errors.StaleLockError` (exit code 1); no lockfile found at all is
      an :class:`~modelctl.errors.InputError`.
    - ``"update"``, for a developer's first run (``modelctl sync`` without flags): a
      missing or stale lock is locked first (written to the lockfile, like ``modelctl
      lock``), then synced; ``listener`` is told LockStarted (why), LockWaiting (a rate
      limit) and LockWritten before the sync's events. Without ``manifest``, the manifest
      is $MODELCTL_MANIFEST, else ``modelctl.yaml`` here or above. Offline, a lock that
      must be made is an OfflineError.
    - ``"locked"``: fail on a stale lock (``sync --locked``); ``"frozen"``: use the lockfile
      as it is, the manifest is not read (``sync --frozen``).
    ``target``: a plain tree ``DIR/<asset>/<path>`` (default $MODELCTL_TARGET) instead of
    the HF cache (``cache_dir``, else $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub).
    ``offline`` (or HF_HUB_OFFLINE=1): never connect; OfflineError names what is missing.
    ``listener``: receives (after any lock events) DownloadPlanReady, then FileStarted /
    FileProgress / FileDone (each followed by AggregateProgress) per downloaded file, then
    SyncFinished; an object with ``on_event(event)`` or a plain callable. Files already
    here send no file events. Called from worker threads, one event at a time.
    ``jobs``: parallel downloads (default min(8, files)). ``connections``: per file
    (default 8, like ``aria2c -x8``; at most MODELCTL_MAX_CONNECTIONS in all): a large file
    opens more while they add throughput (see :mod:`modelctl.transfer.segments`).
    ``verify``: as for
    :func:`modelctl.runtime.open_lock`. ``env``: the environment to read (default
    ``os.environ``: HF_ENDPOINT, HF_TOKEN, HF_HOME, proxies, ...). ``transport``: for
    tests; by default the stdlib client, through the proxies ``env`` names (HTTP_PROXY,
    HTTPS_PROXY, ALL_PROXY, NO_PROXY) as the CLI does; only a proxy it cannot speak to
    (``socks``, ``https://``) falls back to huggingface_hub's session, which takes the
    proxy itself from ``os.environ``.

    Raises the :mod:`modelctl.errors` errors ``modelctl sync`` exits with; nothing is
    left at a final path unless it was verified.
    """
    if verify not in ("fast", "full", "none"):
        raise ValueError(f"verify must be 'fast', 'full' or 'none', not {verify!r}")
    env = os.environ if env is None else env
    events = as_listener(listener)
    p = open_project(
        lock,
        manifest,
        target=target,
        cache_dir=cache_dir,
        offline=offline,
        env=env,
        cwd=Path.cwd(),
        lock_mode=lock_mode,
        listener=events,
    )
    store = p.store()
    source = hub_source(
        p.settings,
        jobs=jobs,
        connections=connections,
        proxies=proxies_of(env),
        transport=transport,
    )
    sync(p.lock, store, source, jobs=jobs, listener=events)
    return LockedModels(p.lock, p.lock_path, store, verify)
