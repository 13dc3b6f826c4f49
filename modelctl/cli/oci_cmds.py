"""Commands for OCI registries: push (``sync --from oci://`` is in sync_cmds)."""

from __future__ import annotations

from pathlib import Path

import click

from modelctl.cli.format import human_bytes
from modelctl.cli.group import EPILOG, cli, open_registry, settings_for
from modelctl.cli.options import (
    asset_option,
    info,
    project_options,
    registry_options,
    target_option,
)
from modelctl.cli.sync_cmds import find_lockfile
from modelctl.lock import lockfile
from modelctl.oci import reference
from modelctl.project import make_store

# modelctl.oci.push.DEFAULT_PUSH_JOBS: the push code (tar, registry client) is imported
# only by the push command (tests/integration/test_startup_imports.py keeps them equal).
PUSH_JOBS = 4


@cli.command("push", epilog=EPILOG)
@click.argument("dest", metavar="oci://REGISTRY/NAME[:TAG]")
@project_options
@target_option("Push from a `sync --target DIR` tree instead of the HF cache.")
@click.option(
    "--mount-from",
    "mount_from",
    multiple=True,
    metavar="NAME",
    help="A repository of the same registry that may hold the blobs already: they are "
    "mounted from it instead of uploaded (repeatable).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1, max=64),
    default=PUSH_JOBS,
    show_default=True,
    help="Parallel uploads.",
)
@registry_options
@asset_option
def push_cmd(
    dest: str,
    manifest_path: Path | None,
    lockfile_path: Path | None,
    target: Path | None,
    mount_from: tuple[str, ...],
    jobs: int,
    insecure: bool,
    ca_cert: Path | None,
    token_hosts: tuple[str, ...],
    assets: tuple[str, ...],
) -> None:
    """Push the locked files and the lockfile to an OCI registry as a ModelPack artifact.

    One raw layer per locked file (digest = sha256 of its bytes), annotated with its
    path (<asset>/<path>) so oras and Kubernetes image volumes name the files, plus the
    lockfile. Reads the lockfile and the files synced here (run `modelctl sync` first),
    hashing every byte on the way out. Blobs the registry has are not uploaded again; the
    same lock gives the same manifest digest. Prints REGISTRY/NAME:TAG@sha256:...
    Credentials: ~/.docker/config.json, $REGISTRY_AUTH_FILE, containers' auth.json.
    Install elsewhere with `modelctl sync --from oci://REGISTRY/NAME[:TAG|@sha256:...]`.
    With --asset, the artifact holds those assets and a lockfile of only them: install it
    with the same --asset.
    """
    ref = reference.parse(dest)
    if ref.digest is not None:
        raise click.UsageError("push takes a tag, not a digest (the digest is computed)")
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path)).select(assets)
    store = make_store(settings_for(None), target)
    registry = open_registry(ref, insecure, ca_cert, token_hosts)
    from modelctl.oci.push import push

    result = push(
        lock, store, registry, ref.tag or reference.DEFAULT_TAG, mount_from=mount_from, jobs=jobs
    )
    info(
        f"pushed: {result.files} file(s) in {result.blobs} blob(s): {result.uploaded} "
        f"uploaded ({human_bytes(result.bytes_uploaded)} sent), {result.present} already "
        f"there, {result.mounted} mounted; {result.requests} requests"
    )
    click.echo(result.reference)
