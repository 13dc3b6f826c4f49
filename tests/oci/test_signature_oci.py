"""Issue 22: a signed asset pushed to an OCI registry carries its signature (a locked file,
so one layer like the others), and `sync --from oci://` checks it against the lock."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.testing.hub import LocalHub
from tests.oci.conftest import requires_registry
from tests.support.helpers import seeded_bytes, write_repo
from tests.support.servers import registry as reg

pytest.importorskip("model_signing", reason="needs the sign extra")
pytestmark = requires_registry

FILES = {"model.onnx": seeded_bytes(1, 4000), "config.json": b'{"a": 1}'}


def signed_project(tmp_path: Path, hub_root: Path) -> tuple[Path, bytes]:
    """A repo signed by the model_signing CLI with a fresh key; a project locking it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    repo = write_repo(hub_root, "org/signed", FILES, lfs_patterns=("*.onnx",))
    r = subprocess.run(
        [sys.executable, "-m", "model_signing", "sign", "key", str(repo),
         "--private_key", str(private), "--signature", str(repo / "model.sig")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(
        "assets:\n  m:\n    repo: org/signed\n    files: ['*.onnx', '*.json']\n"
        f"    signature:\n      key: {public}\n"
    )
    return manifest, (repo / "model.sig").read_bytes()


def test_push_carries_the_signature_and_sync_from_oci_checks_it(
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    registry: reg.Registry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest, sig = signed_project(tmp_path, hub_root)
    assert main(["sync", "-q", "-m", str(manifest)]) == 0  # locks (signature checked), syncs
    capsys.readouterr()
    dest = f"oci://{registry.address}/team/signed:v1"
    assert main(["push", dest, "-m", str(manifest)]) == 0
    pushed = capsys.readouterr().out.strip()
    # The signature is a layer of the artifact, as every locked file.
    sig_digest = "sha256:" + hashlib.sha256(sig).hexdigest()
    assert registry.blob_path(sig_digest).read_bytes() == sig
    r = subprocess.run(
        ["curl", "-s", "-H", "Accept: application/vnd.oci.image.manifest.v1+json",
         f"http://{registry.address}/v2/team/signed/manifests/v1"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    titles = {
        layer["annotations"]["org.opencontainers.image.title"]: layer["digest"]
        for layer in json.loads(r.stdout)["layers"]
    }
    assert titles["m/model.sig"] == sig_digest

    local_hub.stop()  # another machine: only the registry
    monkeypatch.setenv("HF_HOME", str(tmp_path / "other-home"))
    lock_path = manifest.with_suffix(".lock")
    target = tmp_path / "tree"
    code = main(["sync", "--frozen", "--lockfile", str(lock_path), "--target", str(target),
                 "--from", f"oci://{pushed}", "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (target / "m" / "model.sig").read_bytes() == sig

    # A registry that serves another signature (same size) is refused, naming the file.
    blob_file = registry.blob_path(sig_digest)
    blob_file.write_bytes(sig.replace(b'"', b"'", 1))
    code = main(["sync", "--frozen", "--lockfile", str(lock_path), "--target",
                 str(tmp_path / "tree2"), "--from", f"oci://{pushed}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 4, err
    assert "model.sig" in err
    assert not (tmp_path / "tree2" / "m" / "model.sig").exists()
