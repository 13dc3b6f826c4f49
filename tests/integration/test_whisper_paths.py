"""``LockedModels.whisper``: which locked files make a CTranslate2 Whisper folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelctl
from modelctl.cli import main
from modelctl.runtime import LockedModels, UnknownAssetError
from modelctl.runtime.whisper import missing_files
from tests.support.helpers import seeded_bytes, write_repo

FILES = {
    "model.bin": seeded_bytes(1, 5000),
    "config.json": b"{}",
    "tokenizer.json": b"{}",
    "vocabulary.txt": b"a\nb\n",
    "preprocessor_config.json": b"{}",
    "sub/model.bin": seeded_bytes(2, 100),
    "sub/config.json": b"{}",
    "README.md": b"# w",
}


def provision(tmp_path: Path, hub_root: Path, asset: str) -> LockedModels:
    write_repo(hub_root, "org/w", FILES, lfs_patterns=("*.bin",))
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text("assets:\n" + asset)
    assert main(["lock", "-m", str(manifest)]) == 0
    return modelctl.provision(manifest=manifest)


def test_default_stt_files_make_a_folder_without_the_unlocked_ones(
    tmp_path: Path, hub_root: Path, hf_env: Path
) -> None:
    models = provision(tmp_path, hub_root, "  stt:\n    kind: stt\n    repo: org/w\n")
    paths = models.whisper("stt")
    assert paths.folder == ""
    assert sorted(paths.files) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert paths.model.read_bytes() == FILES["model.bin"]
    # preprocessor_config.json is in the snapshot (another tool could have put it there)
    # but not locked: it is not part of the folder handed to faster-whisper.
    assert "preprocessor_config.json" not in paths.files


def test_a_folder_in_a_subdirectory_takes_only_its_own_files(
    tmp_path: Path, hub_root: Path, hf_env: Path
) -> None:
    models = provision(
        tmp_path,
        hub_root,
        "  stt:\n    repo: org/w\n    files: [sub/model.bin, sub/config.json, tokenizer.json]\n",
    )
    with pytest.raises(UnknownAssetError, match=r"tokenizer\.json, vocabulary\.txt or"):
        models.whisper("stt")  # tokenizer.json is locked, but not beside sub/model.bin


def test_two_model_bins_are_ambiguous(tmp_path: Path, hub_root: Path, hf_env: Path) -> None:
    models = provision(tmp_path, hub_root, "  stt:\n    repo: org/w\n    files: ['*model.bin']\n")
    with pytest.raises(UnknownAssetError, match=r"2 model\.bin files"):
        models.whisper("stt")


def test_missing_files() -> None:
    assert missing_files({"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}) == []
    assert missing_files({"model.bin"}) == [
        "config.json",
        "tokenizer.json",
        "vocabulary.txt or vocabulary.json",
    ]
