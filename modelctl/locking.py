"""Lock a project against the Hub: resolve, write the lockfile, plan; and the lock a sync
uses in each :class:`~modelctl.project.LockMode`. No printing: values and errors only.

The CLI calls these with resolved :class:`~modelctl.settings.Settings` (or a factory for
the Hub client, since the manifest names the endpoint); :mod:`modelctl.project` answers
which files, without the network.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from modelctl.errors import InputError, StaleLockError
from modelctl.lock import lockfile
from modelctl.lock.lockfile import LockDiff
from modelctl.lock.plan import DownloadPlan, plan_lock
from modelctl.lock.types import Lock, Manifest
from modelctl.project import (
    LockMode,
    Project,
    check,
    find_lock,
    find_project,
    load_previous,
    make_store,
    read_manifest,
)
from modelctl.settings import Settings
from modelctl.store.presence import present_refs

if TYPE_CHECKING:
    from dataclasses import dataclass

    from modelctl.hub.client import HubClient
else:
    from modelctl.values import dataclass

# modelctl.hub.client and modelctl.hub.resolve (huggingface_hub, httpx2: ~100 ms) are
# imported by the functions that reach the Hub, so a `sync --frozen` or the runtime never
# loads them.


def make_client(settings: Settings, on_wait: Callable[[str], None] | None = None) -> HubClient:
    """The Hub client for lock; ``on_wait`` is told each wait before a retry."""
    from modelctl.hub.client import HfHubClient
    from modelctl.transfer.retry import RetryPolicy  # here: sync --frozen needs no retries

    return HfHubClient(
        settings.endpoint,
        settings.token,
        settings.offline,
        settings.metadata_timeout_s,
        policy=RetryPolicy(
            retry_after_max_s=settings.retry_wait_max_s, budget_s=settings.retry_budget_s
        ),
        on_wait=on_wait,
    )


@dataclass(frozen=True)
class LockResult:
    lock: Lock
    written: bool
    diff: LockDiff | None  # against the previous lock, None when there was none


def lock(
    project: Project,
    manifest: Manifest,
    client: HubClient,
    *,
    upgrade: bool = False,
    upgrade_assets: Collection[str] = (),
) -> LockResult:
    previous = load_previous(project.lock_path)
    from modelctl.hub.resolve import resolve

    new = resolve(manifest, client, previous, upgrade=upgrade, upgrade_assets=upgrade_assets)
    written = lockfile.write(project.lock_path, new)
    return LockResult(new, written, lockfile.diff(manifest, previous) if previous else None)


@dataclass(frozen=True)
class PlanResult:
    plan: DownloadPlan
    lock: Lock
    note: str | None  # said when the plan does not come from an up-to-date lockfile


def plan(
    project: Project,
    manifest: Manifest,
    settings: Settings,
    target: Path | None = None,
    client: HubClient | None = None,
) -> PlanResult:
    """Plan from the lockfile; resolve in memory (nothing written) if it is missing or stale."""
    note = None
    try:
        current = check(project, manifest)
    except StaleLockError as exc:
        previous = load_previous(project.lock_path)
        from modelctl.hub.resolve import resolve

        current = resolve(manifest, client or make_client(settings), previous)
        note = f"{exc.message}; planned from a fresh resolve (run `modelctl lock` to save it)"
    store = make_store(settings, target)
    refs = list(current.files())
    return PlanResult(plan_lock(current, present_refs(store, refs)), current, note)


@dataclass(frozen=True)
class ModeLock:
    """The lock a command uses, as its lock mode decided."""

    lock: Lock
    lock_path: Path
    endpoint: str | None  # the manifest's ``endpoint:`` (None in frozen mode: not read)
    relocked: str | None = None  # why the lockfile was written first (update mode)


def lock_for(
    mode: LockMode,
    manifest: Path | None,
    lock_path: Path | None,
    env: Mapping[str, str],
    cwd: Path,
    client: Callable[[str | None], HubClient],
    notify: Callable[[str], None] = lambda reason: None,
) -> ModeLock:
    """The lock to sync, like uv: ``frozen`` reads only the lockfile; ``locked`` fails on
    a stale lock; ``update`` re-locks a missing or stale lock first (``notify(reason)``
    is called before, ``relocked`` says why). ``client(endpoint)`` makes the Hub client,
    only when a lock must be resolved."""
    if mode is LockMode.FROZEN:
        path = find_lock(lock_path, manifest, env, cwd)
        if not path.exists():
            raise InputError(
                "--frozen needs a lockfile, and there is none",
                where=str(path),
                hint="run `modelctl lock` first",
            )
        return ModeLock(lockfile.load(path), path, None)
    project = find_project(manifest, lock_path, env, cwd)
    parsed = read_manifest(project)
    if mode is LockMode.LOCKED:
        return ModeLock(check(project, parsed), project.lock_path, parsed.endpoint)
    try:
        return ModeLock(check(project, parsed), project.lock_path, parsed.endpoint)
    except StaleLockError as exc:
        notify(exc.message)
        result = lock(project, parsed, client(parsed.endpoint))
        return ModeLock(result.lock, project.lock_path, parsed.endpoint, exc.message)
