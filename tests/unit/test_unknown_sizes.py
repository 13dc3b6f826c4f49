"""Graceful degradation: a Hub that reports no sizes gives a plan with None sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelctl import locking
from modelctl.cli.format import plan_table
from modelctl.hub.answers import RemoteFile, RepoSnapshot
from modelctl.hub.resolve import resolve
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest
from modelctl.lock.manifest import parse_manifest
from modelctl.lock.plan import plan_lock
from modelctl.lock.types import RepoType
from modelctl.project import Project, make_store
from modelctl.settings import from_env


class SizelessHub:
    """A HubClient (the seam lock uses) whose listing and HEAD know no sizes."""

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        files = (
            RemoteFile("a.bin", None, Digest("sha256", "a" * 64)),
            RemoteFile("b.txt", 7, None),
        )
        return RepoSnapshot(repo_id, repo_type, "c" * 40, files)

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        digests = {"a.bin": Digest("sha256", "a" * 64), "b.txt": Digest("gitsha1", "b" * 40)}
        return RemoteFile(path, None, digests[path])


def test_unknown_sizes_flow_through_lock_and_plan(tmp_path: Path) -> None:
    manifest = parse_manifest("assets:\n  x:\n    repo: o/x\n    files: ['*']\n")
    lock = resolve(manifest, SizelessHub(), hash_regular=False)
    sizes = {r.path: r.size for r in lock.files()}
    assert sizes == {"a.bin": None, "b.txt": 7}
    assert str(next(r for r in lock.files() if r.path == "b.txt").digest) == "gitsha1:" + "b" * 40
    text = lockfile.render(lock)
    assert "size: null" in text
    assert lockfile.parse(text) == lockfile.normalize(lock)

    plan = plan_lock(lock)
    assert plan.total_bytes == 7 and plan.unknown_sizes == 1 and plan.needs_download()
    doc = plan.to_json()
    assert [f["size_bytes"] for f in doc["files"]] == [None, 7]
    json.dumps(doc)  # serializable
    table = "\n".join(plan_table(plan))
    assert "?" in table and "1 file(s) of unknown size" in table


def test_plan_marks_unknown_size_file_cached_when_present(tmp_path: Path) -> None:
    manifest = parse_manifest("assets:\n  x:\n    repo: o/x\n    files: [a.bin]\n")
    lock = resolve(manifest, SizelessHub(), hash_regular=False)
    (ref,) = lock.files()
    settings = from_env({"HF_HOME": str(tmp_path)})
    store = make_store(settings, None)
    path = store.final_path(ref)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"whatever")
    m = tmp_path / "modelctl.yaml"
    m.write_text("assets:\n  x:\n    repo: o/x\n    files: [a.bin]\n")
    lockfile.write(m.with_suffix(".lock"), lock)
    result = locking.plan(Project(m, m.with_suffix(".lock")), manifest, settings)
    assert [f.cached for f in result.plan.files] == [True]
    assert result.plan.cached_bytes == 0  # unknown size counts as 0, never guessed


@pytest.mark.parametrize("size", [0, 1])
def test_empty_and_tiny_files(size: int) -> None:
    class TinyHub(SizelessHub):
        def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
            return RepoSnapshot(
                repo_id, repo_type, "c" * 40, (RemoteFile("e", size, Digest("gitsha1", "e" * 40)),)
            )

    lock = resolve(
        parse_manifest("assets:\n  x:\n    repo: o/x\n    files: [e]\n"),
        TinyHub(),
        hash_regular=False,
    )
    assert plan_lock(lock).total_bytes == size
