"""The ``modelctl`` group and its lock and plan commands; the exit-code epilog; the
registry client and settings the commands share (their options: :mod:`modelctl.cli.options`)."""

from __future__ import annotations

import importlib
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelctl import locking, project
from modelctl._version import __version__
from modelctl.cli.format import plan_table, tell_wait
from modelctl.cli.options import (
    asset_option,
    detail,
    emit_json,
    info,
    json_option,
    note,
    project_options,
)
from modelctl.errors import EXIT_CODES, StaleLockError
from modelctl.lock.plan import make_plan
from modelctl.lock.types import Manifest
from modelctl.settings import Settings, from_env

if TYPE_CHECKING:
    from modelctl.oci.reference import Reference
    from modelctl.oci.registry import Registry

# "\b" keeps click from re-wrapping the table into one paragraph.
EPILOG = (
    "\b\nExit codes:\n"
    + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    + "\n\n\b\nEnvironment (as huggingface_hub reads it):\n"
    "  HF_ENDPOINT              the Hub or a mirror (the manifest's endpoint: wins)\n"
    "  HF_TOKEN, HF_TOKEN_PATH  the token; else $HF_HOME/token (`hf auth login`)\n"
    "  HF_HOME, HF_HUB_CACHE    the cache; HF_HUB_OFFLINE=1: no network\n"
    "  HF_HUB_DOWNLOAD_TIMEOUT  seconds for a download's connection and headers (10)\n"
    "  HF_HUB_ETAG_TIMEOUT      seconds for metadata requests (10)\n"
    "  MODELCTL_RETRY_WAIT_MAX  longest Retry-After/RateLimit wait honoured (300)\n"
    "  MODELCTL_RETRY_BUDGET    seconds retries may wait in all without progress (600)\n"
    "  SSL_CERT_FILE, HTTPS_PROXY, HTTP_PROXY, NO_PROXY  TLS trust and proxies"
)


def open_registry(
    ref: Reference, insecure: bool, ca_cert: Path | None, token_hosts: tuple[str, ...] = ()
) -> Registry:
    """The registry client, with credentials from the Docker/Podman auth files and the
    retry policy of every request (MODELCTL_RETRY_WAIT_MAX, MODELCTL_RETRY_BUDGET)."""
    # Imported here: the registry client (http.client, ssl) is for the OCI commands only.
    from modelctl.oci import auth
    from modelctl.oci.registry import Registry, RegistryOptions
    from modelctl.transfer.retry import RetryPolicy

    creds = auth.find_credentials(ref.registry, ref.name, os.environ, Path.home())
    settings = settings_for(None)
    options = RegistryOptions(
        insecure=insecure,
        ca_cert=ca_cert,
        policy=RetryPolicy(
            retry_after_max_s=settings.retry_wait_max_s, budget_s=settings.retry_budget_s
        ),
        token_hosts=auth.token_hosts(os.environ, token_hosts),
    )
    return Registry(ref, creds, options)


def load_project(manifest_path: Path | None, lockfile_path: Path | None) -> project.Project:
    return project.find_project(manifest_path, lockfile_path, os.environ, Path.cwd())


def settings_for(manifest_endpoint: str | None, offline: bool = False) -> Settings:
    return from_env(os.environ, manifest_endpoint=manifest_endpoint, offline=offline)


# Which module defines each command not defined here: `modelctl sync` imports the sync
# module only, not every command's dependencies (start-up time, issue 19). Anything that
# reads the whole table (--help, completion, a misspelt command) imports them all.
LAZY_COMMANDS = {
    "sync": "sync_cmds",
    "verify": "sync_cmds",
    "sign": "sign_cmd",
    "push": "oci_cmds",
    "outdated": "report_cmds",
    "export": "report_cmds",
    "completion": "report_cmds",
    "add": "edit_cmds",
    "remove": "edit_cmds",
    "dockerfile": "dockerfile_cmd",
    "bundle": "deploy_cmds",
    "status": "deploy_cmds",
    "gc": "deploy_cmds",
}


class LazyGroup(click.Group):
    """A group whose commands are registered by importing their module on first use.

    ``commands`` (what --help, completion and click's suggestions read) is always the
    whole table; only :meth:`get_command`, which runs one command, imports one module."""

    _table: MutableMapping[str, click.Command]
    _loaded = False

    @property
    def commands(self) -> MutableMapping[str, click.Command]:
        if not self._loaded:
            self._loaded = True
            for module in sorted(set(LAZY_COMMANDS.values())):
                importlib.import_module(f"modelctl.cli.{module}")
        return self._table

    @commands.setter
    def commands(self, value: MutableMapping[str, click.Command]) -> None:
        self._table = value

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        click.core._check_nested_chain(self, name, cmd, register=True)
        self._table[name] = cmd

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._table and cmd_name in LAZY_COMMANDS:
            importlib.import_module(f"modelctl.cli.{LAZY_COMMANDS[cmd_name]}")
        return self._table.get(cmd_name)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelctl")
