"""Helpers shared by tests (import as ``from tests.support.helpers import ...``)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def write_repo(
    root: Path,
    repo_id: str,
    files: dict[str, bytes],
    branch: str = "main",
    lfs_patterns: tuple[str, ...] = (),
) -> Path:
    """Lay out one repo for the local Hub: ``root/<org>/<name>/<branch>/<path>``."""
    base = root / repo_id / branch
    for rel, data in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if lfs_patterns:
        lines = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in lfs_patterns)
        (base / ".gitattributes").write_text(lines)
    return base


def blob(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random content: the same seed and size give the same bytes."""
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


LOCK_TEMPLATE = """\
version: 1
manifest: sha256:{z}
assets:
  a:
    kind: files
    enabled: true
    spec: sha256:{z}
    sources:
    - repo: o/a
      repo_type: model
      revision: main
      commit: {c}
      files:
      - path: {path}
        size: 3
        digest: {digest}
        role: file
"""


def lock_text(path: str = "x.bin", digest: str = "gitsha1:" + "1" * 40) -> str:
    """A valid one-file lockfile, to edit into invalid ones."""
    return LOCK_TEMPLATE.format(z="0" * 64, c="a" * 40, path=path, digest=digest)
