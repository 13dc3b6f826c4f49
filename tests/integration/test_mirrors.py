"""Mirrors: the lock holds commits and digests, never URLs, so any endpoint serves it.

Two real local Hub servers hold the same repos (same content -> same commits, as a mirror
of the Hub would); `endpoint:` in the manifest or HF_ENDPOINT picks one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.store.layout import HfCacheStore
from modelctl.testing.hub import LocalHub
from tests.support.helpers import write_repo

MANIFEST = """\
assets:
  alpha:
    repo: org/alpha
    files: [weights.bin, config.json]
"""
FILES = {
    "weights.bin": hashlib.shake_256(b"w").digest(200_000),
    "config.json": b'{"hidden": 8}',
}


def fill(root: Path) -> None:
    write_repo(root, "org/alpha", FILES, lfs_patterns=("*.bin",))


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[LocalHub]:
    """A second server, on its own copy of the repos."""
    root = tmp_path / "mirror-root"
    fill(root)
    with LocalHub(root) as hub:
        yield hub


@pytest.fixture
def hub(hub_root: Path, local_hub: LocalHub) -> LocalHub:
    fill(hub_root)
    return local_hub


def settle(*hubs: LocalHub) -> None:
    """Requests are logged just after they are answered: let the logs catch up."""
    time.sleep(0.1)


def project(tmp_path: Path, text: str = MANIFEST) -> Path:
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(text)
    return manifest


def synced_ok(manifest: Path, cache: Path) -> None:
    lock = lockfile.load(manifest.with_suffix(".lock"))
    store = HfCacheStore(cache)
    for ref in lock.files():
        assert store.final_path(ref).read_bytes() == FILES[ref.path]


def test_a_lock_made_against_the_hub_syncs_from_a_mirror_and_back(
    tmp_path: Path,
    hf_env: Path,
    hub: LocalHub,
    mirror: LocalHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = project(tmp_path)
    assert main(["lock", "-m", str(manifest)]) == 0  # HF_ENDPOINT = the "Hub"
    text = manifest.with_suffix(".lock").read_text()
    for url in (hub.url, mirror.url, "127.0.0.1", "http"):
        assert url not in text
    settle()
    hub.clear_requests()
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    assert main(["sync", "-q", "--frozen", "-m", str(manifest)]) == 0
    settle()
    assert hub.requests == []
    assert mirror.count("GET", "/resolve/") == 2
    synced_ok(manifest, hf_env)

    # And back: a lock made against the mirror syncs from the Hub, into another cache.
    manifest.with_suffix(".lock").unlink()
    assert main(["lock", "-m", str(manifest)]) == 0
    assert manifest.with_suffix(".lock").read_text() == text  # same commits, same lock
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home2"))
    mirror.clear_requests()
    assert main(["sync", "-q", "--frozen", "-m", str(manifest)]) == 0
    settle()
    assert mirror.requests == [] and hub.count("GET", "/resolve/") == 2
    synced_ok(manifest, tmp_path / "home2" / "hub")


def test_the_manifest_endpoint_wins_over_hf_endpoint(
    tmp_path: Path, hf_env: Path, hub: LocalHub, mirror: LocalHub
) -> None:
    manifest = project(tmp_path, f"endpoint: {mirror.url}\n" + MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    assert main(["sync", "-q", "--locked", "-m", str(manifest)]) == 0
    settle()
    assert hub.requests == []  # HF_ENDPOINT points at the hub, the manifest at the mirror
    # lock downloads the one regular file to hash it (SHA-256), sync downloads both.
    assert mirror.count(path_contains="/api/") == 2 and mirror.count("GET", "/resolve/") == 3
    assert mirror.url not in manifest.with_suffix(".lock").read_text()
    synced_ok(manifest, hf_env)


def test_sync_frozen_reads_no_manifest_so_hf_endpoint_decides(
    tmp_path: Path,
    hf_env: Path,
    hub: LocalHub,
    mirror: LocalHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a Docker build does: `sync --frozen` with HF_ENDPOINT set as a build arg."""
    manifest = project(tmp_path, f"endpoint: {hub.url}\n" + MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    settle()
    hub.clear_requests()
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    assert main(["sync", "-q", "--frozen", "-m", str(manifest)]) == 0
    settle()
    assert hub.requests == [] and mirror.count("GET", "/resolve/") == 2


def test_a_mirror_serving_other_bytes_is_caught_by_the_lock(
    tmp_path: Path,
    hf_env: Path,
    hub: LocalHub,
    mirror: LocalHub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = project(tmp_path)
    assert main(["lock", "-m", str(manifest)]) == 0
    mirror.faults.set(wrong_bytes=True, paths={"weights.bin"})
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    capsys.readouterr()
    code = main(["sync", "-q", "--frozen", "-m", str(manifest)])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "do not match the locked digest" in err and "weights.bin" in err
    lock = lockfile.load(manifest.with_suffix(".lock"))
    weights = next(r for r in lock.files() if r.path == "weights.bin")
    assert not HfCacheStore(hf_env).final_path(weights).exists()
