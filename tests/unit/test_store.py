"""Store layout (cache / tree), verification records and the local check, on real files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelctl.errors import UnsafePathError
from modelctl.fs.flock import exclusive
from modelctl.lock.digest import Digest, digest_bytes
from modelctl.lock.types import FileRef
from modelctl.store.layout import HfCacheStore, TargetStore
from modelctl.store.presence import check_local
from modelctl.store.record import FileStamp, Record, read_record, write_record

DATA = b"hello weights"
SHA = digest_bytes("sha256", DATA)
COMMIT = "c" * 40


def ref(path: str = "sub/w.bin", digest: Digest = SHA, size: int = len(DATA)) -> FileRef:
    return FileRef("asset", "model", "org/name", COMMIT, path, size, digest, "file")


def test_hf_cache_paths(tmp_path: Path) -> None:
    s = HfCacheStore(tmp_path)
    r = ref()
    repo = tmp_path / "models--org--name"
    assert s.content_path(r) == repo / "blobs" / SHA.hex
    assert s.final_path(r) == repo / "snapshots" / COMMIT / "sub" / "w.bin"
    assert s.partial_path(r) == repo / "blobs" / f"{SHA.hex}.incomplete"
    assert s.lock_path(r) == tmp_path / ".locks" / "models--org--name" / f"{SHA.hex}.lock"
    assert s.record_path(r) == repo / ".modelctl" / "verified" / f"sha256-{SHA.hex}.json"


def test_target_paths(tmp_path: Path) -> None:
    s = TargetStore(tmp_path)
    r = ref()
    assert s.final_path(r) == s.content_path(r) == tmp_path / "asset" / "sub" / "w.bin"
    assert s.partial_path(r) == tmp_path / "asset" / "sub" / ".w.bin.modelctl-partial"
    assert s.lock_path(r) == tmp_path / ".modelctl" / "locks" / "asset" / "sub" / "w.bin.lock"
    assert s.record_path(r) == tmp_path / ".modelctl" / "verified" / "asset" / "sub" / "w.bin.json"
    with pytest.raises(UnsafePathError):
        s.record_path(ref("../x"))


def test_link_is_relative_idempotent_and_repairs(tmp_path: Path) -> None:
    s = HfCacheStore(tmp_path)
    r = ref()
    s.content_path(r).parent.mkdir(parents=True)
    s.content_path(r).write_bytes(DATA)
    s.link(r)
    final = s.final_path(r)
    assert os.readlink(final) == f"../../../blobs/{SHA.hex}"
    assert final.read_bytes() == DATA
    s.link(r)  # nothing to do
    final.unlink()
    final.symlink_to("elsewhere")
    s.link(r)
    assert final.read_bytes() == DATA
    assert [p.name for p in final.parent.iterdir()] == ["w.bin"]  # no temp link left


def test_set_ref_only_for_branches(tmp_path: Path) -> None:
    s = HfCacheStore(tmp_path)
    s.set_ref("model", "org/name", COMMIT, COMMIT)
    assert not (tmp_path / "models--org--name" / "refs").exists()
    s.set_ref("model", "org/name", "main", COMMIT)
    assert (tmp_path / "models--org--name" / "refs" / "main").read_text() == COMMIT
    s.set_ref("model", "org/name", "refs/pr/1", COMMIT)
    assert (tmp_path / "models--org--name" / "refs" / "refs" / "pr" / "1").read_text() == COMMIT


def test_record_round_trip_and_damaged_records(tmp_path: Path) -> None:
    path = tmp_path / "r" / "x.json"
    rec = Record(SHA, FileStamp(1, 2, 3), digest_bytes("blake3", DATA))
    write_record(path, rec)
    assert read_record(path) == rec
    path.write_text("{not json")
    assert read_record(path) is None
    assert read_record(tmp_path / "none.json") is None


def test_check_local_hashes_once_then_trusts_the_record(tmp_path: Path) -> None:
    f = tmp_path / "f"
    rec = tmp_path / "rec.json"
    assert check_local(f, SHA, len(DATA), rec).status == "missing"
    f.write_bytes(DATA + b"!")
    assert check_local(f, SHA, len(DATA), rec).status == "wrong-size"
    f.write_bytes(DATA)
    first = check_local(f, SHA, len(DATA), rec)
    assert first.ok and first.how == "sha256"
    assert check_local(f, SHA, len(DATA), rec).how == "record"
    assert check_local(f, SHA, len(DATA), rec, full=True).how == "blake3"


def test_check_local_catches_changed_content(tmp_path: Path) -> None:
    f = tmp_path / "f"
    rec = tmp_path / "rec.json"
    f.write_bytes(DATA)
    assert check_local(f, SHA, len(DATA), rec).ok
    st = f.stat()
    f.write_bytes(b"jello weights")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    bad = check_local(f, SHA, len(DATA), rec)
    assert bad.status == "wrong-content" and bad.how == "blake3"
    rec.unlink()
    bad = check_local(f, SHA, len(DATA), rec)
    assert bad.status == "wrong-content" and bad.actual == str(
        digest_bytes("sha256", b"jello weights")
    )
    assert not rec.exists()


def test_gitsha1_files_are_checked_with_the_git_blob_id(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_bytes(b"{}")
    git = Digest("gitsha1", hashlib.sha1(b"blob 2\0{}").hexdigest())
    assert check_local(f, git, 2, tmp_path / "r.json").how == "gitsha1"


def test_exclusive_lock_serializes(tmp_path: Path) -> None:
    import threading

    lock = tmp_path / "locks" / "x.lock"
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        with exclusive(lock):
            order.append("other")

    with exclusive(lock):
        t = threading.Thread(target=other)
        t.start()
        inside.wait(0.2)
        order.append("first")
    t.join()
    assert order == ["first", "other"]
    assert lock.exists()  # never deleted
