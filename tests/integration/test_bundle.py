"""`modelctl bundle` and `modelctl sync --from-bundle`: offline installs from one tar."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import huggingface_hub as hf
import pytest

from modelctl.bundle.archive import BundleMismatchError, lock_hash
from modelctl.bundle.source import install_bundle
from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.runtime import open_lock
from modelctl.store.layout import HfCacheStore, TargetStore
from modelctl.store.record import read_record
from modelctl.testing.hub import LocalHub
from tests.support.helpers import (
    TWO_REPOS_CONTENTS,
    TWO_REPOS_LOCKED_FILES,
    TWO_REPOS_MANIFEST,
    seeded_bytes,
    two_repos,  # noqa: F401  (the fixture `repos`)
    two_repos_synced,  # noqa: F401  (the fixture `project`: locked and synced)
    write_repo,
)


@pytest.fixture
def bundle(project: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out" / "models.tar"
    assert main(["bundle", str(out), "-m", str(project)]) == 0
    return out


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Another machine: an empty HF_HOME and no reachable Hub."""
    home = tmp_path / "other-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    return home / "hub"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt in this process fails the test."""

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def load_lock(manifest: Path) -> Lock:
    return lockfile.load(manifest.with_suffix(".lock"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def rewrite(
    src: Path,
    dst: Path,
    edit: Callable[[tarfile.TarInfo, bytes], list[tuple[tarfile.TarInfo, bytes]]],
) -> Path:
    """Copy a bundle member by member, letting ``edit`` replace, drop or add members."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            f = tin.extractfile(m)
            data = f.read() if f is not None else b""
            for info, payload in edit(m, data):
                tout.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return dst


def keep(m: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(m, data)]


def nothing_installed(cache: Path) -> bool:
    """No content, partial or snapshot file anywhere under ``cache``."""
    return not [p for p in cache.rglob("*") if p.is_file() and "blobs" in p.parts] and not [
        p for p in cache.rglob("*") if "snapshots" in p.parts and not p.is_dir()
    ]


# ------------------------------------------------------------------------------ writing


def test_bundle_holds_the_lock_an_index_and_each_content_once(
    project: Path, bundle: Path, tmp_path: Path, repos: dict[str, dict[str, bytes]]
) -> None:
    lock = load_lock(project)
    ms = members(bundle)
    names = [m.name for m in ms]
    assert names[:2] == ["modelctl.lock", "index.json"]
    assert len(names) == 2 + TWO_REPOS_CONTENTS and len(set(names)) == len(names)
    assert all(m.isreg() and m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in ms)
    with tarfile.open(bundle) as tar:
        lock_text = tar.extractfile("modelctl.lock").read()  # type: ignore[union-attr]
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        # The lock in the bundle is the project's lockfile, byte for byte.
        assert lock_text == project.with_suffix(".lock").read_bytes()
        assert index["format"] == "modelctl-bundle" and index["version"] == 1
        assert index["lock_sha256"] == lock_hash(lock)
        assert index["lock_sha256"] == "sha256:" + hashlib.sha256(lock_text).hexdigest()
        assert len(index["files"]) == TWO_REPOS_LOCKED_FILES
        for entry in index["files"]:
            assert set(entry) == {
                "asset", "repo_type", "repo", "commit", "path", "size", "digest", "member",
            }  # fmt: skip
            data = tar.extractfile(entry["member"]).read()  # type: ignore[union-attr]
            assert data == repos[entry["repo"]][entry["path"]]
            assert entry["member"] == "blobs/" + entry["digest"].replace(":", "-")
    # Deterministic: the same lock and files give the same bytes; no temp file is left.
    again = tmp_path / "out" / "again.tar"
    assert main(["bundle", str(again), "-m", str(project)]) == 0
    assert again.read_bytes() == bundle.read_bytes()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["again.tar", "models.tar"]


def test_bundle_needs_synced_files_and_names_sync(
    tmp_path: Path, hf_env: Path, repos: object, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(TWO_REPOS_MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    capsys.readouterr()
    out = tmp_path / "models.tar"
    code, _, err = run(capsys, "bundle", str(out), "-m", str(manifest))
    assert code == 1
    assert (
        f"{TWO_REPOS_LOCKED_FILES} of {TWO_REPOS_LOCKED_FILES} locked file(s) are not on disk"
        in err
    )
    assert "run `modelctl sync` first" in err and "(missing)" in err
    assert list(tmp_path.glob("*.tar*")) == [] and list(tmp_path.glob(".models.tar*")) == []


def test_bundle_refuses_a_local_file_that_differs_from_the_lock(
    project: Path, hf_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = next(r for r in load_lock(project).files() if r.path == "weights.safetensors")
    blob_path = HfCacheStore(hf_env).content_path(ref)
    data = bytearray(blob_path.read_bytes())
    data[1000] ^= 0xFF
    blob_path.write_bytes(bytes(data))  # same size: only the content check can tell
    out = tmp_path / "models.tar"
    code, _, err = run(capsys, "bundle", str(out), "-m", str(project))
    assert code == 1
    assert "a local file differs from the lock" in err and str(ref.digest) in err
    assert not out.exists() and not list(tmp_path.glob(".models.tar.*"))


# ------------------------------------------------------------------------------ installing


def test_install_into_a_fresh_cache_is_offline_and_like_a_sync(
    project: Path,
    bundle: Path,
    fresh_home: Path,
    local_hub: LocalHub,
    repos: dict[str, dict[str, bytes]],
    no_network: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local_hub.clear_requests()
    code, out, err = run(
        capsys, "sync", "--frozen", "-m", str(project), "--from-bundle", str(bundle)
    )
    assert code == 0, err
    assert out.strip() == str(fresh_home)
    assert f"{TWO_REPOS_LOCKED_FILES} file(s)" in err
    lock = load_lock(project)
    store = HfCacheStore(fresh_home)
    for ref in lock.files():
        final = store.final_path(ref)
        assert final.is_symlink() and not os.path.isabs(os.readlink(final))
        assert final.read_bytes() == repos[ref.repo_id][ref.path]
        assert read_record(store.record_path(ref)) is not None
        repo_dir = store.repo_dir(ref)
        assert (repo_dir / "refs" / "main").read_text() == ref.commit
        found = hf.hf_hub_download(
            ref.repo_id, ref.path, revision=ref.commit, cache_dir=fresh_home, local_files_only=True
        )
        assert Path(found).read_bytes() == repos[ref.repo_id][ref.path]
    assert not list(fresh_home.rglob("*.incomplete"))
    # Records were written: verify trusts them (hashes nothing), a warm sync does nothing.
    code, out, _ = run(capsys, "verify", "-m", str(project))
    assert code == 0 and f"{TWO_REPOS_LOCKED_FILES} file(s)" in out and "0 hashed" in out
    code, _, err = run(capsys, "sync", "--frozen", "-m", str(project))
    assert code == 0 and f"{TWO_REPOS_LOCKED_FILES} already present" in err
    assert local_hub.requests == []


def test_install_into_a_target_tree_then_load_it(
    project: Path,
    bundle: Path,
    fresh_home: Path,
    tmp_path: Path,
    repos: dict[str, dict[str, bytes]],
    no_network: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "models"
    args = ("sync", "--frozen", "-m", str(project), "--target", str(target))
    code, out, err = run(capsys, *args, "--from-bundle", str(bundle))
    assert code == 0, err
    assert out.strip() == str(target)
    lock = load_lock(project)
    for ref in lock.files():
        path = target / ref.asset / ref.path
        assert not path.is_symlink() and path.read_bytes() == repos[ref.repo_id][ref.path]
    assert not [p for p in target.rglob("*") if "partial" in p.name]
    assert not fresh_home.exists()  # the HF cache is not touched
    assert run(capsys, "verify", "-m", str(project), "--target", str(target), "--full")[0] == 0
    models = open_lock(project.with_suffix(".lock"), target=target, verify="full")
    assert models.path("beta", "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]
    # Installing again finds everything present and reads no content.
    code, _, err = run(capsys, *args, "--from-bundle", str(bundle))
    assert code == 0 and f"{TWO_REPOS_LOCKED_FILES} already present" in err


def test_bundle_from_a_target_tree_installs_into_a_cache(
    project: Path,
    hf_env: Path,
    fresh_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tree = tmp_path / "tree"
    lock_path = project.with_suffix(".lock")
    # The tree comes from the first bundle; the second is made from the tree.
    first = tmp_path / "first.tar"
    second = tmp_path / "second.tar"
    assert main(["bundle", str(first), "--lockfile", str(lock_path)]) != 0  # fresh_home is empty
    monkeypatch.setenv("HF_HOME", str(hf_env.parent))
    assert main(["bundle", str(first), "--lockfile", str(lock_path)]) == 0
    assert main(["sync", "--frozen", "--lockfile", str(lock_path), "--target", str(tree),
                 "--from-bundle", str(first)]) == 0  # fmt: skip
    assert main(["bundle", str(second), "--lockfile", str(lock_path), "--target", str(tree)]) == 0
    assert second.read_bytes() == first.read_bytes()
    monkeypatch.setenv("HF_HOME", str(fresh_home.parent))
    capsys.readouterr()
    code, _, err = run(
        capsys, "sync", "--frozen", "--lockfile", str(lock_path), "--from-bundle", str(second)
    )
    assert code == 0, err
    assert main(["verify", "--lockfile", str(lock_path)]) == 0


def test_only_missing_files_are_installed(
    project: Path, bundle: Path, fresh_home: Path, repos: object
) -> None:
    lock = load_lock(project)
    store = HfCacheStore(fresh_home)
    first = install_bundle(bundle, lock, store)
    assert len(first.installed) == TWO_REPOS_LOCKED_FILES and first.files_present == 0
    weights = next(r for r in lock.files() if r.path == "weights.safetensors")
    store.content_path(weights).unlink()
    again = install_bundle(bundle, lock, store)
    assert again.installed == (weights,) and again.files_present == TWO_REPOS_LOCKED_FILES - 1
    assert again.bytes_read == weights.size


def test_install_reads_a_stream_from_stdin(
    project: Path, bundle: Path, fresh_home: Path, local_hub: LocalHub
) -> None:
    env = {
        **os.environ,
        "HF_HOME": str(fresh_home.parent),
        "HF_ENDPOINT": local_hub.url,  # reachable: it must still get no request
    }
    local_hub.clear_requests()
    cmd = [sys.executable, "-m", "modelctl", "sync", "--frozen", "-q", "-m", str(project)]
    with bundle.open("rb") as stdin:
        proc = subprocess.run(
            [*cmd, "--from-bundle", "-"], stdin=stdin, env=env, capture_output=True, text=True
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(fresh_home)
    assert local_hub.requests == []
    assert main(["verify", "-m", str(project)]) == 0


# ------------------------------------------------------------------------------ refusals


def test_a_bundle_of_another_lock_is_refused_saying_which(
    project: Path,
    bundle: Path,
    fresh_home: Path,
    hub_root: Path,
    local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = load_lock(project)
    write_repo(hub_root, "org/beta", {"model.gguf": seeded_bytes(9, 200_000)})  # a new commit
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    assert main(["lock", "-m", str(project), "--upgrade-asset", "beta"]) == 0
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    new = load_lock(project)
    capsys.readouterr()
    code, _, err = run(capsys, "sync", "--frozen", "-m", str(project), "--from-bundle", str(bundle))
    assert code == 2
    assert "bundle mismatch" in err and "made from another lock" in err
    assert f"expected: {lock_hash(new)} (this project's lock)" in err
    assert f"actual:   {lock_hash(old)} (the lock inside the bundle)" in err
    old_beta = old.asset("beta").sources[0].commit[:12]  # type: ignore[union-attr]
    new_beta = new.asset("beta").sources[0].commit[:12]  # type: ignore[union-attr]
    assert f"asset 'beta': org/beta@{new_beta} here, org/beta@{old_beta} in the bundle" in err
    assert f"tar -xOf {bundle} modelctl.lock" in err
    assert not fresh_home.exists()
    with pytest.raises(BundleMismatchError):
        install_bundle(bundle, new, HfCacheStore(fresh_home))


def test_tampered_bytes_are_refused_and_nothing_is_left(
    project: Path,
    bundle: Path,
    fresh_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def flip(m: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if m.name.startswith("blobs/sha256-") and m.size == 300_000:
            data = data[:500] + bytes([data[500] ^ 1]) + data[501:]
        return [(m, data)]

    bad = rewrite(bundle, tmp_path / "bad.tar", flip)
    code, _, err = run(capsys, "sync", "--frozen", "-m", str(project), "--from-bundle", str(bad))
    assert code == 4
    assert "bundled bytes do not match the locked digest" in err and "weights.safetensors" in err
    weights = next(r for r in load_lock(project).files() if r.path == "weights.safetensors")
    store = HfCacheStore(fresh_home)
    assert not store.content_path(weights).exists() and not store.final_path(weights).exists()
    assert not list(fresh_home.rglob("*.incomplete"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../evil", tarfile.REGTYPE),
        ("/tmp/evil-abs", tarfile.REGTYPE),
        ("blobs/../../evil", tarfile.REGTYPE),
        ("notes.txt", tarfile.REGTYPE),
        ("blobs/sha256-" + "ab" * 32, tarfile.REGTYPE),  # well formed, but not in the index
        ("LINK", tarfile.SYMTYPE),
        ("DUP", tarfile.REGTYPE),
    ],
)
def test_unsafe_or_unexpected_members_are_refused(
    project: Path,
    bundle: Path,
    fresh_home: Path,
    tmp_path: Path,
    name: str,
    kind: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = next(m.name for m in members(bundle) if m.name.startswith("blobs/"))

    def add(m: tarfile.TarInfo, data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if m.name != "index.json":
            return [(m, data)]
        info = tarfile.TarInfo(listed if name in ("LINK", "DUP") else name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        payload = b"evil"
        info.size = len(payload) if kind == tarfile.REGTYPE else 0
        extra = [(info, payload)]
        if name == "DUP":
            extra = []  # the duplicate comes after the real member, below
        return [(m, data), *extra]

    bad = rewrite(bundle, tmp_path / "bad.tar", add)
    if name == "DUP":
        with tarfile.open(bad, "a") as tar:
            info = tarfile.TarInfo(listed)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    code, _, err = run(capsys, "sync", "--frozen", "-m", str(project), "--from-bundle", str(bad))
    assert code == 2, err
    assert "unsafe or unexpected member" in err
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-abs").exists()
    if name != "DUP":
        assert nothing_installed(fresh_home)


def test_damaged_truncated_or_incomplete_bundles_are_refused(
    project: Path,
    bundle: Path,
    fresh_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sync = ("sync", "--frozen", "-m", str(project), "--from-bundle")
    # Not a tar at all.
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 1000)
    code, _, err = run(capsys, *sync, str(junk))
    assert code == 2 and "bundle error" in err
    # A tar, but not a bundle.
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        tar.addfile(info, io.BytesIO(b""))
    code, _, err = run(capsys, *sync, str(other))
    assert code == 2 and "not a modelctl bundle" in err
    # Cut in the middle of the big blob.
    data = bundle.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) - 150_000])
    code, _, err = run(capsys, *sync, str(cut))
    assert code == 2 and ("truncated" in err or "ends without" in err)
    assert not list(fresh_home.rglob("*.incomplete"))
    # A blob the index lists is missing.
    dropped = rewrite(
        bundle, tmp_path / "dropped.tar", lambda m, d: [] if m.size == 200_000 else [(m, d)]
    )
    code, _, err = run(capsys, *sync, str(dropped))
    assert code == 2 and "ends without 1 file(s) its index lists" in err and "model.gguf" in err

    # The index altered to leave a needed file out: refused before anything is read.
    def no_gguf(m: tarfile.TarInfo, d: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if m.name == "index.json":
            doc = json.loads(d)
            doc["files"] = [f for f in doc["files"] if f["path"] != "model.gguf"]
            d = json.dumps(doc).encode()
            m.size = len(d)
        return [(m, d)]

    code, _, err = run(capsys, *sync, str(rewrite(bundle, tmp_path / "idx.tar", no_gguf)))
    assert code == 2 and "does not describe its modelctl.lock" in err
    # Nothing else is ever read as a bundle: a missing file is a clear error.
    code, _, err = run(capsys, *sync, str(tmp_path / "nope.tar"))
    assert code == 2 and "nope.tar" in err


def test_a_stale_lock_is_not_relocked_from_a_bundle(
    project: Path, bundle: Path, fresh_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_text(
        TWO_REPOS_MANIFEST.replace("[config.json]\n", "[config.json, notes/a.txt]\n")
    )
    code, _, err = run(capsys, "sync", "-m", str(project), "--from-bundle", str(bundle))
    assert code == 3 and "offline" in err  # re-locking would need the Hub: refused
    code, _, err = run(capsys, "sync", "--locked", "-m", str(project), "--from-bundle", str(bundle))
    assert code == 1 and "stale lock" in err
    assert not fresh_home.exists()


def test_target_store_install_matches_sync_layout(
    project: Path, bundle: Path, tmp_path: Path, fresh_home: Path
) -> None:
    lock = load_lock(project)
    target = tmp_path / "t"
    store = TargetStore(target)
    result = install_bundle(bundle, lock, store)
    assert {r.asset for r in result.installed} == {"alpha", "beta", "gamma"}
    for ref in lock.files():
        assert read_record(store.record_path(ref)) is not None
