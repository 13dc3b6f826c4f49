"""Symlinks in a --target tree: refused (UnsafePathError, exit 2) before anything is
written, so nothing outside the tree changes; in the HF cache, a symlink or hard link at a
partial or lock file is never written through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelctl.errors import EXIT_INPUT, UnsafePathError
from modelctl.progress import DownloadPlanReady, Event
from modelctl.store.layout import HfCacheStore, TargetStore
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    MiB,
    Project,
    audit,
    clear,
    cli_in_process,
    lib_sync,
    make_project,
    seeded_bytes,
    settle,
    stray_temp_files,
)

pytestmark = pytest.mark.faults

MANIFEST = """\
assets:
  big:
    repo: org/s
    files: [weights.safetensors, config.json, "notes/*.txt"]
  same:
    repo: org/s
    files: [config.json]
"""
REPOS = {
    "org/s": {
        "weights.safetensors": seeded_bytes(41, 1 * MiB),
        "config.json": b'{"a": 1}',
        "notes/a.txt": b"a",
    }
}
VICTIM = b"precious bytes outside the tree\n"


@pytest.fixture
def project(tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub) -> Project:
    p = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    clear(local_hub)
    return p


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the tree, holding a file that must never change."""
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "victim.bin").write_bytes(VICTIM)
    return folder


def snapshot(folder: Path) -> dict[str, tuple[bool, bytes | str, int]]:
    """Everything in ``folder``, symlinks not followed: kind, content or target, mtime."""
    found: dict[str, tuple[bool, bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            if p.is_symlink():
                found[str(p.relative_to(folder))] = (True, os.readlink(p), st.st_mtime_ns)
            elif p.is_file():
                found[str(p.relative_to(folder))] = (False, p.read_bytes(), st.st_mtime_ns)
            else:
                found[str(p.relative_to(folder))] = (False, "dir", st.st_mtime_ns)
    return found


def plant(tree: Path, outside: Path, case: str) -> Path:
    """Create the symlink of ``case`` in ``tree``; returns it."""
    partial = tree / "big" / ".weights.safetensors.modelctl-partial"
    lock = tree / ".modelctl" / "locks" / "big" / "config.json.lock"
    links = {
        "asset folder": (tree / "big", outside / "sub"),
        "sub folder": (tree / "big" / "notes", outside / "sub"),
        "final file": (tree / "big" / "config.json", outside / "victim.bin"),
        "dangling final file": (tree / "big" / "config.json", outside / "new.bin"),
        "partial file": (partial, outside / "victim.bin"),
        "metadata folder": (tree / ".modelctl", outside / "sub"),
        "records folder": (tree / ".modelctl" / "verified", outside / "sub"),
        "lock file": (lock, outside / "new.bin"),
        "inside, aliasing two assets": (tree / "same", tree / "big"),
        "loop": (tree / "big", tree / "big"),
    }
    link, target = links[case]
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)
    return link


CASES = [
    "asset folder",
    "sub folder",
    "final file",
    "dangling final file",
    "partial file",
    "metadata folder",
    "records folder",
    "lock file",
    "inside, aliasing two assets",
    "loop",
]


@pytest.mark.parametrize("case", CASES)
def test_a_symlink_in_the_target_tree_is_refused_before_any_write(
    project: Project,
    local_hub: LocalHub,
    tmp_path: Path,
    outside: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    REPORT.add("bad_inputs")
    tree = tmp_path / "models"
    link = plant(tree, outside, case)
    before_tree, before_outside = snapshot(tree), snapshot(outside)
    lock = ["--lockfile", str(project.lock_path), "--target", str(tree)]
    for command in (["sync", "--frozen"], ["verify"], ["verify", "--full"]):
        code, _, err = cli_in_process(capsys, *command, *lock)
        assert code == EXIT_INPUT, f"{case}: {command}\n{err}"
        assert f"unsafe path: {link}: a symlink inside the target folder" in err, err
        assert "Traceback" not in err
    assert snapshot(tree) == before_tree, case  # nothing written in the tree ...
    assert snapshot(outside) == before_outside, case  # ... nor outside it
    assert settle(local_hub) == [], case  # nor fetched
    audit(project.lock(), TargetStore(tree), strict=False, context=case)


def test_the_target_folder_itself_may_be_a_symlink(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real-models"
    real.mkdir()
    tree = tmp_path / "models"
    tree.symlink_to(real)
    lock = ["--lockfile", str(project.lock_path), "--target", str(tree)]
    assert cli_in_process(capsys, "sync", "--frozen", *lock)[0] == 0
    assert cli_in_process(capsys, "verify", "--full", *lock)[0] == 0
    assert audit(project.lock(), TargetStore(tree)).checked == 4


def test_a_symlink_planted_after_the_check_is_refused_at_the_write(
    project: Project, tmp_path: Path, outside: Path
) -> None:
    """sync checks every path first; each file's fetch checks its own again right before
    its first write, so a symlink that appears in between is refused too."""
    REPORT.add("bad_inputs")
    tree = tmp_path / "models"
    before = snapshot(outside)

    class PlantOnPlan:
        def on_event(self, event: Event) -> None:
            if isinstance(event, DownloadPlanReady):  # after the check, before any fetch
                plant(tree, outside, "asset folder")

    with pytest.raises(UnsafePathError):
        lib_sync(project, TargetStore(tree), listener=PlantOnPlan())
    assert snapshot(outside) == before
    audit(project.lock(), TargetStore(tree), strict=False)


@pytest.mark.parametrize("what", ["partial", "lock"])
def test_hf_cache_never_writes_through_a_symlinked_partial_or_lock_file(
    project: Project, tmp_path: Path, outside: Path, what: str
) -> None:
    """The cache may hold symlinks by design (snapshots); its partial and lock files are
    opened with O_NOFOLLOW, so a planted one is refused and its target never touched."""
    REPORT.add("bad_inputs")
    store = HfCacheStore(tmp_path / "hf" / "hub")
    ref = project.ref("weights.safetensors")
    link = store.partial_path(ref) if what == "partial" else store.lock_path(ref)
    link.parent.mkdir(parents=True)
    target = outside / ("victim.bin" if what == "partial" else "new.bin")
    link.symlink_to(target)
    before = snapshot(outside)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        lib_sync(project, store)
    assert snapshot(outside) == before
    audit(project.lock(), store)


def test_a_hard_linked_partial_file_is_not_written_through(
    project: Project, tmp_path: Path, outside: Path
) -> None:
    """A hard link shares the inode: writing the partial would change the other name."""
    REPORT.add("bad_inputs")
    tree = tmp_path / "models"
    store = TargetStore(tree)
    partial = store.partial_path(project.ref("weights.safetensors"))
    partial.parent.mkdir(parents=True)
    os.link(outside / "victim.bin", partial)
    lib_sync(project, store)
    assert (outside / "victim.bin").read_bytes() == VICTIM
    assert audit(project.lock(), store).checked == 4
    assert stray_temp_files(tree) == []
