"""Where locked files live on disk: the Hugging Face cache, or a plain ``--target`` tree.

HF cache layout (shared with transformers, llama.cpp ``-hf``, ...)::

    <cache>/models--{org}--{name}/blobs/<etag>
    <cache>/models--{org}--{name}/snapshots/<commit>/<path> -> ../../blobs/<etag>
    <cache>/models--{org}--{name}/refs/<branch>          (holds the commit)

``<etag>`` is the digest's hex: sha256 for LFS files, the git blob sha1 otherwise, exactly
as huggingface_hub names blobs. Target layout: ``<target>/<asset>/<path>``, real files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelctl.paths import safe_join
from modelctl.types import FileRef


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


@dataclass(frozen=True)
class HfCacheStore:
    root: Path

    def repo_dir(self, ref: FileRef) -> Path:
        return self.root / repo_folder_name(ref.repo_id, ref.repo_type)

    def final_path(self, ref: FileRef) -> Path:
        snap = self.repo_dir(ref) / "snapshots" / ref.commit
        return safe_join(snap, ref.path, where=f"{ref.repo_id}@{ref.commit}:{ref.path}")

    def content_path(self, ref: FileRef) -> Path:
        return self.repo_dir(ref) / "blobs" / ref.digest.hex


@dataclass(frozen=True)
class TargetStore:
    root: Path

    def final_path(self, ref: FileRef) -> Path:
        return safe_join(self.root / ref.asset, ref.path, where=f"{ref.asset}:{ref.path}")

    def content_path(self, ref: FileRef) -> Path:
        return self.final_path(ref)


def looks_present(store: Store, ref: FileRef) -> bool:
    """Cheap presence: the final path resolves to a file of the locked size."""
    try:
        st = store.final_path(ref).stat()
    except OSError:
        return False
    return ref.size is None or st.st_size == ref.size


def present_refs(store: Store, refs: Iterable[FileRef]) -> list[FileRef]:
    return [r for r in refs if looks_present(store, r)]
