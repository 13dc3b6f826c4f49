"""Commands: sync and verify."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import click

from modelctl.cli.format import human_bytes
from modelctl.cli.group import EPILOG, cli, settings_for
from modelctl.cli.options import (
    asset_option,
    emit_json,
    json_option,
    project_options,
    registry_options,
    target_option,
    verbosity,
)
from modelctl.cli.sync_run import run_sync
from modelctl.lock import lockfile
from modelctl.parallel import DEFAULT_CONNECTIONS
from modelctl.project import find_lock, make_store
from modelctl.settings import DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_LIMIT
from modelctl.store.verify import VerifyReport, check, raise_problems


def find_lockfile(manifest_path: Path | None, lockfile_path: Path | None) -> Path:
    """For commands that read only the lock: the one search (see :mod:`modelctl.project`)."""
    return find_lock(lockfile_path, manifest_path, os.environ, Path.cwd())


@cli.command("sync", epilog=EPILOG)
@project_options
@target_option("Write a plain tree DIR/<asset>/<path> (real files) instead of the HF cache.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=64),
    help="Parallel downloads. Default: min(8, files to download).",
)
@click.option(
    "--connections",
    "-x",
    type=click.IntRange(min=1, max=64),
    default=DEFAULT_CONNECTIONS,
    show_default=True,
    help="Connections per file, like aria2c -x: a file of 16 MiB or more starts on one "
    "and opens more while they add throughput (1 = one stream per file).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1, max=MAX_CONNECTIONS_LIMIT),
    help="Connections over all files at once (default $MODELCTL_MAX_CONNECTIONS, else "
    f"{DEFAULT_MAX_CONNECTIONS}: what aria2c -x8 -j8 may open).",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Never open a connection (also HF_HUB_OFFLINE=1): fail naming any missing file.",
)
@click.option("--locked", is_flag=True, help="Fail (exit 1) if the lock is stale; never re-lock.")
@click.option(
    "--frozen", is_flag=True, help="Use the lockfile as it is, without reading the manifest."
)
@click.option(
    "--from-bundle",
    "bundle",
    type=click.File("rb"),
    help="Install from a `modelctl bundle` tar ('-' = stdin) instead of the network: never "
    "connects, verifies every byte, refuses a bundle of another lock.",
)
@click.option(
    "--from",
    "from_oci",
    metavar="oci://REGISTRY/NAME[:TAG|@sha256:...]",
    help="Install from an OCI artifact pushed by `modelctl push` instead of the Hub: verifies "
    "every byte against this lock, refuses an artifact of another lock, resumes.",
)
@registry_options
@asset_option
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up (exit 3) when the downloads take longer than this; what was fetched is "
    "kept. Also MODELCTL_DEADLINE. Default: none. Other limits: a body slower than 1 KiB/s "
    "for 30 s, or headers not complete in 60 s, is resumed on a new connection; 5 attempts "
    "in a row that bring less than 64 KiB each end the file.",
)
@click.option("--json", "as_json", is_flag=True, help="Write progress as NDJSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary line.")
def sync_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    target: Path | None,
    jobs: int | None,
    connections: int,
    max_connections: int | None,
    offline: bool,
    locked: bool,
    frozen: bool,
    bundle: BinaryIO | None,
    from_oci: str | None,
    insecure: bool,
    ca_cert: Path | None,
    token_hosts: tuple[str, ...],
    assets: tuple[str, ...],
    deadline: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Download exactly the locked files, verified, into the HF cache (or --target).

    Every byte is checked against the lock's digest while it streams; files appear only
    complete. Interrupted downloads resume. When everything is present, no request is
    made. Without --locked/--frozen, a missing or stale lock is re-locked first.
    With --asset, only those assets are planned, counted and synced (one lock, a subset
    per service image).
    """
    if locked and frozen:
        raise click.UsageError("--locked and --frozen exclude each other")
    if bundle is not None and from_oci is not None:
        raise click.UsageError("--from-bundle and --from exclude each other")
    run_sync(
        manifest_path=manifest_path,
        lockfile_path=lockfile_path,
        target=target,
        jobs=jobs,
        connections=connections,
        max_connections=max_connections,
        offline=offline,
        locked=locked,
        frozen=frozen,
        bundle=bundle,
        from_oci=from_oci,
        insecure=insecure,
        ca_cert=ca_cert,
        token_hosts=token_hosts,
        assets=assets,
        deadline=deadline,
        as_json=as_json,
        quiet=quiet,
        level=verbosity(),
    )


@cli.command("verify", epilog=EPILOG)
@project_options
@target_option("Verify a `sync --target DIR` tree instead of the HF cache.")
@click.option(
    "--full", is_flag=True, help="Hash every file (blake3 if recorded, else the lock's digest)."
)
@asset_option
@json_option("Print the report as one JSON object (also when files differ: exit 1 after it).")
def verify_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    target: Path | None,
    full: bool,
    assets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check every locked file on disk: present, right size, right content (exit 1 if not).

    Reads only the lockfile. Without --full, files with a record of an earlier verified
    download are trusted when unchanged (size, mtime, inode); others are hashed.
    """
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path)).select(assets)
    settings = settings_for(None)
    store = make_store(settings, target)
    report = check(lock, store, full=full)
    if as_json:
        emit_json(verify_json(report))
    raise_problems(report)
    if as_json:
        return
    size = sum(f.ref.size or 0 for f in report.files)
    click.echo(
        f"verified: {len(report.files)} file(s), {human_bytes(size)}, "
        f"{report.hashed} hashed; in {report.location}"
    )


def verify_json(report: VerifyReport) -> dict[str, object]:
    """`verify --json`: location, ok, hashed, files[{asset, repo_id, commit, filename,
    size_bytes, digest, path, status, how, actual}]."""
    return {
        "location": report.location,
        "ok": not report.problems,
        "hashed": report.hashed,
        "files": [
            {
                "asset": f.ref.asset,
                "repo_id": f.ref.repo_id,
                "commit": f.ref.commit,
                "filename": f.ref.path,
                "size_bytes": f.ref.size,
                "digest": str(f.ref.digest),
                "path": str(f.path),
                "status": f.check.status,
                "how": f.check.how,
                "actual": f.check.actual,
            }
            for f in report.files
        ],
    }
