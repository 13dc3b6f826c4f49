"""``modelctl dockerfile``: one ``COPY --from`` line per locked asset, for a runtime stage."""

from __future__ import annotations

from pathlib import Path

import click

from modelctl.cli.group import EPILOG, cli
from modelctl.cli.options import project_options
from modelctl.cli.sync_cmds import find_lockfile
from modelctl.lock import lockfile
from modelctl.lock.types import Lock


def copy_lines(lock: Lock, stage: str, source: str, dest: str) -> list[str]:
    """``COPY --from=STAGE SOURCE/<asset> DEST/<asset>`` for each enabled asset with files,
    in the lock's order (assets sorted by name), so the lines are stable across locks."""
    source, dest = source.rstrip("/"), dest.rstrip("/")
    return [
        f"COPY --from={stage} {source}/{a.name} {dest}/{a.name}"
        for a in lock.assets
        if a.enabled and any(src.files for src in a.sources)
    ]


@cli.command("dockerfile", epilog=EPILOG)
@project_options
@click.option(
    "--from",
    "stage",
    default="builder",
    show_default=True,
    help="The build stage that ran `modelctl sync --target SOURCE`.",
)
@click.option(
    "--source", default="/models", show_default=True, help="The synced tree in that stage."
)
@click.option("--dest", default="/models", show_default=True, help="Where the tree goes.")
def dockerfile_cmd(
    manifest_path: Path | None, lockfile_path: Path | None, stage: str, source: str, dest: str
) -> None:
    """Print the runtime stage's COPY lines: one image layer per locked asset.

    One `COPY --from` of the whole tree puts every model in one layer, so a lock change
    re-ships all of them. With one layer per asset, in the lock's order, an image rebuilt
    after a lock change has new layers only for the assets that changed (with podman or
    buildah, build with `--timestamp 0` so that re-made layers are byte-identical).
    Reads only the lockfile.
    """
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path))
    for line in copy_lines(lock, stage, source, dest):
        click.echo(line)