@click.option(
    "--quiet", "-q", is_flag=True, help="No notes, progress or summaries; results and errors only."
)
@click.option(
    "--verbose", "-v", is_flag=True, help="More detail: what changed, each error's cause."
)
def cli(quiet: bool, verbose: bool) -> None:
    """Lock, download and load ML model files from the Hugging Face Hub.

    \b
    modelctl add      add an asset to modelctl.yaml (checked on the Hub) and lock it
    modelctl remove   drop an asset from modelctl.yaml and the lock
    modelctl lock     resolve modelctl.yaml into modelctl.lock (commits, sizes, digests)
    modelctl outdated which locked branches or tags have newer commits, and what changes
    modelctl plan     show what sync would download
    modelctl sync     download exactly the locked files, verified
    modelctl verify   check the files on disk against the lock
    modelctl status   what the cache (or --target) holds for the lock
    modelctl bundle   pack the locked files into one tar for offline machines
    modelctl push     push the locked files to an OCI registry (ModelPack artifact)
    modelctl gc       list (--delete: remove) what no given lock references
    modelctl dockerfile  print one COPY line per locked asset (one image layer each)
    modelctl export   the lock as a CycloneDX SBOM
    modelctl sign     sign an asset's locked files (OpenSSF Model Signing)
    modelctl completion  shell completion script (bash, zsh, fish)

    Reporting commands take --json (shapes: docs/commands.md); --asset NAME picks a subset.
    """
    if quiet and verbose:
        raise click.UsageError("-q and -v exclude each other")


@cli.command("lock", epilog=EPILOG)
@project_options
@click.option(
    "--check",
    is_flag=True,
    help="Only check that the lock matches the manifest (exit 1 if stale). No network.",
)
@click.option(
    "--upgrade", "-U", is_flag=True, help="Re-resolve every revision to its newest commit."
)
@click.option(
    "--upgrade-asset",
    "-P",
    "upgrade_assets",
    multiple=True,
    metavar="NAME",
    help="Re-resolve only this asset (repeatable).",
)
@json_option("Print the outcome as one JSON object (lockfile, written, counts, changes).")
def lock_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    check: bool,
    upgrade: bool,
    upgrade_assets: tuple[str, ...],
    as_json: bool,
) -> None:
    """Resolve the manifest into the lockfile.

    One metadata request per (repo, revision) gives the commit and every file's size and
    digest. Commits already locked are kept unless --upgrade / --upgrade-asset.
    """
    found = load_project(manifest_path, lockfile_path)
    manifest = project.read_manifest(found)
    if check:
        _lock_check(found, manifest, as_json)
        return
    client = locking.make_client(settings_for(manifest.endpoint), tell_wait)
    result = locking.lock(found, manifest, client, upgrade=upgrade, upgrade_assets=upgrade_assets)
    files = list(result.lock.files())
    changes = result.diff.describe() if result.diff is not None else ()
    if as_json:
        emit_json(
            {
                "lockfile": str(found.lock_path),
                "written": result.written,
                "assets": len(result.lock.assets),
                "files": len(files),
                "changes": list(changes),
            }
        )
        return
    verb = "wrote" if result.written else "unchanged:"
    click.echo(f"{verb} {found.lock_path} ({len(result.lock.assets)} assets, {len(files)} files)")
    for asset in result.lock.assets:
        if asset.signature is not None:
            sig = asset.signature
            info(f"{asset.name}: signature {sig.path} verified ({sig.method}: {sig.identity})")
    for line in changes:
        detail(f"  - {line}")


def _lock_check(found: project.Project, manifest: Manifest, as_json: bool) -> None:
    """`lock --check`: exit 0 when up to date, else StaleLockError (exit 1) naming what changed.

    With --json the verdict is printed as JSON either way, before the error."""
    try:
        project.check(found, manifest)
    except StaleLockError as exc:
        if as_json:
            emit_json(
                {"lockfile": str(found.lock_path), "up_to_date": False, "changes": exc.details}
            )
        raise
    if as_json:
        emit_json({"lockfile": str(found.lock_path), "up_to_date": True, "changes": []})
    else:
        click.echo(f"{found.lock_path} is up to date with {found.manifest_path}")


@cli.command("plan", epilog=EPILOG)
@project_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.option(
    "--target",
    type=click.Path(path_type=Path, file_okay=False),
    help="Plan for a plain tree DIR/<asset>/<path> instead of the HF cache.",
)
@asset_option
def plan_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    as_json: bool,
    target: Path | None,
    assets: tuple[str, ...],
) -> None:
    """Show the DownloadPlan: files, sizes, what is cached, what sync would download."""
    found = load_project(manifest_path, lockfile_path)
    manifest = project.read_manifest(found)
    result = locking.plan(found, manifest, settings_for(manifest.endpoint), target)
    if result.note:
        note(result.note)
    plan = result.plan
    if assets:
        names = {a.name for a in result.lock.select(assets).assets}
        chosen = [f for f in plan.files if f.asset in names]
        plan = make_plan((f.ref for f in chosen), (f.ref for f in chosen if f.cached))
    if as_json:
        emit_json(plan.to_json())
    else:
        for line in plan_table(plan):
            click.echo(line)
