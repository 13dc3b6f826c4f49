"""Which manifest, which lockfile, which lock mode: the one answer CLI and runtime share.

Nothing here reaches the network (the runtime imports it); resolving and writing a lock
is :mod:`modelctl.locking`.

- The manifest: ``--manifest``, else ``$MODELCTL_MANIFEST``, else ``modelctl.yaml`` in
  the current folder or above.
- The lockfile (:func:`find_lock`): ``--lockfile``, else beside ``--manifest``
  (``x.yaml`` -> ``x.lock``), else ``$MODELCTL_LOCK``, else beside
  ``$MODELCTL_MANIFEST``, else beside the manifest found above (commands that read the
  manifest) or ``modelctl.lock`` in the current folder or above (those that read only
  the lock, and the runtime).
- The lock mode (:class:`LockMode`, as uv's ``sync``): ``update`` re-locks a missing or
  stale lock first, ``locked`` fails on a stale lock, ``frozen`` uses the lockfile as it
  is, without reading the manifest.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from modelctl.errors import InputError, StaleLockError
from modelctl.fs.paths import find_upwards
from modelctl.lock import lockfile
from modelctl.lock.types import Lock, Manifest
from modelctl.settings import Settings
from modelctl.store.layout import HfCacheStore, Store, TargetStore

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

MANIFEST_NAME: Final = "modelctl.yaml"


class LockMode(str, enum.Enum):
    """How a command that needs a lock treats the lockfile."""

    UPDATE = "update"  # a missing or stale lock is re-locked first (and said so)
    LOCKED = "locked"  # a stale or missing lock fails (exit 1); never written
    FROZEN = "frozen"  # the lockfile as it is; the manifest is not read

    @classmethod
    def of(cls, *, locked: bool, frozen: bool) -> LockMode:
        """The mode of uv-style ``--locked`` / ``--frozen`` flags (``--frozen`` wins)."""
        return cls.FROZEN if frozen else cls.LOCKED if locked else cls.UPDATE


@dataclass(frozen=True)
class Project:
    """The manifest and lockfile paths one command works on."""

    manifest_path: Path
    lock_path: Path


def find_manifest(manifest: Path | None, env: Mapping[str, str], cwd: Path) -> Path:
    """``--manifest``, else $MODELCTL_MANIFEST, else modelctl.yaml here or above."""
    if manifest is not None:
        return manifest
    if env.get("MODELCTL_MANIFEST"):
        return Path(env["MODELCTL_MANIFEST"])
    found = find_upwards(MANIFEST_NAME, cwd)
    if found is None:
        raise InputError(
            f"no {MANIFEST_NAME} found in {cwd} or any parent folder",
            hint="pass --manifest PATH, set MODELCTL_MANIFEST, or create modelctl.yaml",
        )
    return found


def find_lock(
    lock: Path | None,
    manifest: Path | None,
    env: Mapping[str, str],
    cwd: Path,
    *,
    beside: Path | None = None,
) -> Path:
    """The lockfile (see the module docstring); ``beside``: a manifest already found,
    whose lock is the last resort instead of searching for modelctl.lock."""
    if lock is not None:
        return lock
    if manifest is not None:
        return lockfile.lock_path_for(manifest)
    if env.get("MODELCTL_LOCK"):
        return Path(env["MODELCTL_LOCK"])
    if env.get("MODELCTL_MANIFEST"):
        return lockfile.lock_path_for(Path(env["MODELCTL_MANIFEST"]))
    if beside is not None:
        return lockfile.lock_path_for(beside)
    found = find_upwards(lockfile.LOCK_NAME, cwd)
    if found is None:
        raise InputError(
            f"no {lockfile.LOCK_NAME} found in {cwd} or any parent folder",
            hint="pass the lockfile's path (--lockfile, open_lock(path)), set MODELCTL_LOCK, "
            "or run `modelctl lock` first",
        )
    return found


def find_project(
    manifest: Path | None, lock: Path | None, env: Mapping[str, str], cwd: Path
) -> Project:
    """The manifest (it must be found) and its lockfile (it may not exist yet)."""
    manifest_path = find_manifest(manifest, env, cwd)
    return Project(manifest_path, find_lock(lock, manifest, env, cwd, beside=manifest_path))


def read_manifest(project: Project) -> Manifest:
    # Imported here: the manifest reader needs PyYAML, which `sync --frozen` and the
    # runtime do not (start-up time).
    from modelctl.lock.manifest import load_manifest

    return load_manifest(project.manifest_path)


def load_previous(path: Path) -> Lock | None:
    return lockfile.load(path) if path.exists() else None


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


def make_store(settings: Settings, target: Path | None) -> Store:
    """A ``--target`` tree, else the HF cache of ``settings``."""
    return TargetStore(target) if target is not None else HfCacheStore(settings.hf_cache)
