"""What goes wrong between modelctl and a registry, each with its exit code and message;
a dropped connection is resumed, a redirect to blob storage is followed without the
credentials. Real docker-registry, with a fault proxy in front where a fault is needed."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.oci import modelpack
from modelctl.oci.manifests import get_manifest, put_manifest
from modelctl.oci.push import _Bytes
from modelctl.oci.reference import parse
from modelctl.oci.registry import Registry, RegistryOptions
from modelctl.oci.upload import upload
from tests.oci.conftest import requires_registry
from tests.support.servers import registry as reg

pytestmark = requires_registry


def sync_args(project: Path, dest: str, target: Path) -> list[str]:
    return ["sync", "--frozen", "-m", str(project), "--target", str(target), "--from", dest]


@pytest.fixture
def pushed(project: Path, registry: reg.Registry, capsys: pytest.CaptureFixture[str]) -> str:
    dest = f"oci://{registry.address}/team/models:v1"
    assert main(["push", dest, "-m", str(project)]) == 0
    capsys.readouterr()
    return dest


def test_unreachable_registry_exit_3(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = f"oci://127.0.0.1:{reg.free_port()}/team/models:v1"
    assert main(["push", dest, "-m", str(project)]) == 3
    assert "cannot reach the registry" in capsys.readouterr().err
    assert main(sync_args(project, dest, tmp_path / "t")) == 3
    assert "cannot reach the registry" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    ["registry.example/models", "oci://registry.example", "oci://r.example/Upper/x",
     "oci://r.example/x:bad tag", "oci://r.example/x@sha256:abc"],
)  # fmt: skip
def test_bad_reference_exit_2(text: str, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", text, "-m", str(project)]) == 2
    assert "not an OCI reference" in capsys.readouterr().err


def test_unknown_tag_and_repository_exit_2(
    project: Path, pushed: str, registry: reg.Registry, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(sync_args(project, pushed.replace(":v1", ":nope"), tmp_path / "t")) == 2
    err = capsys.readouterr().err
    assert "no manifest 'nope'" in err and "MANIFEST_UNKNOWN" in err
    other = f"oci://{registry.address}/no/such:v1"
    assert main(sync_args(project, other, tmp_path / "t")) == 2
    # Distribution 2.8 says MANIFEST_UNKNOWN for an unknown repository too.
    assert "the registry has no manifest 'v1'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").rglob("*.gguf"))


def _put_artifact(
    r: reg.Registry, name: str, manifest: dict[str, object], blobs: list[bytes]
) -> str:
    client = Registry(parse(f"oci://{r.address}/{name}:v1"), None, RegistryOptions())
    for data in blobs:
        upload(client, modelpack.sha256_digest(data), len(data), lambda d=data: _Bytes(d))
    put_manifest(client, "v1", json.dumps(manifest).encode(), modelpack.OCI_MANIFEST)
    return f"oci://{r.address}/{name}:v1"


def _descriptor(media: str, data: bytes, **annotations: str) -> dict[str, object]:
    d: dict[str, object] = {
        "mediaType": media, "digest": modelpack.sha256_digest(data), "size": len(data),
    }  # fmt: skip
    if annotations:
        d["annotations"] = annotations
    return d


def test_an_image_that_is_not_modelpack_exit_2(
    project: Path, registry: reg.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, layer = b"{}", b"not a model"
    dest = _put_artifact(registry, "plain/image", {
        "schemaVersion": 2, "mediaType": modelpack.OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    }, [config, layer])  # fmt: skip
    assert main(sync_args(project, dest, tmp_path / "t")) == 2
    err = capsys.readouterr().err
    assert "not a ModelPack artifact" in err and "application/vnd.oci.image.config" in err


def test_a_modelpack_artifact_not_made_by_modelctl_exit_2(
    project: Path, registry: reg.Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, weights = (
        b'{"descriptor":{},"modelfs":{"type":"layers","diffIds":[]},"config":{}}',
        b"w",
    )
    dest = _put_artifact(registry, "other/model", {
        "schemaVersion": 2, "mediaType": modelpack.OCI_MANIFEST,
        "artifactType": modelpack.ARTIFACT_TYPE,
        "config": _descriptor(modelpack.CONFIG_TYPE, config),
        "layers": [_descriptor(modelpack.WEIGHT_RAW, weights, **{
            "org.cncf.model.filepath": "model.safetensors"})],
    }, [config, weights])  # fmt: skip
    assert main(sync_args(project, dest, tmp_path / "t")) == 2
    assert "not one `modelctl push` made: it has no modelctl.lock layer" in capsys.readouterr().err


def test_an_artifact_of_another_lock_is_refused_naming_what_differs(
    project: Path, pushed: str, hub_root: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (hub_root / "org/beta/main/model.gguf").write_bytes(b"v2")
    assert main(["lock", "--upgrade", "-m", str(project)]) == 0
    capsys.readouterr()
    assert main(sync_args(project, pushed, tmp_path / "t")) == 2
    err = capsys.readouterr().err
    assert "artifact mismatch" in err and "another lock" in err
    assert "asset 'beta'" in err
    assert "(the lock inside the artifact)" in err
    assert "bundle" not in err  # the OCI path names its own things (issue 23)
    assert not (tmp_path / "t").exists()


def test_push_of_an_unsynced_lock_says_push_not_bundle(
    project: Path, registry: reg.Registry, other_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = f"oci://{registry.address}/team/models:v1"
    assert main(["push", dest, "-m", str(project)]) == 1
    err = capsys.readouterr().err
    assert "cannot push: 6 of 6 locked file(s) are not on disk" in err
    assert "bundle" not in err


def test_damaged_blob_exit_4_nothing_at_the_final_path(
    project: Path, pushed: str, registry: reg.Registry, repos: dict[str, dict[str, bytes]],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    gguf = repos["org/beta"]["model.gguf"]
    stored = registry.blob_path("sha256:" + hashlib.sha256(gguf).hexdigest())
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0xFF  # the registry serves what its storage holds, unchecked
    stored.write_bytes(bytes(data))
    target = tmp_path / "t"
    assert main(sync_args(project, pushed, target)) == 4
    err = capsys.readouterr().err
    assert "integrity error" in err and "do not match the locked digest" in err
    assert "the registry's copy is damaged" in err and "modelctl push" in err
    assert not (target / "beta" / "model.gguf").exists()
    assert not list((target / "beta").glob(".*partial*"))
    # The other files are installed and verified; the damaged one stays missing.
    assert (target / "alpha" / "weights.safetensors").read_bytes() == repos["org/alpha"][
        "weights.safetensors"
    ]


def test_connection_dropped_mid_blob_is_resumed(
    project: Path, pushed: str, registry: reg.Registry, repos: dict[str, dict[str, bytes]],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with reg.Proxy(registry, drop_blob_after=100_000) as proxy:
        dest = pushed.replace(registry.address, proxy.address)
        target = tmp_path / "t"
        assert main([*sync_args(project, dest, target), "-j", "1"]) == 0, capsys.readouterr().err
    assert proxy.dropped == 1
    resumed = [r for r in proxy.log.requests if r[2] == 206]
    assert len(resumed) == 1  # the rest of the cut blob, asked with Range
    for asset, repo, name in (("alpha", "org/alpha", "weights.safetensors"),
                              ("beta", "org/beta", "model.gguf")):  # fmt: skip
        assert (target / asset / name).read_bytes() == repos[repo][name]
    # Nothing was fetched twice: the bytes sent are the content plus the cut's part, once.
    assert proxy.log.bytes_down < 300_000 + 200_000 + 100_000 + 10_000


def test_blob_redirect_followed_without_credentials(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    repos: dict[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with reg.Registry(tmp_path / "auth-registry", users={"bob": "pw-123456"}) as r:
        token = base64.b64encode(b"bob:pw-123456").decode()
        auth = tmp_path / "auth.json"
        auth.write_text(json.dumps({"auths": {r.address: {"auth": token}}}))
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
        assert main(["push", f"oci://{r.address}/team/models:v1", "-m", str(project)]) == 0
        blobs = {
            p.parent.name: p.read_bytes()
            for p in (r.storage / "docker/registry/v2/blobs/sha256").glob("*/*/data")
        }
        with (
            reg.BlobStore({f"sha256:{k}": v for k, v in blobs.items()}) as storage,
            reg.Proxy(r, redirect_blobs=storage.url) as proxy,
        ):
            auth.write_text(json.dumps({"auths": {proxy.address: {"auth": token}}}))
            dest = f"oci://{proxy.address}/team/models:v1"
            target = tmp_path / "t"
            assert main(sync_args(project, dest, target)) == 0, capsys.readouterr().err
    assert len(storage.authorizations) >= 5  # the lockfile and every distinct file
    assert storage.authorizations == [None] * len(storage.authorizations)
    assert (target / "beta" / "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]


def test_blob_gone_from_the_registry_exit_2_naming_push(
    project: Path, pushed: str, registry: reg.Registry, repos: dict[str, dict[str, bytes]],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    gguf = repos["org/beta"]["model.gguf"]
    registry.blob_path("sha256:" + hashlib.sha256(gguf).hexdigest()).unlink()
    target = tmp_path / "t"
    assert main(sync_args(project, pushed, target)) == 2
    err = capsys.readouterr().err
    assert f"the registry ({registry.address}/team/models) has no such file" in err
    assert "push the lock again" in err and "HF_TOKEN" not in err
    assert not (target / "beta" / "model.gguf").exists()


# --------------------------------------------------------------- issue 24 item 6


def test_a_manifest_the_registry_redirects_is_followed(
    project: Path, pushed: str, registry: reg.Registry, repos: dict[str, dict[str, bytes]],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with reg.Proxy(registry, redirect_manifests=True) as proxy:
        dest = pushed.replace(registry.address, proxy.address)
        target = tmp_path / "t"
        assert main(sync_args(project, dest, target)) == 0, capsys.readouterr().err
    assert [r[2] for r in proxy.log.requests if "/manifests/" in r[1]] == [307]
    assert (target / "beta" / "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]


def test_the_lockfile_layer_is_bounded_by_the_lockfile_bound_not_the_manifest_cap(
    project: Path, pushed: str, registry: reg.Registry, repos: dict[str, dict[str, bytes]],
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A lockfile layer over 4 MiB (the manifest cap): the project's lock plus a long
    comment, which parses to the same lock."""
    client = Registry(parse(pushed), None, RegistryOptions())
    manifest = json.loads(get_manifest(client, parse(pushed))[0])
    lock_bytes = project.with_suffix(".lock").read_bytes()
    big = lock_bytes + b"# " + b"x" * (5 * 1024 * 1024) + b"\n"
    digest = modelpack.sha256_digest(big)
    upload(client, digest, len(big), lambda: _Bytes(big))
    for layer in manifest["layers"]:
        if layer["annotations"].get(modelpack.ANN_TITLE) == modelpack.LOCK_TITLE:
            layer["digest"], layer["size"] = digest, len(big)
    put_manifest(client, "big-lock", json.dumps(manifest).encode(), modelpack.OCI_MANIFEST)
    target = tmp_path / "t"
    dest = pushed.replace(":v1", ":big-lock")
    assert main(sync_args(project, dest, target)) == 0, capsys.readouterr().err
    assert (target / "beta" / "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]


@pytest.mark.parametrize("which", ["lockfile", "layer"])
def test_blob_storage_answering_401_is_named_as_the_registry_s_storage(
    which: str, project: Path, pushed: str, registry: reg.Registry, tmp_path: Path,
    repos: dict[str, dict[str, bytes]], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    gguf = "sha256:" + hashlib.sha256(repos["org/beta"]["model.gguf"]).hexdigest()
    lock_digest = modelpack.sha256_digest(project.with_suffix(".lock").read_bytes())
    digests = {lock_digest if which == "lockfile" else gguf}
    with (
        reg.BlobStore({}, status=401) as storage,
        reg.Proxy(registry, redirect_blobs=storage.url, redirect_digests=digests) as proxy,
    ):
        target = tmp_path / "t"
        code = main(sync_args(project, pushed.replace(registry.address, proxy.address), target))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "HTTP 401" in err and "the Hub" not in err and "HF_TOKEN" not in err
    assert "the storage the registry" in err and "redirected" in err
    assert not (target / "beta" / "model.gguf").exists()
