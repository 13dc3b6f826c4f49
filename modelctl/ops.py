"""Orchestration of the commands: find files, resolve, compare, plan. No printing.

The CLI calls these with resolved :class:`~modelctl.settings.Settings`; they return
values and raise :mod:`modelctl.errors` errors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelctl import lockfile
from modelctl.errors import InputError, StaleLockError
from modelctl.hub import HfHubClient, HubClient
from modelctl.lockfile import LockDiff
from modelctl.manifest import load_manifest
from modelctl.paths import find_upwards
from modelctl.plan import DownloadPlan, plan_lock
from modelctl.presence import present_refs
from modelctl.resolve import resolve
from modelctl.settings import Settings
from modelctl.store import HfCacheStore, Store, TargetStore
from modelctl.types import Lock, Manifest

MANIFEST_NAME = "modelctl.yaml"


@dataclass(frozen=True)
class Project:
    """The manifest and lockfile paths one command works on."""

    manifest_path: Path
    lock_path: Path


def find_project(
    manifest: Path | None, lock: Path | None, env: Mapping[str, str], cwd: Path
) -> Project:
    """``--manifest``, else $MODELCTL_MANIFEST, else modelctl.yaml here or above."""
    if manifest is None and env.get("MODELCTL_MANIFEST"):
        manifest = Path(env["MODELCTL_MANIFEST"])
    if manifest is None:
        manifest = find_upwards(MANIFEST_NAME, cwd)
    if manifest is None:
        raise InputError(
            f"no {MANIFEST_NAME} found in {cwd} or any parent folder",
            hint="pass --manifest PATH, set MODELCTL_MANIFEST, or create modelctl.yaml",
        )
    if lock is None:
        lock = lockfile.lock_path_for(manifest)
    return Project(manifest, lock)


def make_store(settings: Settings, target: Path | None) -> Store:
    return TargetStore(target) if target is not None else HfCacheStore(settings.hf_cache)


def make_client(settings: Settings) -> HubClient:
    return HfHubClient(settings.endpoint, settings.token, settings.offline)


@dataclass(frozen=True)
class LockResult:
    lock: Lock
    written: bool
    diff: LockDiff | None  # against the previous lock, None when there was none


def load_previous(path: Path) -> Lock | None:
    return lockfile.load(path) if path.exists() else None


def lock(
    project: Project,
    manifest: Manifest,
    client: HubClient,
    *,
    upgrade: bool = False,
    upgrade_assets: Collection[str] = (),
) -> LockResult:
    previous = load_previous(project.lock_path)
    new = resolve(manifest, client, previous, upgrade=upgrade, upgrade_assets=upgrade_assets)
    written = lockfile.write(project.lock_path, new)
    return LockResult(new, written, lockfile.diff(manifest, previous) if previous else None)


def check(project: Project, manifest: Manifest) -> Lock:
    """The lock, if it matches the manifest; StaleLockError naming what changed if not."""
    if not project.lock_path.exists():
        raise StaleLockError(
            "there is no lockfile",
            where=str(project.lock_path),
            hint="run `modelctl lock` and commit the lockfile",
        )
    current = lockfile.load(project.lock_path)
    d = lockfile.diff(manifest, current)
    if d.stale or current.manifest_hash != manifest.manifest_hash():
        raise StaleLockError(
            "the lockfile does not match the manifest",
            where=str(project.lock_path),
            details=d.describe(),
            expected=f"manifest hash {manifest.manifest_hash()}",
            actual=f"locked from {current.manifest_hash}",
            hint="run `modelctl lock` to update it",
        )
    return current


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
        current = resolve(manifest, client or make_client(settings), previous)
        note = f"{exc.message}; planned from a fresh resolve (run `modelctl lock` to save it)"
    store = make_store(settings, target)
    refs = list(current.files())
    return PlanResult(plan_lock(current, present_refs(store, refs)), current, note)


def read_manifest(project: Project) -> Manifest:
    return load_manifest(project.manifest_path)
