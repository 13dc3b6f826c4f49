"""What ``modelctl sync`` does once its options are known, without click.

The ``sync`` command (:mod:`modelctl.cli.sync_cmds`) checks its options with click and
calls :func:`run_sync`; the entry point (:mod:`modelctl.cli.main`) calls it directly for
a plain ``sync --frozen``, the command a container runs at every start. Nothing here
imports click, the Hub client or the registry client until an option needs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from modelctl import locking
from modelctl.cli.echo import NORMAL, QUIET, echo
from modelctl.cli.format import tell_wait
from modelctl.cli.progress import JsonProgress, PlainProgress, TtyProgress, summary_line
from modelctl.hub.lazy_source import hub_source
from modelctl.parallel import DEFAULT_CONNECTIONS
from modelctl.progress import Event, NullProgress, ProgressListener, SyncFinished
from modelctl.project import LockMode, make_store
from modelctl.settings import from_env
from modelctl.sync import sync

if TYPE_CHECKING:
    from dataclasses import replace

    from modelctl.lock.types import Lock
    from modelctl.settings import Settings
else:
    from modelctl.values import replace


class _Recorder:
    """Keeps the SyncFinished event for the summary line, passing everything on."""

    def __init__(self, inner: ProgressListener) -> None:
        self.inner = inner
        self.finished: SyncFinished | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, SyncFinished):
            self.finished = event
        self.inner.on_event(event)


def run_sync(
    *,
    manifest_path: Path | None = None,
    lockfile_path: Path | None = None,
    target: Path | None = None,
    jobs: int | None = None,
    connections: int = DEFAULT_CONNECTIONS,
    max_connections: int | None = None,
    offline: bool = False,
    locked: bool = False,
    frozen: bool = False,
    bundle: BinaryIO | None = None,
    from_oci: str | None = None,
    insecure: bool = False,
    ca_cert: Path | None = None,
    token_hosts: tuple[str, ...] = (),
    assets: tuple[str, ...] = (),
    deadline: float | None = None,
    as_json: bool = False,
    quiet: bool = False,
    level: int = NORMAL,
) -> None:
    """``modelctl sync`` with these options (see its --help); ``level`` is the global
    ``-q``/``-v`` (:data:`~modelctl.cli.echo.QUIET` ...). Raises modelctl errors."""
    oci_ref = None
    if from_oci is not None:
        from modelctl.oci import reference

        oci_ref = reference.parse(from_oci)
    mode = LockMode.of(locked=locked, frozen=frozen)
    lock, settings = _lock_for_sync(
        manifest_path,
        lockfile_path,
        mode,
        # Installing from a bundle or a registry never asks the Hub, not even to re-lock.
        offline=offline or bundle is not None or oci_ref is not None,
        level=level,
    )
    lock = lock.select(assets)
    store = make_store(settings, target)
    recorder = _Recorder(_listener(as_json, quiet or level == QUIET))
    if deadline is not None or max_connections is not None:
        if deadline is not None:
            settings = replace(settings, limits=replace(settings.limits, deadline_s=deadline))
        if max_connections is not None:
            settings = replace(settings, max_connections=max_connections)
    if bundle is not None:
        from modelctl.bundle.source import install_bundle

        install_bundle(bundle, lock, store, listener=recorder)
    elif oci_ref is not None:
        from modelctl.cli.group import open_registry  # click: only for --from
        from modelctl.oci.source import OciSource  # the registry client: only for --from

        registry = open_registry(oci_ref, insecure, ca_cert, token_hosts)
        sync(lock, store, OciSource(lock, registry, oci_ref, jobs), jobs=jobs, listener=recorder)
    else:
        source = hub_source(settings, jobs=jobs, connections=connections)
        sync(lock, store, source, jobs=jobs, listener=recorder)
    if recorder.finished is not None and not as_json and level > QUIET:
        echo(summary_line(recorder.finished), err=True)
    if not as_json:
        echo(str(store.root))


def _lock_for_sync(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    mode: LockMode,
    offline: bool,
    level: int,
) -> tuple[Lock, Settings]:
    """The lock to sync in ``mode``; a re-lock first is said on stderr."""

    def note(text: str) -> None:
        if level > QUIET:
            echo(f"note: {text}", err=True)

    def relocking(reason: str) -> None:
        note(f"{reason}; locking first (`modelctl lock`)")

    chosen = locking.lock_for(
        mode,
        manifest_path,
        lockfile_path,
        os.environ,
        Path.cwd(),
        client=lambda endpoint: locking.make_client(
            from_env(os.environ, manifest_endpoint=endpoint, offline=offline), tell_wait
        ),
        notify=relocking,
    )
    if chosen.relocked is not None:
        note(f"wrote {chosen.lock_path}")
    return chosen.lock, from_env(os.environ, manifest_endpoint=chosen.endpoint, offline=offline)


def _listener(as_json: bool, quiet: bool) -> ProgressListener:
    if as_json:
        return JsonProgress(sys.stdout)
    if quiet:
        return NullProgress()
    if sys.stderr.isatty():
        return TtyProgress(sys.stderr)
    return PlainProgress(sys.stderr)
