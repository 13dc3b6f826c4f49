"""``modelctl add`` / ``remove``: edit the manifest, check the change on the Hub, re-lock.

Nothing is written until everything is known to work: the edited manifest parses and
validates, and the new asset resolves on the Hub (its repo, revision, files and globs
exist). Then the manifest and the lockfile are each replaced atomically.

Re-locking touches just the asset when the lock was up to date: ``add`` resolves only the
new asset (one metadata request per repo; a repo@revision already locked keeps its
commit), ``remove`` drops it without any request. A lock that was already stale is
re-resolved whole, keeping its locked commits, as ``modelctl lock`` would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from modelctl.errors import InputError, ManifestError, StorageError
from modelctl.fs.atomic import atomic_file
from modelctl.lock import lockfile
from modelctl.lock.edit import add_asset, remove_asset
from modelctl.lock.manifest import KOKORO_REPO, parse_manifest
from modelctl.lock.types import Lock, Manifest
from modelctl.lock.yamldoc import read_text
from modelctl.project import Project, load_previous

if TYPE_CHECKING:
    from modelctl.hub.client import HubClient

# modelctl.hub.resolve (and through it huggingface_hub) is imported where a resolve runs:
# importing this module costs a CLI start-up nothing.

KINDS: Final = ("files", "stt", "gguf", "kokoro", "api")


@dataclass(frozen=True)
class AssetOptions:
    """What ``modelctl add`` was told, before it becomes a manifest entry."""

    kind: str = "files"
    repo: str | None = None
    files: Sequence[str] = ()
    revision: str | None = None
    repo_type: str | None = None
    tokenizer: str | None = None
    tokenizer_files: Sequence[str] = ()
    voices: Sequence[str] = ()
    variant: str | None = None
    description: str | None = None


def asset_spec(opts: AssetOptions) -> dict[str, Any]:
    """The manifest entry for ``opts`` (keys in docs/manifest.md's order); InputError when the
    options do not fit the kind."""
    kind = opts.kind
    _only(kind, ("gguf",), tokenizer=opts.tokenizer, tokenizer_file=opts.tokenizer_files)
    _only(kind, ("kokoro",), voice=opts.voices, variant=opts.variant)
    _only(kind, ("files", "stt"), repo_type=opts.repo_type)
    _only(kind, ("files", "stt", "gguf"), file=opts.files)
    if kind == "api":
        _only(kind, (), repo=opts.repo, revision=opts.revision)
    spec: dict[str, Any] = {}
    if kind != "files":
        spec["kind"] = kind
    if opts.description:
        spec["description"] = opts.description
    if kind in ("files", "stt", "gguf") and not opts.repo:
        raise InputError(
            f"kind {kind!r} needs a repo", hint="modelctl add NAME ORG/REPO [--file PATH]..."
        )
    if opts.repo and (kind != "kokoro" or opts.repo != KOKORO_REPO):
        spec["repo"] = opts.repo
    if opts.revision:
        spec["revision"] = opts.revision
    if opts.repo_type and opts.repo_type != "model":
        spec["repo_type"] = opts.repo_type
    if kind == "files":
        if not opts.files:
            raise InputError(
                "kind 'files' needs at least one --file PATH (a path or a glob)",
                hint="e.g. --file model.bin --file '*.json'",
            )
        spec["files"] = list(dict.fromkeys(opts.files))
    elif kind == "stt" and opts.files:  # else the preset's default layout
        spec["files"] = list(dict.fromkeys(opts.files))
    elif kind == "gguf":
        if len(opts.files) != 1:
            raise InputError(
                f"kind 'gguf' needs exactly one --file (the .gguf), got {len(opts.files)}",
                hint="e.g. --file qwen2.5-0.5b-instruct-q4_k_m.gguf",
            )
        spec["file"] = opts.files[0]
        if opts.tokenizer:
            tok: dict[str, Any] = {"repo": opts.tokenizer}
            if opts.tokenizer_files:
                tok["files"] = list(dict.fromkeys(opts.tokenizer_files))
            spec["tokenizer"] = tok
    elif kind == "kokoro":
        if opts.variant:
            spec["variant"] = opts.variant
        if opts.voices:
            spec["voices"] = list(dict.fromkeys(opts.voices))
    return spec


def _only(kind: str, kinds: tuple[str, ...], **given: object) -> None:
    for option, value in given.items():
        if value and kind not in kinds:
            flag = "--" + option.replace("_", "-")
            allowed = " or ".join(kinds) if kinds else "no kind: leave it out"
            raise InputError(
                f"{flag} does not apply to kind {kind!r}",
                expected=f"--kind {allowed}" if kinds else allowed,
                hint="see `modelctl add --help`",
            )


@dataclass(frozen=True)
class Change:
    """The outcome of add/remove: both manifests, and the lock (written unless dry run)."""

    manifest_before: str
    manifest_after: str
    lock: Lock
    relocked: str  # "asset": only the asset was (re)locked; "all": the lock was stale
    written: bool


def add(
    project: Project,
    name: str,
    spec: dict[str, Any],
    client: HubClient,
    *,
    dry_run: bool = False,
) -> Change:
    """Add asset ``name``; resolve it on the Hub; write the manifest and the lock."""
    from modelctl.hub.resolve import resolve

    before, old = _read(project)
    after = add_asset(before, name, spec, str(project.manifest_path))
    new = _parse_new(after, project, name)
    previous = load_previous(project.lock_path)
    asset = new.asset(name)
    if asset is None:  # add_asset checked the edited data; kept for the type checker
        raise ManifestError(f"asset {name!r} is missing after the edit", where=new.source)
    if previous is not None and _fresh(old, previous):
        only = Manifest(new.source, new.endpoint, (asset,))
        locked = resolve(only, client, previous).assets
        lock = Lock(previous.version, new.manifest_hash(), (*previous.assets, *locked))
        relocked = "asset"
    else:
        lock = resolve(new, client, previous)
        relocked = "all"
    return _finish(project, before, after, lock, relocked, dry_run)


def remove(project: Project, name: str, client: HubClient, *, dry_run: bool = False) -> Change:
    """Remove asset ``name`` from the manifest and the lock (``client`` is asked only when
    the lock was stale)."""
    from modelctl.hub.resolve import resolve

    before, old = _read(project)
    after = remove_asset(before, name, str(project.manifest_path))
    new = parse_manifest(after, str(project.manifest_path))
    previous = load_previous(project.lock_path)
    if previous is None or _fresh(old, previous):
        kept = tuple(a for a in previous.assets if a.name != name) if previous else ()
        lock = Lock(lockfile.LOCK_VERSION, new.manifest_hash(), kept)
        relocked = "asset"
    else:
        lock = resolve(new, client, previous)
        relocked = "all"
    return _finish(project, before, after, lock, relocked, dry_run)


def _read(project: Project) -> tuple[str, Manifest]:
    text = read_text(project.manifest_path, ManifestError, "manifest")
    return text, parse_manifest(text, str(project.manifest_path))


def _parse_new(text: str, project: Project, name: str) -> Manifest:
    try:
        return parse_manifest(text, str(project.manifest_path))
    except ManifestError as exc:
        raise ManifestError(
            f"the new asset {name!r} would make the manifest invalid: {exc.message}",
            where=exc.where,
            details=exc.details,
            hint=exc.hint,
        ) from exc


def _fresh(manifest: Manifest, lock: Lock | None) -> bool:
    return (
        lock is not None
        and lock.manifest_hash == manifest.manifest_hash()
        and not lockfile.diff(manifest, lock).stale
    )


def _finish(
    project: Project, before: str, after: str, lock: Lock, relocked: str, dry_run: bool
) -> Change:
    if not dry_run:
        write_text(project.manifest_path, after)
        lockfile.write(project.lock_path, lock)
    return Change(before, after, lock, relocked, written=not dry_run)


def write_text(path: Path, text: str) -> None:
    """Write ``path`` atomically (:mod:`modelctl.fs.atomic`), keeping an existing file's mode."""
    try:
        mode = path.stat().st_mode & 0o7777 if path.exists() else None
        with atomic_file(path) as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(text.encode("utf-8"))
    except OSError as exc:
        raise StorageError(f"cannot write the file: {exc.strerror}", where=str(path)) from exc
