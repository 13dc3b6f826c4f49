"""Reusable click options and output helpers: --manifest/--lockfile, --target, the
registry options, --asset, --json, the global -q/-v.

Every command that reports something takes ``--json`` (one documented shape per command,
see docs/commands.md) and honours the global ``modelctl -q`` / ``-v``:

- ``-q``: no notes, progress or summary lines on stderr; results and errors still print.
- ``-v``: notes plus details (what changed, each error's underlying cause).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from modelctl.cli.echo import NORMAL, QUIET, VERBOSE

F = TypeVar("F", bound=Callable[..., Any])


def project_options(func: F) -> F:
    """--manifest / --lockfile, shared by every command that reads a project."""
    func = click.option(
        "--lockfile",
        "lockfile_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Lockfile path. Default: the manifest's path with .lock (modelctl.lock).",
    )(func)
    func = click.option(
        "--manifest",
        "-m",
        "manifest_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Manifest path. Default: $MODELCTL_MANIFEST, else modelctl.yaml here or above.",
    )(func)
    return func


def target_option(text: str) -> Callable[[F], F]:
    """--target DIR (or $MODELCTL_TARGET): a `sync --target` tree instead of the HF cache."""
    return click.option(
        "--target",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="MODELCTL_TARGET",
        help=f"{text} [env: MODELCTL_TARGET]",
    )


def registry_options(func: F) -> F:
    """--insecure / --ca-cert / --token-host, shared by push and sync --from."""
    func = click.option(
        "--token-host",
        "token_hosts",
        multiple=True,
        metavar="HOST",
        help="Trust HOST with the registry's credentials when the registry's token service "
        "is there (a Bearer realm on another origin); used over HTTPS only (repeatable) "
        "[env: MODELCTL_REGISTRY_TOKEN_HOSTS]. Without it, credentials go only to the "
        "registry's own origin.",
    )(func)
    func = click.option(
        "--ca-cert",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        envvar="MODELCTL_REGISTRY_CA_CERT",
        help="Also trust the CA certificates in this PEM file for the registry "
        "[env: MODELCTL_REGISTRY_CA_CERT]",
    )(func)
    func = click.option(
        "--insecure",
        is_flag=True,
        help="Allow plain HTTP, or HTTPS with an unverified certificate, for a registry that "
        "is not on loopback (test registries only).",
    )(func)
    return func


def asset_option(func: F) -> F:
    """``--asset NAME`` (repeatable), passed as ``assets: tuple[str, ...]``.

    Use with :meth:`modelctl.lock.types.Lock.select`: one lock, a subset per service image.
    """
    return click.option(
        "--asset",
        "assets",
        multiple=True,
        metavar="NAME",
        help="Only this locked asset (repeatable). Default: every asset. An unknown name "
        "exits 2 listing the locked ones.",
    )(func)


def json_option(text: str = "Print the result as one JSON object on stdout.") -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=text)


def verbosity() -> int:
    """QUIET, NORMAL or VERBOSE, from the global ``modelctl -q/-v`` (NORMAL outside click)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return NORMAL
    root = ctx.find_root()
    if root.params.get("quiet"):
        return QUIET
    return VERBOSE if root.params.get("verbose") else NORMAL


def note(text: str) -> None:
    """A remark on stderr (``note: ...``), silenced by ``-q``."""
    if verbosity() > QUIET:
        click.echo(f"note: {text}", err=True)


def info(text: str) -> None:
    """A summary line on stderr, silenced by ``-q``."""
    if verbosity() > QUIET:
        click.echo(text, err=True)


def detail(text: str) -> None:
    """Only with ``-v``: more about what happened, on stderr."""
    if verbosity() >= VERBOSE:
        click.echo(text, err=True)


def emit_json(data: object) -> None:
    """The one JSON document of a command, on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
