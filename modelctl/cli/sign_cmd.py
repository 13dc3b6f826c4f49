"""`modelctl sign`: an OpenSSF Model Signing signature over an asset's locked files."""

from __future__ import annotations

import os
from pathlib import Path

import click

from modelctl.cli.group import EPILOG, cli, settings_for
from modelctl.cli.options import info, project_options
from modelctl.cli.sync_cmds import find_lockfile
from modelctl.errors import InputError, IntegrityError
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest, digest_file
from modelctl.lock.types import ROLE_SIGNATURE, SIGNATURE_DEFAULT_PATH, Lock, LockedAsset
from modelctl.project import make_store
from modelctl.provenance import oms


@cli.command("sign", epilog=EPILOG)
@project_options
@click.option(
    "--key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The private key (PEM, elliptic curve) to sign with.",
)
@click.option(
    "--certificate",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Sign with this signing certificate (PEM) for --key: the certificate method.",
)
@click.option(
    "--chain",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A certificate of the chain above --certificate (PEM; repeatable).",
)
@click.option(
    "--password-env",
    metavar="VAR",
    help="Read the private key's password from this environment variable.",
)
@click.option(
    "--asset",
    "asset_name",
    metavar="NAME",
    help="The locked asset to sign. Default: the lock's only asset with files.",
)
@click.option(
    "--target",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="MODELCTL_TARGET",
    help="Read the files from a `sync --target` tree instead of the HF cache "
    "[env: MODELCTL_TARGET]",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the signature. Default: model.sig (or the asset's signature path) "
    "in the current folder.",
)
def sign_cmd(
    manifest_path: Path | None,
    lockfile_path: Path | None,
    key: Path,
    certificate: Path | None,
    chain: tuple[str, ...],
    password_env: str | None,
    asset_name: str | None,
    target: Path | None,
    output: Path | None,
) -> None:
    """Sign the locked files of an asset with OpenSSF Model Signing, as
    `model_signing sign key` (or `sign certificate`) does for a folder of those files.

    Every file locked from the asset's repo must be synced: each is hashed (SHA-256) and
    checked against the lock before it is signed. Publish the signature beside the files
    (as model.sig) and require it in consumers' manifests (signature: key: ...). Needs
    the `sign` extra (pip install 'modelctl[sign]'). See docs/provenance.md.
    """
    lock = lockfile.load(find_lockfile(manifest_path, lockfile_path))
    asset = _chosen(lock, asset_name)
    src = asset.sources[0]
    sig_path = asset.signature.path if asset.signature else SIGNATURE_DEFAULT_PATH
    store = make_store(settings_for(None), target)
    files: dict[str, Digest] = {}
    for ref in Lock(lock.version, lock.manifest_hash, (asset,)).files():
        if (ref.repo_type, ref.repo_id, ref.commit) != (src.repo_type, src.repo_id, src.commit):
            continue  # another repo (a gguf asset's tokenizer): not in this repo's signature
        if ref.role == ROLE_SIGNATURE or ref.path == sig_path:
            continue
        locked = next(f for f in src.files if f.path == ref.path)
        path = store.content_path(ref)  # the bytes (a blob in the HF cache)
        if not path.is_file():
            raise InputError(
                "a locked file to sign is not on disk",
                where=f"{ref.label()} ({path})",
                hint="run `modelctl sync` first (with the same --target)",
            )
        actual = digest_file(path, "sha256")
        expected = locked.content_sha256
        if expected is None:  # an older lock: check the git blob id instead
            ok = digest_file(path, locked.digest.algorithm) == locked.digest
        else:
            ok = actual == expected
        if not ok:
            raise IntegrityError(
                "a file to sign differs from the lock",
                where=f"{ref.label()} ({path})",
                expected=str(expected or locked.digest),
                actual=str(actual),
                hint="run `modelctl sync` to restore it; only locked bytes are signed",
            )
        files[ref.path] = actual
    password = os.environ.get(password_env) if password_env else None
    out = output or Path(Path(sig_path).name)
    oms.sign(
        files,
        src.repo_id.rsplit("/", 1)[-1],
        sig_path,
        out,
        key=key,
        certificate=certificate,
        chain=[Path(c) for c in chain],
        password=password,
    )
    method = "certificate" if certificate else "key"
    info(f"signed {len(files)} file(s) of asset {asset.name!r} ({src.repo_id}@{src.commit})")
    click.echo(f"wrote {out} ({method} signature)")


def _chosen(lock: Lock, name: str | None) -> LockedAsset:
    with_files = [a for a in lock.assets if a.enabled and a.sources]
    if name is not None:
        asset = lock.select([name]).assets[0]
        if not (asset.enabled and asset.sources):
            raise InputError(f"asset {name!r} locks no files", hint="sign an asset that has files")
        return asset
    if len(with_files) != 1:
        raise InputError(
            "name the asset to sign with --asset",
            expected="one of: " + (", ".join(a.name for a in with_files) or "(none)"),
            hint="a signature covers one asset's repo",
        )
    return with_files[0]
