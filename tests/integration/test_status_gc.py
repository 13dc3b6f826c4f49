"""`modelctl status` and `modelctl gc` on caches and trees filled by real syncs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import huggingface_hub as hf
import pytest

from modelctl.cli import main
from modelctl.fs.flock import exclusive
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.store.gc import collect, find_garbage
from modelctl.store.layout import HfCacheStore
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

V1 = """\
assets:
  alpha:
    repo: org/alpha
    files: [weights.bin, config.json, "notes/*.txt"]
"""
V2 = """\
assets:
  alpha:
    repo: org/alpha
    files: [weights.bin, config.json]
"""
DAY = 24 * 3600


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def load(path: Path) -> Lock:
    return lockfile.load(path)


@pytest.fixture
def upgraded(
    tmp_path: Path, hf_env: Path, hub_root: Path, local_hub: LocalHub
) -> tuple[Path, Path]:
    """Lock v1 synced, then the repo changed and the manifest dropped a file: lock v2
    synced too. Returns (manifest, copy of the v1 lock)."""
    write_repo(
        hub_root,
        "org/alpha",
        {"weights.bin": seeded_bytes(1, 100_000), "config.json": b"{}", "notes/a.txt": b"a"},
        lfs_patterns=("*.bin",),
    )
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(V1)
    assert main(["sync", "-q", "-m", str(manifest)]) == 0
    v1 = tmp_path / "v1.lock"
    shutil.copy(manifest.with_suffix(".lock"), v1)
    write_repo(hub_root, "org/alpha", {"weights.bin": seeded_bytes(2, 100_000)})
    manifest.write_text(V2)
    assert main(["lock", "--upgrade", "-m", str(manifest)]) == 0
    assert main(["sync", "-q", "--locked", "-m", str(manifest)]) == 0
    return manifest, v1


# ------------------------------------------------------------------------------ status


def test_status_reports_each_state_without_hashing(
    upgraded: tuple[Path, Path], hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, _ = upgraded
    lock = load(manifest.with_suffix(".lock"))
    store = HfCacheStore(hf_env)
    code, out, _ = run(capsys, "status", "-m", str(manifest))
    assert code == 0
    assert "2 file(s): 2 verified" in out and str(hf_env) in out
    config = next(r for r in lock.files() if r.path == "config.json")
    weights = next(r for r in lock.files() if r.path == "weights.bin")
    store.record_path(config).unlink()  # e.g. placed by another tool: present, unverified
    code, out, _ = run(capsys, "status", "-m", str(manifest), "--json")
    report = json.loads(out)
    states = {f["filename"]: f["state"] for f in report["files"]}
    assert states == {"config.json": "unverified", "weights.bin": "verified"}
    assert not store.record_path(config).exists()  # status writes nothing
    with store.content_path(weights).open("r+b") as f:
        f.truncate(10)
    report = json.loads(run(capsys, "status", "-m", str(manifest), "--json")[1])
    assert report["totals"] == {
        "files": 2,
        "verified": 0,
        "unverified": 1,
        "wrong_size": 1,
        "missing": 0,
        "locked_bytes": 100_002,
        "bytes_on_disk": 12,
    }
    store.content_path(weights).unlink()
    code, out, _ = run(capsys, "status", "-m", str(manifest))
    assert code == 0 and "1 unverified, 1 missing" in out
    assert set(report["files"][0]) == {
        "asset", "repo_id", "repo_type", "commit", "filename", "size_bytes", "digest",
        "state", "bytes_on_disk", "path",
    }  # fmt: skip


def test_status_of_a_target_tree(
    upgraded: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, _ = upgraded
    target = tmp_path / "models"
    code, out, _ = run(capsys, "status", "-m", str(manifest), "--target", str(target))
    assert code == 0 and "2 file(s): 2 missing" in out
    assert main(["sync", "-q", "--locked", "-m", str(manifest), "--target", str(target)]) == 0
    capsys.readouterr()
    report = json.loads(run(capsys, "status", "-m", str(manifest), "--target", str(target),
                            "--json")[1])  # fmt: skip
    assert report["totals"]["verified"] == 2 and report["location"] == str(target)
    assert report["totals"]["bytes_on_disk"] == 100_002


# ------------------------------------------------------------------------------ gc: cache


def test_gc_lists_what_no_lock_references_then_deletes_it(
    upgraded: tuple[Path, Path],
    hf_env: Path,
    hub_root: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest, v1_path = upgraded
    v1, v2 = load(v1_path), load(manifest.with_suffix(".lock"))
    # Another tool's repo in the same cache.
    write_repo(hub_root, "org/other", {"x.bin": b"other"})
    hf.hf_hub_download("org/other", "x.bin", cache_dir=hf_env, endpoint=local_hub.url)
    other = hf_env / "models--org--other"
    repo = hf_env / "models--org--alpha"
    old_commit = v1.assets[0].sources[0].commit
    old_weights = next(r for r in v1.files() if r.path == "weights.bin")
    old_note = next(r for r in v1.files() if r.path == "notes/a.txt")
    before = sorted(p.relative_to(hf_env) for p in hf_env.rglob("*"))

    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--json")
    assert code == 0
    plan = json.loads(out)
    assert plan["dry_run"] is True and plan["scanned"] == ["models--org--alpha"]
    listed = {(i["kind"], i["path"]) for i in plan["items"]}
    assert listed == {
        ("blob", f"models--org--alpha/blobs/{old_weights.digest.hex}"),
        ("blob", f"models--org--alpha/blobs/{old_note.digest.hex}"),
        ("snapshot", f"models--org--alpha/snapshots/{old_commit}"),
    }
    assert plan["total_bytes"] == 100_001
    assert sorted(p.relative_to(hf_env) for p in hf_env.rglob("*")) == before  # dry run

    # Both locks given: everything is referenced.
    code, out, _ = run(capsys, "gc", "--lockfile", str(v1_path), "--lockfile",
                       str(manifest.with_suffix(".lock")))  # fmt: skip
    assert code == 0 and out.startswith("0 item(s), 0 B")

    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--delete")
    assert code == 0 and "deleted 3 item(s), freed 97.7 KiB" in out
    assert not (repo / "blobs" / old_weights.digest.hex).exists()
    assert not (repo / "snapshots" / old_commit).exists()
    assert not list((repo / ".modelctl" / "verified").glob(f"*{old_weights.digest.hex}*"))
    assert (repo / "refs" / "main").read_text() == v2.assets[0].sources[0].commit
    assert other.is_dir() and list((other / "blobs").iterdir())  # not in the lock: kept
    assert main(["verify", "-m", str(manifest), "--full"]) == 0
    capsys.readouterr()
    # Nothing left to collect; a warm sync downloads nothing.
    assert run(capsys, "gc", "-m", str(manifest))[1].startswith("0 item(s)")
    local_hub.clear_requests()
    assert main(["sync", "-q", "--locked", "-m", str(manifest)]) == 0
    time.sleep(0.1)
    assert local_hub.count("GET", "/resolve/") == 0
    capsys.readouterr()

    # --all-repos: a repo no lock uses goes whole.
    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--all-repos", "--json")
    items = json.loads(out)["items"]
    assert [(i["kind"], i["path"]) for i in items] == [("repo", "models--org--other")]
    assert main(["gc", "-m", str(manifest), "--all-repos", "--delete"]) == 0
    assert not other.exists() and repo.is_dir()


def test_gc_partials_broken_links_stray_files_and_files_in_use(
    upgraded: tuple[Path, Path], hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, v1_path = upgraded
    v1, v2 = load(v1_path), load(manifest.with_suffix(".lock"))
    repo = hf_env / "models--org--alpha"
    commit = v2.assets[0].sources[0].commit
    snap = repo / "snapshots" / commit
    old = repo / "blobs" / ("a" * 64 + ".incomplete")
    old.write_bytes(b"x" * 10)
    os.utime(old, (time.time() - 2 * DAY,) * 2)
    young = repo / "blobs" / ("b" * 64 + ".incomplete")
    young.write_bytes(b"y")
    # Temp files a kill left in the middle of an atomic record / refs write.
    (repo / ".modelctl" / "verified").mkdir(parents=True, exist_ok=True)
    old_tmp = repo / ".modelctl" / "verified" / ".sha256-x.json.0123abcd.tmp"
    old_ref_tmp = repo / "refs" / ".main.89abcdef.tmp"
    young_tmp = repo / "refs" / ".main.fedcba98.tmp"
    for tmp in (old_tmp, old_ref_tmp, young_tmp):
        tmp.write_text("{")
    for tmp in (old_tmp, old_ref_tmp):
        os.utime(tmp, (time.time() - 2 * DAY,) * 2)
    (snap / "extra.txt").symlink_to("../../blobs/" + "c" * 64)  # another tool's, unlocked
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to("../../blobs/" + "d" * 40)  # locked path, broken
    old_weights = next(r for r in v1.files() if r.path == "weights.bin")
    plan = find_garbage([v2], HfCacheStore(hf_env), now=time.time())
    kinds = sorted((g.kind, g.path.name) for g in plan.items)
    assert ("partial", old.name) in kinds and ("partial", young.name) not in kinds
    assert ("snapshot-file", "extra.txt") in kinds
    assert ("broken-link", "config.json") in kinds
    assert ("temp", old_tmp.name) in kinds and ("temp", old_ref_tmp.name) in kinds
    assert ("temp", young_tmp.name) not in kinds
    # A content whose lock file another process holds (a running download) is skipped.
    lock_file = hf_env / ".locks" / repo.name / f"{old_weights.digest.hex}.lock"
    with exclusive(lock_file):
        result = collect(plan)
    assert [g.path.name for g in result.skipped] == [old_weights.digest.hex]
    assert (repo / "blobs" / old_weights.digest.hex).exists()
    assert not old.exists() and young.exists()
    assert not old_tmp.exists() and not old_ref_tmp.exists() and young_tmp.exists()
    assert not (snap / "extra.txt").is_symlink() and not (snap / "config.json").is_symlink()
    assert lock_file.exists()  # lock files are never deleted
    # sync puts the locked link back; the skipped blob goes next time.
    assert main(["sync", "-q", "--locked", "-m", str(manifest)]) == 0
    assert main(["verify", "-m", str(manifest)]) == 0
    again = collect(find_garbage([v2], HfCacheStore(hf_env), now=time.time()))
    assert [g.path.name for g in again.deleted] == [old_weights.digest.hex]
    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--partial-age", "0")
    assert code == 0 and "partial" in out and young.name in out


# ------------------------------------------------------------------------------ gc: tree


def test_gc_in_a_target_tree(
    tmp_path: Path, hf_env: Path, hub_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_repo(
        hub_root,
        "org/alpha",
        {"weights.bin": seeded_bytes(1, 50_000), "config.json": b"{}", "notes/a.txt": b"a"},
        lfs_patterns=("*.bin",),
    )
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(V1)
    target = tmp_path / "models"
    assert main(["sync", "-q", "-m", str(manifest), "--target", str(target)]) == 0
    manifest.write_text(V2)
    assert main(["sync", "-q", "-m", str(manifest), "--target", str(target)]) == 0
    (target / "stray").mkdir()
    (target / "stray" / "x").write_bytes(b"12345")
    partial = target / "alpha" / ".weights.bin.modelctl-partial"
    partial.write_bytes(b"p" * 7)
    os.utime(partial, (time.time() - 2 * DAY,) * 2)
    capsys.readouterr()
    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--target", str(target), "--json")
    assert code == 0
    listed = {(i["kind"], i["path"], i["bytes"]) for i in json.loads(out)["items"]}
    assert listed == {
        ("file", "alpha/notes/a.txt", 1),
        ("partial", str(partial.relative_to(target)), 7),
    }
    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--target", str(target), "--delete")
    assert code == 0 and "deleted 2 item(s)" in out
    assert not (target / "alpha" / "notes").exists()  # emptied folders go too
    assert not (target / ".modelctl" / "verified" / "alpha" / "notes").exists()
    assert (target / "stray" / "x").exists()
    code, out, _ = run(capsys, "gc", "-m", str(manifest), "--target", str(target), "--all-repos",
                       "--delete")  # fmt: skip
    assert code == 0 and not (target / "stray").exists()
    assert main(["verify", "-m", str(manifest), "--target", str(target), "--full"]) == 0
    assert main(["status", "-m", str(manifest), "--target", str(target)]) == 0
