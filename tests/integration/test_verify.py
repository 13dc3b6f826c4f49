"""`modelctl verify` against files synced from the local Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.errors import VerificationError
from modelctl.lock import lockfile
from modelctl.lock.types import FileRef, Lock
from modelctl.store.layout import HfCacheStore
from modelctl.store.record import read_record
from modelctl.store.verify import check, verify
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

MANIFEST = """\
assets:
  m:
    repo: org/m
    files: [weights.bin, config.json, vocab.txt]
"""


@pytest.fixture
def synced(tmp_path: Path, hf_env: Path, hub_root: Path, local_hub: LocalHub) -> Path:
    files = {"weights.bin": seeded_bytes(1, 200_000), "config.json": b"{}", "vocab.txt": b"a\nb\n"}
    write_repo(hub_root, "org/m", files, lfs_patterns=("*.bin",))
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(MANIFEST)
    assert main(["sync", "-q", "-m", str(manifest)]) == 0
    return manifest


def the_lock(manifest: Path) -> Lock:
    return lockfile.load(manifest.with_suffix(".lock"))


def ref_of(manifest: Path, path: str) -> FileRef:
    return next(r for r in the_lock(manifest).files() if r.path == path)


def flip_byte(path: Path, offset: int, keep_stamp: bool) -> None:
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    if keep_stamp:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_passes_after_sync_without_hashing(
    synced: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "verify", "-m", str(synced))
    assert code == 0, err
    assert "verified: 3 file(s)" in out and "0 hashed" in out
    code, out, _ = run(capsys, "verify", "--full", "-m", str(synced))
    assert code == 0 and "3 hashed" in out
    report = check(the_lock(synced), HfCacheStore(hf_env), full=True)
    assert {f.check.how for f in report.files} == {"blake3"}  # the records hold a blake3


def test_a_flipped_byte_with_a_new_mtime_is_found_by_plain_verify(
    synced: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = ref_of(synced, "weights.bin")
    flip_byte(HfCacheStore(hf_env).content_path(ref), 1000, keep_stamp=False)
    code, _, err = run(capsys, "verify", "-m", str(synced))
    assert code == 1
    assert "verification failed" in err and "weights.bin (wrong content" in err
    assert "config.json" not in err


def test_a_flipped_byte_behind_an_unchanged_stamp_needs_full(
    synced: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = ref_of(synced, "config.json")
    flip_byte(HfCacheStore(hf_env).content_path(ref), 0, keep_stamp=True)
    assert run(capsys, "verify", "-m", str(synced))[0] == 0  # the record is trusted
    code, _, err = run(capsys, "verify", "--full", "-m", str(synced))
    assert code == 1 and "config.json (wrong content" in err


def test_missing_and_wrong_size_files_are_each_named(synced: Path, hf_env: Path) -> None:
    store = HfCacheStore(hf_env)
    store.final_path(ref_of(synced, "vocab.txt")).unlink()  # the snapshot link
    with store.content_path(ref_of(synced, "weights.bin")).open("ab") as f:
        f.write(b"x")
    with pytest.raises(VerificationError) as info:
        verify(the_lock(synced), store)
    details = "\n".join(info.value.details)
    assert "vocab.txt (missing)" in details
    assert "weights.bin (wrong size: 200001 bytes, locked 200000 bytes)" in details
    assert len(info.value.details) == 2
    assert info.value.exit_code == 1


def test_a_file_without_record_is_hashed_with_the_lock_digest_and_recorded(
    synced: Path, hf_env: Path
) -> None:
    store = HfCacheStore(hf_env)
    ref = ref_of(synced, "weights.bin")
    store.record_path(ref).unlink()
    report = check(the_lock(synced), store)
    how = {f.ref.path: f.check.how for f in report.files}
    assert how == {"weights.bin": "sha256", "config.json": "record", "vocab.txt": "record"}
    record = read_record(store.record_path(ref))
    assert record is not None and record.digest == ref.digest and record.blake3 is not None


def test_verify_needs_only_the_lockfile(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock_path = synced.with_suffix(".lock")
    synced.unlink()
    code, _, err = run(capsys, "verify", "--lockfile", str(lock_path))
    assert code == 0, err
