"""push -> sync --from against a real docker-registry (CNCF Distribution) on loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.oci import modelpack
from modelctl.oci.manifests import get_manifest
from modelctl.oci.push import push
from modelctl.oci.reference import parse
from modelctl.oci.registry import Registry, RegistryOptions
from modelctl.runtime import open_lock
from modelctl.store.layout import HfCacheStore, TargetStore
from modelctl.testing.hub import LocalHub
from tests.oci.conftest import CONTENTS, LOCKED_FILES, requires_registry
from tests.support.servers import registry as reg

pytestmark = requires_registry


def lock_of(manifest: Path) -> Lock:
    return lockfile.load(lockfile.lock_path_for(manifest))


def client(r: reg.Registry, name: str = "team/models", tag: str = "v1") -> Registry:
    return Registry(parse(f"oci://{r.address}/{name}:{tag}"), None, RegistryOptions())


def test_push_then_sync_elsewhere_with_the_hub_stopped(
    project: Path,
    registry: reg.Registry,
    local_hub: LocalHub,
    repos: dict[str, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = f"oci://{registry.address}/team/models:v1"
    assert main(["push", dest, "-m", str(project)]) == 0
    pushed = capsys.readouterr().out.strip()
    assert pushed.startswith(f"{registry.address}/team/models:v1@sha256:")
    local_hub.stop()  # from here on, the Hub is gone
    other_home = tmp_path / "other-home"  # another machine
    monkeypatch.setenv("HF_HOME", str(other_home))
    other_cache = other_home / "hub"
    lock_path = lockfile.lock_path_for(project)

    # Into an empty target tree...
    target = tmp_path / "tree"
    code = main(["sync", "--frozen", "--lockfile", str(lock_path), "--target", str(target),
                 "--from", f"oci://{pushed}", "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    for asset, repo, files in (
        ("alpha", "org/alpha", ("weights.safetensors", "config.json", "notes/a.txt")),
        ("beta", "org/beta", ("model.gguf", "shared.json")),
        ("gamma", "org/alpha", ("config.json",)),
    ):
        for f in files:
            assert (target / asset / f).read_bytes() == repos[repo][f]
    # ... and into the empty HF cache of another HF_HOME, by tag.
    code = main(["sync", "--frozen", "--lockfile", str(lock_path), "--from", dest, "-q"])
    assert code == 0, capsys.readouterr().err
    store = HfCacheStore(other_cache)
    for ref in lock_of(project).files():
        assert store.final_path(ref).read_bytes() == repos[ref.repo_id][ref.path]
    models = open_lock(lock_path, cache_dir=other_cache)
    assert models.path("beta", "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]
    # verify agrees, and a second sync fetches nothing.
    assert main(["verify", "--full", "--lockfile", str(lock_path)]) == 0
    capsys.readouterr()
    registry.stop()  # a warm node does not even ask the registry
    assert main(["sync", "--frozen", "--lockfile", str(lock_path), "--from", dest]) == 0
    assert "6 already present" in capsys.readouterr().err


def test_same_lock_same_digest_and_no_upload(
    project: Path, registry: reg.Registry, hf_env: Path
) -> None:
    lock = lock_of(project)
    store = HfCacheStore(hf_env)
    first = push(lock, store, client(registry), "v1")
    assert first.uploaded == CONTENTS + 2  # the files, the lockfile, the config
    assert first.files == LOCKED_FILES
    again = push(lock, store, client(registry), "v1")
    assert again.uploaded == 0 and again.present == CONTENTS + 2
    assert again.digest == first.digest
    assert again.bytes_uploaded == len(_manifest(registry, "team/models", "v1"))
    # Another tag in another repository: same manifest bytes, same digest.
    third = push(lock, store, client(registry, "elsewhere/models", "prod"), "prod")
    assert third.digest == first.digest


def test_one_changed_file_uploads_one_file_blob(
    project: Path, registry: reg.Registry, hf_env: Path, hub_root: Path
) -> None:
    store = HfCacheStore(hf_env)
    push(lock_of(project), store, client(registry), "v1")
    (hub_root / "org/beta/main/model.gguf").write_bytes(b"a new model" * 1000)
    assert main(["lock", "--upgrade", "-m", str(project)]) == 0
    assert main(["sync", "-q", "-m", str(project)]) == 0
    lock = lock_of(project)
    result = push(lock, store, client(registry), "v2")
    new_gguf = "sha256:" + hashlib.sha256(b"a new model" * 1000).hexdigest()
    lock_sha = modelpack.sha256_digest(lockfile.render(lock).encode())
    assert set(result.uploaded_digests) - {lock_sha, result.config_digest} == {new_gguf}
    assert result.uploaded == 3


def test_mount_from_another_repository_uploads_nothing(
    project: Path, registry: reg.Registry, hf_env: Path
) -> None:
    lock = lock_of(project)
    store = HfCacheStore(hf_env)
    push(lock, store, client(registry, "team/a"), "v1")
    result = push(lock, store, client(registry, "team/b"), "v1", mount_from=("team/a",))
    assert result.uploaded == 0
    assert result.mounted == CONTENTS + 2


def test_manifest_is_modelpack(project: Path, registry: reg.Registry, hf_env: Path) -> None:
    lock = lock_of(project)
    push(lock, HfCacheStore(hf_env), client(registry), "v1")
    doc = json.loads(_manifest(registry, "team/models", "v1"))
    assert doc["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    titles = {
        layer["annotations"]["org.opencontainers.image.title"]: layer for layer in doc["layers"]
    }
    assert titles["modelctl.lock"]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    weights = titles["alpha/weights.safetensors"]
    assert weights["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert weights["annotations"]["org.cncf.model.filepath"] == "alpha/weights.safetensors"
    cfg = titles["alpha/config.json"]
    assert cfg["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert cfg["digest"] == "sha256:" + hashlib.sha256(b'{"hidden": 64}').hexdigest()
    assert cfg["annotations"]["dev.modelctl.lock.digest"].startswith("gitsha1:")
    assert len(doc["layers"]) == LOCKED_FILES + 1


def _manifest(r: reg.Registry, name: str, tag: str) -> bytes:
    data, _, _ = get_manifest(client(r, name, tag), parse(f"oci://{r.address}/{name}:{tag}"))
    return data


def test_chunked_upload_and_push_from_a_target_tree(
    project: Path, registry: reg.Registry, hf_env: Path, tmp_path: Path,
    repos: dict[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    lock = lock_of(project)
    target = tmp_path / "tree"
    assert main(["sync", "--frozen", "-q", "-m", str(project), "--target", str(target)]) == 0
    # Blobs over 64 KiB go in PATCH chunks of 64 KiB (the 300 kB file: 5 chunks).
    small_chunks = Registry(
        parse(f"oci://{registry.address}/team/chunked:v1"), None, RegistryOptions(chunk_size=65536)
    )
    from_tree = push(lock, TargetStore(target), small_chunks, "v1")
    from_cache = push(lock, HfCacheStore(hf_env), client(registry, "team/whole"), "v1")
    assert from_tree.digest == from_cache.digest  # same lock, same artifact, wherever read
    # 300 kB in 5 PATCHes and 200 kB in 4, where a monolithic upload sends one PUT each.
    assert from_tree.requests == from_cache.requests + 5 + 4
    out = tmp_path / "out"
    dest = f"oci://{registry.address}/team/chunked@{from_tree.digest}"
    capsys.readouterr()
    assert main(["sync", "--frozen", "-m", str(project), "--target", str(out), "--from", dest]) == 0
    assert (out / "alpha/weights.safetensors").read_bytes() == repos["org/alpha"][
        "weights.safetensors"
    ]
