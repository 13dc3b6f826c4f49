"""Where locked files live on disk: the Hugging Face cache, or a plain ``--target`` tree.

HF cache layout (shared with transformers, llama.cpp ``-hf``, ...)::

    <cache>/models--{org}--{name}/blobs/<etag>
    <cache>/models--{org}--{name}/snapshots/<commit>/<path> -> ../../blobs/<etag>
    <cache>/models--{org}--{name}/refs/<branch>          (holds the commit)

``<etag>`` is the digest's hex: sha256 for LFS files, the git blob sha1 otherwise, exactly
as huggingface_hub names blobs. Target layout: ``<target>/<asset>/<path>``, real files.

Beside the files, each store names (deterministically, so a later run finds them):

- a partial file, in the folder of the content so the final ``os.replace`` is atomic:
  ``blobs/<etag>.incomplete`` in the cache, ``<dir>/.<name>.modelctl-partial`` in a tree;
- a lock file: ``<cache>/.locks/<repo folder>/<etag>.lock`` (the one huggingface_hub
  takes), ``<target>/.modelctl/locks/<asset>/<path>.lock`` in a tree;
- a verification record (see :mod:`modelctl.store.record`): per repo in the cache,
  ``<repo folder>/.modelctl/verified/<algo>-<hex>.json`` (huggingface_hub's cache scan
  ignores unknown folders inside a repo folder, but warns about unknown top-level ones),
  ``<target>/.modelctl/verified/<asset>/<path>.json`` in a tree (paths, not digests, are
  unique there: two assets may hold the same content in two files).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from modelctl.errors import UnsafePathError
from modelctl.fs.atomic import atomic_write
from modelctl.fs.paths import in_folder, refuse_symlinks, safe_join, storage_error
from modelctl.fs.safeio import same_text
from modelctl.lock.types import FileRef, is_commit

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

META_DIR: Final = ".modelctl"


def repo_folder_name(repo_id: str, repo_type: str) -> str:
    return f"{repo_type}s--" + repo_id.replace("/", "--")


class Store(Protocol):
    @property
    def root(self) -> Path: ...

    def final_path(self, ref: FileRef) -> Path:
        """Where the application finds the file."""
        ...

    def content_path(self, ref: FileRef) -> Path:
        """Where the bytes are written (a blob in the HF cache, the file itself in a tree)."""
        ...

    def partial_path(self, ref: FileRef) -> Path:
        """Where an unfinished download waits to be resumed (same folder as the content)."""
        ...

    def lock_path(self, ref: FileRef) -> Path:
        """The lock file serializing writers of this content."""
        ...

    def record_path(self, ref: FileRef) -> Path:
        """The verification record of this content."""
        ...

    def link(self, ref: FileRef) -> None:
        """Make the final path name the (complete, verified) content."""
        ...

    def set_ref(self, repo_type: str, repo_id: str, revision: str, commit: str) -> None:
        """Record that ``revision`` (a branch or tag) was locked at ``commit``."""
        ...


@dataclass(frozen=True)
class HfCacheStore:
    root: Path

    def repo_dir(self, ref: FileRef) -> Path:
        return self.root / repo_folder_name(ref.repo_id, ref.repo_type)

    def final_path(self, ref: FileRef) -> Path:
        _check_commit(ref.commit, f"{ref.repo_id}@{ref.commit}:{ref.path}")
        snap = self.repo_dir(ref) / "snapshots" / ref.commit
        return safe_join(snap, ref.path, where=f"{ref.repo_id}@{ref.commit}:{ref.path}")

    def content_path(self, ref: FileRef) -> Path:
        return self.repo_dir(ref) / "blobs" / ref.digest.hex

    def partial_path(self, ref: FileRef) -> Path:
        return self.repo_dir(ref) / "blobs" / f"{ref.digest.hex}.incomplete"

    def lock_path(self, ref: FileRef) -> Path:
        folder = repo_folder_name(ref.repo_id, ref.repo_type)
        return self.root / ".locks" / folder / f"{ref.digest.hex}.lock"

    def record_path(self, ref: FileRef) -> Path:
        name = f"{ref.digest.algorithm}-{ref.digest.hex}.json"
        return self.repo_dir(ref) / META_DIR / "verified" / name

    def link(self, ref: FileRef) -> None:
        """A relative symlink ``snapshots/<commit>/<path> -> ../../blobs/<etag>``, as
        huggingface_hub makes it, swapped in atomically when missing or different."""
        final = self.final_path(ref)
        rel = os.path.relpath(self.content_path(ref), final.parent)
        try:
            if os.readlink(final) == rel:
                return
        except OSError:
            pass  # missing, or not a symlink: (re)create it below
        try:
            try:
                # The usual case, a missing link, needs no temporary name: a process
                # killed here leaves no stray link in the snapshot for other tools to list.
                in_folder(final, lambda: os.symlink(rel, final))
                return
            except FileExistsError:
                pass  # a wrong entry, or one just made by another process: swap in below
            tmp = final.parent / f".{final.name}.{os.urandom(4).hex()}.modelctl-link"
            os.symlink(rel, tmp)
            try:
                os.replace(tmp, final)
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise storage_error("cannot create the snapshot link", final, exc) from exc

    def set_ref(self, repo_type: str, repo_id: str, revision: str, commit: str) -> None:
        if revision == commit:
            return
        _check_commit(commit, f"{repo_id}@{revision}")
        repo = self.root / repo_folder_name(repo_id, repo_type)
        path = safe_join(repo / "refs", revision, where=f"{repo_id}@{revision}")
        write_small_file(path, commit)


def _check_commit(commit: str, where: str) -> None:
    """A commit names the folder ``snapshots/<commit>`` and is written into ``refs/``:
    refuse anything but a commit id, whoever handed it over (a lock is validated when it is
    read or made, this is the last line)."""
    if not is_commit(commit):
        raise UnsafePathError(
            f"unsafe commit id {commit[:80]!r}: it would name a folder in the cache",
            where=where,
            expected="40 lower-case hex characters",
            hint="re-create the lock with `modelctl lock` against a trusted endpoint",
        )


@dataclass(frozen=True)
class TargetStore:
    root: Path

    def final_path(self, ref: FileRef) -> Path:
        return safe_join(self.root / ref.asset, ref.path, where=f"{ref.asset}:{ref.path}")

    def content_path(self, ref: FileRef) -> Path:
        return self.final_path(ref)

    def partial_path(self, ref: FileRef) -> Path:
        final = self.final_path(ref)
        return final.with_name(f".{final.name}.modelctl-partial")

    def lock_path(self, ref: FileRef) -> Path:
        return self._meta(ref, "locks", ".lock")

    def record_path(self, ref: FileRef) -> Path:
        return self._meta(ref, "verified", ".json")

    def _meta(self, ref: FileRef, kind: str, suffix: str) -> Path:
        where = f"{ref.asset}:{ref.path}"
        path = safe_join(self.root / META_DIR / kind / ref.asset, ref.path, where=where)
        return path.with_name(path.name + suffix)

    def link(self, ref: FileRef) -> None:
        return None  # the content is written at its final path

    def check_paths(self, refs: Iterable[FileRef]) -> None:
        """Refuse (UnsafePathError) a symlink on the way to any file written for ``refs``:
        the file, its partial download, its lock and its record."""
        seen: set[Path] = set()
        for ref in refs:
            for path in (
                self.final_path(ref),
                self.partial_path(ref),
                self.lock_path(ref),
                self.record_path(ref),
            ):
                refuse_symlinks(self.root, path, seen=seen)

    def set_ref(self, repo_type: str, repo_id: str, revision: str, commit: str) -> None:
        return None  # a plain tree has no notion of revisions


def check_writable(store: Store, refs: Iterable[FileRef]) -> None:
    """Before anything is written for ``refs``: refuse symlinks in a ``--target`` tree.

    A symlink there could send writes outside the tree, or make two locked files (each
    under its own lock) share one partial file. The HF cache is exempt: its snapshot
    entries are symlinks by design, and a cache folder linked to a bigger disk is common;
    its partial and lock files are opened with O_NOFOLLOW instead.
    """
    if isinstance(store, TargetStore):
        store.check_paths(refs)


def write_small_file(path: Path, text: str) -> None:
    """Write ``text`` atomically, and only when it differs from what is there."""
    try:
        if same_text(path, text):
            return
        in_folder(path, lambda: atomic_write(path, text.encode("utf-8")))
    except OSError as exc:
        raise storage_error(f"cannot write {path.name}", path, exc) from exc
