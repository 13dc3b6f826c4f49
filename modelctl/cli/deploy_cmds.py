"""Commands for deployment: bundle, status, gc (``sync --from-bundle`` is in sync_cmds)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from modelctl.cli.format import human_bytes, table
from modelctl.cli.group import EPILOG, cli, settings_for
from modelctl.cli.options import (
    asset_option,
    emit_json,
    info,
    json_option,
    project_options,
    target_option,
)
from modelctl.cli.sync_cmds import find_lockfile
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.project import make_store
from modelctl.store.gc import DEFAULT_PARTIAL_AGE_S, GcPlan, GcResult, collect, find_garbage
from modelctl.store.status import status

_TARGET_TEXT = "a `sync --target DIR` tree instead of the HF cache."


@cli.command("bundle", epilog=EPILOG)
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@project_options
@target_option(f"Bundle from {_TARGET_TEXT}")
@asset_option
@json_option()
def bundle_cmd(
    out: Path,
    manifest_path: Path | None,
    lockfile_path: Path | None,
    target: Path | None,
    assets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write the locked files and the lockfile into one tar, OUT, for offline machines.

    Reads only the lockfile and the files already synced here (run `modelctl sync` first);
    every byte is hashed against the lock on the way in. Install it elsewhere with
    `modelctl sync --from-bundle OUT`. The archive is written to a temporary file and
    renamed, so OUT is complete or absent. With --asset, the bundle holds those assets and
    a lockfile of only them: install it with the same --asset.
    """
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path)).select(assets)
    store = make_store(settings_for(None), target)
    from modelctl.bundle.archive import write_bundle  # tarfile & co.: only for this command

    result = write_bundle(lock, store, out)
    if as_json:
        emit_json(
            {
                "path": str(out),
                "location": str(store.root),
                "assets": [a.name for a in lock.assets],
                "files": result.files,
                "blobs": result.blobs,
                "content_bytes": result.content_bytes,
                "bundle_bytes": result.bundle_bytes,
                "lock_sha256": result.lock_sha256,
            }
        )
        return
    info(
        f"bundled: {result.files} file(s) ({result.blobs} distinct, "
        f"{human_bytes(result.content_bytes)}) from {store.root}; "
        f"{human_bytes(result.bundle_bytes)} archive; lock {result.lock_sha256}"
    )
    click.echo(str(out))


@cli.command("status", epilog=EPILOG)
@project_options
@target_option(f"Report on {_TARGET_TEXT}")
@asset_option
@json_option("Print the report as one JSON object.")
def status_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    target: Path | None,
    assets: tuple[str, ...],
    as_json: bool,
) -> None:
    """What the cache (or --target) holds for this lock: each file's state and size.

    \b
    verified    present, and a record of a verified download or check vouches for it
    unverified  present with the locked size; `modelctl verify` would hash it
    wrong-size  present with another size than locked
    missing     not there
    Reads only (stats and records, no hashing, no network); exit 0 whatever it finds.
    """
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path)).select(assets)
    report = status(lock, make_store(settings_for(None), target))
    if as_json:
        emit_json(report.to_json())
        return
    rows = [
        (f.ref.asset, f.ref.path, human_bytes(f.ref.size), f.state, human_bytes(f.bytes_on_disk))
        for f in report.files
    ]
    for line in table(("asset", "file", "size", "state", "on disk"), rows, right={2, 4}):
        click.echo(line)
    counts = ", ".join(
        f"{report.count(s)} {s}"
        for s in ("verified", "unverified", "wrong-size", "missing")
        if report.count(s)
    )
    click.echo("")
    click.echo(
        f"{len(report.files)} file(s): {counts or 'none'}; locked "
        f"{human_bytes(report.locked_bytes)}, on disk {human_bytes(report.bytes_on_disk)}; "
        f"in {report.location}"
    )


@cli.command("gc", epilog=EPILOG)
@click.option(
    "--manifest",
    "-m",
    "manifest_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Use this manifest's lockfile (when no --lockfile is given).",
)
@click.option(
    "--lockfile",
    "lockfile_paths",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A lock whose files are kept (repeatable). Default: this project's lockfile.",
)
@target_option(f"Collect in {_TARGET_TEXT}")
@click.option("--delete", is_flag=True, help="Delete what is listed. Default: a dry run.")
@click.option(
    "--all-repos",
    is_flag=True,
    help="Also look at repo folders (asset folders in a --target tree) that no given lock "
    "uses, and delete them whole. Default: only those the locks use.",
)
@click.option(
    "--partial-age",
    type=click.FloatRange(min=0),
    default=DEFAULT_PARTIAL_AGE_S / 3600,
    show_default=True,
    metavar="HOURS",
    help="Unfinished downloads older than this are garbage (younger ones may be running).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def gc_cmd(
    manifest_path: Path | None,
    lockfile_paths: tuple[Path, ...],
    target: Path | None,
    delete: bool,
    all_repos: bool,
    partial_age: float,
    as_json: bool,
) -> None:
    """List (or with --delete, remove) cached files that no given lock references.

    Keeps every file of every lock given with --lockfile (default: this project's lock).
    Looks only inside the HF cache's folders of the repos those locks use (or the asset
    folders of a --target tree), unless --all-repos: a cache shared with other projects or
    tools keeps their repos. Pass every lock still in use on this machine, or those
    projects' files in shared repos are listed too. Files being written by a running sync
    or download (their lock file is held) are skipped.
    """
    paths = list(lockfile_paths) or [find_lockfile(manifest_path, None)]
    locks: list[Lock] = [lockfile.load(p) for p in paths]
    store = make_store(settings_for(None), target)
    plan = find_garbage(
        locks, store, all_repos=all_repos, partial_age_s=partial_age * 3600, now=time.time()
    )
    result = collect(plan) if delete else None
    if as_json:
        emit_json(_gc_json(plan, result))
        return
    for line in _gc_lines(plan, result):
        click.echo(line)


def _gc_json(plan: GcPlan, result: GcResult | None) -> dict[str, object]:
    data: dict[str, object] = {**plan.to_json(), "dry_run": result is None}
    if result is not None:
        data["deleted"] = [g.to_json(plan.location) for g in result.deleted]
        data["skipped_in_use"] = [g.to_json(plan.location) for g in result.skipped]
        data["bytes_freed"] = result.bytes_freed
        data["broken_links_removed"] = result.links_removed
    return data


def _gc_lines(plan: GcPlan, result: GcResult | None) -> list[str]:
    lines: list[str] = []
    if plan.items:
        rows = [
            (g.kind, human_bytes(g.bytes), g.to_json(plan.location)["path"]) for g in plan.items
        ]
        lines.extend(table(("kind", "bytes", "path"), rows, right={1}))
        lines.append("")
    scope = f"{len(plan.scanned)} folder(s) of {plan.location}"
    if result is None:
        lines.append(
            f"{len(plan.items)} item(s), {human_bytes(plan.bytes)} that no given lock "
            f"references, in {scope}; dry run: nothing deleted (pass --delete)"
        )
        return lines
    lines.append(
        f"deleted {len(result.deleted)} item(s), freed {human_bytes(result.bytes_freed)}, "
        f"in {scope}"
    )
    if result.links_removed:
        lines.append(f"removed {result.links_removed} broken snapshot link(s)")
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} item(s) in use by a running download")
    return lines
