"""The runtime loader on files put in place by `modelctl sync` (HF cache and --target)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.runtime import NotSyncedError, open_lock
from tests.support.helpers import write_repo

MANIFEST = "assets:\n  m:\n    repo: org/m\n    files: [w.bin, cfg.json]\n"
W = bytes(range(256)) * 64


@pytest.fixture
def project(
    tmp_path: Path, hub_root: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    write_repo(hub_root, "org/m", {"w.bin": W, "cfg.json": b"{}"}, lfs_patterns=("*.bin",))
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    capsys.readouterr()
    return manifest


def flip_in_place(path: Path) -> None:
    with path.open("r+b") as f:  # same inode, new mtime
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_fast_mode_refuses_a_file_modified_after_sync(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sync", "-m", str(project), "-q"]) == 0
    capsys.readouterr()
    lock = project.with_suffix(".lock")
    path = open_lock(lock).path("m", "w.bin")
    assert path.read_bytes() == W
    flip_in_place(path.resolve())
    with pytest.raises(NotSyncedError, match="modified after"):
        open_lock(lock).path("m", "w.bin")
    assert open_lock(lock, verify="none").path("m", "w.bin") == path


def test_target_tree_copied_elsewhere_loads_fast_and_full_checks_content(
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "models"
    assert main(["sync", "-m", str(project), "--target", str(target), "-q"]) == 0
    capsys.readouterr()
    copied = tmp_path / "copied"
    shutil.copytree(target, copied)  # like Docker COPY --from: new inodes and mtimes
    monkeypatch.setenv("MODELCTL_TARGET", str(copied))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = open_lock(project.with_suffix(".lock"), verify="full")
    assert models.path("m", "w.bin") == copied / "m" / "w.bin"
    assert models.files("m")["cfg.json"].read_bytes() == b"{}"
    flip_in_place(copied / "m" / "w.bin")
    assert open_lock(project.with_suffix(".lock")).path("m", "w.bin")  # fast: size only
    with pytest.raises(NotSyncedError, match="content differs"):
        open_lock(project.with_suffix(".lock"), verify="full").path("m", "w.bin")
